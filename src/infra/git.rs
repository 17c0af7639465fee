//! A thin driver for the git CLI.
//!
//! Every call runs with hooks and fsmonitor off and with a scrubbed environment: prbot's
//! git never runs a program that a repository's config or hooks name, and never hands it
//! a secret.

use crate::infra::process::{self, Cancel, Command};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

const GIT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Spawn(#[from] process::SpawnError),
    #[error("`git {args}` failed ({status}): {stderr}")]
    Failed { args: String, status: String, stderr: String },
}

/// Settings forced on every call, whatever the repository's or the user's config says.
const SAFE_CONFIG: [&str; 4] = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"];

/// git, run in one directory.
#[derive(Clone)]
pub struct Git {
    dir: PathBuf,
    /// `GIT_DIR` and `GIT_WORK_TREE`, for prbot's clone: what the tree's `.git` says is
    /// never trusted.
    explicit: Option<(PathBuf, PathBuf)>,
    cancel: Cancel,
}

impl Git {
    pub fn new(dir: impl Into<PathBuf>, cancel: Cancel) -> Self {
        Git { dir: dir.into(), explicit: None, cancel }
    }

    /// git on a repository whose git directory lives apart from its working tree.
    pub fn with_git_dir(git_dir: impl Into<PathBuf>, work_tree: impl Into<PathBuf>, cancel: Cancel) -> Self {
        let work_tree = work_tree.into();
        Git { dir: work_tree.clone(), explicit: Some((git_dir.into(), work_tree)), cancel }
    }

    /// Runs git and returns its trimmed stdout.
    pub fn run<I, S>(&self, args: I) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin<I, S>(&self, args: I, stdin: Option<Vec<u8>>) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run_full(args, stdin, &[])
    }

    /// Runs git with extra variables, such as `GIT_CONFIG_*` settings for one command only.
    pub fn run_with_env<I, S>(&self, args: I, extra_env: &[(String, String)]) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.run_full(args, None, extra_env)
    }

    /// Runs git with stdin and extra variables.
    pub fn run_full<I, S>(
        &self,
        args: I,
        stdin: Option<Vec<u8>>,
        extra_env: &[(String, String)],
    ) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let out = self.run_bytes(args, stdin, extra_env)?;
        Ok(String::from_utf8_lossy(&out).trim_end().to_string())
    }

    /// Runs git and returns its stdout as it wrote it: for object contents.
    pub fn run_bytes<I, S>(
        &self,
        args: I,
        stdin: Option<Vec<u8>>,
        extra_env: &[(String, String)],
    ) -> Result<Vec<u8>, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = self.command(args.clone());
        if let Some(env) = &mut cmd.env {
            env.extend(extra_env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        }
        cmd.stdin = stdin;
        let (out, stdout) = process::run_bytes(cmd, &self.cancel)?;
        if out.success() {
            Ok(stdout)
        } else {
            Err(GitError::Failed {
                args: args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
                status: out.status_text(),
                stderr: out.stderr.trim().to_string(),
            })
        }
    }

    /// git with `args`, safe settings and a scrubbed environment, not yet started.
    fn command(&self, args: Vec<OsString>) -> Command<'_> {
        // git needs an existing folder to start in; a vanished worktree must not make
        // prbot's own clean-up fail.
        let dir = if self.dir.is_dir() { self.dir.as_path() } else { std::path::Path::new("/") };
        let mut cmd = Command::new("git", dir, GIT_TIMEOUT).args(SAFE_CONFIG).args(args);
        let mut env = git_env();
        if let Some((git_dir, work_tree)) = &self.explicit {
            env.insert("GIT_DIR".into(), git_dir.into());
            env.insert("GIT_WORK_TREE".into(), work_tree.into());
        }
        cmd.env = Some(env);
        cmd
    }

    /// Like `run`, but a non-zero exit is `Ok(None)`: for queries such as `rev-parse --verify`.
    pub fn query<I, S>(&self, args: I) -> Result<Option<String>, GitError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        match self.run(args) {
            Ok(s) => Ok(Some(s)),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One `git cat-file --batch` that serves every object read of a cycle: the PRD, the files
/// the ranking has not counted yet, the files the prompt shows. One process, however many
/// objects, and nothing read through the worktree (whose links could point anywhere).
pub struct Objects {
    session: process::Session,
}

/// An object as the store holds it.
pub struct Object {
    /// `blob`, `tree`, `commit` or `tag`.
    pub kind: String,
    pub bytes: Vec<u8>,
}

impl Objects {
    /// Starts the reader on `git`'s repository.
    pub fn open(git: &Git) -> Result<Objects, GitError> {
        let cmd = git.command(["cat-file", "--batch"].map(OsString::from).to_vec());
        Ok(Objects { session: process::Session::start(cmd, &git.cancel)? })
    }

    /// The object `name` names (an id, or `<commit>:<path>`); `None` when there is none.
    pub fn read(&mut self, name: &str) -> Result<Option<Object>, GitError> {
        let mut out = None;
        self.each(&[name], |_, object| out = object)?;
        Ok(out)
    }

    /// Calls `each` with every name of `names` and its object, in their order. The names
    /// are written while the answers are read, so neither side waits on a full pipe.
    pub fn each(
        &mut self,
        names: &[&str],
        mut each: impl FnMut(&str, Option<Object>),
    ) -> Result<(), GitError> {
        use std::io::Write;
        if let Some(bad) = names.iter().find(|n| n.is_empty() || n.contains(['\n', '\r'])) {
            // One name a line: anything else would desynchronise the answers.
            return Err(failed(format!("cannot ask for the object {bad:?}")));
        }
        let session = &mut self.session;
        let _busy = session.busy();
        let (input, output) = (&mut session.input, &mut session.output);
        let write = move |input: &mut std::io::BufWriter<os_pipe::PipeWriter>| -> std::io::Result<()> {
            for name in names {
                input.write_all(name.as_bytes())?;
                input.write_all(b"\n")?;
            }
            input.flush()
        };
        // The reader has taken every earlier name off the pipe, so names that fit in it are
        // written at once; more are written from a thread while the answers are read.
        if names.iter().map(|n| n.len() + 1).sum::<usize>() <= PIPE_BUF {
            write(input).map_err(|e| failed(e.to_string()))?;
            return answers(output, names, &mut each);
        }
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || write(input));
            answers(output, names, &mut each)?;
            writer.join().expect("the writer does not panic").map_err(|e| failed(e.to_string()))
        })
    }
}

