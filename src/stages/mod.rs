//! The built-in stages and `run:` steps. Each reads what earlier stages produced (the
//! [`Progress`]), uses the cycle's [`Services`], and returns a [`Step`]: what it produced
//! and how the cycle goes on.

mod apply;
pub(crate) use apply::changed_bytes;
mod guard;
mod pick_gap;
pub(crate) mod pr;
mod progress;
mod propose;
mod run_step;
mod services;
mod test;
#[cfg(test)]
mod testing;

pub(crate) use progress::{Change, Flow, Picked, Produced, Progress, Proposed, Published, Request, Step};
pub(crate) use services::Services;

use crate::config::{Action, Builtin};
use crate::domain::outcome::Outcome;
use crate::domain::proposal::Proposal;
use crate::domain::records::{FileMode, TouchedFile};

pub(crate) trait Stage {
    fn run(&self, sv: &mut Services, progress: &Progress) -> Step;
}

pub(crate) fn build(action: &Action) -> Box<dyn Stage + '_> {
    match action {
        Action::Builtin(Builtin::Guard(s)) => Box::new(guard::Guard(s)),
        Action::Builtin(Builtin::PickGap(_)) => Box::new(pick_gap::PickGap),
        Action::Builtin(Builtin::Propose(s)) => Box::new(propose::Propose(s)),
        Action::Builtin(Builtin::Apply(_)) => Box::new(apply::Apply),
        Action::Builtin(Builtin::Test(s)) => Box::new(test::Test(s)),
        Action::Builtin(Builtin::Pr(s)) => Box::new(pr::Pr(s)),
        Action::Run { command, continue_on_error, network } => {
            Box::new(run_step::RunStep { command, continue_on_error: *continue_on_error, network: *network })
        }
    }
}

/// How a cycle ended: the outcome and a reason a human can act on.
#[derive(Debug, Clone)]
pub struct End {
    pub outcome: Outcome,
    pub reason: String,
    /// For failures the model can fix: what to tell it in a repair request.
    pub feedback: Option<String>,
    /// The cycle ended because a service could not be reached (see [`End::outage`]).
    pub outage: bool,
}

impl End {
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        End { outcome, reason: reason.into(), feedback: None, outage: false }
    }

    /// A cycle a service could not take part in: no model answered, the forge failed
    /// with a 5xx, a rate limit or no connection after its retries, or the registry could
    /// not be reached for the tests' dependencies. It says nothing of the gap, so it is no
    /// attempt at it.
    pub fn outage(outcome: Outcome, reason: impl Into<String>) -> Self {
        End { outage: true, ..End::new(outcome, reason) }
    }

    /// A failure of the forge: an outage when the forge, not the request, was at fault.
    pub fn forge(e: crate::adapters::forge::ForgeError) -> Self {
        End { outage: e.is_outage(), ..End::new(Outcome::PrFailed, e.to_string()) }
    }

    /// A failure that goes back to the model, if the pipeline allows a repair.
    pub fn repairable(outcome: Outcome, reason: impl Into<String>, feedback: impl Into<String>) -> Self {
        End { feedback: Some(feedback.into()), ..End::new(outcome, reason) }
    }

    /// An internal error, its cause chain in the reason (`what: error: cause: …`).
    pub fn internal<'a>(what: &str, e: impl Into<Box<dyn std::error::Error + 'a>>) -> Self {
        End::new(Outcome::InternalError, format!("{what}: {}", chain(e.into().as_ref())))
    }

    /// A step that produced nothing and ends with this.
    pub fn into_step(self) -> Step {
        Step::ended(Produced::default(), self)
    }
}

impl From<crate::infra::git::GitError> for End {
    fn from(e: crate::infra::git::GitError) -> Self {
        End::internal("git failed", e)
    }
}

