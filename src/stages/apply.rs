use super::{Change, End, Produced, Progress, Services, Stage, Step};
use crate::domain::guardrails::{Guardrails, RepoPath};
use crate::domain::outcome::Outcome;
use crate::domain::policy::ProposalScore;
use crate::domain::records::{FileMode, StageStatus, TouchedFile};

/// Writes the proposal into the worktree, after the guardrails and the policy agreed.
pub struct Apply;

impl Stage for Apply {
    fn run(&self, sv: &mut Services, progress: &Progress) -> Step {
        let mut produced = Produced::default();
        let result = apply(sv, progress, &mut produced);
        Step::finish(produced, result)
    }
}

/// Checks every file, then writes and stages them; the change goes in `produced`, also
/// when it changes nothing (so the record lists what was proposed).
fn apply(cx: &mut Services, progress: &Progress, produced: &mut Produced) -> Result<StageStatus, End> {
    let proposal = &progress.proposal()?.proposal;
    let guard = Guardrails::new(cx.protected_paths());
    let root = cx.workspace()?.path.clone();

    // Check everything before writing anything.
    let mut plan: Vec<(RepoPath, FileMode, String, u32)> = Vec::new();
    for f in &proposal.files {
        let path = guard.check(&root, &f.path).map_err(|why| End::new(Outcome::ProposalRejected, why))?;
        if plan.iter().any(|(p, ..)| *p == path) {
            return Err(fixable(Outcome::ApplyFailed, format!("the proposal lists `{path}` twice")));
        }
        let target = path.under(&root);
        let mut perms = 0o644;
        let current = match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {
                return Err(fixable(
                    Outcome::ApplyFailed,
                    format!("`{path}` is a folder in the tree, not a file"),
                ));
            }
            Ok(m) => {
                perms = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777;
                Some(
                    std::fs::read(&target)
                        .map_err(|e| End::new(Outcome::ApplyFailed, format!("cannot read `{path}`: {e}")))?,
                )
            }
            Err(_) => None,
        };
        let old_perms = perms;
        perms = match f.executable {
            Some(true) => perms | 0o111,
            Some(false) => perms & !0o111,
            None => perms,
        };
        let (mode, content) = match (f.is_new, current) {
            (true, Some(_)) => {
                return Err(fixable(
                    Outcome::ApplyFailed,
                    format!("the proposal marks `{path}` as new (is_new: true), but it already exists"),
                ));
            }
            (false, None) => {
                return Err(fixable(
                    Outcome::ApplyFailed,
                    format!("the proposal updates `{path}` (is_new: false), but there is no such file"),
                ));
            }
            (true, None) => (FileMode::Add, f.content.clone().unwrap_or_default()),
            (false, Some(bytes)) => {
                let old = String::from_utf8(bytes.clone())
                    .map_err(|_| End::new(Outcome::ApplyFailed, format!("`{path}` is not UTF-8 text")))?;
                let new = match (&f.edits, &f.content) {
                    (Some(edits), _) => crate::domain::edits::apply(&old, edits)
                        .map_err(|why| fixable(Outcome::ApplyFailed, format!("`{path}`: {why}")))?,
                    (None, Some(content)) => {
                        if let Some(why) = crate::domain::edits::lazy_rewrite(&old, content) {
                            return Err(fixable(
                                Outcome::ProposalRejected,
                                format!("the rewrite of `{path}` looks lazy: {why}"),
                            ));
                        }
                        content.clone()
                    }
                    (None, None) => unreachable!("the proposal parser requires content or edits"),
                };
                let same = new.as_bytes() == bytes.as_slice() && perms == old_perms;
                (if same { FileMode::Noop } else { FileMode::Update }, new)
            }
        };
        plan.push((path, mode, content, perms));
    }

    let changed: Vec<&(RepoPath, FileMode, String, u32)> =
        plan.iter().filter(|(_, m, ..)| *m != FileMode::Noop).collect();
    let bytes_changed: usize = changed
        .iter()
        .map(|(p, _, new, _)| {
            let old = std::fs::read(p.under(&root)).unwrap_or_default();
            changed_bytes(&old, new.as_bytes())
        })
        .sum();
    let score = ProposalScore { paths: changed.iter().map(|(p, ..)| p.as_str()).collect(), bytes_changed };
    let d = cx.policy().score_proposal(&score);
    if !d.allow {
        return Err(End::new(Outcome::ProposalRejected, format!("policy: {}", d.reason)));
    }

    let touched: Vec<TouchedFile> = plan
        .iter()
        .map(|(p, m, ..)| TouchedFile { path: p.to_string(), mode: *m, file_mode: None })
        .collect();
    if changed.is_empty() {
        produced.change = Some(Change { files: touched, bytes_changed: 0 });
        return Err(End::new(Outcome::CycleNoop, "every proposed file is identical to the current content"));
    }
    for (path, _, content, perms) in &changed {
        crate::infra::fsutil::replace_scratch(&path.under(&root), content.as_bytes(), Some(*perms))
            .map_err(|e| End::new(Outcome::ApplyFailed, format!("cannot write `{path}`: {e}")))?;
    }
    // The approved change, staged: what the tests do to the tree later is not committed.
    let paths: Vec<String> = changed.iter().map(|(p, ..)| p.to_string()).collect();
    cx.workspace()?.stage(&paths)?;
    let count = |m| touched.iter().filter(|t| t.mode == m).count();
    tracing::info!(
        "applied: {} added, {} updated, {} unchanged",
        count(FileMode::Add),
        count(FileMode::Update),
        count(FileMode::Noop)
    );
    produced.change = Some(Change { files: touched, bytes_changed });
    Ok(StageStatus::Passed)
}

/// Bytes between the common prefix and the common suffix: a cheap, fair size of an edit.
pub(crate) fn changed_bytes(old: &[u8], new: &[u8]) -> usize {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix =
        old[prefix..].iter().rev().zip(new[prefix..].iter().rev()).take_while(|(a, b)| a == b).count();
    (old.len() - prefix - suffix).max(new.len() - prefix - suffix)
}

/// A failure the model can fix: it goes back to the model when the pipeline allows repairs.
fn fixable(outcome: Outcome, reason: String) -> End {
    let feedback = format!("Your proposal could not be applied: {reason}.");
    End::repairable(outcome, reason, feedback)
}
