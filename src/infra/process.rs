//! Every subprocess prbot starts: git, test commands, `run:` steps, policy commands.
//!
//! Each child leads its own process group, so a timeout or a cancellation kills the
//! whole tree it spawned, not just the shell at its top. Project commands
//! ([`run_streamed`]) go further: their own session, output streamed to a log file with
//! a bounded window kept in memory, and every process they left behind ended when they
//! finish, including ones that called `setsid` (prbot is their subreaper).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Seek, Write};
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

    /// Project commands (`kill_on_cancel: false`) are not killed here: their waiter notices
    /// the cancellation and ends their tree with a grace period.
    fn register(&self, pgid: i32, kill_on_cancel: bool) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
        if !kill_on_cancel {
            return;
        }
        self.inner.groups.lock().unwrap().push(pgid);
        // A signal that landed between spawn and register must still reach this group.
        if self.is_cancelled() {
            kill_group(pgid);
        }
    }

    fn unregister(&self, pgid: i32) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pgid);
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
    /// Where the whole output went, for project commands.
    pub log: Option<std::path::PathBuf>,
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
    let (mut finished, stdout) = run_bytes(cmd, cancel)?;
    finished.stdout = String::from_utf8_lossy(&stdout).into_owned();
    Ok(finished)
}

/// Like [`run`], with stdout as the bytes the command wrote (`Finished::stdout` is empty).
pub fn run_bytes(cmd: Command<'_>, cancel: &Cancel) -> Result<(Finished, Vec<u8>), SpawnError> {
    let failed = |source| SpawnError { program: cmd.program.to_string(), source };
    // The command's input and output are files in memory rather than pipes: no thread
    // feeds or drains them, and no pipe a grandchild holds open keeps the reads waiting.
    let (mut stdout, mut stderr) = (memory_file().map_err(failed)?, memory_file().map_err(failed)?);
    let mut expr = group_leader(&cmd)
        .stdout_file(stdout.try_clone().map_err(failed)?)
        .stderr_file(stderr.try_clone().map_err(failed)?);
    expr = match cmd.stdin {
        Some(bytes) => {
            let mut stdin = memory_file().map_err(failed)?;
            stdin.write_all(&bytes).and_then(|()| stdin.rewind()).map_err(failed)?;
            expr.stdin_file(stdin)
        }
        None => expr.stdin_null(),
    };
    let started = Instant::now();
    let handle = expr.start().map_err(failed)?;
    let pgid = handle.pids().first().copied().unwrap_or(0) as i32;
    cancel.register(pgid, true);
    let (status, timed_out) = wait(&handle, started + cmd.timeout, cancel, || kill_group(pgid));
    cancel.unregister(pgid);
    // Whatever the leader did, leave no stray grandchildren behind.
    kill_group(pgid);
    let status = status.map_err(failed)?;
    let (out, err) =
        (read_from_start(&mut stdout).map_err(failed)?, read_from_start(&mut stderr).map_err(failed)?);
    let finished = Finished {
        code: status.code(),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        timed_out,
        cancelled: cancel.is_cancelled(),
        duration: started.elapsed(),
        log: None,
    };
    Ok((finished, out))
}

/// Waits for `handle` to exit; past `deadline`, or once `cancel` fires, `stop` ends it
/// first. The exit status, and whether the deadline was what ended it.
fn wait(
    handle: &duct::Handle,
    deadline: Instant,
    cancel: &Cancel,
    stop: impl Fn(),
) -> (std::io::Result<std::process::ExitStatus>, bool) {
    // Poll in short slices so a cancellation is noticed promptly.
    loop {
        let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
        match handle.wait_deadline(slice) {
            Ok(Some(out)) => return (Ok(out.status), false),
            Ok(None) => {}
            Err(e) => return (Err(e), false),
        }
        if cancel.is_cancelled() || Instant::now() >= deadline {
            let timed_out = !cancel.is_cancelled();
            stop();
            return (handle.wait().map(|out| out.status), timed_out);
        }
    }
}

