//! `prbot doctor`: whether a repository is ready for cycles, one check at a time, each
//! with what it found and what to do. It runs no cycle, writes no record, and spends no
//! budget unless `--probe-models` says it may.

use crate::adapters::forge::{self, Forge};
use crate::cli::{init, CliError, Target};
use crate::config::settings::{ForgeKind, StateBackend};
use crate::config::Pipeline;
use crate::infra::process::Cancel;
use crate::infra::workspace::Repo;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The oldest git with every command prbot uses (`merge-tree --write-tree`).
const MIN_GIT: (u32, u32) = (2, 38);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    /// Worth knowing; cycles still run.
    Warn,
    Fail,
    /// Not checked: something it needs failed, or it needs a flag.
    Skip,
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        hint: Option<String>,
    ) {
        // Whatever a server or a command said, no secret is printed, and it fits a line.
        let detail = crate::infra::text::one_line(&crate::infra::secrets::redact_known(&detail.into()), 500);
        self.checks.push(Check { name: name.into(), status, detail, hint });
    }
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.add(name, Status::Pass, detail, None);
    }
    fn fail(&mut self, name: &str, detail: impl Into<String>, hint: impl Into<String>) {
        self.add(name, Status::Fail, detail, Some(hint.into()));
    }
    fn warn(&mut self, name: &str, detail: impl Into<String>, hint: impl Into<String>) {
        self.add(name, Status::Warn, detail, Some(hint.into()));
    }
    fn skip(&mut self, name: &str, detail: impl Into<String>) {
        self.add(name, Status::Skip, detail, None);
    }
    fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}

pub struct Options {
    pub target: Target,
    pub json: bool,
    pub probe_models: bool,
    pub write_check: bool,
}

pub fn run(opts: Options) -> Result<i32, CliError> {
    let mut r = Report::default();
    check_git(&mut r);
    let repo = match Repo::discover(&opts.target.repo) {
        Ok(repo) => {
            match &repo.head {
                Some(h) => r.pass("repository", format!("{} at {:.12}", repo.root.display(), h.commit)),
                None => r.fail(
                    "repository",
                    format!("{} has no commit yet", repo.root.display()),
                    "commit something first: cycles start from a commit",
                ),
            }
            Some(repo)
        }
        Err(e) => {
            r.fail("repository", e.to_string(), "run prbot doctor inside a clone, or pass --repo DIR");
            None
        }
    };
    let path = match &repo {
        Some(repo) => {
            opts.target.pipeline.clone().unwrap_or_else(|| repo.root.join(crate::config::DEFAULT_PIPELINE))
        }
        None => opts.target.pipeline.clone().unwrap_or_else(|| crate::config::DEFAULT_PIPELINE.into()),
    };
    let pipeline = match Pipeline::load(&path) {
        Ok(p) => {
            let enabled = p.stages.iter().filter(|s| s.enabled).count();
            r.pass("pipeline", format!("{}: valid, {enabled} stages enabled", path.display()));
            Some(p)
        }
        Err(e) => {
            r.fail(
                "pipeline",
                e.to_string(),
                "fix the file (`prbot validate` shows the same), or write one with `prbot init`",
            );
            None
        }
    };
    match (&repo, &pipeline) {
        (Some(repo), Some(pipeline)) => checks_of_a_pipeline(&mut r, repo, pipeline, &opts),
        _ => {
            for name in ["secrets", "prd", "sandbox", "models", "forge", "state", "budget", "pause file"] {
                r.skip(name, "needs the repository and a valid pipeline");
            }
        }
    }
    print(&r, opts.json);
    Ok(if r.ok() { 0 } else { 1 })
}

