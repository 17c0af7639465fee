//! Runs one cycle: the stages in order, then the record. It knows no stage by name.

use crate::config::{Action, Pipeline, StageSpec};
use crate::domain::outcome::Outcome;
use crate::domain::records::{Record, StageRecord, StageStatus};
use crate::infra::process::Cancel;
use crate::infra::secrets::Secrets;
use crate::infra::workspace::Repo;
use crate::stages::cycle::{Cycle, End};
use crate::state::store::RecordError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A finished cycle: its record, as written (secrets redacted), and where.
pub struct CycleRun {
    pub record: Record,
    pub json: String,
    pub path: PathBuf,
}

/// The state directory a pipeline uses for a repository.
pub fn state_dir(pipeline: &Pipeline, repo: &Repo) -> PathBuf {
    match &pipeline.state.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => repo.root.join(d),
        None => repo.default_state_dir(),
    }
}

pub fn work_dir(pipeline: &Pipeline, repo: &Repo) -> PathBuf {
    match &pipeline.workspace.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => repo.root.join(d),
        None => repo.default_work_dir(),
    }
}

/// The variables that hold the bot's own secrets; a value too weak to redact is refused.
pub fn secrets(pipeline: &Pipeline) -> Result<Secrets, crate::infra::secrets::WeakSecret> {
    let forge = pipeline.forge.token_var();
    let keys = pipeline.providers.values().filter_map(|p| p.api_key_env.as_deref());
    let serve = [pipeline.serve.webhook_secret_env.as_str(), pipeline.serve.run_token_env.as_str()];
    Secrets::from_env_names(keys.chain(forge.as_deref()).chain(serve))
}

