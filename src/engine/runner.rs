//! Runs one cycle: the stages in order, each step folded into the progress, repairs as
//! the attempts owner decides, then the record. It knows no stage by name.

use super::attempts::Attempts;
use crate::config::{Action, Pipeline, StageSpec};
use crate::domain::outcome::Outcome;
use crate::domain::records::{Record, StageRecord, StageStatus};
use crate::infra::process::Cancel;
use crate::infra::secrets::Secrets;
use crate::infra::workspace::Repo;
use crate::stages::{End, Flow, Progress, Services};
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
    /// Why the record is only in the state directory and not on the state ref.
    pub unpublished: Option<RecordError>,
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
    let state = crate::state::open(&pipeline, &repo);
    let work_dir = work_dir(&pipeline, &repo);
    let secrets = secrets(&pipeline).map_err(RecordError::WeakSecret)?;
    let started = chrono::Utc::now();
    let id = crate::domain::records::new_cycle_id(started);
    let mut cx = Services::new(
        id,
        pipeline.clone(),
        repo,
        state,
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

    let mut progress = Progress::default();
    let mut attempts = Attempts::new(pipeline.propose_settings());
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
        if let Some(limit) = spec.time_limit() {
            cx.stage_timeout = limit;
        }
        let t = Instant::now();
        let tokens_before = tokens(&cx);
        let step =
            catch_unwind(AssertUnwindSafe(|| crate::stages::build(&spec.action).run(&mut cx, &progress)))
                .unwrap_or_else(|panic| {
                    End::internal(&format!("prbot bug in {label}"), panic_text(&panic)).into_step()
                });
        rec.duration_ms = t.elapsed().as_millis() as u64;
        if let Some(p) = &step.produced.proposed {
            attempts.began(p.kind, &p.model, tokens_before);
        }
        progress.absorb(step.produced);
        match step.flow {
            _ if cancel.is_cancelled() => {
                rec.status = StageStatus::Ended;
                end = Some(End::new(Outcome::Cancelled, format!("cancelled during {label}")));
            }
            Flow::Next(status) => {
                rec.status = status;
                let mark = if status == StageStatus::FailedContinued { "✗ (continued)" } else { "✓" };
                tracing::info!("{mark} {label} ({} ms)", rec.duration_ms);
            }
            Flow::Repair { failure, feedback } => {
                tracing::info!("✗ {label} → {}: {}", failure.outcome, secrets.redact(&failure.reason));
                let conversation =
                    progress.proposed.as_ref().map(|p| p.conversation.clone()).unwrap_or_default();
                let next = attempts.after_failure(
                    &failure,
                    &feedback,
                    conversation,
                    tokens(&cx),
                    excerpt(&progress),
                );
                // A failure the model may fix sends the cycle back to the proposal.
                match (next, pipeline.proposal_stage()) {
                    (Some(request), Some(propose)) => match cx.reset_worktree() {
                        Ok(()) => {
                            tracing::info!("↻ {}: asking the model again", failure.outcome);
                            progress.rewind(request);
                            rec.status = StageStatus::Repaired;
                            i = propose;
                        }
                        Err(e) => {
                            tracing::warn!("no repair: {}", e.reason);
                            rec.status = StageStatus::Ended;
                            end = Some(failure);
                        }
                    },
                    _ => {
                        rec.status = StageStatus::Ended;
                        end = Some(failure);
                    }
                }
            }
            Flow::Stop(e) => {
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
        None => conclude(&mut cx, &mut progress),
    };
    attempts.close(&end, tokens(&cx), excerpt(&progress));
    let base_commit = cx.has_workspace().then(|| cx.base_commit().ok()).flatten();
    cx.release_workspace();

    let files = progress.files();
    let published = progress.published.take();
    let record = Record {
        cycle_id: cx.id.clone(),
        started_at: cx.started_at,
        ended_at: chrono::Utc::now(),
        outcome: end.outcome,
        reason: end.reason,
        outage: end.outage,
        pipeline: pipeline.path.display().to_string(),
        base_commit,
        gap: progress.picked.take().map(|p| p.gap),
        model: cx.model_use.take(),
        model_calls: std::mem::take(&mut cx.model_calls),
        context: std::mem::take(&mut progress.context),
        attempts: attempts.into_records(),
        proposal: progress.proposed.take().map(|p| p.proposal),
        files,
        tests: std::mem::take(&mut progress.tests),
        stages,
        branch: published.as_ref().map(|p| p.branch.clone()),
        commit: published.as_ref().map(|p| p.commit.clone()),
        pr: published.and_then(|p| p.pr),
        sandbox: cx.sandbox_backend,
        warnings: std::mem::take(&mut cx.warnings),
    };
    // Redacted as a value, every string of every field: the record stays valid JSON
    // whatever a secret looks like, and is always written.
    let mut value = serde_json::to_value(&record).expect("record serialises");
    secrets.redact_value(&mut value);
    let json = serde_json::to_string_pretty(&value).expect("record serialises");
    let record = serde_json::from_value::<Record>(value).unwrap_or_else(|_| {
        // A secret that equals a field's fixed value: keep the fields, redact the reason.
        Record { reason: secrets.redact(&record.reason), ..record }
    });
    // The summary lines derive from the redacted record, as a reindex would derive them.
    let path = cx.store.write_local(&record, &json)?;
    // Kept here whatever the remote says; the caller reports a record the ref lacks.
    let unpublished = cx.store.publish(&record, &json).err();
    if let Some(url) = &pipeline.observer.url {
        notify_observer(&rt, url, &json);
    }
    Ok(CycleRun { record, json, path, unpublished })
}

/// The cycle's model tokens so far.
fn tokens(cx: &Services) -> u64 {
    cx.model_use.as_ref().map_or(0, |m| m.total_tokens)
}

/// The excerpt of the last red command, for the attempt's record.
fn excerpt(progress: &Progress) -> String {
    progress.tests.iter().rev().find(|t| !t.passed).map(|t| t.excerpt.clone()).unwrap_or_default()
}

/// What the cycle comes to when every stage let it go on.
fn conclude(cx: &mut Services, progress: &mut Progress) -> End {
    if let Some(pr) = progress.published.as_ref().and_then(|p| p.pr.as_ref()) {
        let done = if pr.created { "opened" } else { "updated" };
        return End::new(Outcome::Ok, format!("draft PR #{} {done}: {}", pr.number, pr.url));
    }
    let Some(picked) = progress.picked.clone() else {
        return End::new(Outcome::DryRun, "the pipeline ended before a gap was picked");
    };
    let Some(change) = progress.change.clone() else {
        return End::new(
            Outcome::DryRun,
            format!("the pipeline ended before a change was applied for gap {}", picked.gap.id),
        );
    };
    let proposal = progress.proposed.as_ref().map(|p| p.proposal.clone());
    match crate::stages::commit(cx, &picked, proposal.as_ref(), &change) {
        Ok(published) => {
            let tests = if progress.tests.is_empty() { "no test stage ran" } else { "tests passed" };
            let reason = format!(
                "{tests}; no enabled pr stage, so the change was left on local branch {} ({})",
                published.branch,
                &published.commit[..12.min(published.commit.len())]
            );
            progress.published = Some(published);
            End::new(Outcome::DryRun, reason)
        }
        Err(why) => End::new(Outcome::InternalError, why),
    }
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
