//! The user's repository, and prbot's own clone of it.
//!
//! prbot keeps one checkout per repository outside the user's tree and resets it to the
//! base commit when a cycle first uses it, whatever the last cycle (or a killed one) left:
//! one reset per cycle. A stable path keeps build caches warm; the reset keeps every cycle
//! as clean as a fresh checkout.

use crate::infra::git::{Git, GitError};
use crate::infra::process::Cancel;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The user's repository. prbot only reads it, and writes refs and files under `.git/`.
#[derive(Clone, Debug)]
pub struct Repo {
    pub root: PathBuf,
    pub git_dir: PathBuf,
    /// What `HEAD` was when prbot started; `None` before the first commit.
    pub head: Option<Head>,
}

/// The user's `HEAD`, as discovery saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub commit: String,
    /// `refs/heads/<name>`, or `None` when detached.
    pub branch: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{0} is not inside a git repository (run prbot from a clone, or pass --repo)")]
    NotARepo(PathBuf),
    #[error("{0} is a bare repository; prbot needs a clone with a working tree")]
    Bare(PathBuf),
    #[error(transparent)]
    Git(#[from] GitError),
}

impl Repo {
    pub fn discover(dir: &Path) -> Result<Repo, RepoError> {
        let git = Git::new(dir, Cancel::new());
        if !dir.is_dir() {
            return Err(RepoError::NotARepo(dir.to_path_buf()));
        }
        // One git process in the common case: the common git dir, the top level and HEAD
        // (its commit and branch; the trailing `--` keeps a file called HEAD from making it
        // ambiguous). Before the first commit that fails, and a bare repository has no top
        // level: only then ask which it is.
        let paths = ["rev-parse", "--path-format=absolute", "--git-common-dir", "--show-toplevel"];
        let with_head = [&paths[..], &["HEAD", "--symbolic-full-name", "HEAD", "--"]].concat();
        if let Some(out) = git.query(with_head)? {
            let lines: Vec<&str> = out.lines().collect();
            if let [git_dir, root, commit, name, ..] = lines[..] {
                let branch = name.starts_with("refs/heads/").then(|| name.to_string());
                let head = Some(Head { commit: commit.to_string(), branch });
                return Ok(Repo { root: PathBuf::from(root), git_dir: PathBuf::from(git_dir), head });
            }
        }
        let Some(out) = git.query(paths)? else {
            if git.query(["rev-parse", "--is-bare-repository"])?.as_deref() == Some("true") {
                return Err(RepoError::Bare(dir.to_path_buf()));
            }
            return Err(RepoError::NotARepo(dir.to_path_buf()));
        };
        let mut lines = out.lines();
        let (Some(git_dir), Some(root)) = (lines.next(), lines.next()) else {
            return Err(RepoError::NotARepo(dir.to_path_buf()));
        };
        Ok(Repo { root: PathBuf::from(root), git_dir: PathBuf::from(git_dir), head: None })
    }

    pub fn git(&self, cancel: &Cancel) -> Git {
        Git::new(&self.root, cancel.clone())
    }

    /// The same repository with HEAD read again; when that fails, with HEAD unknown, so
    /// that whoever needs it asks git (and reports what git says).
    pub fn refreshed(&self) -> Repo {
        Repo::discover(&self.root).unwrap_or_else(|_| Repo { head: None, ..self.clone() })
    }

    /// Where prbot's records and ledgers live unless the pipeline says otherwise.
    pub fn default_state_dir(&self) -> PathBuf {
        self.git_dir.join("prbot")
    }