/// An anonymous file in memory, closed on exec unless handed to a child; where the kernel
/// offers no `memfd_create` (or a seccomp filter refuses it), an unnamed temp file.
fn memory_file() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the descriptor it returns
    // is new and owned by nothing else.
    let fd = unsafe { libc::memfd_create(c"prbot".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return tempfile::tempfile();
    }
    // SAFETY: `fd` is a valid descriptor that this call now owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn read_from_start(file: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `cmd` as the leader of a process group of its own, so that its whole tree can be
/// killed, with its environment; its exit status is the caller's to judge.
fn group_leader(cmd: &Command<'_>) -> duct::Expression {
    let expr = duct::cmd(cmd.program, &cmd.args).dir(cmd.dir).unchecked().before_spawn(|c| {
        c.process_group(0);
        Ok(())
    });
    match &cmd.env {
        Some(env) => expr.full_env(env),
        None => expr,
    }
}

/// A child kept running to answer requests over its stdin and stdout (such as
/// `git cat-file --batch`), for as long as its owner holds it. Its group is killed when it
/// is dropped, on cancellation, and when one request (see [`Session::busy`]) takes longer
/// than its timeout, so a read from it ends (at end of file) instead of waiting forever.
/// Idle, it may wait as long as the cycle lasts.
pub struct Session {
    handle: duct::Handle,
    pgid: i32,
    cancel: Cancel,
    /// The child's stdin.
    pub input: std::io::BufWriter<os_pipe::PipeWriter>,
    /// The child's stdout.
    pub output: std::io::BufReader<os_pipe::PipeReader>,
    /// When the request under way began, in milliseconds after `started` (0: none).
    busy_since: Arc<std::sync::atomic::AtomicU64>,
    started: Instant,
    /// Dropped with the session, which stops the timeout's watch.
    _watch: std::sync::mpsc::Sender<()>,
}

/// A request under way on a [`Session`]; it ends when this is dropped.
pub struct Busy(Arc<std::sync::atomic::AtomicU64>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

impl Session {
    /// Starts `cmd` (its `stdin` is not used); its stderr is discarded.
    pub fn start(cmd: Command<'_>, cancel: &Cancel) -> Result<Session, SpawnError> {
        let fail = |source| SpawnError { program: cmd.program.to_string(), source };
        let (child_in, input) = os_pipe::pipe().map_err(fail)?;
        let (output, child_out) = os_pipe::pipe().map_err(fail)?;
        let expr = group_leader(&cmd).stdin_file(child_in).stdout_file(child_out).stderr_null();
        let handle = expr.start().map_err(fail)?;
        // The child's ends of the pipes go with the expression: once the child is gone,
        // reading its output ends instead of waiting on a writer that prbot holds.
        drop(expr);
        let pgid = handle.pids().first().copied().unwrap_or(0) as i32;
        cancel.register(pgid, true);
        let (watch, stop) = std::sync::mpsc::channel::<()>();
        let (timeout, started) = (cmd.timeout, Instant::now());
        let busy_since = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let busy = busy_since.clone();
        let tick = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
                let since = busy.load(Ordering::SeqCst);
                let now = started.elapsed().as_millis() as u64;
                if since != 0 && Duration::from_millis(now.saturating_sub(since)) > timeout {
                    kill_group(pgid);
                    return;
                }
            }
        });
        Ok(Session {
            handle,
            pgid,
            cancel: cancel.clone(),
            input: std::io::BufWriter::new(input),
            output: std::io::BufReader::new(output),
            busy_since,
            started,
            _watch: watch,
        })
    }

    /// Marks a request under way until the returned guard is dropped: past the timeout,
    /// the child is killed.
    pub fn busy(&self) -> Busy {
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        self.busy_since.store(now, Ordering::SeqCst);
        Busy(self.busy_since.clone())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        kill_group(self.pgid);
        let _ = self.handle.wait();
        self.cancel.unregister(self.pgid);
    }
}

/// Runs in the child between fork and exec, e.g. to enter a Landlock domain.
pub type PreExec = Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>;

/// A project command: what runs, and where its output goes.
pub struct Streamed<'a> {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub dir: &'a Path,
    pub env: HashMap<OsString, OsString>,
    pub timeout: Duration,
    pub log: &'a Path,
    pub pre_exec: Option<PreExec>,
}

/// How much of a command's output prbot keeps in memory: the start and the end. The
/// whole output is in the log file, up to [`LOG_CAP`].
pub const HEAD_BYTES: usize = 64 * 1024;
pub const TAIL_BYTES: usize = 1024 * 1024;
/// A log file stops growing here; the last [`TAIL_BYTES`] are still appended at the end.
pub const LOG_CAP: u64 = 128 * 1024 * 1024;
/// Between SIGTERM and SIGKILL for what a command leaves behind.
const GRACE: Duration = Duration::from_secs(2);