/// An error and its sources, each once: a message that already quotes its source (as
/// `#[error("…: {source}")]` does) is not repeated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Commits the change on the gap's branch: the branch, the commit, and the change's files
/// with the modes the commit gives them.
pub(crate) fn commit(
    sv: &mut Services,
    picked: &Picked,
    proposal: Option<&Proposal>,
    change: &Change,
) -> Result<Published, String> {
    let branch = picked.gap.branch();
    let message = sv.secrets.redact(&commit_message(&picked.gap, proposal));
    let bot = sv.pipeline.bot.clone();
    let ws = sv.workspace().map_err(|e| e.reason)?;
    let sha = ws
        .commit_to_branch(&branch, &message, (&bot.name, &bot.email))
        .map_err(|e| format!("cannot commit to {branch}: {e}"))?;
    // The record lists exactly what the commit changes, with the files' modes.
    let base = ws.base_commit.clone();
    let objects = sv.objects().map_err(|e| e.reason)?;
    let committed = objects.diff(&base, &sha).map_err(|e| format!("cannot read commit {sha}: {e}"))?;
    let mut files = change.files.clone();
    for crate::infra::git::Changed { path, mode: file_mode, added } in committed {
        match files.iter_mut().find(|f| f.path == path) {
            Some(f) => f.file_mode = Some(file_mode),
            None => files.push(TouchedFile {
                path,
                mode: if added { FileMode::Add } else { FileMode::Update },
                file_mode: Some(file_mode),
            }),
        }
    }
    Ok(Published { branch, commit: sha, files, pr: None })
}

pub(crate) fn commit_message(gap: &crate::domain::prd::Gap, proposal: Option<&Proposal>) -> String {
    let title = crate::infra::text::one_line(&gap.text, 68);
    let summary = proposal.map(|p| p.summary.trim().to_string()).unwrap_or_default();
    format!("prbot: {title}\n\n{summary}\n\nGap: {}\n", gap.id)
}

/// The part of a command's output that shows why it failed: the test runner's failure
/// summary and compiler errors where they can be found, else the last lines.
pub fn failure_excerpt(output: &str) -> String {
    const MAX: usize = 4_000;
    let lines: Vec<&str> = output.lines().collect();
    let mut picked: Vec<&str> = Vec::new();
    // cargo test: the last `failures:` section up to `test result:`.
    if let Some(start) = lines.iter().rposition(|l| l.trim_end() == "failures:") {
        let from = lines[..start].iter().rposition(|l| l.trim_end() == "failures:").unwrap_or(start);
        let end = lines[start..]
            .iter()
            .position(|l| l.starts_with("test result:"))
            .map(|p| start + p + 1)
            .unwrap_or(lines.len());
        picked.extend(&lines[from..end]);
    }
    // rustc: `error[...]` / `error:` blocks, each up to the next blank line.
    if picked.is_empty() {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].starts_with("error[") || lines[i].starts_with("error:") {
                while i < lines.len() && !lines[i].trim().is_empty() {
                    picked.push(lines[i]);
                    i += 1;
                }
                picked.push("");
            }
            i += 1;
        }
    }
    // Other runners: lines that say FAIL or panicked, with the line before for context.
    if picked.is_empty() {
        for (i, l) in lines.iter().enumerate() {
            if l.contains("FAIL") || l.contains("panicked at") || l.contains("AssertionError") {
                if i > 0 && picked.last() != Some(&lines[i - 1]) {
                    picked.push(lines[i - 1]);
                }
                picked.push(l);
            }
        }
        if !picked.is_empty() {
            picked.push("…");
        }
    }
    let tail_from = lines.len().saturating_sub(25);
    picked.extend(&lines[tail_from..]);
    let text = picked.join("\n");
    if text.len() <= MAX {
        text
    } else {
        let mut cut = MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}\n…(cut)", &text[..cut])
    }
}

/// Runs a project command in the worktree, in the cycle's sandbox, with secrets stripped
/// from its environment, the shared build cache in place, and its output in a log file.
pub(crate) fn shell(
    cx: &mut Services,
    command: &str,
    timeout: std::time::Duration,
    env_allow: &[String],
    network: bool,
) -> Result<(crate::infra::process::Finished, crate::adapters::sandbox::SandboxUse), End> {
    let dir = cx.workspace_for_command()?.path.clone();
    let env = cx.child_env(env_allow);
    if !network && !cx.deps_fetched {
        fetch_dependencies(cx, &dir, &env);
        cx.deps_fetched = true;
    }
    cx.commands_may_run()?;
    cx.commands_run += 1;
    let log = cx.state_dir.join("logs").join(&cx.id).join(format!("{}.log", cx.commands_run));
    // The sandbox's set-up counts as part of the command's time.
    let started = std::time::Instant::now();
    let prepared = cx
        .sandbox()?
        .prepare(command, env, network)
        .map_err(|e| End::internal("cannot prepare the sandbox", e))?;
    let (cmd, used) = crate::adapters::sandbox::Sandbox::streamed(prepared, &dir, timeout, &log);
    let mut out = crate::infra::process::run_streamed(cmd, &cx.cancel)
        .map_err(|e| End::internal("cannot run a command", e))?;
    out.duration = started.elapsed();
    if out.cancelled {
        return Err(End::new(
            crate::domain::outcome::Outcome::Cancelled,
            format!("cancelled while `{command}` ran"),
        ));
    }
    Ok((out, used))
}