fn checks_of_a_pipeline(r: &mut Report, repo: &Repo, pipeline: &Pipeline, opts: &Options) {
    match crate::engine::runner::secrets(pipeline) {
        Ok(_) => r.pass("secrets", "every secret set is long enough to redact"),
        Err(e) => r.fail("secrets", e.to_string(), "use real, long secrets: prbot refuses to run with these"),
    }
    let state = crate::state::open(pipeline, repo);
    check_prd(r, repo, pipeline, &state);
    check_sandbox(r, repo, pipeline);
    let rt = match crate::infra::runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            r.fail("runtime", e.to_string(), "this is a bug in prbot or a very constrained host");
            return;
        }
    };
    check_models(r, &rt, pipeline, &state, opts.probe_models);
    check_forge(r, &rt, repo, pipeline, &state.dir);
    if check_state(r, repo, pipeline, &state, opts.write_check) {
        check_budget(r, pipeline, &state);
    } else {
        r.skip("budget", "the ledger lives on the state ref, which cannot be read");
    }
    check_pause(r, repo, pipeline);
}

fn check_git(r: &mut Report) {
    let Ok(out) = crate::infra::git::Git::new("/", Cancel::new()).run(["--version"]) else {
        r.fail("git", "git cannot be run (is it on PATH?)", "install git (2.38 or later)");
        return;
    };
    let numbers: Vec<u32> = out
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .split('.')
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [major, minor] if (major, minor) >= MIN_GIT => r.pass("git", out),
        [_, _] => r.fail("git", out, format!("install git {}.{} or later", MIN_GIT.0, MIN_GIT.1)),
        _ => {
            r.warn("git", format!("cannot read the version from `{out}`"), "check that `git --version` works")
        }
    }
}

fn check_prd(r: &mut Report, repo: &Repo, pipeline: &Pipeline, state: &crate::state::State) {
    let prd = &pipeline.prd;
    let rel = prd.path.to_string_lossy().trim_start_matches("./").to_string();
    let base = &pipeline.workspace.base;
    let git = repo.git(&Cancel::new());
    let Ok(Some(text)) = git.query(["show", &format!("{base}:{rel}")]) else {
        r.fail(
            "prd",
            format!("there is no {rel} in {base}"),
            "commit the PRD, or point prd.path at it: cycles read it from the base commit",
        );
        return;
    };
    let gaps = crate::domain::prd::gaps(&text, &prd.tag);
    let (mut checked, mut untagged) = (0, 0);
    for line in text.lines().map(str::trim_start) {
        let item = ["- [", "* [", "+ ["].iter().find_map(|p| line.strip_prefix(p));
        match item {
            Some(rest) if rest.starts_with("x] ") || rest.starts_with("X] ") => {
                checked += usize::from(rest.contains(&prd.tag));
            }
            Some(rest) if rest.starts_with(" ] ") && !rest.contains(&prd.tag) => untagged += 1,
            _ => {}
        }
    }
    let policy =
        crate::domain::policy::Policy::new(&pipeline.policy, &repo.root, Default::default(), Cancel::new());
    let keep = pipeline.policy.gaps.skip_after_failures.max(1);
    let mut passed_over = Vec::new();
    for g in &gaps {
        let recent = state.store.attempts(&g.id, keep).unwrap_or_default();
        if let Some(why) = policy.skip_gap_by_settings(g, &recent) {
            passed_over.push(format!("{} (line {}): {why}", g.id, g.line));
        }
    }
    let eligible = gaps.len() - passed_over.len();
    let mut detail = format!("{rel}: {eligible} eligible gap(s) of {} tagged {}", gaps.len(), prd.tag);
    if untagged > 0 {
        detail.push_str(&format!("; {untagged} unchecked item(s) without the tag"));
    }
    if checked > 0 {
        detail.push_str(&format!("; {checked} tagged item(s) already checked off"));
    }
    if !passed_over.is_empty() {
        detail.push_str(&format!("; passed over: {}", passed_over.join("; ")));
    }
    if eligible == 0 {
        r.warn("prd", detail, format!("tag small, well-scoped items `- [ ] ... {}`", prd.tag));
    } else {
        r.pass("prd", detail);
    }
}

