//! `prbot serve`: webhooks, a manual trigger, a built-in schedule, one worker.

pub mod hooks;
pub mod queue;

use crate::config::Pipeline;
use crate::domain::outcome::Outcome;
use crate::engine::runner;
use crate::infra::process::Cancel;
use crate::infra::workspace::Repo;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hooks::{Source, Verdict};
use queue::{Enqueued, Queue};
use serde_json::json;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Options {
    pub listen: String,
    pub schedule: Option<croner::Cron>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("the server failed: {0}")]
    Server(std::io::Error),
}

struct App {
    /// The pipeline as its file last loaded (see [`App::reload`]).
    pipeline: Mutex<Loaded>,
    /// The `serve:` settings the server started with: the listener, its secrets and limits.
    started: crate::config::settings::ServeConfig,
    repo: Repo,
    secret: Option<Vec<u8>>,
    run_token: Option<String>,
    queue: Queue,
    seen: Mutex<Seen>,
    deliveries: Mutex<BTreeMap<&'static str, u64>>,
    cycles: Mutex<BTreeMap<String, u64>>,
    /// Queued cycles dropped at shutdown.
    dropped: std::sync::atomic::AtomicU64,
    /// Cycles not run because the pipeline file did not load.
    pipeline_errors: std::sync::atomic::AtomicU64,
    last_cycle: AtomicI64,
}

/// The pipeline and the file's bytes it was loaded from.
struct Loaded {
    pipeline: Arc<Pipeline>,
    bytes: Vec<u8>,
}

/// Delivery ids already handled, the newest few thousand.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// `false` when the id was seen before.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > 10_000 {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

impl App {
    fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.lock().unwrap().pipeline.clone()
    }

    /// The pipeline as its file says now. Each cycle runs what the file says when it
    /// starts, as a scheduled CI job would; a file that no longer loads runs nothing,
    /// since the edit that broke it may have been meant to stop something.
    fn reload(&self) -> Result<Arc<Pipeline>, crate::config::PipelineError> {
        let mut loaded = self.pipeline.lock().unwrap();
        let path = loaded.pipeline.path.clone();
        let bytes = std::fs::read(&path).unwrap_or_default();
        if bytes == loaded.bytes {
            return Ok(loaded.pipeline.clone());
        }
        let fresh = Arc::new(Pipeline::load(&path)?);
        tracing::info!("{} changed: the cycles from now on run what it says", path.display());
        if fresh.serve != self.started {
            tracing::warn!(
                "{}: its `serve:` settings take effect when the server restarts; `serve.on_push` does now",
                path.display()
            );
        }
        *loaded = Loaded { pipeline: fresh.clone(), bytes };
        Ok(fresh)
    }

    fn count(&self, result: &'static str) {
        *self.deliveries.lock().unwrap().entry(result).or_insert(0) += 1;
    }

    fn reply(&self, result: &'static str, status: StatusCode, message: String) -> Response {
        self.count(result);
        (status, Json(json!({ "result": result, "message": message }))).into_response()
    }

    fn enqueue(&self, why: &str) -> Response {
        match self.queue.trigger() {
            Enqueued::Queued => {
                tracing::info!("cycle queued: {why}");
                self.reply("queued", StatusCode::ACCEPTED, format!("a cycle is queued: {why}"))
            }
            Enqueued::Coalesced => self.reply(
                "coalesced",
                StatusCode::ACCEPTED,
                "a cycle is already queued; this trigger joins it".into(),
            ),
            Enqueued::Closed => {
                self.reply("refused", StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down".into())
            }
        }
    }
}

pub fn run(pipeline: Arc<Pipeline>, repo: Repo, opts: Options) -> Result<i32, ServeError> {
    let rt = crate::infra::runtime::new().map_err(ServeError::Server)?;
    rt.block_on(serve(pipeline, repo, opts))
}