/// What any pipe takes without blocking (POSIX's `PIPE_BUF`, Linux's smallest pipe).
const PIPE_BUF: usize = 4096;

/// Reads the reader's answer to each of `names`, in order.
fn answers(
    output: &mut std::io::BufReader<os_pipe::PipeReader>,
    names: &[&str],
    each: &mut impl FnMut(&str, Option<Object>),
) -> Result<(), GitError> {
    use std::io::{BufRead, Read};
    let mut header = Vec::new();
    for name in names {
        header.clear();
        let n = output.read_until(b'\n', &mut header).map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            return Err(failed(format!("it ended before answering {name:?}")));
        }
        // `<oid> <type> <size>`, or `<name> missing` (or `ambiguous`).
        let line = String::from_utf8_lossy(&header).trim_end_matches('\n').to_string();
        let object = if [" missing", " ambiguous"].iter().any(|s| line == format!("{name}{s}")) {
            None
        } else {
            let mut fields = line.split(' ');
            let (_, kind, size) = (fields.next(), fields.next(), fields.next());
            let (Some(kind), Some(Ok(size))) = (kind, size.map(str::parse::<usize>)) else {
                return Err(failed(format!("answered {line:?} for {name:?}")));
            };
            // The contents, then a newline.
            let mut bytes = vec![0; size + 1];
            output.read_exact(&mut bytes).map_err(|e| failed(e.to_string()))?;
            bytes.pop();
            Some(Object { kind: kind.to_string(), bytes })
        };
        each(name, object);
    }
    Ok(())
}

/// A file that one commit changes against another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub path: String,
    /// Its mode in the newer commit, as git writes it (`100644`); `000000` when removed.
    pub mode: String,
    /// It is not in the older commit.
    pub added: bool,
}

/// An entry of a tree object: `<octal mode> <name>\0<id as raw bytes>`.
struct Entry {
    mode: u32,
    id: Vec<u8>,
}

const TREE_MODE: u32 = 0o040000;

impl Objects {
    /// The files `to` changes against `from` (both commits), in path order. Only the trees
    /// that differ are read, so the cost follows the change, not the repository.
    pub fn diff(&mut self, from: &str, to: &str) -> Result<Vec<Changed>, GitError> {
        let (a, b) = (self.root_tree(from)?, self.root_tree(to)?);
        // The repository's hash (SHA-1 or SHA-256), read off an id it wrote.
        let id_len = a.len() / 2;
        let mut out = Vec::new();
        self.diff_trees(Some(&a), Some(&b), "", id_len, &mut out)?;
        out.sort_by(|x, y| x.path.cmp(&y.path));
        Ok(out)
    }

    fn root_tree(&mut self, commit: &str) -> Result<String, GitError> {
        let object = self.read(commit)?.filter(|o| o.kind == "commit");
        let text = object.map(|o| String::from_utf8_lossy(&o.bytes).into_owned()).unwrap_or_default();
        match text.lines().next().and_then(|l| l.strip_prefix("tree ")) {
            Some(tree) => Ok(tree.to_string()),
            None => Err(failed(format!("{commit} is not a commit"))),
        }
    }

