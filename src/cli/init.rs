//! `prbot init`: a starter pipeline and a workflow, written into a repository.

use crate::cli::{CliError, InitForge};
use std::path::{Path, PathBuf};

const GITEA_WORKFLOW: &str = include_str!("../../.gitea/workflows/prbot.yml");
const GITHUB_WORKFLOW: &str = include_str!("../../.github/workflows/prbot.yml");

/// What the starter pipeline holds until the user sets their own forge; `prbot doctor`
/// names them when they are still there.
pub(crate) const PLACEHOLDER_REPO: &str = "owner/name";
pub(crate) const PLACEHOLDER_URL: &str = "https://gitea.example.com";

fn pipeline(forge: InitForge) -> String {
    let gitea_url = format!("{PLACEHOLDER_URL}   # your server");
    let (kind, url, token) = match forge {
        InitForge::Gitea => ("gitea", gitea_url.as_str(), "GITEA_TOKEN"),
        InitForge::Github => ("github", "https://github.com", "GITHUB_TOKEN"),
    };
    let modeline = crate::config::SCHEMA_MODELINE;
    format!(
        r#"{modeline}
# prbot's pipeline: see the pipeline reference in prbot's README.
# Tag small, well-scoped PRD items for the bot: `- [ ] ... [bot-eligible]`.

prd:
  path: docs/PRD.md
  tag: "[bot-eligible]"

# CI runners are ephemeral: keep records and the daily budget on a ref of the remote.
state:
  backend: git
  ref: refs/prbot/state
  remote: origin

budget:
  calls_per_day: 20
  tokens_per_day: 160000

providers:
  openrouter:
    base_url: https://openrouter.ai/api/v1
    api_key_env: OPENROUTER_API_KEY

forge:
  kind: {kind}
  url: {url}
  repo: {PLACEHOLDER_REPO}            # change to your repository
  token_env: {token}

stages:
  - uses: guard
  - uses: pick-gap
  - uses: propose
    timeout: 3m
    with:
      models: [openrouter/deepseek/deepseek-chat-v3.1]
      repair_attempts: 2
  - uses: apply
  - uses: test
    timeout: 20m
  - uses: pr
    with:
      max_open: 3
"#
    )
}

pub fn run(repo: &Path, forge: InitForge, force: bool) -> Result<i32, CliError> {
    if !repo.is_dir() {
        return Err(CliError::Usage(format!("{} is not a folder", repo.display())));
    }
    let workflow = match forge {
        InitForge::Gitea => (".gitea/workflows/prbot.yml", GITEA_WORKFLOW),
        InitForge::Github => (".github/workflows/prbot.yml", GITHUB_WORKFLOW),
    };
    let files: [(PathBuf, String); 3] = [
        (repo.join("pipelines/default.yml"), pipeline(forge)),
        (repo.join("pipelines").join(crate::config::SCHEMA_FILE), crate::config::schema()),
        (repo.join(workflow.0), workflow.1.to_string()),
    ];
    let existing: Vec<String> =
        files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() && !force {
        return Err(CliError::Usage(format!(
            "{} already exist{}; pass --force to overwrite",
            existing.join(" and "),
            if existing.len() == 1 { "s" } else { "" }
        )));
    }
    for (path, text) in &files {
        crate::infra::fsutil::write_atomic(path, text.as_bytes())
            .map_err(|e| CliError::Other(format!("cannot write {}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    println!("next: set forge.repo (and forge.url) in pipelines/default.yml, add the secrets the workflow names, and tag PRD items [bot-eligible]");
    Ok(0)
}