/// Runs a project command in its own session, streaming its output (stdout and stderr
/// interleaved, as a terminal shows them) to `log`, until it exits, times out or the
/// cycle is cancelled. Whatever it started is ended before this returns.
pub fn run_streamed(cmd: Streamed<'_>, cancel: &Cancel) -> Result<Finished, SpawnError> {
    let program = cmd.program.to_string_lossy().into_owned();
    let spawn_failed = |source| SpawnError { program: program.clone(), source };
    if let Some(dir) = cmd.log.parent() {
        std::fs::create_dir_all(dir).map_err(spawn_failed)?;
    }
    let log_file = std::fs::File::create(cmd.log).map_err(spawn_failed)?;
    let (reader, writer) = std::io::pipe().map_err(spawn_failed)?;
    let writer2 = writer.try_clone().map_err(spawn_failed)?;
    let pre_exec = Mutex::new(cmd.pre_exec);
    let expr = duct::cmd(&cmd.program, &cmd.args)
        .dir(cmd.dir)
        .full_env(cmd.env)
        .stdin_null()
        .stdout_file(writer)
        .stderr_file(writer2)
        .unchecked()
        .before_spawn(move |c| {
            let mut hook = pre_exec.lock().unwrap().take();
            // SAFETY: the closure only makes system calls (setsid, prctl, and the
            // sandbox's own), which are safe between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    if libc::setsid() < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    match hook.as_mut() {
                        Some(h) => h(),
                        None => Ok(()),
                    }
                });
            }
            Ok(())
        });
    let started = Instant::now();
    let handle = expr.start().map_err(spawn_failed)?;
    // Only the children hold the pipe's write end now.
    drop(expr);
    let leader = handle.pids().first().copied().unwrap_or(0) as i32;
    cancel.register(leader, false);
    let collector = Collector::spawn(reader, log_file);
    let (status, timed_out) = wait(&handle, started + cmd.timeout, cancel, || end_tree(leader));
    cancel.unregister(leader);
    // What the command left running (in the background, or in a session of its own).
    end_tree(leader);
    let window = collector.finish();
    let status = status.map_err(spawn_failed)?;
    Ok(Finished {
        code: status.code(),
        stdout: window,
        stderr: String::new(),
        timed_out,
        cancelled: cancel.is_cancelled(),
        duration: started.elapsed(),
        log: Some(cmd.log.to_path_buf()),
    })
}

/// Reads a command's output off its pipe: everything to the log file, the first
/// [`HEAD_BYTES`] and a ring of the last [`TAIL_BYTES`] to memory.
struct Collector {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<String>,
}

impl Collector {
    fn spawn(reader: std::io::PipeReader, log: std::fs::File) -> Collector {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || collect(reader, log, &flag));
        Collector { stop, thread }
    }

    /// Called once the command's tree is gone: drains what is left in the pipe, then
    /// stops even if a process that escaped still holds the pipe open.
    fn finish(self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

fn collect(reader: std::io::PipeReader, log: std::fs::File, stop: &AtomicBool) -> String {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let mut reader = reader;
    let mut log = std::io::BufWriter::with_capacity(64 * 1024, log);
    let mut head: Vec<u8> = Vec::new();
    let mut tail = Ring::new(TAIL_BYTES);
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut stopping_since: Option<Instant> = None;
    loop {
        let mut fds = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut fds, 1, 50) };
        if ready == 0 {
            if stop.load(Ordering::SeqCst) {
                // Nothing readable and the tree is gone (or the drain took too long).
                break;
            }
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if since.elapsed() > GRACE {
                break;
            }
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if total < LOG_CAP {
            let room = (LOG_CAP - total).min(n as u64) as usize;
            let _ = log.write_all(&chunk[..room]);
        }
        total += n as u64;
        let take = (HEAD_BYTES - head.len()).min(n);
        head.extend_from_slice(&chunk[..take]);
        tail.push(&chunk[take..]);
    }
    let tail = tail.into_vec();
    let omitted = total - head.len() as u64 - tail.len() as u64;
    if total > LOG_CAP {
        let _ = write!(
            log,
            "\n…(prbot: log cut at {LOG_CAP} bytes of {total}; the last {} follow)\n",
            tail.len()
        );
        let _ = log.write_all(&tail);
    }
    let _ = log.flush();
    let mut text = String::from_utf8_lossy(&head).into_owned();
    if omitted > 0 {
        text.push_str(&format!("\n…({omitted} bytes of output omitted here; the log has them)\n"));
    }
    text.push_str(&String::from_utf8_lossy(&tail));
    text
}

