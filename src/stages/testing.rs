//! Stage rules tested in process: a real repository in a temp folder, the pipeline from a
//! YAML snippet, and the in-memory forge instead of HTTP.

use super::{Change, Picked, Progress, Services, Step};
use crate::adapters::forge::mem::MemForge;
use crate::adapters::forge::PrState;
use crate::config::{Action, Pipeline, StageKind};
use crate::domain::outcome::Outcome;
use crate::domain::records::{FileMode, TouchedFile};
use crate::infra::workspace::Repo;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const PRD: &str = "# PRD\n\n- [ ] Make `greet.sh` say hello to the world [bot-eligible]\n";

pub(crate) struct Fixture {
    _tmp: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    pub sv: Services,
    pub forge: Arc<MemForge>,
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Services for a one-commit repository with one tagged gap, the pipeline's `stages:`
/// as given, and `forge` as the forge.
pub(crate) fn fixture(stages: &str, forge: MemForge) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    git(&root, &["init", "--quiet", "-b", "main"]);
    std::fs::write(root.join("docs/PRD.md"), PRD).unwrap();
    std::fs::write(root.join("greet.sh"), "echo hi\n").unwrap();
    git(&root, &["add", "."]);
    git(&root, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "init"]);
    let yaml = format!(
        "providers:\n  local:\n    base_url: http://127.0.0.1:9/v1\nstate:\n  dir: {}\nworkspace:\n  dir: {}\nstages:\n{stages}",
        tmp.path().join("state").display(),
        tmp.path().join("work").display()
    );
    let pipeline = Arc::new(Pipeline::parse(&root.join("pipeline.yml"), &yaml).expect("a valid pipeline"));
    let repo = Repo::discover(&root).unwrap();
    let rt = crate::infra::runtime::new().unwrap();
    let state = crate::state::open(&pipeline, &repo);
    let work = tmp.path().join("work");
    let forge = Arc::new(forge);
    let mut sv = Services::new(
        "test-cycle".into(),
        pipeline,
        repo,
        state,
        work,
        Default::default(),
        Default::default(),
        rt.handle().clone(),
    );
    sv.use_forge(forge.clone());
    Fixture { _tmp: tmp, _rt: rt, sv, forge }
}

impl Fixture {
    /// Runs the pipeline's stage of `kind` on `progress`.
    pub fn run(&mut self, kind: StageKind, progress: &Progress) -> Step {
        let pipeline = self.sv.pipeline.clone();
        let spec = pipeline
            .stages
            .iter()
            .find(|s| matches!(&s.action, Action::Builtin(b) if b.kind() == kind))
            .expect("the fixture's pipeline has the stage");
        let step = super::build(&spec.action).run(&mut self.sv, progress);
        step
    }

    /// Progress with the PRD's gap picked.
    pub fn picked(&self) -> Progress {
        let gap = crate::domain::prd::gaps(PRD, "[bot-eligible]").remove(0);
        Progress {
            picked: Some(Picked {
                gap,
                prior: Vec::new(),
                feedback: Vec::new(),
                comments_seen: Default::default(),
                branch_at: None,
            }),
            ..Progress::default()
        }
    }

    /// Progress with the gap picked and a change to `greet.sh` staged in the worktree.
    pub fn changed(&mut self) -> Progress {
        let ws = self.sv.workspace().unwrap();
        std::fs::write(ws.path.join("greet.sh"), "echo hello world\n").unwrap();
        ws.stage(&["greet.sh".to_string()]).unwrap();
        let files = vec![TouchedFile { path: "greet.sh".into(), mode: FileMode::Update, file_mode: None }];
        Progress { change: Some(Change { files, bytes_changed: 11 }), ..self.picked() }
    }

    pub fn gap_branch(&self) -> String {
        self.picked().picked.unwrap().gap.branch()
    }
}

fn stopped(step: &Step) -> (Outcome, String) {
    match &step.flow {
        super::Flow::Stop(e) => (e.outcome, e.reason.clone()),
        other => panic!("the stage went on: {other:?}"),
    }
}

const PICK_AND_PR: &str =
    "  - uses: pick-gap\n  - uses: propose\n  - uses: apply\n  - uses: pr\n    with:\n      max_open: 1\n";

