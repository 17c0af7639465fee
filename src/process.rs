//! Every subprocess prbot starts: git, test commands, `run:` steps, policy commands.
//!
//! Each child leads its own process group, so a timeout or a cancellation kills the
//! whole tree it spawned, not just the shell at its top.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set once SIGINT or SIGTERM arrives; every running child group is killed.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    groups: Mutex<Vec<i32>>,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        for pgid in self.inner.groups.lock().unwrap().iter() {
            kill_group(*pgid);
        }
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    fn register(&self, pgid: i32) {
        self.inner.groups.lock().unwrap().push(pgid);
        // A signal that landed between spawn and register must still reach this group.
        if self.is_cancelled() {
            kill_group(pgid);
        }
    }

    fn unregister(&self, pgid: i32) {
        self.inner.groups.lock().unwrap().retain(|p| *p != pgid);
    }
}

/// Called once at start: no other process of the same user may read prbot's memory or
/// `/proc/<pid>/environ`, and orphans of the commands prbot runs come back to prbot
/// (so none can slip away by double-forking).
pub fn harden_self() {
    // SAFETY: prctl with integer arguments has no memory-safety preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// What to run and how.
pub struct Command<'a> {
    pub program: &'a str,
    pub args: Vec<OsString>,
    pub dir: &'a Path,
    /// `None` inherits prbot's environment; `Some` replaces it entirely.
    pub env: Option<HashMap<OsString, OsString>>,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl<'a> Command<'a> {
    pub fn new(program: &'a str, dir: &'a Path, timeout: Duration) -> Self {
        Command { program, args: Vec::new(), dir, env: None, stdin: None, timeout }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// How a finished (or killed) child ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// stderr and stdout together, stderr first, since that is where failures go.
    pub fn combined(&self) -> String {
        let mut s = String::with_capacity(self.stdout.len() + self.stderr.len() + 1);
        s.push_str(&self.stdout);
        if !self.stdout.is_empty() && !self.stdout.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&self.stderr);
        s
    }

    pub fn status_text(&self) -> String {
        if self.cancelled {
            "cancelled".into()
        } else if self.timed_out {
            format!(
                "timed out after {}",
                humantime::format_duration(Duration::from_secs(self.duration.as_secs()))
            )
        } else {
            match self.code {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".into(),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not start `{program}`: {source}")]
pub struct SpawnError {
    pub program: String,
    #[source]
    pub source: std::io::Error,
}

/// Runs a command to completion, its timeout or a cancellation, whichever comes first.
pub fn run(cmd: Command<'_>, cancel: &Cancel) -> Result<Finished, SpawnError> {
    let mut expr = duct::cmd(cmd.program, &cmd.args)
        .dir(cmd.dir)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .before_spawn(|c| {
            c.process_group(0);
            Ok(())
        });
    if let Some(env) = cmd.env {
        expr = expr.full_env(env);
    }
    expr = match cmd.stdin {
        Some(bytes) => expr.stdin_bytes(bytes),
        None => expr.stdin_null(),
    };
    let started = Instant::now();
    let handle = expr.start().map_err(|source| SpawnError { program: cmd.program.to_string(), source })?;
    let pgid = handle.pids().first().copied().unwrap_or(0) as i32;
    cancel.register(pgid);
    let deadline = started + cmd.timeout;
    let mut timed_out = false;
    // Poll in short slices so a cancellation is noticed promptly.
    let output = loop {
        let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
        match handle.wait_deadline(slice) {
            Ok(Some(out)) => break Ok(out.clone()),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if cancel.is_cancelled() || Instant::now() >= deadline {
            timed_out = !cancel.is_cancelled();
            kill_group(pgid);
            break handle.wait().cloned();
        }
    };
    cancel.unregister(pgid);
    // Whatever the leader did, leave no stray grandchildren behind.
    kill_group(pgid);
    let output = output.map_err(|source| SpawnError { program: cmd.program.to_string(), source })?;
    Ok(Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        timed_out,
        cancelled: cancel.is_cancelled(),
        duration: started.elapsed(),
    })
}