    fn diff_trees(
        &mut self,
        a: Option<&str>,
        b: Option<&str>,
        prefix: &str,
        id_len: usize,
        out: &mut Vec<Changed>,
    ) -> Result<(), GitError> {
        let (a, b) = (self.tree(a, id_len)?, self.tree(b, id_len)?);
        let names: std::collections::BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
        for name in names {
            let (x, y) = (a.get(name), b.get(name));
            if let (Some(x), Some(y)) = (x, y) {
                if x.mode == y.mode && x.id == y.id {
                    continue;
                }
            }
            let path = format!("{prefix}{}", String::from_utf8_lossy(name));
            let tree = |e: Option<&Entry>| e.filter(|e| e.mode == TREE_MODE).map(|e| hex(&e.id));
            let (tree_a, tree_b) = (tree(x), tree(y));
            if tree_a.is_some() || tree_b.is_some() {
                self.diff_trees(tree_a.as_deref(), tree_b.as_deref(), &format!("{path}/"), id_len, out)?;
            }
            let (file_a, file_b) = (x.filter(|e| e.mode != TREE_MODE), y.filter(|e| e.mode != TREE_MODE));
            match (file_a, file_b) {
                (_, Some(y)) => {
                    out.push(Changed { path, mode: format!("{:06o}", y.mode), added: file_a.is_none() })
                }
                (Some(_), None) => out.push(Changed { path, mode: "000000".into(), added: false }),
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// The entries of tree `id` by name; none for `None`.
    fn tree(
        &mut self,
        id: Option<&str>,
        id_len: usize,
    ) -> Result<std::collections::HashMap<Vec<u8>, Entry>, GitError> {
        let mut entries = std::collections::HashMap::new();
        let Some(id) = id else { return Ok(entries) };
        let bytes = match self.read(id)? {
            Some(o) if o.kind == "tree" => o.bytes,
            _ => return Err(failed(format!("{id} is not a tree"))),
        };
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let bad = || failed(format!("tree {id} is damaged"));
            let space = rest.iter().position(|&c| c == b' ').ok_or_else(bad)?;
            let nul = rest.iter().position(|&c| c == 0).filter(|&n| n > space).ok_or_else(bad)?;
            let mode = std::str::from_utf8(&rest[..space]).ok().and_then(|m| u32::from_str_radix(m, 8).ok());
            let id = rest.get(nul + 1..nul + 1 + id_len).ok_or_else(bad)?.to_vec();
            // Names are compared as git stores them: two that differ only in bytes that are
            // not UTF-8 stay two.
            entries.insert(rest[space + 1..nul].to_vec(), Entry { mode: mode.ok_or_else(bad)?, id });
            rest = &rest[nul + 1 + id_len..];
        }
        Ok(entries)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn failed(stderr: String) -> GitError {
    GitError::Failed { args: "cat-file --batch".into(), status: "unreadable answer".into(), stderr }
}

/// prbot's environment without its secrets, and without what would point git at another
/// repository or prompt a human.
fn git_env() -> std::collections::HashMap<OsString, OsString> {
    let mut env = crate::infra::secrets::scrubbed_env(&[]);
    env.retain(|k, _| {
        !matches!(
            k.to_string_lossy().as_ref(),
            "GIT_DIR"
                | "GIT_WORK_TREE"
                | "GIT_INDEX_FILE"
                | "GIT_OBJECT_DIRECTORY"
                | "GIT_ALTERNATE_OBJECT_DIRECTORIES"
                | "GIT_COMMON_DIR"
                | "GIT_CONFIG_PARAMETERS"
                | "GIT_CONFIG_COUNT"
        )
    });
    env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
    env.insert("LC_ALL".into(), "C".into());
    env
}

/// `GIT_CONFIG_*` variables that make git send exactly one `Authorization` header to `url`,
/// a token's: every inherited extra header (plain, and the URL-specific ones a checkout
/// leaves, which git prefers) is reset first, then the token's is set at `url` itself.
/// The token never reaches a config file, a remote URL or argv.
pub fn token_auth_env(url: &str, token: &str) -> Vec<(String, String)> {
    use base64::Engine;
    // Gitea and GitHub both take a token as the password of basic auth.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let at_url = format!("http.{url}.extraHeader");
    vec![
        ("GIT_CONFIG_COUNT".into(), "3".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
        ("GIT_CONFIG_VALUE_0".into(), String::new()),
        ("GIT_CONFIG_KEY_1".into(), at_url.clone()),
        ("GIT_CONFIG_VALUE_1".into(), String::new()),
        ("GIT_CONFIG_KEY_2".into(), at_url),
        ("GIT_CONFIG_VALUE_2".into(), format!("Authorization: Basic {basic}")),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_ASKPASS".into(), "true".into()),
    ]
}