/// Sandboxed commands have no network, so a Rust project's dependencies are downloaded
/// first, outside the sandbox. Downloading runs no project code; cargo runs from outside
/// the tree so that the tree's `.cargo/config.toml` is not read, and git may not fetch
/// local paths, so a manifest cannot pull host files into the cache the sandbox reads.
fn fetch_dependencies(
    cx: &mut Services,
    tree: &std::path::Path,
    env: &std::collections::HashMap<std::ffi::OsString, std::ffi::OsString>,
) {
    let manifest = tree.join("Cargo.toml");
    if cx.sandbox_backend == Some(crate::adapters::sandbox::Backend::Off) || !manifest.is_file() {
        return;
    }
    let Ok(ws) = cx.workspace() else { return };
    let cwd = ws.cache_dir.clone();
    let mut cmd = crate::infra::process::Command::new("cargo", &cwd, std::time::Duration::from_secs(600))
        .arg("fetch")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--config", "net.git-fetch-with-cli=true"]);
    let mut env = env.clone();
    env.insert("GIT_ALLOW_PROTOCOL".into(), "https:http:ssh:git".into());
    env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
    cmd.env = Some(env);
    match crate::infra::process::run(cmd, &cx.cancel) {
        Ok(out) if out.success() => {}
        Ok(out) => {
            // Cargo ends with the innermost cause; a server's reply body after `body:` is
            // not it.
            let before_body = out.stderr.split("\n  body:").next().unwrap_or("");
            let why = before_body.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let why = format!("{}: {why}", out.status_text());
            cx.warnings.push(format!(
                "`cargo fetch` failed ({why}); the sandboxed commands have no network to download what is missing"
            ));
            if out.timed_out || registry_unreachable(&out.stderr) {
                cx.deps_unreachable = Some(why);
            }
        }
        Err(e) => cx.warnings.push(format!("`cargo fetch` did not run: {e}")),
    }
}

/// Whether `cargo fetch` failed because a registry or git source could not be reached
/// (no connection, a timeout, a 5xx or a rate limit), not for what the manifest asks (a
/// crate or version that does not exist, a manifest that does not parse).
fn registry_unreachable(stderr: &str) -> bool {
    let lower = stderr.to_lowercase();
    // Cargo quotes each transport error as curl's code, `[7] Could not connect to server`.
    let curl_code = lower.lines().any(|l| {
        let l = l.trim_start();
        l.strip_prefix('[')
            .and_then(|r| r.split_once("] "))
            .is_some_and(|(code, _)| !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()))
    });
    // `failed to get successful HTTP response from `…`, got 503`
    let status = lower.match_indices(", got ").any(|(i, m)| {
        let code = &lower[i + m.len()..];
        let code = code.get(..3).unwrap_or("");
        code.starts_with('5') && code.bytes().all(|b| b.is_ascii_digit()) || code == "429"
    });
    curl_code
        || status
        || [
            "spurious network error",
            "network failure seems to have happened",
            "could not resolve host",
            "couldn't resolve host",
            "connection refused",
            "timeout was reached",
        ]
        .iter()
        .any(|p| lower.contains(p))
}

/// How a command that failed ends the cycle: a failure the model may repair, or, when
/// the dependencies could not be downloaded first, an outage (see [`End::outage`]): the
/// registry being down says nothing of the gap, and no repair can bring it back. Not
/// when the change touched a manifest: a dependency on a host that does not resolve is
/// the change's doing, and must count like any other failure.
pub(crate) fn failed_run(
    cx: &Services,
    change: Option<&Change>,
    reason: String,
    run: &crate::domain::records::TestRun,
    out: &crate::infra::process::Finished,
) -> End {
    let manifest = |path: &str| matches!(path.rsplit('/').next(), Some("Cargo.toml" | "Cargo.lock"));
    let touches_a_manifest = change.is_some_and(|c| c.files.iter().any(|f| manifest(&f.path)));
    match &cx.deps_unreachable {
        Some(why) if !touches_a_manifest => End::outage(
            Outcome::TestsFailed,
            format!("{reason}, after `cargo fetch` could not reach the registry ({why})"),
        ),
        _ => End::repairable(Outcome::TestsFailed, reason, test_feedback(run, out)),
    }
}