    /// A folder of prbot's own for this repository, outside its tree: in the user's cache
    /// folder (`$XDG_CACHE_HOME`, else `~/.cache`), else in prbot's folder in `.git`.
    pub fn default_work_dir(&self) -> PathBuf {
        let hash = Sha256::digest(self.git_dir.to_string_lossy().as_bytes());
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let name: String = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect())
            .unwrap_or_default();
        let cache =
            std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")).filter(|p| p.is_absolute())
            });
        match cache {
            Some(c) => c.join("prbot").join(format!("{name}-{short}")),
            None => self.git_dir.join("prbot").join("work"),
        }
    }

    /// Tracked files with uncommitted changes, staged or not. Untracked files don't count:
    /// the cycle starts from a commit, so they cannot leak into it.
    pub fn dirty_files(&self, cancel: &Cancel, exclude: &[PathBuf]) -> Result<Vec<String>, GitError> {
        let mut args: Vec<String> = ["status", "--porcelain", "-uno", "--", "."].map(String::from).to_vec();
        for e in exclude {
            if let Ok(rel) = e.strip_prefix(&self.root) {
                if !rel.as_os_str().is_empty() {
                    args.push(format!(":(exclude){}", rel.display()));
                }
            }
        }
        let out = self.git(cancel).run(args)?;
        Ok(out.lines().map(|l| l.get(3..).unwrap_or(l).to_string()).collect())
    }
}

/// prbot's checkout for one cycle: a private repository of its own, whose objects come
/// from the user's repository through `objects/info/alternates` (nothing is copied).
///
/// Its git directory (`clone.git`) lives beside the working tree (`worktree`), not in it,
/// so a sandbox can let project code write the tree but not the repository: no hook, no
/// config, no ref of prbot's can be planted. The user's `.git` is not shared at all.
#[derive(Clone)]
pub struct Workspace {
    pub path: PathBuf,
    /// The clone's git directory.
    pub git_dir: PathBuf,
    /// Shared across cycles, for build caches such as `CARGO_TARGET_DIR`.
    pub cache_dir: PathBuf,
    pub base_commit: String,
    git: Git,
    repo_git: Git,
    /// The user's object store, where prbot's commits are written.
    objects: PathBuf,
}

/// A file of the base commit, as `ls-tree` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedFile<'a> {
    pub path: &'a str,
    pub blob: &'a str,
    pub size: u64,
    /// A symbolic link: its blob is the link's target.
    pub link: bool,
}

/// The base commit's files, as `ls-tree` lists them: the listing as it was read, and where each
/// file's fields lie in it, so that 20,000 files cost one string, not 40,000.
pub struct BaseFiles {
    text: String,
    files: Vec<Slot>,
}

struct Slot {
    path: std::ops::Range<usize>,
    blob: std::ops::Range<usize>,
    size: u64,
    link: bool,
}