async fn serve(pipeline: Arc<Pipeline>, repo: Repo, opts: Options) -> Result<i32, ServeError> {
    // Registers the values for redaction, too.
    let _secrets = runner::secrets(&pipeline).map_err(|e| ServeError::Server(std::io::Error::other(e)))?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let cfg = &pipeline.serve;
    let secret = env(&cfg.webhook_secret_env).map(String::into_bytes);
    let run_token = env(&cfg.run_token_env);
    if secret.is_none() {
        tracing::warn!("${} is not set: webhook deliveries will be refused", cfg.webhook_secret_env);
    }
    if run_token.is_none() {
        tracing::warn!("${} is not set: POST /run will be refused", cfg.run_token_env);
    }
    let max_body = cfg.max_body_bytes;
    let grace = cfg.grace;
    let app = Arc::new(App {
        pipeline: Mutex::new(Loaded {
            pipeline: pipeline.clone(),
            bytes: std::fs::read(&pipeline.path).unwrap_or_default(),
        }),
        started: pipeline.serve.clone(),
        repo,
        secret,
        run_token,
        queue: Queue::default(),
        seen: Mutex::new(Seen::default()),
        deliveries: Mutex::new(BTreeMap::new()),
        cycles: Mutex::new(BTreeMap::new()),
        dropped: Default::default(),
        pipeline_errors: Default::default(),
        last_cycle: AtomicI64::new(0),
    });
    let router = Router::new()
        .route("/hooks/gitea", post(gitea_hook))
        .route("/hooks/github", post(github_hook))
        .route("/run", post(manual_run))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/report", get(report))
        // The hooks read their bodies themselves, to answer 413 and count it.
        .layer(DefaultBodyLimit::disable())
        .with_state((app.clone(), max_body));
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: opts.listen.clone(), source })?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    // The first line of stdout, for scripts and tests that asked for port 0.
    println!("listening on {addr}");
    tracing::info!("prbot serve: listening on http://{addr}, repository {}", app.repo.root.display());

    let cancel = Cancel::new();
    let worker = tokio::spawn(work(app.clone(), cancel.clone()));
    if let Some(cron) = opts.schedule {
        tokio::spawn(schedule(app.clone(), cron));
    }
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: no new deliveries; letting the running cycle finish");
    };
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await.map_err(ServeError::Server)?;
    if app.queue.close() {
        tracing::info!("shutting down: the queued cycle is dropped; only the running one finishes");
        app.dropped.fetch_add(1, Ordering::SeqCst);
    }
    if tokio::time::timeout(grace, &mut Box::pin(wait_worker(&app))).await.is_err() {
        tracing::warn!("the cycle outlived the {grace:?} grace period; cancelling it");
        cancel.cancel();
    }
    let _ = worker.await;
    Ok(0)
}

async fn wait_worker(app: &App) {
    while app.queue.depth() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one worker: runs queued cycles one after another.
async fn work(app: Arc<App>, cancel: Cancel) {
    while app.queue.next().await {
        // HEAD moves between cycles: each starts from what it is now.
        let repo = app.repo.refreshed();
        let pipeline = match app.reload() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("the cycle did not run: {e}; `prbot validate` checks the file");
                app.pipeline_errors.fetch_add(1, Ordering::SeqCst);
                app.queue.done();
                continue;
            }
        };
        let c = cancel.clone();
        let handle = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || runner::run_cycle(pipeline, repo, c, handle)).await;
        let outcome = match done {
            Ok(Ok(run)) => {
                tracing::info!(
                    "cycle {}: {}: {}",
                    run.record.cycle_id,
                    run.record.outcome,
                    run.record.reason
                );
                if let Some(e) = &run.unpublished {
                    tracing::error!(
                        "the record is kept at {} but is not on the state ref: {e}",
                        run.path.display()
                    );
                }
                run.record.outcome.as_str().to_string()
            }
            Ok(Err(e)) => {
                tracing::error!("the cycle's record could not be written: {e}");
                Outcome::InternalError.as_str().to_string()
            }
            Err(e) => {
                tracing::error!("the cycle thread failed: {e}");
                Outcome::InternalError.as_str().to_string()
            }
        };
        *app.cycles.lock().unwrap().entry(outcome).or_insert(0) += 1;
        app.last_cycle.store(chrono::Utc::now().timestamp(), Ordering::SeqCst);
        app.queue.done();
    }
}

/// The built-in schedule, in UTC, feeding the same queue.
async fn schedule(app: Arc<App>, cron: croner::Cron) {
    loop {
        let now = chrono::Utc::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            tracing::error!("the schedule has no next time; it stops");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let _ = app.enqueue(&format!("schedule {}", cron.pattern));
    }
}

type AppState = (Arc<App>, usize);

async fn read_body(app: &App, req: Request, limit: usize) -> Result<(HeaderMap, Bytes), Response> {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok((parts.headers, b)),
        Err(_) => Err(app.reply(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than serve.max_body_bytes ({limit})"),
        )),
    }
}

async fn gitea_hook(State((app, limit)): State<AppState>, req: Request) -> Response {
    hook(&app, Source::Gitea, limit, req).await
}

async fn github_hook(State((app, limit)): State<AppState>, req: Request) -> Response {
    hook(&app, Source::Github, limit, req).await
}