/// Runs one cycle to its outcome and writes its record. Call it from a blocking thread.
pub fn run_cycle(
    pipeline: Arc<Pipeline>,
    repo: Repo,
    cancel: Cancel,
    rt: tokio::runtime::Handle,
) -> Result<CycleRun, RecordError> {
    let state_dir = state_dir(&pipeline, &repo);
    let work_dir = work_dir(&pipeline, &repo);
    let secrets = secrets(&pipeline).map_err(RecordError::WeakSecret)?;
    let started = chrono::Utc::now();
    let id = crate::domain::records::new_cycle_id(started);
    let mut cx = Cycle::new(
        id,
        pipeline.clone(),
        repo,
        state_dir.clone(),
        work_dir,
        cancel.clone(),
        secrets.clone(),
        rt.clone(),
    );
    tracing::info!("cycle {} on {}", cx.id, cx.repo.root.display());
    // Runners may start empty: the history and the ledger come from the state ref.
    let mut end: Option<End> = cx.store.pull().err().map(|e| End::internal("cannot read the state ref", e));
    // A pipeline that runs project code needs a sandbox; find out before any model call.
    if end.is_none() && pipeline.runs_project_code() {
        match crate::adapters::sandbox::choose(&pipeline.sandbox) {
            Ok(backend) => {
                if backend == crate::adapters::sandbox::Backend::Off {
                    let warning =
                        "sandbox: off: test commands and `run:` steps run unconfined, with prbot's authority";
                    tracing::warn!("{warning}");
                    cx.warnings.push(warning.to_string());
                }
                cx.sandbox_backend = Some(backend);
            }
            Err(e) => end = Some(End::new(Outcome::SandboxUnavailable, e.to_string())),
        }
    }

    let mut stages = Vec::with_capacity(pipeline.stages.len());
    let mut i = 0;
    while i < pipeline.stages.len() {
        let spec = &pipeline.stages[i];
        i += 1;
        let label = label(spec);
        let mut rec = StageRecord {
            id: spec.id.clone(),
            kind: kind(spec),
            status: StageStatus::NotReached,
            duration_ms: 0,
        };
        if end.is_none() && cancel.is_cancelled() {
            end = Some(End::new(Outcome::Cancelled, format!("cancelled before {label}")));
        }
        if end.is_some() {
            stages.push(rec);
            continue;
        }
        if !spec.enabled {
            tracing::info!("· {label}: disabled");
            rec.status = StageStatus::Disabled;
            stages.push(rec);
            continue;
        }
        tracing::info!("▶ {label}");
        cx.stage_timeout = spec.timeout;
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| crate::stages::build(&spec.action).run(&mut cx)))
            .unwrap_or_else(|panic| Err(End::internal(&format!("prbot bug in {label}"), panic_text(&panic))));
        rec.duration_ms = t.elapsed().as_millis() as u64;
        match result {
            Ok(_) if cancel.is_cancelled() => {
                rec.status = StageStatus::Ended;
                end = Some(End::new(Outcome::Cancelled, format!("cancelled during {label}")));
            }
            Ok(status) => {
                rec.status = status;
                let mark = if status == StageStatus::FailedContinued { "✗ (continued)" } else { "✓" };
                tracing::info!("{mark} {label} ({} ms)", rec.duration_ms);
            }
            // A failure the model may fix sends the cycle back to the proposal.
            Err(e) if !cancel.is_cancelled() && cx.start_repair(&e) => {
                tracing::info!("✗ {label} → {}: {}", e.outcome, secrets.redact(&e.reason));
                rec.status = StageStatus::Repaired;
                i = pipeline.proposal_stage().expect("a repair needs a propose stage");
            }
            Err(e) => {
                rec.status = StageStatus::Ended;
                tracing::info!("■ {label} → {}: {}", e.outcome, secrets.redact(&e.reason));
                end = Some(e);
            }
        }
        stages.push(rec);
    }
    let end = match end {
        Some(e) => e,
        None if cancel.is_cancelled() => End::new(Outcome::Cancelled, "cancelled at the end of the cycle"),
        None => cx.conclude(),
    };
    cx.close_attempt(&end);
    let base_commit = cx.has_workspace().then(|| cx.base_commit().ok()).flatten();
    cx.release_workspace();

    let record = Record {
        cycle_id: cx.id.clone(),
        started_at: cx.started_at,
        ended_at: chrono::Utc::now(),
        outcome: end.outcome,
        reason: end.reason,
        pipeline: pipeline.path.display().to_string(),
        base_commit,
        gap: cx.gap.take(),
        model: cx.model_use.take(),
        model_calls: std::mem::take(&mut cx.model_calls),
        context: std::mem::take(&mut cx.context),
        attempts: std::mem::take(&mut cx.attempts),
        proposal: cx.proposal.take(),
        files: cx.applied.take().unwrap_or_default(),
        tests: std::mem::take(&mut cx.tests),
        stages,
        branch: cx.branch.take(),
        commit: cx.commit.take(),
        pr: cx.pr.take(),
        sandbox: cx.sandbox_backend,
        warnings: std::mem::take(&mut cx.warnings),
    };
    // Redacted as a value, every string of every field: the record stays valid JSON
    // whatever a secret looks like, and is always written.
    let mut value = serde_json::to_value(&record).expect("record serialises");
    secrets.redact_value(&mut value);
    let json = serde_json::to_string_pretty(&value).expect("record serialises");
    let mut summary = serde_json::to_value(record.summary()).expect("summary serialises");
    secrets.redact_value(&mut summary);
    let record = serde_json::from_value::<Record>(value).unwrap_or_else(|_| {
        // A secret that equals a field's fixed value: keep the fields, redact the reason.
        Record { reason: secrets.redact(&record.reason), ..record }
    });
    let path = cx.store.write(&record, &json, &summary.to_string())?;
    if let Some(url) = &pipeline.observer.url {
        notify_observer(&rt, url, &json);
    }
    Ok(CycleRun { record, json, path })
}

fn label(spec: &StageSpec) -> String {
    let what = match &spec.action {
        Action::Builtin(b) => b.kind().as_str().to_string(),
        Action::Run { command, .. } => format!("run: {}", crate::infra::text::one_line(command, 50)),
    };
    match &spec.name {
        Some(n) => format!("{} [{}] ({what})", spec.id, n),
        None if spec.id == what => spec.id.clone(),
        None => format!("{} ({what})", spec.id),
    }
}

fn kind(spec: &StageSpec) -> String {
    match &spec.action {
        Action::Builtin(b) => b.kind().as_str().to_string(),
        Action::Run { .. } => "run".to_string(),
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Best effort: an observer that is down never fails a cycle.
fn notify_observer(rt: &tokio::runtime::Handle, url: &str, json: &str) {
    let client = reqwest::Client::new();
    let req = client
        .post(url)
        .header("content-type", "application/json")
        .body(json.to_string())
        .timeout(std::time::Duration::from_secs(10));
    match rt.block_on(req.send()) {
        Ok(r) if r.status().is_success() => tracing::debug!("observer notified"),
        Ok(r) => tracing::warn!("observer {url} answered HTTP {}", r.status()),
        Err(e) => tracing::warn!("observer {url} is unreachable: {e}"),
    }
}
