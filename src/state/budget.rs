//! The daily model budget: a ledger file per UTC day, safe across processes.

use crate::config::settings::BudgetConfig;
use crate::infra::fsutil;
use crate::state::remote::GitState;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ledger {
    pub day: String,
    pub calls: u64,
    pub tokens: u64,
    /// Dollars spent, for models with prices.
    #[serde(default)]
    pub usd: f64,
    /// New PRs opened this day, for `pr.max_per_day`.
    #[serde(default)]
    pub prs_opened: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(transparent)]
    State(#[from] crate::state::remote::StateError),
    #[error("daily model budget exhausted: {0}")]
    Exhausted(String),
    #[error("cannot use the budget ledger {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the budget ledger {path} is corrupt ({source}); fix or remove it")]
    Corrupt { path: PathBuf, source: serde_json::Error },
}

/// What a model call may cost, or did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charge {
    pub tokens: u64,
    pub usd: f64,
}

/// A call's worst case, held in the ledger of the UTC day it was reserved on until the
/// call's real cost replaces it.
#[derive(Debug, Clone, Copy)]
#[must_use = "a reservation is settled with the call's real cost"]
pub struct Reservation {
    day: NaiveDate,
    worst: Charge,
}

/// One new PR counted against `pr.max_per_day` before it is opened.
#[derive(Debug, Clone, Copy)]
#[must_use = "a PR reservation is released when no new PR was opened"]
pub struct PrReservation {
    day: NaiveDate,
}

/// The ledger for one state directory.
#[derive(Clone)]
pub struct Budget {
    dir: PathBuf,
    limits: BudgetConfig,
    /// With the git backend, the remote ref is the ledger; the folder keeps a copy.
    git: Option<GitState>,
}

impl Budget {
    pub fn new(state_dir: &Path, limits: BudgetConfig) -> Self {
        Budget { dir: state_dir.to_path_buf(), limits, git: None }
    }

    pub fn with_git(mut self, git: Option<GitState>) -> Self {
        self.git = git;
        self
    }

    fn file_name(day: NaiveDate) -> String {
        format!("cost-{}.json", day.format("%Y-%m-%d"))
    }

    fn today() -> NaiveDate {
        Utc::now().date_naive()
    }

    pub fn ledger_path(&self, day: NaiveDate) -> PathBuf {
        self.dir.join(Self::file_name(day))
    }

    /// Today's ledger as it stands.
    pub fn today_ledger(&self) -> Result<Ledger, BudgetError> {
        self.read(Self::today())
    }

    /// `Err(Exhausted)` when no further call may be made today.
    pub fn check(&self) -> Result<Ledger, BudgetError> {
        let l = self.today_ledger()?;
        self.verdict(&l)?;
        Ok(l)
    }

    fn verdict(&self, l: &Ledger) -> Result<(), BudgetError> {
        if l.calls >= self.limits.calls_per_day {
            return Err(BudgetError::Exhausted(format!(
                "{} of {} model calls used on {} (UTC)",
                l.calls, self.limits.calls_per_day, l.day
            )));
        }
        if l.tokens >= self.limits.tokens_per_day {
            return Err(BudgetError::Exhausted(format!(
                "{} of {} tokens used on {} (UTC)",
                l.tokens, self.limits.tokens_per_day, l.day
            )));
        }
        if let Some(cap) = self.limits.usd_per_day {
            if l.usd >= cap {
                return Err(BudgetError::Exhausted(format!(
                    "${:.4} of ${cap:.4} spent on {} (UTC)",
                    l.usd, l.day
                )));
            }
        }
        Ok(())
    }

    /// Takes one call and its worst case from today's budget, in the same atomic update
    /// that checks the caps, or refuses: no two runners can pass a cap together.
    pub fn reserve(&self, worst: Charge) -> Result<Reservation, BudgetError> {
        let day = Self::today();
        self.update(day, |l, me| {
            me.verdict(l)?;
            me.fits(l, worst)?;
            l.calls += 1;
            l.tokens += worst.tokens;
            l.usd += worst.usd;
            Ok(())
        })?;
        Ok(Reservation { day, worst })
    }

    /// Replaces a reservation with what the call really cost, on the reservation's day.
    pub fn settle(&self, r: Reservation, actual: Charge) -> Result<Ledger, BudgetError> {
        self.update(r.day, |l, _| {
            l.tokens = (l.tokens + actual.tokens).saturating_sub(r.worst.tokens);
            l.usd = (l.usd + actual.usd - r.worst.usd).max(0.0);
            Ok(())
        })
    }

