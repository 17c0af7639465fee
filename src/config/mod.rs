//! The pipeline file: loading, validation with locations, and the typed result.

pub(crate) mod settings;

use settings::*;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use settings::StageKind;

/// A validated pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Where it was read from.
    pub path: PathBuf,
    pub prd: PrdConfig,
    pub state: StateConfig,
    pub workspace: WorkspaceConfig,
    pub budget: BudgetConfig,
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
    pub forge: ForgeConfig,
    pub bot: BotConfig,
    pub observer: ObserverConfig,
    pub policy: PolicyConfig,
    pub serve: ServeConfig,
    pub sandbox: SandboxConfig,
    pub stages: Vec<StageSpec>,
}

#[derive(Debug, Clone)]
pub struct StageSpec {
    /// 1-based position in `stages:`.
    pub position: usize,
    pub id: String,
    pub name: Option<String>,
    pub enabled: bool,
    pub timeout: Option<Duration>,
    pub action: Action,
}

/// Where prbot looks for the pipeline file, relative to the repository.
pub const DEFAULT_PIPELINE: &str = "pipelines/default.yml";

/// The schema's file name, next to the pipelines that point to it.
pub const SCHEMA_FILE: &str = "prbot.schema.json";

/// The first line of a pipeline file: editors with yaml-language-server (VS Code's YAML
/// extension, Helix, Neovim) then complete and check it against the schema beside it.
pub const SCHEMA_MODELINE: &str = "# yaml-language-server: $schema=prbot.schema.json";

/// The JSON Schema of the pipeline file (draft 2020-12), from the types that parse it.
pub fn schema() -> String {
    let schema = schemars::schema_for!(settings::RawPipeline);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

impl StageSpec {
    /// The stage's `timeout`, else its kind's default (the model's answer 3 min, the tests
    /// 20 min, a `run:` step 10 min); `None` for stages that run nothing long.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout.or(match &self.action {
            Action::Builtin(Builtin::Propose(_)) => Some(Duration::from_secs(180)),
            Action::Builtin(Builtin::Test(_)) => Some(Duration::from_secs(20 * 60)),
            Action::Run { .. } => Some(Duration::from_secs(10 * 60)),
            _ => None,
        })
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Builtin(Builtin),
    Run { command: String, continue_on_error: bool, network: bool },
}

/// A built-in stage with its typed settings.
#[derive(Debug, Clone)]
pub enum Builtin {
    Guard(GuardSettings),
    PickGap(PickGapSettings),
    Propose(ProposeSettings),
    Apply(ApplySettings),
    Test(TestSettings),
    Pr(PrSettings),
}

impl Builtin {
    pub fn kind(&self) -> StageKind {
        match self {
            Builtin::Guard(_) => StageKind::Guard,
            Builtin::PickGap(_) => StageKind::PickGap,
            Builtin::Propose(_) => StageKind::Propose,
            Builtin::Apply(_) => StageKind::Apply,
            Builtin::Test(_) => StageKind::Test,
            Builtin::Pr(_) => StageKind::Pr,
        }
    }
}

/// What a stage leaves in the cycle for later stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Artifact {
    Gap,
    Proposal,
    AppliedChange,
}

impl Artifact {
    fn describe(self) -> &'static str {
        match self {
            Artifact::Gap => "a gap",
            Artifact::Proposal => "a proposal",
            Artifact::AppliedChange => "an applied change",
        }
    }

    fn provider(self) -> StageKind {
        match self {
            Artifact::Gap => StageKind::PickGap,
            Artifact::Proposal => StageKind::Propose,
            Artifact::AppliedChange => StageKind::Apply,
        }
    }
}

fn needs(kind: StageKind) -> Option<Artifact> {
    match kind {
        StageKind::Guard | StageKind::PickGap => None,
        StageKind::Propose => Some(Artifact::Gap),
        StageKind::Apply => Some(Artifact::Proposal),
        StageKind::Test | StageKind::Pr => Some(Artifact::AppliedChange),
    }
}

fn provides(kind: StageKind) -> Option<Artifact> {
    match kind {
        StageKind::PickGap => Some(Artifact::Gap),
        StageKind::Propose => Some(Artifact::Proposal),
        StageKind::Apply => Some(Artifact::AppliedChange),
        _ => None,
    }
}

/// Where in the file a problem is.
#[derive(Debug, Clone)]
pub enum Place {
    File,
    LineCol(usize, usize),
    Stage { position: usize, id: String },
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub place: Place,
    pub message: String,
}