/// The last `cap` bytes written to it.
struct Ring {
    buf: Vec<u8>,
    cap: usize,
    /// Where the next byte goes once `buf` is full.
    next: usize,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring { buf: Vec::new(), cap, next: 0 }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        if bytes.len() >= self.cap {
            bytes = &bytes[bytes.len() - self.cap..];
            self.buf.clear();
            self.buf.extend_from_slice(bytes);
            self.next = 0;
            return;
        }
        let room = self.cap - self.buf.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        while !bytes.is_empty() {
            let take = (self.cap - self.next).min(bytes.len());
            self.buf[self.next..self.next + take].copy_from_slice(&bytes[..take]);
            self.next = (self.next + take) % self.cap;
            bytes = &bytes[take..];
        }
    }

    fn into_vec(mut self) -> Vec<u8> {
        self.buf.rotate_left(self.next);
        self.buf
    }
}

/// Ends `leader` and every process it left: SIGTERM, a short grace, then SIGKILL. Covers
/// its descendants and the orphans re-parented to prbot (its subreaper) that are not
/// prbot's own live commands.
pub fn end_tree(leader: i32) {
    if leader <= 0 {
        return;
    }
    kill_group_with(leader, libc::SIGTERM);
    let mut signalled: Vec<i32> = Vec::new();
    let until = Instant::now() + GRACE;
    // Most trees are gone within a millisecond or two; back off up to 20 ms.
    let mut pause = Duration::from_millis(1);
    loop {
        let tree = tree_of(leader);
        if tree.is_empty() {
            return;
        }
        for pid in &tree {
            if !signalled.contains(pid) {
                signal(*pid, libc::SIGTERM);
                signalled.push(*pid);
            }
        }
        reap(&tree, leader);
        if Instant::now() >= until {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    for _ in 0..100 {
        let tree = tree_of(leader);
        if tree.is_empty() {
            return;
        }
        kill_group(leader);
        for pid in &tree {
            signal(*pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
        reap(&tree, leader);
    }
}

/// Ends what a killed prbot left running for `work_dir`: processes whose environment
/// carries `PRBOT_SANDBOX=<work_dir>` (every project command's does), and orphans whose
/// current folder is inside `work_dir`. Run with the run lock held, before the workspace
/// is touched.
pub fn end_leftovers(work_dir: &Path) {
    let marker = format!("{}={}", SANDBOX_MARKER, work_dir.display());
    let me = std::process::id() as i32;
    for _ in 0..50 {
        let mut found = Vec::new();
        for (pid, ppid) in process_table() {
            if pid == me || ppid == me {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let marked = environ.split(|b| *b == 0).any(|var| var == marker.as_bytes());
            let orphan_inside = ppid == 1
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(work_dir));
            if marked || orphan_inside {
                found.push(pid);
            }
        }
        if found.is_empty() {
            return;
        }
        for pid in &found {
            signal(*pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The variable that marks every project command with the work folder of its cycle.
pub const SANDBOX_MARKER: &str = "PRBOT_SANDBOX";

/// The live processes of `leader`'s tree: its descendants, plus orphans adopted by prbot.
fn tree_of(leader: i32) -> Vec<i32> {
    let me = std::process::id() as i32;
    let table = process_table();
    let own = own_children();
    let mut roots: Vec<i32> = vec![leader];
    roots.extend(table.iter().filter(|(pid, ppid)| *ppid == me && !own.contains(pid)).map(|(pid, _)| *pid));
    let mut out: Vec<i32> = Vec::new();
    let mut queue: Vec<i32> = roots.clone();
    while let Some(p) = queue.pop() {
        if out.contains(&p) || !table.iter().any(|(pid, _)| *pid == p) {
            continue;
        }
        out.push(p);
        queue.extend(table.iter().filter(|(_, ppid)| *ppid == p).map(|(pid, _)| *pid));
    }
    // The leader itself is reaped by its own waiter; once it is a zombie it is done.
    out.retain(|p| !(*p == leader && is_zombie(*p)));
    out
}

/// (pid, parent pid) of every live process, zombies excluded unless they are ours.
fn process_table() -> Vec<(i32, i32)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses; the fields follow the last `)`.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state == "Z" && ppid != me {
            continue;
        }
        out.push((pid, ppid));
    }
    out
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Collects the exit status of adopted orphans, so none stays a zombie.
fn reap(pids: &[i32], leader: i32) {
    let own = own_children();
    for &pid in pids {
        if pid == leader || own.contains(&pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on a specific pid with WNOHANG has no memory-safety preconditions.
        unsafe {
            libc::waitpid(pid, &mut status, libc::WNOHANG);
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn kill_group_with(pgid: i32, sig: i32) {
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// The children prbot is waiting on right now (git, policy and project commands): never
/// mistaken for orphans.
fn own_children() -> Vec<i32> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        // A zombie has been killed already; only a running process counts.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    }

    fn session(script: &str, timeout: Duration, cancel: &Cancel) -> Session {
        let cmd = Command::new("sh", Path::new("/"), timeout).args(["-c", script]);
        Session::start(cmd, cancel).unwrap()
    }

    #[test]
    fn a_session_answers_until_dropped_and_leaves_nothing_running() {
        use std::io::{BufRead, Write};
        let cancel = Cancel::new();
        // The shell starts a grandchild of its own; the whole group must go.
        let mut s = session(
            "sleep 60 & echo $!; while read l; do echo \"got $l\"; done",
            Duration::from_secs(60),
            &cancel,
        );
        let mut line = String::new();
        s.output.read_line(&mut line).unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        for word in ["one", "two"] {
            writeln!(s.input, "{word}").unwrap();
            s.input.flush().unwrap();
            line.clear();
            s.output.read_line(&mut line).unwrap();
            assert_eq!(line, format!("got {word}\n"));
        }
        let leader = s.pgid;
        assert!(alive(leader) && alive(grandchild));
        drop(s);
        assert!(!alive(leader), "the session's process outlived it");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(grandchild), "a process the session started outlived it");
    }

    #[test]
    fn an_idle_session_outlives_its_timeout() {
        use std::io::{BufRead, Write};
        let mut s =
            session("while read l; do echo \"got $l\"; done", Duration::from_millis(100), &Cancel::new());
        std::thread::sleep(Duration::from_millis(400));
        let _busy = s.busy();
        writeln!(s.input, "late").unwrap();
        s.input.flush().unwrap();
        let mut line = String::new();
        s.output.read_line(&mut line).unwrap();
        assert_eq!(line, "got late\n");
    }

    #[test]
    fn a_session_past_its_timeout_or_cancelled_is_killed_and_reads_end() {
        use std::io::Read;
        for cancelled in [false, true] {
            let cancel = Cancel::new();
            let timeout = if cancelled { Duration::from_secs(60) } else { Duration::from_millis(200) };
            let mut s = session("sleep 60", timeout, &cancel);
            if cancelled {
                cancel.cancel();
            }
            let _busy = s.busy();
            let started = Instant::now();
            let mut rest = Vec::new();
            // Ends at end of file once the child is killed, instead of waiting a minute.
            assert_eq!(s.output.read_to_end(&mut rest).unwrap(), 0);
            assert!(started.elapsed() < Duration::from_secs(30), "cancelled: {cancelled}");
        }
    }

    #[test]
    fn a_command_returns_when_it_exits_though_a_child_still_holds_its_output() {
        let dir = std::env::temp_dir();
        let marker = format!("holds-output-{}", std::process::id());
        let script = format!("exec 3>&1; (sleep 30 # {marker}\n) & cat; echo err >&2");
        let cmd = Command::new("sh", &dir, Duration::from_secs(20)).args(["-c", &script]);
        let cmd = Command { stdin: Some(b"from stdin\n".to_vec()), ..cmd };
        let started = Instant::now();
        let out = run(cmd, &Cancel::new()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
        assert!(out.success() && !out.timed_out, "{out:?}");
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("from stdin\n", "err\n"));
        // The child in the background went with the command's group (SIGKILL lands at once,
        // but the process may take a moment to go).
        let left = || {
            process_table().iter().any(|(pid, _)| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
            })
        };
        let until = Instant::now() + Duration::from_secs(2);
        while left() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!left(), "the background child lives on");
    }

    #[test]
    fn the_ring_keeps_the_last_bytes_in_order() {
        for chunk in [1, 3, 7, 10, 25] {
            let mut ring = Ring::new(10);
            let data: Vec<u8> = (0..=99).collect();
            for c in data.chunks(chunk) {
                ring.push(c);
            }
            assert_eq!(ring.into_vec(), (90..=99).collect::<Vec<u8>>(), "chunks of {chunk}");
        }
        let mut short = Ring::new(10);
        short.push(b"abc");
        assert_eq!(short.into_vec(), b"abc");
    }
}
