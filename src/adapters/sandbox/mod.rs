//! The sandbox every project command runs in: the test stage's commands and `run:` steps.
//!
//! A [`View`] says what the command may see: the host read-only, minus the places that
//! hold secrets or the user's work (hidden), plus prbot's checkout, build cache and a
//! private home and temp folder (writable). A backend makes the view real: bubblewrap
//! with namespaces where it can, Landlock where it cannot. `off` runs the command as it is.

mod bwrap;
mod landlock;

use crate::config::settings::{SandboxBackend, SandboxConfig};
use crate::infra::process::{PreExec, Streamed};

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::domain::records::{Backend, SandboxUse};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "no sandbox can run project commands here: {bwrap}; and {landlock}. Install bubblewrap (`apt-get install bubblewrap`) on a host that allows user namespaces, use a kernel with Landlock, or set `sandbox: off` in the pipeline to run tests unconfined"
    )]
    NoneUsable { bwrap: String, landlock: String },
    #[error("`sandbox: bwrap` was asked for, but {0}. Install bubblewrap (`apt-get install bubblewrap`) and allow user namespaces, or use `sandbox: auto`")]
    Bwrap(String),
    #[error("`sandbox: landlock` was asked for, but {0}. Use a kernel with Landlock (5.13 or later, `lsm=landlock`), or `sandbox: auto`")]
    Landlock(String),
    #[error("cannot set up the sandbox: {0}")]
    Setup(String),
}

/// The backend to use, decided once per cycle before any model call.
pub fn choose(config: &SandboxConfig) -> Result<Backend, SandboxError> {
    match config.backend {
        SandboxBackend::Off => Ok(Backend::Off),
        SandboxBackend::Bwrap => bwrap::usable().map(|_| Backend::Bwrap).map_err(SandboxError::Bwrap),
        SandboxBackend::Landlock => {
            landlock::usable().map(|_| Backend::Landlock).map_err(SandboxError::Landlock)
        }
        SandboxBackend::Auto => match bwrap::usable() {
            Ok(()) => Ok(Backend::Bwrap),
            Err(bwrap) => match landlock::usable() {
                Ok(()) => Ok(Backend::Landlock),
                Err(landlock) => Err(SandboxError::NoneUsable { bwrap, landlock }),
            },
        },
    }
}

/// What a project command may see of the host.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Writable: the checkout, the build cache, the private home and temp folder.
    pub read_write: Vec<PathBuf>,
    /// Readable inside hidden places: the clone's git folder, the object store it
    /// borrows, the toolchains.
    pub read_only: Vec<PathBuf>,
    /// Neither readable nor writable: what holds secrets or the user's own work.
    pub hidden: Vec<PathBuf>,
}

/// Where a cycle's command runs and what it may touch.
pub struct Place<'a> {
    pub tree: &'a Path,
    pub clone_git_dir: &'a Path,
    pub cache_dir: &'a Path,
    /// prbot's folder for this repository (checkout, clone, cache, private folders).
    pub work_dir: &'a Path,
    pub repo_root: &'a Path,
    pub repo_git_dir: &'a Path,
    pub state_dir: &'a Path,
    pub extra_read_only: &'a [PathBuf],
}

/// One project command, ready to hand to [`crate::infra::process::run_streamed`].
pub struct Prepared {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: HashMap<OsString, OsString>,
    pub pre_exec: Option<PreExec>,
    pub used: SandboxUse,
}

/// A cycle's sandbox: the backend and the view, fixed for the cycle.
pub struct Sandbox {
    backend: Backend,
    view: View,
    home: PathBuf,
    tmp: PathBuf,
    target_dir: PathBuf,
    toolchain_env: Vec<(OsString, PathBuf)>,
    work_dir: PathBuf,
}

