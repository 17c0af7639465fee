//! The one owner of attempts: first proposal → up to `repair_attempts` repairs → one
//! escalation (when `escalate_to` is set) → the end. It decides whether a failure goes
//! back to the model, says what propose is asked next, and keeps each attempt's record.

use crate::adapters::model::ChatMessage;
use crate::config::settings::ProposeSettings;
use crate::domain::records::{Attempt, AttemptKind};
use crate::stages::{End, Request};

pub(crate) struct Attempts {
    repair_attempts: usize,
    can_escalate: bool,
    done: Vec<Attempt>,
    /// The attempt whose proposal is in play, not yet recorded.
    open: Option<Open>,
}

struct Open {
    kind: AttemptKind,
    model: String,
    /// The cycle's model tokens when it began.
    tokens_before: u64,
}

impl Attempts {
    /// For a pipeline whose propose stage has `settings`; without one, no repair is asked.
    pub fn new(settings: Option<&ProposeSettings>) -> Attempts {
        Attempts {
            repair_attempts: settings.map_or(0, |s| s.repair_attempts),
            can_escalate: settings.is_some_and(|s| s.escalate_to.is_some()),
            done: Vec::new(),
            open: None,
        }
    }

    /// A proposal of `kind` came from `model`; `tokens_before` is the cycle's model tokens
    /// before it was asked for.
    pub fn began(&mut self, kind: AttemptKind, model: &str, tokens_before: u64) {
        self.open = Some(Open { kind, model: model.to_string(), tokens_before });
    }

    /// After a failure the model may fix: the request for the next attempt, or `None`
    /// when the repairs and the escalation are spent (or no proposal was in play). The
    /// failed attempt is recorded either way.
    pub fn after_failure(
        &mut self,
        failure: &End,
        feedback: &str,
        conversation: Vec<ChatMessage>,
        tokens_now: u64,
        excerpt: String,
    ) -> Option<Request> {
        let kind = self.open.as_ref()?.kind;
        self.close(failure, tokens_now, excerpt);
        let repairs = self.done.iter().filter(|a| a.kind == AttemptKind::Repair).count();
        let next = match kind {
            AttemptKind::Escalation => return None,
            _ if repairs < self.repair_attempts => AttemptKind::Repair,
            _ if self.can_escalate => AttemptKind::Escalation,
            _ => return None,
        };
        Some(Request::Repair {
            kind: next,
            feedback: feedback.to_string(),
            conversation,
            after: failure.clone(),
        })
    }

    /// Records the attempt in play, if any, with how the cycle ended.
    pub fn close(&mut self, end: &End, tokens_now: u64, excerpt: String) {
        let Some(open) = self.open.take() else { return };
        self.done.push(Attempt {
            kind: open.kind,
            model: open.model,
            tokens: tokens_now.saturating_sub(open.tokens_before),
            outcome: end.outcome,
            reason: end.reason.clone(),
            excerpt,
        });
    }