async fn hook(app: &App, source: Source, limit: usize, req: Request) -> Response {
    let (headers, body) = match read_body(app, req, limit).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(secret) = &app.secret else {
        let var = &app.started.webhook_secret_env;
        return app.reply(
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            format!("webhooks are off: ${var} is not set"),
        );
    };
    if !hooks::verify(source, secret, &headers, &body) {
        return app.reply("unauthorized", StatusCode::UNAUTHORIZED, "missing or bad signature".into());
    }
    // A delivery counts as handled only once it was accepted: a redelivery of one that
    // was refused as bad gets another chance.
    let id = hooks::delivery_id(source, &headers);
    if let Some(id) = &id {
        if app.seen.lock().unwrap().contains(id) {
            return app.reply("duplicate", StatusCode::OK, format!("delivery {id} was handled already"));
        }
    }
    let accepted = |app: &App| {
        if let Some(id) = &id {
            app.seen.lock().unwrap().insert(id);
        }
    };
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return app.reply("bad_request", StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}"))
        }
    };
    let event = hooks::event(source, &headers);
    // The PRD and `on_push` as the file says now; while it does not load, as it last did
    // (the next cycle reports the error).
    let pipeline = app.reload().unwrap_or_else(|_| app.pipeline());
    let prd = pipeline.prd.path.to_string_lossy().into_owned();
    let verdict = match hooks::decide(&event, &payload, &prd, pipeline.serve.on_push) {
        Ok(Verdict::Range { before, after }) => {
            // Gitea lists only the newest commits of a long push: ask git about the range.
            let (repo, prd) = (app.repo.clone(), prd.clone());
            tokio::task::spawn_blocking(move || hooks::range_touches(&repo, &before, &after, &prd))
                .await
                .unwrap_or(Ok(Verdict::Trigger))
        }
        other => other,
    };
    match verdict {
        Err(why) => app.reply("bad_request", StatusCode::BAD_REQUEST, why),
        Ok(Verdict::Ignore(why)) => {
            accepted(app);
            app.reply("ignored", StatusCode::ACCEPTED, why)
        }
        Ok(_) => {
            accepted(app);
            app.enqueue(&format!("{event} to the default branch"))
        }
    }
}

async fn manual_run(State((app, _)): State<AppState>, headers: HeaderMap) -> Response {
    let given =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let ok = match (&app.run_token, given) {
        (Some(want), Some(got)) => {
            // Constant time, like the signatures.
            want.len() == got.len()
                && want.bytes().zip(got.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        }
        _ => false,
    };
    if !ok {
        return app.reply("unauthorized", StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into());
    }
    app.enqueue("POST /run")
}

async fn metrics(State((app, _)): State<AppState>) -> impl IntoResponse {
    let mut s = String::new();
    s.push_str("# HELP prbot_cycles_total Cycles run by this server, by outcome.\n# TYPE prbot_cycles_total counter\n");
    for (o, n) in app.cycles.lock().unwrap().iter() {
        s.push_str(&format!("prbot_cycles_total{{outcome=\"{o}\"}} {n}\n"));
    }
    s.push_str("# HELP prbot_deliveries_total Webhook deliveries, manual triggers and schedule ticks, by result.\n# TYPE prbot_deliveries_total counter\n");
    for (r, n) in app.deliveries.lock().unwrap().iter() {
        s.push_str(&format!("prbot_deliveries_total{{result=\"{r}\"}} {n}\n"));
    }
    s.push_str("# HELP prbot_queue_depth Cycles running or queued.\n# TYPE prbot_queue_depth gauge\n");
    s.push_str(&format!("prbot_queue_depth {}\n", app.queue.depth()));
    s.push_str("# HELP prbot_cycles_dropped_total Queued cycles dropped at shutdown.\n# TYPE prbot_cycles_dropped_total counter\n");
    s.push_str(&format!("prbot_cycles_dropped_total {}\n", app.dropped.load(Ordering::SeqCst)));
    s.push_str("# HELP prbot_pipeline_errors_total Cycles not run because the pipeline file did not load.\n# TYPE prbot_pipeline_errors_total counter\n");
    s.push_str(&format!("prbot_pipeline_errors_total {}\n", app.pipeline_errors.load(Ordering::SeqCst)));
    s.push_str("# HELP prbot_last_cycle_timestamp_seconds When the last cycle ended (Unix time; 0 before the first).\n# TYPE prbot_last_cycle_timestamp_seconds gauge\n");
    s.push_str(&format!("prbot_last_cycle_timestamp_seconds {}\n", app.last_cycle.load(Ordering::SeqCst)));
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], s)
}

/// The page `prbot report` writes; `?days=N` (1 to 3660, default 30) sets the window.
async fn report(
    State((app, _)): State<AppState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let days = match query.as_deref().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("days=")) {
        None => 30,
        Some(n) => match n.parse::<u32>() {
            Ok(n @ 1..=3660) => n,
            _ => {
                return (StatusCode::BAD_REQUEST, "days must be a whole number from 1 to 3660\n")
                    .into_response()
            }
        },
    };
    let app = app.clone();
    let made = tokio::task::spawn_blocking(move || {
        let pipeline = app.pipeline();
        let state = crate::state::open(&pipeline, &app.repo);
        let store = state.store.for_reading().map_err(crate::report::ReportError::from)?;
        let skip_after = pipeline.policy.gaps.skip_after_failures;
        crate::report::render(&store, &state.budget, Some(pipeline.budget.clone()), skip_after, days)
    })
    .await;
    match made {
        Ok(Ok(html)) => {
            ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn stats(State((app, _)): State<AppState>) -> Response {
    let app = app.clone();
    let read = tokio::task::spawn_blocking(move || {
        crate::state::open(&app.pipeline(), &app.repo).store.for_reading()?.stats()
    })
    .await;
    match read {
        Ok(Ok(stats)) => Json(stats).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
