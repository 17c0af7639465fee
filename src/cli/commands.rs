//! One function per subcommand.

use crate::cli::{CliError, Command, Target};
use crate::config::Pipeline;
use crate::domain::records::Summary;
use crate::engine::runner::{self, CycleRun};
use crate::infra::process::Cancel;
use crate::infra::workspace::Repo;
use crate::state::store::Store;
use std::path::PathBuf;
use std::sync::Arc;

pub fn dispatch(command: Command) -> Result<i32, CliError> {
    if matches!(
        command,
        Command::Validate { .. }
            | Command::History { .. }
            | Command::Stats { .. }
            | Command::Completions { .. }
            | Command::Man
            | Command::Schema
    ) {
        stop_quietly_when_stdout_closes();
    }
    match command {
        Command::Run { target, json, dry_run } => run(&target, json, dry_run),
        Command::Validate { file, pipeline } => validate(file.or(pipeline)),
        Command::History { target, gap, limit, json, reindex } => {
            history(&target, gap.as_deref(), limit, json, reindex)
        }
        Command::Stats { target, json } => stats(&target, json),
        Command::Serve { target, listen, schedule } => serve(&target, listen, schedule),
        Command::Init { repo, forge, force } => crate::cli::init::run(&repo, forge, force),
        Command::Demo { dir } => crate::cli::demo::run(dir),
        Command::Completions { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "prbot", &mut std::io::stdout());
            Ok(0)
        }
        Command::Doctor { target, json, probe_models, write_check } => {
            crate::cli::doctor::run(crate::cli::doctor::Options { target, json, probe_models, write_check })
        }
        Command::Report { target, out, days } => report(&target, &out, days),
        Command::Schema => {
            print!("{}", crate::config::schema());
            Ok(0)
        }
        Command::Man => {
            let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::Other(format!("cannot write the man page: {e}")))?;
            Ok(0)
        }
    }
}

/// For commands that only print: `prbot history | head` ends the way `cat` would, by
/// SIGPIPE, instead of a panic about a broken pipe. Commands that feed children's stdin
/// keep Rust's default (ignored), so a child that exits early cannot kill a cycle.
fn stop_quietly_when_stdout_closes() {
    // SAFETY: restoring the default action of one signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn pipeline_path(repo: &Repo, given: &Option<PathBuf>) -> PathBuf {
    given.clone().unwrap_or_else(|| repo.root.join(crate::config::DEFAULT_PIPELINE))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    crate::infra::runtime::new().map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))
}

/// Runs one cycle with SIGINT and SIGTERM turned into a clean cancellation.
pub fn run_one(
    rt: &tokio::runtime::Runtime,
    pipeline: Arc<Pipeline>,
    repo: Repo,
) -> Result<CycleRun, CliError> {
    let cancel = Cancel::new();
    let watcher = rt.spawn({
        let cancel = cancel.clone();
        async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("signal received: cancelling the cycle and cleaning up");
            cancel.cancel();
        }
    });
    let handle = rt.handle().clone();
    let result = rt.block_on(rt.spawn_blocking(move || runner::run_cycle(pipeline, repo, cancel, handle)));
    watcher.abort();
    let run = result.map_err(|e| CliError::Other(format!("the cycle thread failed: {e}")))??;
    Ok(run)
}

fn run(target: &Target, json: bool, dry_run: bool) -> Result<i32, CliError> {
    let repo = Repo::discover(&target.repo)?;
    let mut pipeline = Pipeline::load(&pipeline_path(&repo, &target.pipeline))?;
    if dry_run {
        pipeline.disable(crate::config::StageKind::Pr);
    }
    // A secret too weak to redact stops everything before anything runs.
    crate::engine::runner::secrets(&pipeline)?;
    let pipeline = Arc::new(pipeline);
    let rt = runtime()?;
    let run = run_one(&rt, pipeline, repo)?;
    if json {
        println!("{}", run.json);
    } else {
        println!("{}: {}", run.record.outcome, run.record.reason);
    }
    tracing::info!("record: {}", run.path.display());
    if let Some(e) = &run.unpublished {
        tracing::error!("the record is kept at {} but is not on the state ref: {e}", run.path.display());
        return Ok(run.record.outcome.exit_code().max(1));
    }
    Ok(run.record.outcome.exit_code())
}

fn serve(target: &Target, listen: String, schedule: Option<String>) -> Result<i32, CliError> {
    let repo = Repo::discover(&target.repo)?;
    let pipeline = Arc::new(Pipeline::load(&pipeline_path(&repo, &target.pipeline))?);
    crate::engine::runner::secrets(&pipeline)?;
    // Five fields as usual; a sixth, leading one for seconds is allowed too.
    let parser = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build();
    let schedule = schedule
        .map(|s| {
            parser
                .parse(&s)
                .map_err(|e| CliError::Usage(format!("--schedule `{s}` is not a cron expression: {e}")))
        })
        .transpose()?;
    Ok(crate::serve::run(pipeline, repo, crate::serve::Options { listen, schedule })?)
}

