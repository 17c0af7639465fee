use super::{End, Picked, Produced, Progress, Proposed, Request, Services, Stage, Step};
use crate::adapters::model::ladder::{self, LadderError};
use crate::adapters::model::{context, prompt, ChatMessage};
use crate::config::settings::ProposeSettings;
use crate::domain::outcome::Outcome;
use crate::domain::records::{AttemptKind, ModelUse, Pick, StageStatus};

/// Asks the ladder of models for a proposal: first with the gap and its context, then,
/// after a failure, in the same conversation with what went wrong.
pub struct Propose<'a>(pub &'a ProposeSettings);

impl Stage for Propose<'_> {
    fn run(&self, sv: &mut Services, progress: &Progress) -> Step {
        match self.propose(sv, progress) {
            Ok(p) => Step::next(Produced { proposed: Some(p), ..Produced::default() }, StageStatus::Passed),
            Err(end) => Step::ended(Produced::default(), end),
        }
    }
}

impl Propose<'_> {
    fn propose(&self, cx: &mut Services, progress: &Progress) -> Result<Proposed, End> {
        let s = self.0;
        let picked = progress.gap()?;
        let (kind, models, mut conversation, context, after) = match &progress.request {
            Request::First => {
                let (conversation, context) = self.first_prompt(cx, picked)?;
                (AttemptKind::First, s.models.clone(), conversation, context, None)
            }
            Request::Repair { kind, feedback, conversation, after } => {
                let mut conversation = conversation.clone();
                conversation.push(ChatMessage::user(prompt::repair_message(&cx.secrets.redact(feedback))));
                let models = match (kind, &s.escalate_to) {
                    (AttemptKind::Escalation, Some(m)) => vec![m.clone()],
                    (AttemptKind::Escalation, None) => {
                        return Err(End::internal("prbot bug", "an escalation without `escalate_to`"))
                    }
                    _ => s.models.clone(),
                };
                (*kind, models, conversation, Vec::new(), Some(after))
            }
        };
        let opts = ladder::Options {
            retries: s.retries,
            timeout: cx.stage_timeout,
            temperature: s.temperature,
            max_tokens: s.max_tokens,
        };
        cx.start_reset()?;
        let mut calls = std::mem::take(&mut cx.model_calls);
        let before = calls.len();
        let result = cx.block_on(ladder::ask(&cx.model, &models, &conversation, &opts, &mut calls));
        let new_calls = calls[before..].to_vec();
        cx.model_calls = calls;
        let usage = cx.model_use.get_or_insert_with(ModelUse::default);
        for c in &new_calls {
            usage.calls += 1;
            usage.prompt_tokens += c.prompt_tokens;
            usage.completion_tokens += c.completion_tokens;
            usage.usd += c.usd;
            usage.estimated |= c.estimated;
        }
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
        let Some(result) = result else {
            return Err(End::new(Outcome::Cancelled, "cancelled while waiting for the model"));
        };
        let answer = match result {
            Ok(a) => a,
            Err(LadderError::Budget(m)) => {
                // Say which failed calls of this cycle took the budget, if any did.
                let spent: Vec<String> = cx
                    .model_calls
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| {
                        let why = crate::infra::text::one_line(c.error.as_deref().unwrap_or("failed"), 80);
                        format!("{} ({} tokens: {why})", c.model, c.prompt_tokens + c.completion_tokens)
                    })
                    .collect();
                let m = if spent.is_empty() {
                    m
                } else {
                    format!("{m}; this cycle's failed calls used some of it: {}", spent.join("; "))
                };
                return Err(failed(after, LadderError::Budget(m)));
            }
            Err(e) => return Err(failed(after, e)),
        };
        let usage = cx.model_use.get_or_insert_with(ModelUse::default);
        usage.name = answer.model.clone();
        usage.estimated |= answer.completion.estimated;
        tracing::info!(
            "{} proposes: {} ({} file(s))",
            answer.model,
            crate::infra::text::one_line(&answer.proposal.summary, 100),
            answer.proposal.files.len()
        );
        conversation.push(ChatMessage::assistant(answer.completion.content));
        Ok(Proposed { proposal: answer.proposal, kind, model: answer.model, conversation, context })
    }

    /// The first request: the system prompt, and the gap with the repository's context.
    fn first_prompt(&self, cx: &mut Services, picked: &Picked) -> Result<(Vec<ChatMessage>, Vec<Pick>), End> {
        let s = self.0;
        let gap = &picked.gap;
        // The base is read from the object store: the worktree is not needed yet.
        let ws = cx.clone_of_base()?;
        let (ws_git, base_commit) = (ws.git().clone(), ws.base_commit.clone());
        let cache_path = ws.cache_dir.join("context-terms");
        let index_path = ws.cache_dir.join("context-index");
        // The index of the base holds its files too (paths, blobs, sizes, links): a warm
        // cycle reads no file list. On a new base the list and the history are read
        // together.
        let kept = context::Index::load(&index_path, &base_commit);
        let (log, tracked) = std::thread::scope(|s| {
            let tracked = kept.is_none().then(|| s.spawn(|| ws.tracked_files()));
            let log = ws.history_log(context::History::DEPTH);
            (log, tracked.map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
        });
        // Earlier commits help the ranking; a repository without them is ranked without.
        let history = match log {
            Ok(log) => Some(context::History::parse(&log)),
            Err(e) => {
                tracing::warn!("ranking without the history: {e}");
                None
            }
        };
        let index = match kept {
            Some(index) => index,
            None => {
                let tracked = tracked.expect("the base is listed when no index was kept")?;
                let index = Self::index_base(cx, &tracked, &cache_path)?;
                if let Err(e) = index.save(&index_path, &base_commit) {
                    tracing::warn!("cannot keep the context index {}: {e}", index_path.display());
                }
                index
            }
        };
        let all: Vec<&str> = index.paths().collect();
        let prior: Vec<_> = picked.prior.iter().take(s.prior_attempts).cloned().collect();
        let touched: Vec<String> = prior.iter().flat_map(|a| a.files.clone()).collect();
        let prior_block = crate::domain::records::prior_attempts_block(&prior);
        let feedback = prompt::feedback_block(&picked.feedback).map(|f| {
            // What the PR holds now, when its commit is at hand: the model revises it.
            let current = picked.branch_at.as_deref().and_then(|at| {
                let diff = ws_git.query(["diff", "--no-color", "--no-ext-diff", &base_commit, at]).ok()??;
                Some(crate::infra::text::cut(&diff, 12_000))
            });
            let block = match current {
                Some(diff) => {
                    format!("{f}\nThe PR's current change (a diff against the base):\n```diff\n{diff}\n```\n")
                }
                None => f,
            };
            cx.secrets.redact(&block)
        });
        let reserved = [Some(prompt::SYSTEM), prior_block.as_deref(), feedback.as_deref()]
            .into_iter()
            .flatten()
            .map(|b| crate::adapters::model::client::estimate_tokens(b) as usize)
            .sum::<usize>()
            + 200;
        let prd_path = cx.pipeline.prd.path.to_string_lossy().into_owned();
        let budget = s.context_tokens.saturating_sub(reserved);
        let mut stored = context::Stored::new(cx.objects()?, &index);
        let tree =
            context::Tree { source: &mut stored, files: &all, index: &index, history: history.as_ref() };
        let ctx = context::choose(tree, gap, &touched, std::slice::from_ref(&prd_path), budget);
        let picks = ctx.files.iter().map(|f| f.pick.clone()).collect();
        let mut user = prompt::user_message(gap, &prd_path, &ctx, prior_block.as_deref());
        if let Some(feedback) = &feedback {
            // Untrusted like the rest: redacted, and after the task it cannot replace.
            user.push_str("\n\n");
            user.push_str(feedback);
        }
        let conversation = vec![ChatMessage::system(prompt::SYSTEM), ChatMessage::user(user)];
        let size: u64 =
            conversation.iter().map(|m| crate::adapters::model::client::estimate_tokens(&m.content)).sum();
        cx.model_use.get_or_insert_with(ModelUse::default).prompt_size_tokens = size;
        let whole = ctx.files.iter().filter(|f| f.pick.whole).count();
        tracing::info!(
            "prompt: about {size} tokens, {whole} file(s) in full, {} in part",
            ctx.files.len() - whole
        );
        Ok((conversation, picks))
    }
}