fn check_sandbox(r: &mut Report, repo: &Repo, pipeline: &Pipeline) {
    if !pipeline.runs_project_code() {
        r.skip("sandbox", "no stage runs project code");
        return;
    }
    let backend = match crate::adapters::sandbox::choose(&pipeline.sandbox) {
        Ok(b) => b,
        Err(e) => {
            r.fail("sandbox", e.to_string(), "until a sandbox works, cycles that run tests stop: install bubblewrap, use a kernel with Landlock, or choose another `sandbox:` backend");
            return;
        }
    };
    // A trivial command in a throwaway place laid out like a cycle's.
    let trial = || -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (tree, git_dir, cache, state) = (
            tmp.path().join("tree"),
            tmp.path().join("clone.git"),
            tmp.path().join("cache"),
            tmp.path().join("state"),
        );
        for d in [&tree, &git_dir, &cache, &state] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let place = crate::adapters::sandbox::Place {
            tree: &tree,
            clone_git_dir: &git_dir,
            cache_dir: &cache,
            work_dir: tmp.path(),
            repo_root: &repo.root,
            repo_git_dir: &repo.git_dir,
            state_dir: &state,
            extra_read_only: &pipeline.sandbox.read_only,
        };
        let sandbox = crate::adapters::sandbox::Sandbox::new(backend, &place);
        let env = crate::infra::secrets::scrubbed_env(&[]);
        let prepared = sandbox.prepare("true", env, false).map_err(|e| e.to_string())?;
        let log = tmp.path().join("doctor.log");
        let (cmd, _) =
            crate::adapters::sandbox::Sandbox::streamed(prepared, &tree, Duration::from_secs(30), &log);
        let out = crate::infra::process::run_streamed(cmd, &Cancel::new()).map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "`true` ended with {}: {}",
                out.status_text(),
                crate::infra::text::one_line(&out.combined(), 300)
            ))
        }
    };
    let name =
        serde_json::to_value(backend).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    match trial() {
        Ok(()) => r.pass("sandbox", format!("{name} runs a command")),
        Err(e) => r.fail(
            "sandbox",
            format!("{name} cannot run a command: {e}"),
            "see the Sandbox section of the README",
        ),
    }
}

fn check_models(
    r: &mut Report,
    rt: &tokio::runtime::Runtime,
    pipeline: &Pipeline,
    state: &crate::state::State,
    probe: bool,
) {
    let Some(settings) = pipeline.propose_settings() else {
        r.skip("models", "no propose stage");
        return;
    };
    let refs: Vec<&String> = settings.models.iter().chain(&settings.escalate_to).collect();
    let client = crate::adapters::model::client::ModelClient::new(&pipeline.providers, state.budget.clone());
    for model_ref in refs {
        let name = format!("model {model_ref}");
        let Some((provider_name, model)) = crate::config::split_model_ref(model_ref) else { continue };
        let Some(provider) = pipeline.providers.get(provider_name) else { continue };
        if let Some(var) = &provider.api_key_env {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                r.fail(
                    &name,
                    format!("${var} (providers.{provider_name}.api_key_env) is not set"),
                    format!("export {var}=<your key>, or add it to the workflow's secrets"),
                );
                continue;
            }
        }
        if !probe {
            r.skip(&name, format!("{}: not asked (pass --probe-models)", provider.base_url));
            continue;
        }
        let listed = rt.block_on(client.list_models(provider_name, Duration::from_secs(20)));
        match listed {
            Ok(models) if models.iter().any(|m| m == model) => {
                r.pass(&name, format!("{} offers {model}", provider.base_url))
            }
            Ok(models) if !models.is_empty() => r.fail(
                &name,
                format!(
                    "{} answers, but does not offer {model} ({} models listed)",
                    provider.base_url,
                    models.len()
                ),
                "check the model's name in the ladder",
            ),
            // No list to look in: a one-token completion says whether the model answers.
            Ok(_) | Err(crate::adapters::model::client::ModelError::Status { status: 404 | 405, .. }) => {
                let ping = [crate::adapters::model::client::ChatMessage::user("Reply with OK.")];
                match rt.block_on(client.complete(model_ref, &ping, Duration::from_secs(60), 0.0, 1)) {
                    Ok(_) => r.pass(
                        &name,
                        format!(
                            "{} answers a one-token request (charged to today's budget)",
                            provider.base_url
                        ),
                    ),
                    Err(e) => r.fail(&name, e.to_string(), "check providers.<name>.base_url and the key"),
                }
            }
            Err(e) => {
                r.fail(&name, e.to_string(), "check providers.<name>.base_url, the key and the network")
            }
        }
    }
}