/// A pipeline file that cannot be used, with every problem found in it.
#[derive(Debug, thiserror::Error)]
pub struct PipelineError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &p.place {
                Place::File => write!(f, "{file}: {}", p.message)?,
                Place::LineCol(l, c) => write!(f, "{file}:{l}:{c}: {}", p.message)?,
                Place::Stage { position, id } => {
                    write!(f, "{file}: stage #{position} (id: {id}): {}", p.message)?
                }
            }
        }
        Ok(())
    }
}

impl Pipeline {
    /// Reads and validates a pipeline file. Nothing runs until this has succeeded.
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                place: Place::File,
                message: format!("cannot read the pipeline file: {e}; pass its path with --pipeline, or write one with `prbot init`"),
            }],
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Pipeline, PipelineError> {
        let fail = |problems| PipelineError { file: path.to_path_buf(), problems };
        let raw: RawPipeline = serde_yaml::from_str(text).map_err(|e| fail(vec![yaml_problem(&e, text)]))?;
        let mut problems = Vec::new();
        let stages = validate_stages(raw.stages, &mut problems);
        validate_settings(&raw.policy, &raw.providers, &mut problems);
        validate_models(&stages, &raw.providers, &mut problems);
        validate_forge(&raw.forge, &mut problems);
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(Pipeline {
            path: path.to_path_buf(),
            prd: raw.prd,
            state: raw.state,
            workspace: raw.workspace,
            budget: raw.budget,
            providers: raw.providers,
            forge: raw.forge,
            bot: raw.bot,
            observer: raw.observer,
            policy: raw.policy,
            serve: raw.serve,
            sandbox: raw.sandbox,
            stages,
        })
    }

    /// Disables every stage of a kind; always valid, since nothing needs what pr or test give.
    pub fn disable(&mut self, kind: StageKind) {
        debug_assert!(matches!(kind, StageKind::Pr | StageKind::Test | StageKind::Guard));
        for s in &mut self.stages {
            if matches!(&s.action, Action::Builtin(b) if b.kind() == kind) {
                s.enabled = false;
            }
        }
    }

    /// The settings of the enabled propose stage, if there is one.
    pub fn propose_settings(&self) -> Option<&ProposeSettings> {
        self.stages.iter().filter(|s| s.enabled).find_map(|s| match &s.action {
            Action::Builtin(Builtin::Propose(p)) => Some(p),
            _ => None,
        })
    }

    /// Where a repair re-enters the pipeline: the enabled stage that provides the proposal.
    pub fn proposal_stage(&self) -> Option<usize> {
        self.stages
            .iter()
            .position(|s| s.enabled && matches!(&s.action, Action::Builtin(Builtin::Propose(_))))
    }

    /// The settings of the enabled pr stage, if there is one.
    pub fn pr_settings(&self) -> Option<&PrSettings> {
        self.stages.iter().filter(|s| s.enabled).find_map(|s| match &s.action {
            Action::Builtin(Builtin::Pr(p)) => Some(p),
            _ => None,
        })
    }

    /// Whether an enabled stage of this kind is in the pipeline.
    /// Whether any enabled stage runs project code: a test stage or a `run:` step.
    pub fn runs_project_code(&self) -> bool {
        self.stages
            .iter()
            .any(|s| s.enabled && matches!(&s.action, Action::Run { .. } | Action::Builtin(Builtin::Test(_))))
    }

    pub fn has_enabled(&self, kind: StageKind) -> bool {
        self.stages.iter().any(|s| s.enabled && matches!(&s.action, Action::Builtin(b) if b.kind() == kind))
    }
}