impl Propose<'_> {
    /// The ranking's index of the base, from the term counts kept by blob id: only what
    /// the cache lacks is read, from the object store.
    fn index_base(
        cx: &mut Services,
        tracked: &crate::infra::workspace::BaseFiles,
        cache_path: &std::path::Path,
    ) -> Result<context::Index, End> {
        let mut cache = context::TermCache::load(cache_path);
        let mut budget_left = context::INDEX_TOTAL_BYTES as u64;
        let missing: Vec<&str> = tracked
            .iter()
            .filter(|f| !f.link && f.size <= context::INDEX_BYTES as u64 && !cache.has(f.blob))
            .take_while(|f| {
                budget_left = budget_left.saturating_sub(f.size);
                budget_left > 0
            })
            .map(|f| f.blob)
            .collect();
        cx.objects()?.each(&missing, |blob, o| {
            cache.add(blob, o.as_ref().filter(|o| o.kind == "blob").map(|o| &o.bytes[..]))
        })?;
        let keep: std::collections::HashSet<&str> = tracked.iter().map(|f| f.blob).collect();
        if let Err(e) = cache.save(&keep) {
            tracing::warn!("cannot keep the context cache {}: {e}", cache_path.display());
        }
        // A file not counted (binary, too large, past the total) is ranked by its path.
        let files = tracked.iter().map(|f| context::IndexEntry {
            path: f.path,
            counts: if f.link { "-" } else { cache.get(f.blob).unwrap_or("-") },
            object: Some(context::IndexObject { blob: f.blob, size: f.size, link: f.link }),
        });
        Ok(context::Index::build(files))
    }
}

/// No usable proposal. During a repair, the cycle keeps the outcome of the attempt the
/// repair was for.
fn failed(after: Option<&End>, e: LadderError) -> End {
    let (outcome, reason, answered) = match e {
        LadderError::Budget(m) => (Outcome::SkippedCost, format!("budget exhausted: {m}"), true),
        LadderError::Ledger(e) => return End::internal("budget", e),
        LadderError::Failed { reason, answered } => {
            (Outcome::ModelFailed, format!("no model gave a usable proposal: {reason}"), answered)
        }
    };
    match after {
        Some(prev) => {
            End::new(prev.outcome, format!("{}; then the repair request failed: {reason}", prev.reason))
        }
        None if outcome == Outcome::SkippedCost => {
            End::new(outcome, reason.trim_start_matches("budget exhausted: ").to_string())
        }
        None if !answered => End::outage(outcome, reason),
        None => End::new(outcome, reason),
    }
}