/// What the model is told about a red command: the command, its status, and the part
/// of its output that shows the failure.
pub(crate) fn test_feedback(
    run: &crate::domain::records::TestRun,
    out: &crate::infra::process::Finished,
) -> String {
    format!(
        "The change was applied, but a check failed.\nCommand: `{}`\nResult: {}\nFailure output:\n```\n{}\n```",
        run.command,
        out.status_text(),
        run.excerpt
    )
}

pub(crate) fn test_run(
    command: &str,
    out: &crate::infra::process::Finished,
    sandbox: crate::adapters::sandbox::SandboxUse,
) -> crate::domain::records::TestRun {
    crate::domain::records::TestRun {
        sandbox: Some(sandbox),
        log: out.log.as_ref().map(|p| p.display().to_string()),
        command: command.to_string(),
        exit_code: out.code,
        timed_out: out.timed_out,
        duration_ms: out.duration.as_millis() as u64,
        passed: out.success(),
        excerpt: if out.success() { String::new() } else { failure_excerpt(&out.combined()) },
    }
}

#[cfg(test)]
mod tests {
    use super::{chain, failure_excerpt, registry_unreachable, End};

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot write the record")]
        Quiet(#[source] std::io::Error),
        #[error("cannot read the ledger: {0}")]
        Quoting(#[source] std::io::Error),
    }

    #[test]
    fn an_internal_reason_keeps_the_cause_chain_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let end = End::internal("state", Outer::Quiet(io()));
        assert_eq!(end.reason, "state: cannot write the record: permission denied");
        assert_eq!(chain(&Outer::Quoting(io())), "cannot read the ledger: permission denied");
        assert_eq!(End::internal("prbot bug", "plain text").reason, "prbot bug: plain text");
    }

    #[test]
    fn keeps_the_cargo_failure_section() {
        let mut out = String::from("running 40 tests\n");
        for i in 0..40 {
            out.push_str(&format!("test t{i} ... ok\n"));
        }
        out.push_str("\nfailures:\n\n---- t3 stdout ----\nthread 't3' panicked at src/lib.rs:9:5:\nassertion failed\n\nfailures:\n    t3\n\ntest result: FAILED. 39 passed; 1 failed\n");
        for i in 0..30 {
            out.push_str(&format!("noise {i}\n"));
        }
        let e = failure_excerpt(&out);
        assert!(e.contains("panicked at src/lib.rs:9:5"), "{e}");
        assert!(e.contains("test result: FAILED"));
        assert!(!e.contains("test t10 ... ok"));
    }

    #[test]
    fn a_registry_out_of_reach_is_told_from_a_manifest_asking_for_what_is_not_there() {
        let cause = |last: &str| {
            format!(
                "    Updating `down` index\nerror: failed to get `itoa` as a dependency of package `t v0.1.0`\n\n\
                 Caused by:\n  download of config.json failed\n\nCaused by:\n  {last}\n"
            )
        };
        for out_of_reach in [
            "[7] Could not connect to server (Failed to connect to 127.0.0.1 port 1 after 0 ms)",
            "[6] Could not resolve hostname (Could not resolve host: index.crates.io)",
            "[28] Timeout was reached (Operation timed out after 30000 milliseconds)",
            "failed to get successful HTTP response from `https://index.crates.io/config.json` (1.2.3.4), got 503\n  body:\n  no",
            "failed to get successful HTTP response from `https://index.crates.io/it/oa/itoa`, got 429",
            "spurious network error (3 tries remaining): [35] SSL connect error",
        ] {
            assert!(registry_unreachable(&cause(out_of_reach)), "{out_of_reach}");
        }
        for the_manifests_doing in [
            "error: no matching package named `itoa2` found\nlocation searched: crates.io index",
            "error: failed to select a version for the requirement `itoa = \"^99\"`\ncandidate versions found which didn't match: 1.0.11",
            "error: failed to parse manifest at `/w/Cargo.toml`\n\nCaused by:\n  TOML parse error at line 7, column 1",
            "failed to get successful HTTP response from `https://index.crates.io/it/oa/itoa`, got 404",
            "error: failed to load source for dependency `x`\n\nCaused by:\n  [x] is not a curl code, 1] nor is this",
        ] {
            assert!(!registry_unreachable(the_manifests_doing), "{the_manifests_doing}");
        }
    }
}
