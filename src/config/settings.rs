//! The pipeline file as written: serde shapes with defaults, unknown keys refused.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pipeline", title = "prbot pipeline")]
pub struct RawPipeline {
    /// The PRD that holds the gaps, and the tag that makes an item eligible.
    #[serde(default)]
    pub prd: PrdConfig,
    /// Where records, the ledger and locks live.
    #[serde(default)]
    pub state: StateConfig,
    /// The commit cycles start from, and where prbot's own worktree lives.
    #[serde(default)]
    pub workspace: WorkspaceConfig,
    /// Hard daily caps on model use, per UTC day.
    #[serde(default)]
    pub budget: BudgetConfig,
    /// OpenAI-compatible endpoints by name; a model is referenced as `name/model`.
    #[serde(default = "default_providers")]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Where PRs are opened: a local forge (branches only), Gitea/Forgejo or GitHub.
    #[serde(default)]
    pub forge: ForgeConfig,
    /// The author of prbot's commits.
    #[serde(default)]
    pub bot: BotConfig,
    /// An optional service that receives each cycle's record.
    #[serde(default)]
    pub observer: ObserverConfig,
    /// When cycles may run, which gaps and changes are allowed, whether PRs open.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Settings of `prbot serve`: webhooks and `POST /run`.
    #[serde(default)]
    pub serve: ServeConfig,
    /// How the test stage and `run:` steps are confined.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// The stages of a cycle, in order.
    pub stages: Vec<RawStage>,
}

/// How project commands (tests, `run:` steps) are confined.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SandboxConfig {
    /// Which confinement.
    pub backend: SandboxBackend,
    /// More host folders the commands may read, e.g. a toolchain outside `/usr`.
    pub read_only: Vec<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SandboxBackend {
    /// bwrap where it can create namespaces, else Landlock, else the cycle stops.
    #[default]
    Auto,
    Bwrap,
    Landlock,
    /// No confinement: project code runs with prbot's authority.
    Off,
}

/// `sandbox: auto` or `sandbox: {backend: auto, read_only: [...]}`: the schema says both.
impl JsonSchema for SandboxConfig {
    fn schema_name() -> Cow<'static, str> {
        "SandboxConfig".into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let backend = g.subschema_for::<SandboxBackend>();
        schemars::json_schema!({
            "description": "How project commands (tests, `run:` steps) are confined: a backend, or a mapping with `backend` and `read_only`.",
            "anyOf": [
                backend,
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "backend": {
                            "description": "Which confinement.",
                            "allOf": [backend],
                            "default": "auto"
                        },
                        "read_only": {
                            "description": "More host folders the commands may read, e.g. a toolchain outside `/usr`; absolute paths.",
                            "type": "array",
                            "items": {"type": "string", "pattern": "^/"},
                            "default": []
                        }
                    }
                }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for SandboxConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            backend: SandboxBackend,
            #[serde(default)]
            read_only: Vec<PathBuf>,
        }
        let value = serde_yaml::Value::deserialize(d)?;
        let full = match value {
            serde_yaml::Value::String(_) => Full {
                backend: serde_yaml::from_value(value).map_err(|_| {
                    serde::de::Error::custom("sandbox: use one of auto, bwrap, landlock, off")
                })?,
                read_only: Vec::new(),
            },
            serde_yaml::Value::Mapping(_) => serde_yaml::from_value(value).map_err(serde::de::Error::custom)?,
            _ => {
                return Err(serde::de::Error::custom(
                    "sandbox: write a backend (auto, bwrap, landlock, off) or a mapping with `backend` and `read_only`",
                ))
            }
        };
        for p in &full.read_only {
            if !p.is_absolute() {
                return Err(serde::de::Error::custom(format!(
                    "sandbox.read_only: `{}` must be an absolute path",
                    p.display()
                )));
            }
        }
        Ok(SandboxConfig { backend: full.backend, read_only: full.read_only })
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PrdConfig {
    /// The PRD, relative to the repository root.
    pub path: PathBuf,
    /// The text that marks an unchecked task item as one prbot may take.
    pub tag: String,
}

impl Default for PrdConfig {
    fn default() -> Self {
        PrdConfig { path: "docs/PRD.md".into(), tag: "[bot-eligible]".into() }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `dir` keeps state in a folder; `git` also keeps it on a ref of the remote, for
    /// runners that start empty every time.
    pub backend: StateBackend,
    /// Records, ledgers and locks. Default: `prbot/` inside the repository's git directory,
    /// where it can never dirty the working tree. With `git`, a local copy.
    pub dir: Option<PathBuf>,
    /// The ref that holds the state, outside the branch history.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The remote (a name or a URL) whose ref is the source of truth.
    pub remote: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: StateBackend::Dir,
            dir: None,
            reference: "refs/prbot/state".into(),
            remote: "origin".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// A folder on this machine.
    Dir,
    /// A folder, mirrored to a ref of the remote.
    Git,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    /// The commit each cycle starts from.
    pub base: String,
    /// Where prbot keeps its own worktree and build cache. Default: a folder per
    /// repository under the system's temporary directory.
    pub dir: Option<PathBuf>,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        WorkspaceConfig { base: "HEAD".into(), dir: None }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Model calls per UTC day, failed ones included.
    pub calls_per_day: u64,
    /// Prompt and completion tokens per UTC day.
    pub tokens_per_day: u64,
    /// Dollars per UTC day, counted with the providers' `prices`.
    pub usd_per_day: Option<f64>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig { calls_per_day: 20, tokens_per_day: 160_000, usd_per_day: None }
    }
}

/// An OpenAI-compatible endpoint, named in `providers:` and referenced as `name/model`.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The API's base, up to and including `/v1`.
    pub base_url: String,
    /// The variable holding the API key; none sends no `Authorization` header.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Extra request headers, e.g. OpenRouter's `HTTP-Referer`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-model prices, for `budget.usd_per_day`.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Dollars per million prompt tokens.
    pub price_per_mtok_in: f64,
    /// Dollars per million completion tokens.
    pub price_per_mtok_out: f64,
}