    pub fn into_records(self) -> Vec<Attempt> {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outcome::Outcome;

    fn settings(repairs: usize, escalate: bool) -> ProposeSettings {
        let yaml = format!(
            "models: [m]\nrepair_attempts: {repairs}\n{}",
            if escalate { "escalate_to: big\n" } else { "" }
        );
        serde_yaml::from_str(&yaml).unwrap()
    }

    fn red() -> End {
        End::new(Outcome::TestsFailed, "`cargo test` failed: exit status 101")
    }

    /// Fails every attempt, as the engine would, and returns the kinds asked for.
    fn run_out(a: &mut Attempts) -> Vec<AttemptKind> {
        let mut kinds = vec![AttemptKind::First];
        let mut tokens = 0;
        a.began(AttemptKind::First, "m", tokens);
        loop {
            tokens += 100;
            match a.after_failure(&red(), "fix it", Vec::new(), tokens, "excerpt".into()) {
                Some(Request::Repair { kind, .. }) => {
                    kinds.push(kind);
                    a.began(kind, if kind == AttemptKind::Escalation { "big" } else { "m" }, tokens);
                }
                Some(Request::First) => panic!("a failure never asks for a first proposal"),
                None => return kinds,
            }
        }
    }

    #[test]
    fn first_then_repairs_then_one_escalation_then_the_end() {
        use AttemptKind::*;
        let mut a = Attempts::new(Some(&settings(2, true)));
        assert_eq!(run_out(&mut a), vec![First, Repair, Repair, Escalation]);
        let done = a.into_records();
        assert_eq!(done.len(), 4);
        assert!(done.iter().all(|r| r.tokens == 100 && r.outcome == Outcome::TestsFailed));
        assert_eq!(done[3].model, "big");
    }

    #[test]
    fn without_escalate_to_the_repairs_are_the_last_word() {
        use AttemptKind::*;
        let mut a = Attempts::new(Some(&settings(1, false)));
        assert_eq!(run_out(&mut a), vec![First, Repair]);
        let mut none = Attempts::new(Some(&settings(0, false)));
        assert_eq!(run_out(&mut none), vec![First]);
    }

    #[test]
    fn zero_repairs_with_escalate_to_escalates_once() {
        use AttemptKind::*;
        let mut a = Attempts::new(Some(&settings(0, true)));
        assert_eq!(run_out(&mut a), vec![First, Escalation]);
    }

    #[test]
    fn a_repair_carries_the_feedback_the_conversation_and_the_failure() {
        let mut a = Attempts::new(Some(&settings(1, false)));
        a.began(AttemptKind::First, "m", 0);
        let convo = vec![ChatMessage::system("s"), ChatMessage::assistant("{}")];
        match a.after_failure(&red(), "the test failed", convo.clone(), 50, String::new()) {
            Some(Request::Repair { kind, feedback, conversation, after }) => {
                assert_eq!(kind, AttemptKind::Repair);
                assert_eq!(feedback, "the test failed");
                assert_eq!(conversation.len(), convo.len());
                assert_eq!(after.outcome, Outcome::TestsFailed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_proposal_in_play_means_no_repair() {
        let mut a = Attempts::new(Some(&settings(3, true)));
        assert!(a.after_failure(&red(), "fix", Vec::new(), 0, String::new()).is_none());
        assert!(a.into_records().is_empty());
    }

    #[test]
    fn a_budget_stop_mid_repair_records_the_repair_with_that_end() {
        let mut a = Attempts::new(Some(&settings(2, false)));
        a.began(AttemptKind::First, "m", 0);
        assert!(a.after_failure(&red(), "fix", Vec::new(), 100, String::new()).is_some());
        // The repair request ran out of budget: propose ended the cycle with the first
        // failure's outcome, and no repair proposal was made.
        let end = End::new(Outcome::TestsFailed, "… then the repair request failed: budget exhausted");
        a.close(&end, 100, String::new());
        let done = a.into_records();
        assert_eq!(done.len(), 1, "only the attempt that made a proposal is recorded");
        assert_eq!(done[0].kind, AttemptKind::First);
    }

    #[test]
    fn cancelled_mid_repair_is_recorded_as_cancelled() {
        let mut a = Attempts::new(Some(&settings(2, false)));
        a.began(AttemptKind::First, "m", 0);
        let Some(Request::Repair { kind, .. }) =
            a.after_failure(&red(), "fix", Vec::new(), 100, String::new())
        else {
            panic!("a repair was expected")
        };
        a.began(kind, "m", 100);
        a.close(&End::new(Outcome::Cancelled, "cancelled while `cargo test` ran"), 160, String::new());
        let done = a.into_records();
        assert_eq!(done.len(), 2);
        assert_eq!(
            (done[1].kind, done[1].outcome, done[1].tokens),
            (AttemptKind::Repair, Outcome::Cancelled, 60)
        );
        // Closing twice records nothing more.
    }

    #[test]
    fn closing_twice_records_once() {
        let mut a = Attempts::new(None);
        a.began(AttemptKind::First, "m", 0);
        a.close(&red(), 10, String::new());
        a.close(&red(), 20, String::new());
        assert_eq!(a.into_records().len(), 1);
    }
}