    /// Counts a new PR before it is opened, or refuses at `max_per_day`.
    pub fn reserve_pr(&self, max_per_day: u64) -> Result<PrReservation, BudgetError> {
        let day = Self::today();
        self.update(day, |l, _| {
            if l.prs_opened >= max_per_day {
                return Err(BudgetError::Exhausted(format!(
                    "{} PRs were opened today (UTC), and pr.max_per_day is {max_per_day}",
                    l.prs_opened
                )));
            }
            l.prs_opened += 1;
            Ok(())
        })?;
        Ok(PrReservation { day })
    }

    /// Gives back a PR reservation when no new PR was opened after all.
    pub fn release_pr(&self, r: PrReservation) -> Result<Ledger, BudgetError> {
        self.update(r.day, |l, _| {
            l.prs_opened = l.prs_opened.saturating_sub(1);
            Ok(())
        })
    }

    /// Whether a call that may cost `worst` fits under the token and dollar caps.
    fn fits(&self, l: &Ledger, worst: Charge) -> Result<(), BudgetError> {
        if l.tokens + worst.tokens > self.limits.tokens_per_day {
            return Err(BudgetError::Exhausted(format!(
                "{} of {} tokens used on {} (UTC), and the next call may take up to {}",
                l.tokens, self.limits.tokens_per_day, l.day, worst.tokens
            )));
        }
        if let Some(cap) = self.limits.usd_per_day {
            if l.usd + worst.usd > cap {
                return Err(BudgetError::Exhausted(format!(
                    "${:.4} of ${cap:.4} spent on {} (UTC), and the next call may cost up to ${:.4}",
                    l.usd, l.day, worst.usd
                )));
            }
        }
        Ok(())
    }