pub fn default_providers() -> BTreeMap<String, ProviderConfig> {
    BTreeMap::from([(
        "local".to_string(),
        ProviderConfig {
            base_url: "http://127.0.0.1:11434/v1".into(),
            api_key_env: None,
            headers: BTreeMap::new(),
            prices: BTreeMap::new(),
        },
    )])
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// Branches in this repository; the PR is a record, nothing is pushed.
    #[default]
    Local,
    /// Gitea or Forgejo.
    Gitea,
    /// github.com or GitHub Enterprise.
    Github,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ForgeConfig {
    /// Which forge.
    pub kind: ForgeKind,
    /// The server's web address, which is also where git pushes go:
    /// `{url}/{owner}/{name}.git`. Default for github: https://github.com.
    pub url: Option<String>,
    /// The REST API's base. Default: `{url}/api/v1` (gitea), `https://api.github.com`
    /// (github.com) or `{url}/api/v3` (GitHub Enterprise).
    pub api_url: Option<String>,
    /// `owner/name`.
    pub repo: Option<String>,
    /// The environment variable that holds the forge's token. Default: `GITEA_TOKEN`
    /// (gitea), `GITHUB_TOKEN` (github).
    pub token_env: Option<String>,
    /// Gitea marks drafts by a title prefix, one of the server's WORK_IN_PROGRESS_PREFIXES.
    pub draft_prefix: String,
    /// How long one API request may take.
    #[serde(deserialize_with = "duration", serialize_with = "human")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Retries after a 429, a 5xx, a timeout or a connection error.
    pub retries: usize,
}

impl Default for ForgeConfig {
    fn default() -> Self {
        ForgeConfig {
            kind: ForgeKind::Local,
            url: None,
            api_url: None,
            repo: None,
            token_env: None,
            draft_prefix: "WIP: ".into(),
            timeout: Duration::from_secs(30),
            retries: 4,
        }
    }
}

impl ForgeConfig {
    /// The variable holding the token, for remote forges.
    pub fn token_var(&self) -> Option<String> {
        match self.kind {
            ForgeKind::Local => self.token_env.clone(),
            ForgeKind::Gitea => Some(self.token_env.clone().unwrap_or_else(|| "GITEA_TOKEN".into())),
            ForgeKind::Github => Some(self.token_env.clone().unwrap_or_else(|| "GITHUB_TOKEN".into())),
        }
    }

    pub fn web_url(&self) -> Option<String> {
        let url = match self.kind {
            ForgeKind::Github => Some(self.url.clone().unwrap_or_else(|| "https://github.com".into())),
            _ => self.url.clone(),
        };
        url.map(|u| u.trim_end_matches('/').to_string())
    }

    pub fn api_base(&self) -> Option<String> {
        if let Some(a) = &self.api_url {
            return Some(a.trim_end_matches('/').to_string());
        }
        let web = self.web_url()?;
        Some(match self.kind {
            ForgeKind::Gitea => format!("{web}/api/v1"),
            ForgeKind::Github if web == "https://github.com" => "https://api.github.com".into(),
            ForgeKind::Github => format!("{web}/api/v3"),
            ForgeKind::Local => web,
        })
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct BotConfig {
    /// The commits' author name.
    pub name: String,
    /// The commits' author email.
    pub email: String,
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig { name: "prbot".into(), email: "prbot@localhost".into() }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ObserverConfig {
    /// Each record is POSTed here as JSON, after it is written.
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// When cycles may run.
    pub run: RunPolicy,
    /// Which gaps may be picked.
    pub gaps: GapPolicy,
    /// What a proposal may change, on top of the fixed guardrails.
    pub proposal: ProposalPolicy,
    /// Whether PRs are opened.
    pub pr: PrPolicy,
    /// An executable asked for every decision after the settings above allowed it.
    pub command: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct RunPolicy {
    /// `false` ends every cycle at the guard, as `skipped`.
    pub enabled: bool,
    /// UTC hours in which cycles may run, as `[first, last]`, inclusive.
    pub utc_hours: Option<[u32; 2]>,
    /// Days on which cycles may run: mon, tue, wed, thu, fri, sat, sun.
    pub weekdays: Option<Vec<String>>,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy { enabled: true, utc_hours: None, weekdays: None }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct GapPolicy {
    /// A gap whose last N attempts all failed is passed over. 0 never skips.
    pub skip_after_failures: usize,
    /// Gap ids (or their slug prefixes) never to pick.
    pub exclude: Vec<String>,
}

impl Default for GapPolicy {
    fn default() -> Self {
        GapPolicy { skip_after_failures: 3, exclude: Vec::new() }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ProposalPolicy {
    /// The most files one proposal may touch.
    pub max_files: usize,
    /// The most bytes one proposal may change, counted over all its files.
    pub max_bytes_changed: usize,
    /// When non-empty, every path must match one of these globs.
    pub allow: Vec<String>,
    /// No path may match any of these globs.
    pub deny: Vec<String>,
}

impl Default for ProposalPolicy {
    fn default() -> Self {
        ProposalPolicy { max_files: 8, max_bytes_changed: 60_000, allow: Vec::new(), deny: Vec::new() }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PrPolicy {
    /// `false` stops before the pr stage; the change is committed on its branch only.
    pub open: bool,
}

impl Default for PrPolicy {
    fn default() -> Self {
        PrPolicy { open: true }
    }
}

/// What `prbot serve` listens for.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// The variable holding the webhooks' HMAC secret.
    pub webhook_secret_env: String,
    /// The variable holding the bearer token of `POST /run`.
    pub run_token_env: String,
    /// Which pushes to the default branch start a cycle.
    pub on_push: OnPush,
    /// The largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
    /// On SIGTERM, how long a running cycle may go on before it is cancelled.
    #[serde(deserialize_with = "duration", serialize_with = "human")]
    #[schemars(with = "String")]
    pub grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            webhook_secret_env: "PRBOT_WEBHOOK_SECRET".into(),
            run_token_env: "PRBOT_RUN_TOKEN".into(),
            on_push: OnPush::Prd,
            max_body_bytes: 1024 * 1024,
            grace: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnPush {
    /// Only pushes that change the PRD file.
    Prd,
    /// Every push to the default branch.
    Any,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Checks the pause file, the budget, the run lock, a clean tree and the policy.
    Guard,
    /// Chooses the gap to work on.
    PickGap,
    /// Asks the model for a change.
    Propose,
    /// Applies the change under the guardrails.
    Apply,
    /// Runs the project's tests, in the sandbox.
    Test,
    /// Opens or updates the draft PR.
    Pr,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Guard => "guard",
            StageKind::PickGap => "pick-gap",
            StageKind::Propose => "propose",
            StageKind::Apply => "apply",
            StageKind::Test => "test",
            StageKind::Pr => "pr",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Stage", transform = stage_rules)]
pub struct RawStage {
    /// A unique name for the stage in records and errors. Default: `uses` or `run-N`.
    pub id: Option<String>,
    /// A label for people.
    pub name: Option<String>,
    /// A built-in stage. Give this or `run`.
    pub uses: Option<StageKind>,
    /// A shell command run in the workspace, in the sandbox. Give this or `uses`.
    pub run: Option<String>,
    /// The stage's settings; which keys depends on `uses` (or `run`).
    #[serde(rename = "with", default)]
    #[schemars(schema_with = "stage_with")]
    pub with: Option<serde_yaml::Value>,
    /// `false` keeps the stage in the file without running it. Default: `true`.
    pub enabled: Option<bool>,
    /// How long the stage may take, e.g. `90s`, `20m`.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>", extend("examples" = ["90s", "20m", "1h 30m"]))]
    pub timeout: Option<Duration>,
    /// Go on to the next stage when a `run:` step fails. Default: `false`.
    #[serde(rename = "continue-on-error")]
    pub continue_on_error: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSettings {
    /// Relative to the repository root.
    pub pause_file: PathBuf,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings { pause_file: "bot.paused".into() }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PickGapSettings {}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ProposeSettings {
    /// The ladder: `provider/model` references tried in order when a call fails.
    pub models: Vec<String>,
    /// A stronger model asked once after the repair attempts are used up.
    pub escalate_to: Option<String>,
    /// How often a failure (red tests, an edit that doesn't apply, a lazy rewrite) goes
    /// back to the model for a corrected proposal.
    pub repair_attempts: usize,
    /// Retries per model after a transport error, a timeout, a 429 or a 5xx.
    pub retries: usize,
    /// The prompt's budget, in tokens (about four bytes each).
    pub context_tokens: usize,
    /// How many earlier attempts on the gap the prompt shows.
    pub prior_attempts: usize,
    /// The sampling temperature sent with each call.
    pub temperature: f32,
    /// The reply's cap in tokens, sent as `max_tokens`; the budget reserves it before
    /// each call. A reply cut off at the cap is a failed call.
    pub max_tokens: u64,
}

impl Default for ProposeSettings {
    fn default() -> Self {
        ProposeSettings {
            models: vec!["local/qwen2.5-coder:7b".into()],
            escalate_to: None,
            repair_attempts: 2,
            retries: 2,
            context_tokens: 24_000,
            prior_attempts: 5,
            temperature: 0.2,
            max_tokens: 8192,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApplySettings {}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TestSettings {
    /// Shell commands run in order; empty means detect (`cargo test`, `bun test`).
    pub commands: Vec<String>,
    /// Variables kept for the tests even though their names look secret.
    pub env_allow: Vec<String>,
    /// Let the commands reach the network (they always have their own loopback).
    pub network: bool,
}

/// `with:` of a `run:` step.
#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunSettings {
    /// Let the command reach the network (it always has its own loopback).
    pub network: bool,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct PrSettings {
    /// The branch PRs target. Default: the forge's default branch (the current branch
    /// for the local forge).
    pub base: Option<String>,
    /// Label names to put on new PRs; a missing label is a warning, not a failure.
    pub labels: Vec<String>,
    /// How many of prbot's PRs may be open at once.
    pub max_open: usize,
    /// How many PRs prbot may open per UTC day.
    pub max_per_day: usize,
    /// Open a new PR for a gap whose earlier PR a maintainer closed without merging.
    pub recreate_closed: bool,
}

impl Default for PrSettings {
    fn default() -> Self {
        PrSettings { base: None, labels: Vec::new(), max_open: 3, max_per_day: 5, recreate_closed: false }
    }
}

/// Every stage kind with the type of its `with:`, for the schema.
fn stage_settings(g: &mut SchemaGenerator) -> Vec<(StageKind, Schema)> {
    vec![
        (StageKind::Guard, g.subschema_for::<GuardSettings>()),
        (StageKind::PickGap, g.subschema_for::<PickGapSettings>()),
        (StageKind::Propose, g.subschema_for::<ProposeSettings>()),
        (StageKind::Apply, g.subschema_for::<ApplySettings>()),
        (StageKind::Test, g.subschema_for::<TestSettings>()),
        (StageKind::Pr, g.subschema_for::<PrSettings>()),
    ]
}

/// `with:` is a mapping whose keys `uses:` decides; [`stage_rules`] says which.
fn stage_with(g: &mut SchemaGenerator) -> Schema {
    let mut rules: Vec<serde_json::Value> = stage_settings(g)
        .into_iter()
        .map(|(kind, settings)| {
            serde_json::json!({
                "if": {"required": ["uses"], "properties": {"uses": {"const": kind.as_str()}}},
                "then": {"properties": {"with": settings}}
            })
        })
        .collect();
    let run = g.subschema_for::<RunSettings>();
    rules.push(serde_json::json!({"if": {"required": ["run"]}, "then": {"properties": {"with": run}}}));
    schemars::json_schema!({
        "description": "The stage's settings; which keys depends on `uses` (or `run`).",
        "type": ["object", "null"],
        "x-prbot-stage-rules": rules
    })
}

/// Moves the rules [`stage_with`] made up to the stage, where `uses` can be seen.
fn stage_rules(schema: &mut Schema) {
    let rules = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("with"))
        .and_then(|w| w.as_object_mut())
        .and_then(|w| w.remove("x-prbot-stage-rules"));
    if let Some(rules) = rules {
        schema.insert("allOf".into(), rules);
    }
    // Exactly one of `uses` and `run`.
    schema.insert("oneOf".into(), serde_json::json!([{"required": ["uses"]}, {"required": ["run"]}]));
}

fn human<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("bad duration `{s}`: {e}; write it like `90s`, `20m` or `1h 30m`"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
}