/// The line where a second YAML document begins: the shortest run of lines from the top
/// that already holds two (found by halving, since more lines never hold fewer).
fn second_document_line(text: &str) -> Option<usize> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let documents = |k: usize| serde_yaml::Deserializer::from_str(&lines[..k].concat()).take(2).count();
    if documents(lines.len()) < 2 {
        return None;
    }
    let (mut lo, mut hi) = (1, lines.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if documents(mid) >= 2 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

fn yaml_problem(e: &serde_yaml::Error, text: &str) -> Problem {
    if e.location().is_none() && e.to_string().contains("more than one document") {
        return Problem {
            place: Place::LineCol(second_document_line(text).unwrap_or(1), 1),
            message: "a second YAML document begins here (after `---`, or where the top-level mapping starts over); a pipeline file is one mapping".into(),
        };
    }
    let mut message = e.to_string();
    // The location goes in front, in the usual file:line:col form.
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    if message.contains("unknown variant") && message.contains("`pick-gap`") {
        message.push_str("; for a shell command use `run:` instead of `uses:`");
    } else if message.contains("unknown field") {
        message.push_str("; check the spelling, or see the pipeline reference in README.md");
    }
    match e.location() {
        Some(loc) => Problem { place: Place::LineCol(loc.line(), loc.column()), message },
        None => Problem { place: Place::File, message },
    }
}

fn validate_stages(raw: Vec<RawStage>, problems: &mut Vec<Problem>) -> Vec<StageSpec> {
    let mut out: Vec<StageSpec> = Vec::new();
    if raw.is_empty() {
        problems.push(Problem {
            place: Place::File,
            message: "`stages:` is empty; list at least one stage".into(),
        });
    }
    for (i, st) in raw.into_iter().enumerate() {
        let position = i + 1;
        let default_id = match (&st.uses, &st.run) {
            (Some(k), _) => k.as_str().to_string(),
            (None, Some(_)) => format!("run-{position}"),
            _ => format!("stage-{position}"),
        };
        let id = st.id.clone().unwrap_or(default_id);
        let place = || Place::Stage { position, id: id.clone() };
        let mut problem = |message: String| problems.push(Problem { place: place(), message });
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problem("`id` may only hold letters, digits, `-` and `_`".into());
        }
        if out.iter().any(|s| s.id == id) {
            problem("this id is used by an earlier stage; give each stage its own `id`".into());
        }
        let action = match (st.uses, st.run) {
            (Some(_), Some(_)) => {
                problem("has both `uses:` and `run:`; a stage is either a built-in or a shell step".into());
                continue;
            }
            (None, None) => {
                problem(
                    "needs `uses: <stage>` (guard, pick-gap, propose, apply, test, pr) or `run: <command>`"
                        .into(),
                );
                continue;
            }
            (Some(kind), None) => {
                if st.continue_on_error.is_some() {
                    problem("`continue-on-error` applies only to `run:` steps".into());
                }
                match builtin(kind, st.with) {
                    Ok(b) => Action::Builtin(b),
                    Err(m) => {
                        problem(m);
                        continue;
                    }
                }
            }
            (None, Some(command)) => {
                let settings: RunSettings = match st.with {
                    None => RunSettings::default(),
                    Some(v) => match serde_yaml::from_value(v) {
                        Ok(s) => s,
                        Err(e) => {
                            problem(format!("with: {e}; a `run:` step takes only `network`"));
                            RunSettings::default()
                        }
                    },
                };
                if command.trim().is_empty() {
                    problem("`run:` is empty".into());
                }
                Action::Run {
                    command,
                    continue_on_error: st.continue_on_error.unwrap_or(false),
                    network: settings.network,
                }
            }
        };
        if let Some(t) = st.timeout {
            if t.is_zero() {
                problem("`timeout` must be longer than zero".into());
            }
        }
        out.push(StageSpec {
            position,
            id,
            name: st.name,
            enabled: st.enabled.unwrap_or(true),
            timeout: st.timeout,
            action,
        });
    }
    check_order(&out, problems);
    out
}

fn builtin(kind: StageKind, with: Option<serde_yaml::Value>) -> Result<Builtin, String> {
    fn settings<T: serde::de::DeserializeOwned + Default>(
        with: Option<serde_yaml::Value>,
    ) -> Result<T, String> {
        match with {
            None | Some(serde_yaml::Value::Null) => Ok(T::default()),
            Some(v) => serde_yaml::from_value(v).map_err(|e| format!("with: {e}")),
        }
    }
    Ok(match kind {
        StageKind::Guard => Builtin::Guard(settings(with)?),
        StageKind::PickGap => Builtin::PickGap(settings(with)?),
        StageKind::Propose => Builtin::Propose(settings(with)?),
        StageKind::Apply => Builtin::Apply(settings(with)?),
        StageKind::Test => Builtin::Test(settings(with)?),
        StageKind::Pr => Builtin::Pr(settings(with)?),
    })
}

/// Each enabled stage must come after an enabled stage that provides what it needs.
fn check_order(stages: &[StageSpec], problems: &mut Vec<Problem>) {
    let mut have: Vec<Artifact> = Vec::new();
    let mut seen: Vec<StageKind> = Vec::new();
    for s in stages.iter().filter(|s| s.enabled) {
        let Action::Builtin(b) = &s.action else {
            continue;
        };
        let kind = b.kind();
        if seen.contains(&kind) {
            problems.push(Problem {
                place: Place::Stage { position: s.position, id: s.id.clone() },
                message: format!("`{}` appears twice; keep one enabled", kind.as_str()),
            });
        }
        seen.push(kind);
        if let Some(need) = needs(kind) {
            if !have.contains(&need) {
                let provider = need.provider().as_str();
                let later = stages.iter().any(|o| {
                    o.position > s.position
                        && matches!(&o.action, Action::Builtin(ob) if ob.kind() == need.provider())
                });
                let hint = if later {
                    format!("move it after the `{provider}` stage")
                } else {
                    format!("add an enabled `uses: {provider}` stage before it, or disable this one")
                };
                problems.push(Problem {
                    place: Place::Stage { position: s.position, id: s.id.clone() },
                    message: format!(
                        "`{}` needs {}, but no enabled stage before it provides one; {hint}",
                        kind.as_str(),
                        need.describe()
                    ),
                });
            }
        }
        if let Some(p) = provides(kind) {
            have.push(p);
        }
    }
}