impl BaseFiles {
    /// Reads `ls-tree -r -l -z` output from `at` in `text`: `<mode> <type> <object>
    /// <size>\t<path>`, the size padded. Submodules (`commit`) are not files.
    fn parse(text: String, at: usize) -> BaseFiles {
        let mut files = Vec::with_capacity(text.len().saturating_sub(at) / 80);
        for entry in text[at..].split('\0') {
            let Some((meta, path)) = entry.split_once('\t') else { continue };
            let mut fields = meta.split(' ').filter(|f| !f.is_empty());
            let (Some(mode), Some("blob"), Some(blob), Some(size)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            // Where a field, a slice of `text`, lies in it.
            let range = |field: &str| {
                let from = field.as_ptr() as usize - text.as_ptr() as usize;
                from..from + field.len()
            };
            files.push(Slot {
                path: range(path),
                blob: range(blob),
                size: size.parse().unwrap_or(u64::MAX),
                link: mode == "120000",
            });
        }
        BaseFiles { text, files }
    }

    fn file(&self, slot: &Slot) -> TrackedFile<'_> {
        TrackedFile {
            path: &self.text[slot.path.clone()],
            blob: &self.text[slot.blob.clone()],
            size: slot.size,
            link: slot.link,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = TrackedFile<'_>> + '_ {
        self.files.iter().map(|s| self.file(s))
    }
}

impl Workspace {
    /// The clone for `base_commit` (a commit id, resolved by the caller) at `work_dir`,
    /// made if needed. Its worktree is as the last cycle left it until [`Workspace::reset`].
    pub fn open(
        repo: &Repo,
        work_dir: &Path,
        base_commit: &str,
        cancel: &Cancel,
    ) -> Result<Workspace, GitError> {
        let repo_git = repo.git(cancel);
        let base_commit = base_commit.to_string();
        private_dir(work_dir)?;
        let path = work_dir.join("worktree");
        let git_dir = work_dir.join("clone.git");
        let cache_dir = work_dir.join("cache");
        std::fs::create_dir_all(&cache_dir).map_err(|e| io_failed("create the cache folder", e))?;
        let objects = repo.git_dir.join("objects");
        let git = Git::with_git_dir(&git_dir, &path, cancel.clone());
        if !Self::belongs_to(&git_dir, &objects) {
            // Not ours, half made, or an older layout (a linked worktree): start again.
            for stale in [&path, &git_dir] {
                if std::fs::symlink_metadata(stale).is_ok() {
                    std::fs::remove_dir_all(stale).map_err(|e| io_failed("remove a stale checkout", e))?;
                }
            }
            if repo.git_dir.join("worktrees").is_dir() {
                repo_git.run(["worktree", "prune"])?;
            }
            std::fs::create_dir_all(&path).map_err(|e| io_failed("create the work folder", e))?;
            let init = Git::new(work_dir, cancel.clone());
            init.run([
                "init".as_ref(),
                "--quiet".as_ref(),
                "--template=".as_ref(),
                format!("--object-format={}", object_format(&base_commit)).as_ref(),
                "--separate-git-dir".as_ref(),
                git_dir.as_os_str(),
                path.as_os_str(),
            ])?;
            let alternates = git_dir.join("objects/info/alternates");
            std::fs::create_dir_all(git_dir.join("objects/info"))
                .map_err(|e| io_failed("set up the clone", e))?;
            let line = format!("{}\n", objects.display());
            crate::infra::fsutil::write_atomic(&alternates, line.as_bytes())
                .map_err(|e| io_failed("set up the clone", e))?;
        }
        let ws = Workspace { path, git_dir, cache_dir, base_commit, git, repo_git, objects };
        Ok(ws)
    }

    fn belongs_to(git_dir: &Path, objects: &Path) -> bool {
        std::fs::read_to_string(git_dir.join("objects/info/alternates"))
            .is_ok_and(|a| a.lines().next() == Some(&*objects.to_string_lossy()))
            && git_dir.join("HEAD").is_file()
    }

    /// Back to a pristine checkout of the base commit, detached, with nothing untracked.
    /// The clone's config is rewritten and its `hooks/` and `info/` removed first, so even
    /// a run without a sandbox cannot leave prbot's git anything to obey.
    pub fn reset(&self) -> Result<(), GitError> {
        let fail = |e| io_failed("restore the clone", e);
        crate::infra::fsutil::write_atomic(
            &self.git_dir.join("config"),
            clone_config(&self.base_commit).as_bytes(),
        )
        .map_err(fail)?;
        for dir in ["hooks", "info"] {
            let d = self.git_dir.join(dir);
            if std::fs::symlink_metadata(&d).is_ok() {
                remove_any(&d).map_err(fail)?;
            }
        }
        // The cycle that resets holds the run lock and runs no other git that writes the
        // clone, so a lock file here is what a killed cycle's git left; it would stop every
        // cycle after it.
        for lock in ["index.lock", "HEAD.lock"] {
            let l = self.git_dir.join(lock);
            if std::fs::symlink_metadata(&l).is_ok() {
                remove_any(&l).map_err(fail)?;
            }
        }
        // The tree's `.git` pointer is only for git run by the tests; restore it in case
        // they replaced it.
        let dot_git = self.path.join(".git");
        let pointer = format!("gitdir: {}\n", self.git_dir.display());
        if std::fs::read_to_string(&dot_git).ok().as_deref() != Some(pointer.as_str()) {
            if std::fs::symlink_metadata(&dot_git).is_ok() {
                remove_any(&dot_git).map_err(fail)?;
            }
            std::fs::create_dir_all(&self.path).map_err(fail)?;
            std::fs::write(&dot_git, pointer).map_err(fail)?;
        }
        self.git.run(["checkout", "--quiet", "--force", "--detach", &self.base_commit])?;
        if self.git.run(["clean", "-ffdxq"]).is_err() {
            // A test may have left folders it cannot be cleaned out of; open them and retry.
            crate::infra::fsutil::make_writable(&self.path);
            self.git.run(["clean", "-ffdxq"])?;
        }
        Ok(())
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    /// Tracked files at the base commit. The list is kept in the cache folder under the
    /// base's id, so a cycle on an unchanged base asks git nothing.
    pub fn tracked_files(&self) -> Result<BaseFiles, GitError> {
        let kept = self.cache_dir.join("base-files");
        let header = format!("prbot-base-files 1 {}\n", self.base_commit);
        let text = match std::fs::read_to_string(&kept) {
            Ok(text) if text.starts_with(&header) => text,
            _ => {
                let out = self.git.run(["ls-tree", "-r", "-l", "-z", "--full-tree", &self.base_commit])?;
                let text = format!("{header}{out}");
                if let Err(e) = crate::infra::fsutil::write_atomic(&kept, text.as_bytes()) {
                    tracing::warn!("cannot keep the file list in {}: {e}", kept.display());
                }
                text
            }
        };
        Ok(BaseFiles::parse(text, header.len()))
    }

    /// The subjects and changed files of the base's newest `depth` commits (merges left
    /// out), as `git log --format=%x1e%P%x09%s --name-only -z` prints them. Kept in the cache
    /// folder under the base's id, like the file list. A shallow repository's boundary is
    /// copied into the clone first, so the log stops where the history does.
    pub fn history_log(&self, depth: usize) -> Result<String, GitError> {
        let kept = self.cache_dir.join("base-history");
        let header = format!("prbot-base-history 2 {depth} {}\n", self.base_commit);
        if let Ok(text) = std::fs::read_to_string(&kept) {
            if let Some(log) = text.strip_prefix(&header) {
                return Ok(log.to_string());
            }
        }
        let fail = |e| io_failed("copy the repository's shallow boundary", e);
        let (theirs, ours) = (self.objects.with_file_name("shallow"), self.git_dir.join("shallow"));
        match std::fs::read(&theirs) {
            Ok(boundary) => crate::infra::fsutil::write_atomic(&ours, &boundary).map_err(fail)?,
            Err(_) if ours.exists() => std::fs::remove_file(&ours).map_err(fail)?,
            Err(_) => {}
        }
        let depth = depth.to_string();
        let log = self.git.run([
            "log",
            "--no-merges",
            "--no-renames",
            "--format=%x1e%P%x09%s",
            "--name-only",
            "-z",
            "-n",
            &depth,
            &self.base_commit,
            "--",
        ])?;
        if let Err(e) = crate::infra::fsutil::write_atomic(&kept, format!("{header}{log}").as_bytes()) {
            tracing::warn!("cannot keep the history in {}: {e}", kept.display());
        }
        Ok(log)
    }

    /// Stages `paths` as they are in the tree now: the approved state of the change.
    /// Paths are literal (no pathspec magic), and the blobs go straight into the user's
    /// object store, so the branch is complete there.
    pub fn stage(&self, paths: &[String]) -> Result<(), GitError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut args = vec!["--literal-pathspecs".to_string(), "add".into(), "-A".into(), "--".into()];
        args.extend(paths.iter().cloned());
        self.git.run_with_env(args, &self.objects_env()).map(|_| ())
    }

    /// Tracked files whose content in the tree differs from what was staged.
    pub fn unstaged(&self) -> Result<Vec<String>, GitError> {
        // `1 XY sub mH mI mW hH hI path`: Y is the tree against the index.
        let out = self.git.run(["status", "--porcelain=v2", "-z", "--untracked-files=no", "--no-renames"])?;
        let mut unstaged = Vec::new();
        for entry in out.split('\0').filter(|e| !e.is_empty()) {
            let fields: Vec<&str> = entry.splitn(9, ' ').collect();
            let ["1", xy, _, _, _, _, _, _, path] = fields[..] else { continue };
            if xy.as_bytes().get(1).is_some_and(|&y| y != b'.') {
                unstaged.push(path.to_string());
            }
        }
        Ok(unstaged)
    }

    /// Puts `paths` back to their staged content.
    pub fn restore(&self, paths: &[String]) -> Result<(), GitError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut args = vec!["--literal-pathspecs".to_string(), "checkout".into(), "--".into()];
        args.extend(paths.iter().cloned());
        self.git.run(args).map(|_| ())
    }

    /// A file's staged content, as text.
    pub fn staged_text(&self, path: &str) -> Result<String, GitError> {
        // `:0:` names stage 0 explicitly, so a path such as `1:x` is not read as a stage.
        self.git.run(["show".to_string(), format!(":0:{path}")])
    }

    /// Commits what was staged, and nothing else, and points `refs/heads/<branch>` of the
    /// user's repository at the commit. The commit is made from the index alone, with the
    /// base as its parent: the worktree (whatever the tests left there) is not read, nor its
    /// every file `lstat`ed as `git commit` would.
    pub fn commit_to_branch(
        &self,
        branch: &str,
        message: &str,
        (name, email): (&str, &str),
    ) -> Result<String, GitError> {
        let env = self.objects_env();
        let tree = self.git.run_with_env(["write-tree"], &env)?;
        let args = [
            "-c".to_string(),
            format!("user.name={name}"),
            "-c".to_string(),
            format!("user.email={email}"),
            "-c".to_string(),
            "commit.gpgsign=false".to_string(),
            "commit-tree".into(),
            "--no-gpg-sign".into(),
            "-p".into(),
            self.base_commit.clone(),
            tree,
        ];
        let sha = self.git.run_full(args, Some(stripspace(message).into_bytes()), &env)?;
        // `branch -f` refuses a branch checked out in any of the user's worktrees, where
        // moving it would change what they see.
        match self.repo_git.run(["branch", "-f", "--end-of-options", branch, &sha]) {
            Err(GitError::Failed { stderr, args, .. }) if stderr.contains("used by worktree") => {
                Err(GitError::Failed {
                    args,
                    status: "refused".into(),
                    stderr: format!("`{branch}` is checked out in one of your worktrees; prbot will not move it under you. Switch to another branch first"),
                })
            }
            Err(e) => Err(e),
            Ok(_) => Ok(sha),
        }
    }

    fn objects_env(&self) -> [(String, String); 1] {
        [("GIT_OBJECT_DIRECTORY".to_string(), self.objects.to_string_lossy().into_owned())]
    }
}

/// A commit message as `git commit` would keep it: lines without trailing whitespace, no
/// blank lines at either end or twice in a row, and a final newline (`git stripspace`).
fn stripspace(message: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in message.lines().map(str::trim_end) {
        if line.is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push('\n');
            blank = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Makes `dir` (and the folders above it that it creates) 0700, and refuses a folder
/// another user owns or that others may write: whoever can write there could swap the
/// clone or the build cache that project commands and commits come from.
fn private_dir(dir: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let refuse = |why: String| GitError::Failed {
        args: format!("use {} as the work folder", dir.display()),
        status: "refused".into(),
        stderr: format!("{why}; remove it, or set workspace.dir to a folder of your own"),
    };
    let mut created = Vec::new();
    let mut at = dir.to_path_buf();
    while std::fs::symlink_metadata(&at).is_err() {
        created.push(at.clone());
        if !at.pop() {
            break;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io_failed("create the work folder", e))?;
    for p in &created {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_failed("make the work folder private", e))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_failed("read the work folder", e))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse(format!("{} is not a folder but a link or a file", dir.display())));
    }
    if meta.uid() != me {
        return Err(refuse(format!(
            "{} belongs to uid {}, not to prbot's uid {me}",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "{} can be written by other users (mode {:o})",
            dir.display(),
            meta.mode() & 0o777
        )));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_failed("make the work folder private", e))?;
    Ok(())
}

/// The whole config of prbot's clone: nothing in it names a program.
fn clone_config(base_commit: &str) -> String {
    let core = "\tfilemode = true\n\tbare = false\n\tlogallrefupdates = false\n";
    match object_format(base_commit) {
        "sha1" => format!("[core]\n\trepositoryformatversion = 0\n{core}"),
        other => {
            format!("[core]\n\trepositoryformatversion = 1\n{core}[extensions]\n\tobjectformat = {other}\n")
        }
    }
}

/// The user's repository's hash, read off a commit id, so the clone can borrow its objects.
fn object_format(commit: &str) -> &'static str {
    if commit.len() == 64 {
        "sha256"
    } else {
        "sha1"
    }
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn io_failed(what: &str, e: std::io::Error) -> GitError {
    GitError::Failed { args: what.to_string(), status: "I/O error".into(), stderr: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn the_base_is_listed_and_read_from_the_object_store() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join("src")).unwrap();
        git(&root, &["init", "--quiet", "-b", "main"]);
        std::fs::write(root.join("src/a b.rs"), "fn a() {}\n").unwrap();
        std::fs::write(root.join("bin.dat"), b"\x00\xff\x01not text").unwrap();
        std::os::unix::fs::symlink("src/a b.rs", root.join("link")).unwrap();
        git(&root, &["add", "."]);
        git(&root, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "init"]);
        let repo = Repo::discover(&root).unwrap();
        let head = repo.head.clone().expect("a commit");
        assert_eq!(head.branch.as_deref(), Some("refs/heads/main"));
        let ws = Workspace::open(&repo, &tmp.path().join("work"), &head.commit, &Cancel::new()).unwrap();
        ws.reset().unwrap();
        let list = ws.tracked_files().unwrap();
        let files: Vec<TrackedFile> = list.iter().collect();
        let names: Vec<(&str, u64, bool)> = files.iter().map(|f| (f.path, f.size, f.link)).collect();
        assert_eq!(names, [("bin.dat", 11, false), ("link", 10, true), ("src/a b.rs", 10, false)]);
        // Kept under the base's id: a changed tree does not change the list of the base.
        std::fs::remove_file(ws.path.join("bin.dat")).unwrap();
        assert_eq!(ws.tracked_files().unwrap().iter().len(), 3);
        let missing = "0".repeat(head.commit.len());
        let ids = [files[2].blob, missing.as_str(), files[0].blob, "HEAD:link", "HEAD:src"];
        let mut objects = crate::infra::git::Objects::open(&repo.git(&Cancel::new())).unwrap();
        let mut got = Vec::new();
        objects.each(&ids, |name, o| got.push((name.to_string(), o.map(|o| (o.kind, o.bytes))))).unwrap();
        let blob = |b: &[u8]| Some(("blob".to_string(), b.to_vec()));
        let want = [
            (ids[0], blob(b"fn a() {}\n")),
            (ids[1], None),
            (ids[2], blob(b"\x00\xff\x01not text")),
            (ids[3], blob(b"src/a b.rs")),
        ];
        assert_eq!(&got[..4], &want.map(|(n, o)| (n.to_string(), o)));
        assert_eq!(got[4].1.as_ref().map(|o| o.0.as_str()), Some("tree"));
        // The same reader answers again, one object at a time, and refuses a name that
        // would break its one-name-a-line protocol.
        assert_eq!(objects.read("HEAD:src/a b.rs").unwrap().map(|o| o.bytes), Some(b"fn a() {}\n".to_vec()));
        assert!(objects.read("HEAD:a\nHEAD:b").is_err());
        assert!(objects.read("HEAD:nothing").unwrap().is_none());
        // More names, and answers, than the pipes hold at once.
        let many = vec![ids[0]; 10_000];
        let mut answered = 0;
        objects
            .each(&many, |_, o| answered += usize::from(o.is_some_and(|o| o.bytes == b"fn a() {}\n")))
            .unwrap();
        assert_eq!(answered, many.len());
    }

    #[test]
    fn the_file_list_is_read_in_place() {
        let listing = [
            "100644 blob aaaa      12\tsrc/b.rs",
            "160000 commit cccc       -\tvendor/sub",
            "120000 blob bbbb       5\tlink",
            "100755 blob dddd 1234567\tsrc/a b.rs",
            "100644 blob eeee       1\tsrc/tab\there.rs",
        ]
        .join("\0");
        let list = BaseFiles::parse(format!("header\n{listing}\0"), "header\n".len());
        let files: Vec<TrackedFile> = list.iter().collect();
        let file = |path, blob, size, link| TrackedFile { path, blob, size, link };
        // The submodule is no file.
        assert_eq!(
            files,
            [
                file("src/b.rs", "aaaa", 12, false),
                file("link", "bbbb", 5, true),
                file("src/a b.rs", "dddd", 1_234_567, false),
                file("src/tab\there.rs", "eeee", 1, false),
            ]
        );
    }

    /// A repository at `tmp/repo` with `files` in one commit, and prbot's clone of it, reset.
    fn committed(tmp: &Path, format: &str, files: &[(&str, &str)]) -> (PathBuf, Repo, String, Workspace) {
        let root = tmp.join("repo");
        std::fs::create_dir_all(&root).unwrap();
        git(&root, &["init", "--quiet", "-b", "main", &format!("--object-format={format}")]);
        for (path, text) in files {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), text).unwrap();
        }
        git(&root, &["add", "."]);
        git(&root, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "init"]);
        let repo = Repo::discover(&root).unwrap();
        let base = repo.head.clone().expect("a commit").commit;
        let ws = Workspace::open(&repo, &tmp.join("work"), &base, &Cancel::new()).unwrap();
        ws.reset().unwrap();
        (root, repo, base, ws)
    }

    /// (path, new mode, added) of every file `to` changes against `from`, as `diff-tree` says.
    fn diff_tree(root: &Path, from: &str, to: &str) -> Vec<crate::infra::git::Changed> {
        let out = git(root, &["diff-tree", "-r", "-z", "--no-renames", from, to]);
        let mut fields = out.split('\0');
        let mut files = Vec::new();
        while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
            let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            let (mode, added) = (parts[1].to_string(), parts[4] == "A");
            files.push(crate::infra::git::Changed { path: path.to_string(), mode, added });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    #[test]
    fn the_commit_is_the_index_alone_and_its_changes_are_read_tree_by_tree() {
        use std::os::unix::fs::PermissionsExt;
        for format in ["sha1", "sha256"] {
            let tmp = tempfile::tempdir().unwrap();
            let (root, repo, base, ws) = committed(
                tmp.path(),
                format,
                &[
                    ("src/deep/er/a.rs", "a\n"),
                    ("src/deep/b.rs", "b\n"),
                    ("docs/x.md", "x\n"),
                    ("run.sh", "echo\n"),
                    ("file-then-folder", "f\n"),
                    ("gone/only.txt", "o\n"),
                    ("link-me", "l\n"),
                    ("untouched.txt", "u\n"),
                ],
            );
            let at = |p: &str| ws.path.join(p);
            std::fs::write(at("src/deep/er/a.rs"), "a2\n").unwrap();
            std::fs::create_dir_all(at("new/dir")).unwrap();
            std::fs::write(at("new/dir/n.rs"), "n\n").unwrap();
            std::fs::set_permissions(at("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::remove_file(at("file-then-folder")).unwrap();
            std::fs::create_dir(at("file-then-folder")).unwrap();
            std::fs::write(at("file-then-folder/inside"), "i\n").unwrap();
            std::fs::remove_dir_all(at("gone")).unwrap();
            std::fs::remove_file(at("link-me")).unwrap();
            std::os::unix::fs::symlink("run.sh", at("link-me")).unwrap();
            let staged =
                ["src/deep/er/a.rs", "new/dir/n.rs", "run.sh", "file-then-folder", "gone", "link-me"];
            ws.stage(&staged.map(String::from)).unwrap();
            // What the tests would do after staging: none of it is committed.
            std::fs::write(at("untouched.txt"), "tampered\n").unwrap();
            std::fs::write(at("src/deep/b.rs"), "tampered\n").unwrap();
            let sha =
                ws.commit_to_branch("prbot/x", "subject\n\nbody\n", ("bot", "bot@example.invalid")).unwrap();
            assert_eq!(sha.len(), base.len(), "{format}");
            assert_eq!(git(&root, &["rev-parse", "refs/heads/prbot/x"]), sha, "{format}");
            assert_eq!(git(&root, &["rev-parse", &format!("{sha}^")]), base, "{format}");
            assert_eq!(git(&root, &["show", &format!("{sha}:untouched.txt")]), "u", "{format}");
            let mut objects = crate::infra::git::Objects::open(&repo.git(&Cancel::new())).unwrap();
            let read = objects.diff(&base, &sha).unwrap();
            let want = diff_tree(&root, &base, &sha);
            let paths: Vec<&str> = want.iter().map(|c| c.path.as_str()).collect();
            assert_eq!(
                paths,
                [
                    "file-then-folder",
                    "file-then-folder/inside",
                    "gone/only.txt",
                    "link-me",
                    "new/dir/n.rs",
                    "run.sh",
                    "src/deep/er/a.rs"
                ],
                "{format}"
            );
            assert_eq!(read, want, "{format}");
            assert!(objects.diff(&base, "0".repeat(base.len()).as_str()).is_err(), "{format}");
        }
    }

    #[test]
    fn names_that_differ_only_in_bytes_that_are_not_utf8_stay_two() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let (root, repo, base, ws) = committed(tmp.path(), "sha1", &[("keep", "k\n")]);
        for name in [&b"bad\xff"[..], &b"bad\xfe"[..]] {
            std::fs::write(ws.path.join(std::ffi::OsStr::from_bytes(name)), "x\n").unwrap();
        }
        // Staged as prbot stages: the blobs go to the user's object store.
        let added = std::process::Command::new("git")
            .args(["add", "-A"])
            .current_dir(&ws.path)
            .env("GIT_OBJECT_DIRECTORY", root.join(".git/objects"))
            .status()
            .unwrap();
        assert!(added.success());
        let sha = ws.commit_to_branch("prbot/bytes", "bytes\n", ("bot", "bot@example.invalid")).unwrap();
        let mut objects = crate::infra::git::Objects::open(&repo.git(&Cancel::new())).unwrap();
        let changed = objects.diff(&base, &sha).unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed.iter().all(|c| c.added && c.mode == "100644"), "{changed:?}");
    }

    #[test]
    fn a_commit_message_is_cleaned_as_git_commit_would() {
        let tmp = tempfile::tempdir().unwrap();
        for message in [
            "subject\n\nbody\n",
            "\n\n  \nsubject  \n\n\n\nbody\t\n  indented stays\n\n\n",
            "no newline at the end",
            "a\r\n\r\nb\r\n",
            "",
            "   \n\t\n",
            "prbot: title\n\n\n\nGap: x\n",
        ] {
            let out = std::process::Command::new("git")
                .arg("stripspace")
                .current_dir(tmp.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    std::io::Write::write_all(c.stdin.as_mut().unwrap(), message.as_bytes())?;
                    drop(c.stdin.take());
                    c.wait_with_output()
                })
                .unwrap();
            assert_eq!(stripspace(message), String::from_utf8(out.stdout).unwrap(), "{message:?}");
        }
    }
}