impl Sandbox {
    pub fn new(backend: Backend, place: &Place<'_>) -> Sandbox {
        let private = place.work_dir.join("sandbox");
        let home = private.join("home");
        let tmp = private.join("tmp");
        let target_dir = place.cache_dir.join("cargo-target");
        let real_home = std::env::var_os("HOME").map(PathBuf::from);
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| real_home.as_ref().map(|h| h.join(".cargo")));
        let rustup_home = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .or_else(|| real_home.as_ref().map(|h| h.join(".rustup")));
        let mut view = View::default();
        view.read_write.extend([place.tree.to_path_buf(), target_dir.clone(), home.clone(), tmp.clone()]);
        view.read_only.push(place.clone_git_dir.to_path_buf());
        view.read_only.extend(object_stores(&place.repo_git_dir.join("objects")));
        let mut toolchain_env = Vec::new();
        for (name, dir) in [("CARGO_HOME", &cargo_home), ("RUSTUP_HOME", &rustup_home)] {
            if let Some(d) = dir.as_ref().filter(|d| d.is_dir()) {
                view.read_only.push(d.clone());
                toolchain_env.push((OsString::from(name), d.clone()));
            }
        }
        view.read_only.extend(place.extra_read_only.iter().cloned());
        view.hidden.extend(
            ["/tmp", "/var/tmp", "/run", "/root", "/home", "/mnt", "/media", "/srv"].map(PathBuf::from),
        );
        view.hidden.extend(real_home);
        view.hidden.extend([
            place.repo_root.to_path_buf(),
            place.repo_git_dir.to_path_buf(),
            place.state_dir.to_path_buf(),
            place.work_dir.to_path_buf(),
        ]);
        // A registry token must not be readable even though the rest of CARGO_HOME is.
        if let Some(c) = &cargo_home {
            view.hidden.extend(CREDENTIAL_FILES.map(|f| c.join(f)));
        }
        for p in view.read_write.iter_mut().chain(view.read_only.iter_mut()).chain(view.hidden.iter_mut()) {
            *p = absolute(p);
        }
        // Hiding `/` or a place that holds the system (a HOME of `/`) would leave nothing to run.
        view.hidden.retain(|h| {
            h.parent().is_some()
                && !["/usr", "/bin", "/lib", "/etc"].iter().any(|sys| Path::new(sys).starts_with(h))
        });
        // Tools the user put on PATH inside a hidden place stay usable.
        let private = [place.repo_root, place.repo_git_dir, place.state_dir, place.work_dir].map(absolute);
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            if let Some(tool) = tool_root(&absolute(&dir), &view.hidden, &private) {
                if !view.read_only.contains(&tool) {
                    view.read_only.push(tool);
                }
            }
        }
        // A registry token in any folder shown read-only (a cargo home found on PATH too).
        let tokens: Vec<PathBuf> = view
            .read_only
            .iter()
            .flat_map(|d| CREDENTIAL_FILES.iter().map(move |f| d.join(f)))
            .filter(|f| f.exists() && !view.hidden.contains(f))
            .collect();
        view.hidden.extend(tokens);
        Sandbox { backend, view, home, tmp, target_dir, toolchain_env, work_dir: absolute(place.work_dir) }
    }

    /// Wraps `sh -c command` for the backend, with a fresh private home and temp folder.
    /// `env` is the command's environment, already without secrets.
    pub fn prepare(
        &self,
        command: &str,
        mut env: HashMap<OsString, OsString>,
        network: bool,
    ) -> Result<Prepared, SandboxError> {
        for dir in [&self.home, &self.tmp] {
            if dir.exists() {
                crate::infra::fsutil::remove_tree(dir).map_err(|e| setup(dir, e))?;
            }
            std::fs::create_dir_all(dir).map_err(|e| setup(dir, e))?;
        }
        std::fs::create_dir_all(&self.target_dir).map_err(|e| setup(&self.target_dir, e))?;
        env.insert("CARGO_TARGET_DIR".into(), self.target_dir.clone().into());
        env.insert(crate::infra::process::SANDBOX_MARKER.into(), self.work_dir.clone().into());
        if self.backend != Backend::Off {
            env.insert("HOME".into(), self.home.clone().into());
            env.insert("TMPDIR".into(), self.tmp.clone().into());
            for (name, dir) in &self.toolchain_env {
                env.insert(name.clone(), dir.clone().into());
            }
            // Sockets of agents and desktop buses live in hidden places; don't point at them.
            for name in ["SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "GPG_AGENT_INFO"] {
                env.remove(&OsString::from(name));
            }
            if !network {
                env.insert("CARGO_NET_OFFLINE".into(), "true".into());
            }
        }
        let shell = vec![OsString::from("-c"), OsString::from(command)];
        let used = SandboxUse { backend: self.backend, network: network || self.backend == Backend::Off };
        Ok(match self.backend {
            Backend::Off => Prepared { program: "sh".into(), args: shell, env, pre_exec: None, used },
            Backend::Bwrap => {
                let mut args = bwrap::args(&self.view, network);
                args.push("--".into());
                args.push("sh".into());
                args.extend(shell);
                Prepared { program: "bwrap".into(), args, env, pre_exec: None, used }
            }
            Backend::Landlock => {
                let hook = landlock::confine(&self.view, network)?;
                Prepared { program: "sh".into(), args: shell, env, pre_exec: Some(hook), used }
            }
        })
    }

    /// Puts a prepared command in the shape the process layer runs.
    pub fn streamed<'a>(
        prepared: Prepared,
        dir: &'a Path,
        timeout: Duration,
        log: &'a Path,
    ) -> (Streamed<'a>, SandboxUse) {
        let used = prepared.used;
        let cmd = Streamed {
            program: prepared.program,
            args: prepared.args,
            dir,
            env: prepared.env,
            timeout,
            log,
            pre_exec: prepared.pre_exec,
        };
        (cmd, used)
    }
}

