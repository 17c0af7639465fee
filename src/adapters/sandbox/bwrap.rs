//! bubblewrap: a mount namespace built from the view, and new user, pid, ipc, uts and
//! (unless the stage allows network) net namespaces. In its own pid namespace the command
//! cannot see prbot, and when bwrap ends every process inside ends with it.

use super::{depth, View};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Whether bwrap is installed and can create its namespaces here; asked once per process.
pub fn usable() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    let mut args: Vec<OsString> = base_args(false);
    args.extend(
        ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"].map(OsString::from),
    );
    let cmd =
        crate::infra::process::Command::new("bwrap", Path::new("/"), std::time::Duration::from_secs(20))
            .args(args);
    match crate::infra::process::run(cmd, &crate::infra::process::Cancel::new()) {
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => Err("`bwrap` is not on PATH".into()),
        Err(e) => Err(format!("bwrap does not start ({e})")),
        Ok(out) if out.success() => Ok(()),
        Ok(out) => {
            Err(format!("bwrap cannot create namespaces here ({}: {})", out.status_text(), out.stderr.trim()))
        }
    }
}

fn base_args(network: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
            .map(OsString::from)
            .to_vec();
    if network {
        args.push("--share-net".into());
    }
    args
}

/// bwrap's options for `view`, up to (not including) `--`.
pub fn args(view: &View, network: bool) -> Vec<OsString> {
    let mut args = base_args(network);
    args.extend(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"].map(OsString::from));

    enum Mount<'a> {
        Hide(&'a Path),
        ReadOnly(&'a Path),
        ReadWrite(&'a Path),
    }
    let mut mounts: Vec<Mount<'_>> = Vec::new();
    mounts.extend(view.hidden.iter().map(|p| Mount::Hide(p)));
    mounts.extend(view.read_only.iter().map(|p| Mount::ReadOnly(p)));
    mounts.extend(view.read_write.iter().map(|p| Mount::ReadWrite(p)));
    let resolver = if network { resolver_dir(view) } else { None };
    if let Some(r) = &resolver {
        mounts.push(Mount::ReadOnly(r));
    }
    // A path is mounted after every path that contains it; at equal depth, hiding first.
    mounts.sort_by_key(|m| match m {
        Mount::Hide(p) => (depth(p), 0),
        Mount::ReadOnly(p) => (depth(p), 1),
        Mount::ReadWrite(p) => (depth(p), 2),
    });
    for m in mounts {
        match m {
            Mount::Hide(p) => match std::fs::symlink_metadata(p) {
                Ok(meta) if meta.is_dir() => push(&mut args, &["--tmpfs"], &[p]),
                Ok(meta) if meta.is_file() => push(&mut args, &["--ro-bind", "/dev/null"], &[p]),
                _ => {}
            },
            Mount::ReadOnly(p) if p.exists() => push(&mut args, &["--ro-bind"], &[p, p]),
            Mount::ReadWrite(p) if p.exists() => push(&mut args, &["--bind"], &[p, p]),
            _ => {}
        }
    }
    args
}

fn push(args: &mut Vec<OsString>, flags: &[&str], paths: &[&Path]) {
    args.extend(flags.iter().map(OsString::from));
    args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
}

/// With network, name resolution must work: `/etc/resolv.conf` often points into `/run`,
/// which is hidden.
fn resolver_dir(view: &View) -> Option<PathBuf> {
    let target = std::fs::canonicalize("/etc/resolv.conf").ok()?;
    let dir = target.parent()?.to_path_buf();
    view.hidden.iter().any(|h| dir.starts_with(h)).then_some(dir)
}