fn validate_settings(
    policy: &PolicyConfig,
    providers: &std::collections::BTreeMap<String, ProviderConfig>,
    problems: &mut Vec<Problem>,
) {
    let mut problem = |m: String| problems.push(Problem { place: Place::File, message: m });
    for g in policy.proposal.allow.iter().chain(&policy.proposal.deny) {
        if let Err(e) = globset::Glob::new(g) {
            problem(format!("policy.proposal: bad glob `{g}`: {e}"));
        }
    }
    if let Some([a, b]) = policy.run.utc_hours {
        if a > 23 || b > 23 {
            problem(format!("policy.run.utc_hours: hours run from 0 to 23, got [{a}, {b}]"));
        }
    }
    for d in policy.run.weekdays.iter().flatten() {
        if parse_weekday(d).is_none() {
            problem(format!(
                "policy.run.weekdays: `{d}` is not a day; use mon, tue, wed, thu, fri, sat or sun"
            ));
        }
    }
    if providers.is_empty() {
        problem("`providers:` is empty; name at least one OpenAI-compatible endpoint".into());
    }
    for (name, p) in providers {
        if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
            problem(format!(
                "providers.{name}.base_url: `{}` must start with http:// or https://",
                p.base_url
            ));
        }
        if name.contains('/') || name.is_empty() {
            problem(format!(
                "providers: `{name}` cannot be a provider name; use letters, digits, `-` and `_`"
            ));
        }
    }
}

fn validate_forge(forge: &ForgeConfig, problems: &mut Vec<Problem>) {
    let mut problem = |m: String| problems.push(Problem { place: Place::File, message: m });
    if forge.kind == ForgeKind::Local {
        return;
    }
    let kind = if forge.kind == ForgeKind::Gitea { "gitea" } else { "github" };
    match &forge.repo {
        Some(r) if r.split('/').count() == 2 && r.split('/').all(|p| !p.is_empty()) => {}
        Some(r) => problem(format!("forge.repo: `{r}` must be `owner/name`")),
        None => problem(format!("forge.repo is required for kind {kind}: set it to `owner/name`")),
    }
    match forge.web_url() {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
        Some(u) => problem(format!("forge.url: `{u}` must start with http:// or https://")),
        None => problem(format!(
            "forge.url is required for kind {kind}: the server's address, e.g. https://gitea.example.com"
        )),
    }
    if let Some(a) = &forge.api_url {
        if !(a.starts_with("http://") || a.starts_with("https://")) {
            problem(format!("forge.api_url: `{a}` must start with http:// or https://"));
        }
    }
}

/// Splits `provider/model`; the model part may itself contain `/`.
pub fn split_model_ref(r: &str) -> Option<(&str, &str)> {
    r.split_once('/').filter(|(p, m)| !p.is_empty() && !m.is_empty())
}

/// Every model a propose stage names must route to a defined provider.
fn validate_models(
    stages: &[StageSpec],
    providers: &std::collections::BTreeMap<String, ProviderConfig>,
    problems: &mut Vec<Problem>,
) {
    let known: Vec<&str> = providers.keys().map(String::as_str).collect();
    for s in stages {
        let Action::Builtin(Builtin::Propose(p)) = &s.action else { continue };
        let place = || Place::Stage { position: s.position, id: s.id.clone() };
        if p.models.is_empty() {
            problems.push(Problem {
                place: place(),
                message: "with.models is empty; list at least one `provider/model`".into(),
            });
        }
        for r in p.models.iter().chain(&p.escalate_to) {
            let message = match split_model_ref(r) {
                None => {
                    format!("model `{r}` must be written `provider/model`, e.g. `local/qwen2.5-coder:7b`")
                }
                Some((prov, _)) if !providers.contains_key(prov) => format!(
                    "model `{r}` names provider `{prov}`, which `providers:` does not define (defined: {})",
                    known.join(", ")
                ),
                Some(_) => continue,
            };
            problems.push(Problem { place: place(), message });
        }
    }
}

/// A weekday as the pipeline file spells it (`mon`, `Monday`, ...).
pub fn parse_weekday(s: &str) -> Option<chrono::Weekday> {
    s.parse::<chrono::Weekday>().ok()
}