/// The object store and every store it borrows from (`objects/info/alternates`), so
/// that git in a test can read the history.
fn object_stores(objects: &Path) -> Vec<PathBuf> {
    let mut out = vec![objects.to_path_buf()];
    let mut i = 0;
    while i < out.len() && out.len() < 16 {
        let alternates = std::fs::read_to_string(out[i].join("info/alternates")).unwrap_or_default();
        for line in alternates.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let p = if Path::new(line).is_absolute() { PathBuf::from(line) } else { out[i].join(line) };
            let p = std::fs::canonicalize(&p).unwrap_or(p);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        i += 1;
    }
    out
}

/// Files of a tool's folder that hold registry tokens (cargo's), hidden even when the
/// folder is shown.
const CREDENTIAL_FILES: [&str; 2] = ["credentials", "credentials.toml"];

/// Folders in a hidden place that hold secrets, never exposed for a PATH entry.
const SECRET_STORES: [&str; 12] = [
    ".ssh",
    ".gnupg",
    ".config",
    ".aws",
    ".azure",
    ".docker",
    ".kube",
    ".gcloud",
    ".password-store",
    ".pki",
    ".mozilla",
    ".netrc",
];

/// What a PATH entry in a hidden place exposes, read only, so the tools the user put on
/// PATH keep working: the tool's own folder, the first one below the hidden place
/// (`~/.pyenv` for `~/.pyenv/shims`, whose shims run `~/.pyenv/versions/...`), or only the
/// entry itself below `~/.local` and `~/bin`. Nothing for an entry that is a hidden place
/// itself (`~` on PATH), lies in prbot's or the user's repository, or in a secret store.
fn tool_root(dir: &Path, hidden: &[PathBuf], private: &[PathBuf]) -> Option<PathBuf> {
    if !dir.is_dir() || private.iter().any(|p| dir.starts_with(p)) {
        return None;
    }
    let place =
        hidden.iter().filter(|h| dir.starts_with(h) && dir != h.as_path()).max_by_key(|h| depth(h))?;
    let first = dir.strip_prefix(place).ok()?.components().next()?.as_os_str().to_string_lossy().into_owned();
    if SECRET_STORES.contains(&first.as_str()) {
        return None;
    }
    let root = if first == ".local" || first == "bin" { dir.to_path_buf() } else { place.join(first) };
    // Never a hidden place itself, nor one that holds a hidden place.
    (!hidden.iter().any(|h| h.starts_with(&root))).then_some(root)
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

fn setup(dir: &Path, e: std::io::Error) -> SandboxError {
    SandboxError::Setup(format!("{}: {e}", dir.display()))
}

/// Orders mounts or rules so that a deeper path comes after the one that contains it.
fn depth(p: &Path) -> usize {
    p.components().count()
}

#[cfg(test)]
mod tests {
    use super::tool_root;
    use std::path::PathBuf;

    #[test]
    fn path_entries_in_hidden_places_expose_their_tool_and_nothing_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let repo = tmp.path().join("work/repo");
        for d in [".pyenv/shims", ".local/bin", ".ssh/bin", "bin", ".bun/bin"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        std::fs::create_dir_all(repo.join("bin")).unwrap();
        let hidden = vec![tmp.path().to_path_buf(), home.clone()];
        let private = vec![repo.clone()];
        let root = |p: PathBuf| tool_root(&p, &hidden, &private);
        assert_eq!(root(home.join(".pyenv/shims")), Some(home.join(".pyenv")));
        assert_eq!(root(home.join(".bun/bin")), Some(home.join(".bun")));
        assert_eq!(root(home.join(".local/bin")), Some(home.join(".local/bin")));
        assert_eq!(root(home.join("bin")), Some(home.join("bin")));
        assert_eq!(root(home.join(".ssh/bin")), None);
        assert_eq!(root(home.clone()), None, "HOME itself on PATH");
        assert_eq!(root(repo.join("bin")), None, "a repository's folder");
        assert_eq!(root(home.join("missing")), None);
    }
}
