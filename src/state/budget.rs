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

    /// Takes one call from today's budget, or refuses. Held across processes by a file lock.
    pub fn reserve_call(&self) -> Result<Ledger, BudgetError> {
        self.update(|l, me| {
            me.verdict(l)?;
            l.calls += 1;
            Ok(())
        })
    }

    /// Adds what a call used.
    pub fn add_usage(&self, tokens: u64, usd: f64) -> Result<Ledger, BudgetError> {
        self.update(|l, _| {
            l.tokens += tokens;
            l.usd += usd;
            Ok(())
        })
    }

    /// Counts a newly opened PR.
    pub fn add_pr(&self) -> Result<Ledger, BudgetError> {
        self.update(|l, _| {
            l.prs_opened += 1;
            Ok(())
        })
    }

    fn update(
        &self,
        f: impl Fn(&mut Ledger, &Self) -> Result<(), BudgetError>,
    ) -> Result<Ledger, BudgetError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BudgetError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let day = Self::today();
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

    fn read(&self, day: NaiveDate) -> Result<Ledger, BudgetError> {
        let path = self.ledger_path(day);
        if let Some(git) = &self.git {
            let Some(commit) = git.fetch()? else { return Ok(Self::empty(day)) };
            return match git.read(&commit, &Self::file_name(day))? {
                Some(text) => parse(&path, text.as_bytes()),
                None => Ok(Self::empty(day)),
            };
        }
        match std::fs::read(&path) {
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

    #[test]
    fn concurrent_reservations_never_exceed_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::new(
            dir.path(),
            BudgetConfig { calls_per_day: 5, tokens_per_day: 1_000, usd_per_day: None },
        );
        let granted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16).map(|_| s.spawn(|| b.reserve_call().is_ok() as usize)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 5);
        assert_eq!(b.today_ledger().unwrap().calls, 5);
        assert!(matches!(b.check(), Err(BudgetError::Exhausted(_))));
    }

    #[test]
    fn dollars_exhaust_too() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::new(
            dir.path(),
            BudgetConfig { calls_per_day: 5, tokens_per_day: 1_000_000, usd_per_day: Some(0.01) },
        );
        b.reserve_call().unwrap();
        b.add_usage(10, 0.02).unwrap();
        assert!(
            matches!(b.reserve_call(), Err(BudgetError::Exhausted(m)) if m.contains("$0.0200 of $0.0100"))
        );
    }

    #[test]
    fn tokens_exhaust_too() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::new(
            dir.path(),
            BudgetConfig { calls_per_day: 5, tokens_per_day: 100, usd_per_day: None },
        );
        b.reserve_call().unwrap();
        b.add_usage(150, 0.0).unwrap();
        assert!(
            matches!(b.reserve_call(), Err(BudgetError::Exhausted(m)) if m.contains("150 of 100 tokens"))
        );
    }
}