fn check_forge(
    r: &mut Report,
    rt: &tokio::runtime::Runtime,
    repo: &Repo,
    pipeline: &Pipeline,
    state_dir: &Path,
) {
    if !pipeline.has_enabled(crate::config::StageKind::Pr) {
        r.skip("forge", "no enabled pr stage: cycles are dry runs");
        return;
    }
    let config = &pipeline.forge;
    if config.kind == ForgeKind::Local {
        r.pass("forge", "local: PRs are files in the state folder, branches live in this repository");
        return;
    }
    // Asking a placeholder's server would only wait out the retries of a failed lookup.
    let placeholders: Vec<String> = [
        (config.repo.as_deref() == Some(init::PLACEHOLDER_REPO))
            .then(|| format!("forge.repo is `{}`", init::PLACEHOLDER_REPO)),
        (config.url.as_deref().map(|u| u.trim_end_matches('/')) == Some(init::PLACEHOLDER_URL))
            .then(|| format!("forge.url is `{}`", init::PLACEHOLDER_URL)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !placeholders.is_empty() {
        let what = if placeholders.len() == 1 { "a placeholder" } else { "placeholders" };
        r.fail(
            "forge",
            format!("{}: {what} from `prbot init`", placeholders.join(" and ")),
            "set forge.repo to your repository's `owner/name` and forge.url to your server",
        );
    }
    let var = config.token_var().unwrap_or_default();
    if std::env::var(&var).map_or(true, |t| t.is_empty()) {
        r.fail(
            "forge token",
            format!("${var} is not set"),
            format!("export {var}=<a token that can push and open PRs> (forge.token_env names the variable)"),
        );
        return;
    }
    r.pass("forge token", format!("${var} is set"));
    if !placeholders.is_empty() {
        return;
    }
    // The GitHub client starts its workers on the runtime it is made in.
    let _in_runtime = rt.enter();
    let forge: Arc<dyn Forge> = match forge::from_config(config, repo, state_dir) {
        Ok(f) => f,
        Err(e) => {
            r.fail("forge", e.to_string(), "check forge.kind, forge.url, forge.api_url and forge.repo");
            return;
        }
    };
    let repo_name = config.repo.clone().unwrap_or_default();
    let info = match rt.block_on(forge.repo_info()) {
        Ok(i) => {
            r.pass(
                "forge repository",
                format!("{repo_name} is readable; its default branch is {}", i.default_branch),
            );
            i
        }
        Err(e) => {
            r.fail(
                "forge repository",
                e.to_string(),
                "check forge.repo and forge.url, and that the token can read the repository",
            );
            return;
        }
    };
    if info.can_push {
        r.pass("forge push", format!("the token can push to {repo_name}"));
    } else {
        r.fail(
            "forge push",
            format!("the token cannot push to {repo_name}"),
            "give the token write access to the repository",
        );
    }
    let base = pipeline.pr_settings().and_then(|s| s.base.clone()).unwrap_or(info.default_branch);
    let git = repo.git(&Cancel::new());
    match rt.block_on(forge.branch_tip(&git, &base)) {
        Ok(Some(tip)) => r.pass("forge base branch", format!("{base} is at {tip:.12}")),
        Ok(None) => r.fail(
            "forge base branch",
            format!("{base} does not exist on the forge"),
            "set the pr stage's `base`, or push the branch",
        ),
        Err(e) => {
            r.fail("forge base branch", e.to_string(), "check that git can reach the forge with the token")
        }
    }
    match config.kind {
        ForgeKind::Gitea => {
            let prefix = config.draft_prefix.trim();
            if matches!(prefix, "WIP:" | "[WIP]") {
                r.pass(
                    "forge drafts",
                    format!(
                        "titles start with `{}`, one of Gitea's default draft prefixes",
                        config.draft_prefix
                    ),
                );
            } else {
                r.warn("forge drafts", format!("titles start with `{}`", config.draft_prefix), "make sure it is one of the server's [repository.pull-request] WORK_IN_PROGRESS_PREFIXES, or PRs open as ready");
            }
        }
        _ => r.pass("forge drafts", "GitHub marks PRs as drafts itself"),
    }
}

/// Whether the state can be read.
fn check_state(
    r: &mut Report,
    repo: &Repo,
    pipeline: &Pipeline,
    state: &crate::state::State,
    write: bool,
) -> bool {
    let dir = &state.dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        r.fail(
            "state",
            format!("cannot create {}: {e}", dir.display()),
            "set state.dir to a folder prbot may write",
        );
        return false;
    }
    if pipeline.state.backend == StateBackend::Dir {
        r.pass("state", format!("records and ledgers in {}", dir.display()));
        return true;
    }
    let Some(remote) = crate::state::remote::for_pipeline(pipeline, repo, dir) else { return true };
    let (reference, name) = (&pipeline.state.reference, &pipeline.state.remote);
    match remote.fetch() {
        Ok(Some(c)) => r.pass("state ref", format!("{name} {reference} is readable, at {c:.12}")),
        Ok(None) => r.pass("state ref", format!("{name} has no {reference} yet; the first cycle makes it")),
        Err(e) => {
            r.fail(
                "state ref",
                e.to_string(),
                "check state.remote (a remote's name or URL) and that the token can fetch from it",
            );
            return false;
        }
    }
    if !write {
        r.skip("state write", "not tried (pass --write-check to push to a scratch ref and delete it)");
        return true;
    }
    match remote.write_check() {
        Ok(()) => r.pass("state write", format!("{name} takes pushes next to {reference}")),
        Err(e) => r.fail(
            "state write",
            e.to_string(),
            "give the token push access, and allow refs outside refs/heads on the remote",
        ),
    }
    true
}

fn check_budget(r: &mut Report, pipeline: &Pipeline, state: &crate::state::State) {
    let b = &pipeline.budget;
    match state.budget.today_ledger() {
        Ok(l) => {
            let mut detail = format!(
                "today (UTC): {} of {} calls used ({} left), {} of {} tokens ({} left)",
                l.calls,
                b.calls_per_day,
                b.calls_per_day.saturating_sub(l.calls),
                l.tokens,
                b.tokens_per_day,
                b.tokens_per_day.saturating_sub(l.tokens)
            );
            if let Some(cap) = b.usd_per_day {
                detail.push_str(&format!(
                    ", ${:.4} of ${cap:.4} (${:.4} left)",
                    l.usd,
                    (cap - l.usd).max(0.0)
                ));
            }
            match state.budget.check() {
                Ok(_) => r.pass("budget", detail),
                Err(e) => r.warn(
                    "budget",
                    format!("{detail}: {e}"),
                    "cycles are skipped until the UTC day turns, or raise `budget:`",
                ),
            }
        }
        Err(e) => r.fail("budget", e.to_string(), "fix or remove the ledger file it names"),
    }
}

fn check_pause(r: &mut Report, repo: &Repo, pipeline: &Pipeline) {
    let guard = pipeline.stages.iter().find_map(|s| match &s.action {
        crate::config::Action::Builtin(crate::config::Builtin::Guard(g)) if s.enabled => {
            Some(g.pause_file.clone())
        }
        _ => None,
    });
    let Some(pause) = guard else {
        r.skip("pause file", "no enabled guard stage");
        return;
    };
    if repo.root.join(&pause).exists() {
        r.warn(
            "pause file",
            format!("{} is present: cycles are skipped", pause.display()),
            format!("remove {} to let prbot run", pause.display()),
        );
    } else {
        r.pass("pause file", format!("{} is absent", pause.display()));
    }
}

fn print(r: &Report, json: bool) {
    if json {
        let out = serde_json::json!({ "ok": r.ok(), "checks": r.checks });
        println!("{}", serde_json::to_string_pretty(&out).expect("a report serialises"));
        return;
    }
    for c in &r.checks {
        let mark = match c.status {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        };
        println!("{mark} {}: {}", c.name, c.detail);
        if let Some(h) = &c.hint {
            println!("    → {h}");
        }
    }
    let failed = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed == 0 {
        println!("ready: every required check passed");
    } else {
        println!("not ready: {failed} check(s) failed");
    }
}