#[test]
fn max_open_stops_a_new_pr_before_anything_is_committed_or_pushed() {
    let mut f = fixture(PICK_AND_PR, MemForge::new().with_pr("prbot/another-gap", PrState::Open));
    let progress = f.changed();
    let step = f.run(StageKind::Pr, &progress);
    let (outcome, reason) = stopped(&step);
    assert_eq!(outcome, Outcome::PrSkippedByPolicy);
    assert!(reason.contains("pr.max_open is 1"), "{reason}");
    assert!(step.produced.published.is_none());
    assert!(f.forge.pushes.lock().unwrap().is_empty());
}

#[test]
fn a_merged_gap_is_passed_over_even_when_closed_ones_may_be_recreated() {
    let stages = PICK_AND_PR.replace("max_open: 1", "recreate_closed: true");
    let mut f = fixture(&stages, MemForge::new());
    let branch = f.gap_branch();
    f.forge = Arc::new(MemForge::new().with_pr(&branch, PrState::Merged));
    f.sv.use_forge(f.forge.clone());
    let (outcome, reason) = stopped(&f.run(StageKind::PickGap, &Progress::default()));
    assert_eq!(outcome, Outcome::SkippedNoGap);
    assert!(reason.contains("was merged"), "{reason}");
}

#[test]
fn a_closed_pr_turns_the_gap_down_unless_recreate_closed() {
    for (recreate, picked) in [(false, false), (true, true)] {
        let stages = PICK_AND_PR.replace("max_open: 1", &format!("recreate_closed: {recreate}"));
        let mut f = fixture(&stages, MemForge::new());
        let branch = f.gap_branch();
        f.sv.use_forge(Arc::new(MemForge::new().with_pr(&branch, PrState::Closed)));
        let step = f.run(StageKind::PickGap, &Progress::default());
        assert_eq!(step.produced.picked.is_some(), picked, "recreate_closed: {recreate}: {:?}", step.flow);
    }
}

#[test]
fn a_pr_opened_by_a_racing_runner_is_updated_not_duplicated() {
    let mut f = fixture(PICK_AND_PR, MemForge::new());
    *f.forge.race_on_create.lock().unwrap() = true;
    let progress = f.changed();
    let step = f.run(StageKind::Pr, &progress);
    assert!(matches!(step.flow, super::Flow::Next(_)), "{:?}", step.flow);
    let published = step.produced.published.expect("published");
    let pr = published.pr.expect("a PR");
    assert!(!pr.created, "the racing runner's PR is used");
    let prs = f.forge.prs.lock().unwrap();
    assert_eq!(prs.len(), 1, "never a second PR");
    assert_eq!(prs[0].comments.len(), 1, "the update is noted on the PR");
    assert_eq!(
        f.forge.pushes.lock().unwrap().as_slice(),
        [(published.branch.clone(), published.commit.clone())]
    );
    assert_eq!(published.files[0].file_mode.as_deref(), Some("100644"));
}

#[test]
fn a_stage_run_out_of_order_is_an_internal_error_not_a_panic() {
    let mut f = fixture(PICK_AND_PR, MemForge::new());
    let (outcome, reason) = stopped(&f.run(StageKind::Pr, &Progress::default()));
    assert_eq!(outcome, Outcome::InternalError);
    assert!(reason.contains("prbot bug"), "{reason}");
}

#[test]
fn a_create_that_timed_out_but_went_through_counts_as_created() {
    let mut f = fixture(PICK_AND_PR, MemForge::new());
    *f.forge.race_on_create.lock().unwrap() = true;
    *f.forge.race_is_own.lock().unwrap() = true;
    let progress = f.changed();
    let step = f.run(StageKind::Pr, &progress);
    assert!(matches!(step.flow, super::Flow::Next(_)), "{:?}", step.flow);
    let pr = step.produced.published.expect("published").pr.expect("a PR");
    assert!(pr.created, "prbot's own PR counted as someone else's");
    let prs = f.forge.prs.lock().unwrap();
    assert_eq!(prs.len(), 1);
    assert!(prs[0].comments.is_empty(), "its own new PR got an update comment");
}