    fn update(
        &self,
        day: NaiveDate,
        f: impl Fn(&mut Ledger, &Self) -> Result<(), BudgetError>,
    ) -> Result<Ledger, BudgetError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BudgetError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.ledger_path(day);
        // Held until the new ledger is written; the remote ref needs no lock.
        let _lock = match &self.git {
            Some(_) => None,
            None => {
                let lock_path = self.dir.join("ledger.lock");
                let lock = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(io(&lock_path))?;
                lock.lock().map_err(io(&lock_path))?;
                Some(lock)
            }
        };
        let ledger = match &self.git {
            Some(git) => {
                let name = Self::file_name(day);
                let result = std::cell::RefCell::new(None);
                git.update("ledger", |read| {
                    let mut l = match read(&name)? {
                        Some(text) => parse(&path, text.as_bytes())?,
                        None => Self::empty(day),
                    };
                    f(&mut l, self)?;
                    let json = serde_json::to_string_pretty(&l).expect("ledger serialises");
                    *result.borrow_mut() = Some(l);
                    Ok::<_, BudgetError>(vec![(name.clone(), json)])
                })?;
                result.into_inner().expect("the update ran")
            }
            None => {
                let mut l = self.read(day)?;
                f(&mut l, self)?;
                l
            }
        };
        let json = serde_json::to_vec_pretty(&ledger).expect("ledger serialises");
        fsutil::write_atomic(&path, &json).map_err(io(&path))?;
        Ok(ledger)
    }

    fn empty(day: NaiveDate) -> Ledger {
        Ledger { day: day.format("%Y-%m-%d").to_string(), ..Ledger::default() }
    }

    /// The ledgers of `days`, in their order; the state ref is fetched once for all.
    pub fn ledgers(&self, days: &[NaiveDate]) -> Result<Vec<Ledger>, BudgetError> {
        if let Some(git) = &self.git {
            let commit = git.fetch()?;
            return days
                .iter()
                .map(|day| {
                    let Some(commit) = &commit else { return Ok(Self::empty(*day)) };
                    match git.read(commit, &Self::file_name(*day))? {
                        Some(text) => parse(&self.ledger_path(*day), text.as_bytes()),
                        None => Ok(Self::empty(*day)),
                    }
                })
                .collect();
        }
        days.iter().map(|d| self.read(*d)).collect()
    }

    fn read(&self, day: NaiveDate) -> Result<Ledger, BudgetError> {
        let path = self.ledger_path(day);
        if let Some(git) = &self.git {
            let Some(commit) = git.fetch()? else { return Ok(Self::empty(day)) };
            return match git.read(&commit, &Self::file_name(day))? {
                Some(text) => parse(&path, text.as_bytes()),
                None => Ok(Self::empty(day)),
            };
        }
        match fsutil::read_regular(&path) {
            Ok(bytes) => parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::empty(day)),
            Err(source) => Err(BudgetError::Io { path, source }),
        }
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Ledger, BudgetError> {
    serde_json::from_slice(bytes).map_err(|source| BudgetError::Corrupt { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(dir: &Path, calls: u64, tokens: u64, usd: Option<f64>) -> Budget {
        Budget::new(dir, BudgetConfig { calls_per_day: calls, tokens_per_day: tokens, usd_per_day: usd })
    }

    fn worst(tokens: u64, usd: f64) -> Charge {
        Charge { tokens, usd }
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(dir.path(), 5, 1_000_000, None);
        let granted: usize = std::thread::scope(|s| {
            let hs: Vec<_> =
                (0..16).map(|_| s.spawn(|| b.reserve(worst(10, 0.0)).is_ok() as usize)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 5);
        assert_eq!(b.today_ledger().unwrap().calls, 5);
        assert!(matches!(b.check(), Err(BudgetError::Exhausted(_))));
    }

    #[test]
    fn the_worst_case_is_held_until_settled_so_tokens_never_pass_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(dir.path(), 100, 1_000, None);
        // Three calls that may take 400 each: only two fit, whatever they end up using.
        let r1 = b.reserve(worst(400, 0.0)).unwrap();
        let r2 = b.reserve(worst(400, 0.0)).unwrap();
        assert!(
            matches!(b.reserve(worst(400, 0.0)), Err(BudgetError::Exhausted(m)) if m.contains("800 of 1000 tokens"))
        );
        b.settle(r1, worst(150, 0.0)).unwrap();
        b.settle(r2, worst(100, 0.0)).unwrap();
        assert_eq!(b.today_ledger().unwrap().tokens, 250, "the real cost replaces the reservation");
        let r3 = b.reserve(worst(400, 0.0)).unwrap();
        b.settle(r3, worst(400, 0.0)).unwrap();
        assert_eq!(b.today_ledger().unwrap().tokens, 650);
    }

    #[test]
    fn dollars_are_reserved_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(dir.path(), 5, 1_000_000, Some(0.01));
        let r = b.reserve(worst(10, 0.008)).unwrap();
        assert!(
            matches!(b.reserve(worst(10, 0.008)), Err(BudgetError::Exhausted(m)) if m.contains("$0.0080 of $0.0100"))
        );
        b.settle(r, worst(10, 0.001)).unwrap();
        assert!(b.reserve(worst(10, 0.008)).is_ok());
    }

    #[test]
    fn a_reservation_settles_on_the_day_it_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(dir.path(), 5, 1_000, None);
        let yesterday = Budget::today().pred_opt().unwrap();
        let r = Reservation { day: yesterday, worst: worst(300, 0.0) };
        b.update(yesterday, |l, _| {
            l.calls += 1;
            l.tokens += 300;
            Ok(())
        })
        .unwrap();
        b.settle(r, worst(120, 0.0)).unwrap();
        assert_eq!(b.read(yesterday).unwrap().tokens, 120);
        assert_eq!(b.today_ledger().unwrap().tokens, 0, "nothing lands on the next day");
    }

    #[test]
    fn prs_are_reserved_before_they_are_opened_and_given_back_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(dir.path(), 5, 1_000, None);
        let granted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6).map(|_| s.spawn(|| b.reserve_pr(2).is_ok() as usize)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 2);
        let again = b.reserve_pr(3).unwrap();
        b.release_pr(again).unwrap();
        assert_eq!(b.today_ledger().unwrap().prs_opened, 2);
    }

    #[test]
    fn an_unreadable_ledger_is_an_error_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget(dir.path(), 5, 1_000, None);
        std::fs::write(b.ledger_path(Budget::today()), "{ not json").unwrap();
        assert!(matches!(b.reserve(worst(1, 0.0)), Err(BudgetError::Corrupt { .. })));
        assert!(matches!(b.check(), Err(BudgetError::Corrupt { .. })));
    }
}