fn validate(file: Option<PathBuf>) -> Result<i32, CliError> {
    let path = file.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PIPELINE));
    let p = Pipeline::load(&path)?;
    let enabled = p.stages.iter().filter(|s| s.enabled).count();
    let mode = if p.has_enabled(crate::config::StageKind::Pr) {
        ""
    } else {
        "; no enabled pr stage, so cycles are dry runs"
    };
    println!("{}: ok ({} stages, {enabled} enabled{mode})", path.display(), p.stages.len());
    Ok(0)
}

/// The store for a target, to read; without a pipeline file it falls back to the default
/// state dir. With the git backend it reads the remote's ref and writes nothing.
fn store(target: &Target) -> Result<(Store, PathBuf), CliError> {
    let repo = Repo::discover(&target.repo)?;
    let path = pipeline_path(&repo, &target.pipeline);
    if target.pipeline.is_none() && !path.exists() {
        let dir = repo.default_state_dir();
        return Ok((Store::new(&dir), dir));
    }
    let pipeline = Pipeline::load(&path)?;
    let state = crate::state::open(&pipeline, &repo);
    Ok((state.store, state.dir))
}

fn history(
    target: &Target,
    gap: Option<&str>,
    limit: usize,
    json: bool,
    reindex: bool,
) -> Result<i32, CliError> {
    let (store, dir) = store(target)?;
    if reindex {
        let n = store.reindex()?;
        eprintln!("rebuilt cycles.jsonl, index/ and stats.json in {} from {n} record(s)", dir.display());
    }
    let all: Vec<Summary> = store.for_reading()?.newest(gap, limit)?;
    if json {
        for s in &all {
            println!("{}", serde_json::to_string(s).expect("summary serialises"));
        }
        return Ok(0);
    }
    if all.is_empty() {
        println!("no cycles recorded in {}", dir.display());
        return Ok(0);
    }
    println!("{:<26} {:<17} {:<21} {:<49} PR / REASON", "CYCLE", "STARTED (UTC)", "OUTCOME", "GAP");
    for s in &all {
        let gap = s.gap_id.as_deref().unwrap_or("-");
        let last = s.pr_url.clone().unwrap_or_else(|| crate::infra::text::one_line(&s.reason, 70));
        println!(
            "{:<26} {:<17} {:<21} {:<49} {last}",
            s.cycle_id,
            s.started_at.format("%Y-%m-%d %H:%M"),
            s.outcome.as_str(),
            gap
        );
    }
    Ok(0)
}

fn report(target: &Target, out: &std::path::Path, days: u32) -> Result<i32, CliError> {
    let repo = Repo::discover(&target.repo)?;
    let path = pipeline_path(&repo, &target.pipeline);
    // Like `stats`, it reads the default state folder when there is no pipeline file.
    let (store, budget, limits, skip_after) = if target.pipeline.is_none() && !path.exists() {
        let dir = repo.default_state_dir();
        let defaults = crate::config::settings::BudgetConfig::default();
        let budget = crate::state::budget::Budget::new(&dir, defaults);
        (Store::new(&dir), budget, None, crate::config::settings::GapPolicy::default().skip_after_failures)
    } else {
        let pipeline = Pipeline::load(&path)?;
        let state = crate::state::open(&pipeline, &repo);
        let skip = pipeline.policy.gaps.skip_after_failures;
        (state.store, state.budget, Some(pipeline.budget.clone()), skip)
    };
    let html = crate::report::render(&store.for_reading()?, &budget, limits, skip_after, days)?;
    crate::infra::fsutil::write_atomic(out, html.as_bytes())
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", out.display())))?;
    println!("wrote {}", out.display());
    Ok(0)
}

fn stats(target: &Target, json: bool) -> Result<i32, CliError> {
    let (store, _) = store(target)?;
    let s = store.for_reading()?.stats()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("stats serialise"));
        return Ok(0);
    }
    println!("cycles: {}   PRs opened: {} ({:.0}%)", s.cycles, s.prs_opened, s.pr_share * 100.0);
    if !s.by_outcome.is_empty() {
        println!("\nby outcome:");
        for (o, n) in &s.by_outcome {
            println!("  {o:<22} {n}");
        }
    }
    if !s.by_gap.is_empty() {
        println!("\nby gap:");
        for (g, st) in &s.by_gap {
            let last = st.last_outcome.map(|o| o.as_str()).unwrap_or("-");
            println!("  {g:<40} cycles {:<4} PRs {:<3} last {last}", st.cycles, st.prs_opened);
        }
    }
    Ok(0)
}
