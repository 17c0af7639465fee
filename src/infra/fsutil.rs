//! Writes that are whole or absent, never half-done.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, None, true)
}

/// [`write_atomic`] without waiting for the disk, and the file gets `mode` (else the temp
/// file's 0600): for scratch files that a crash may lose at no cost, such as the
/// worktree's, which is reset before its next use.
pub fn replace_scratch(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    replace(path, bytes, mode, false)
}

fn replace(path: &Path, bytes: &[u8], mode: Option<u32>, durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".prbot-tmp-").tempfile_in(dir)?;
    if let Some(mode) = mode {
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// [`write_atomic`] with the temp file in `tmp_dir` (on the same file system), so that a
/// folder of many files is never listed to find the temp files a killed write left.
pub fn write_atomic_in(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(tmp_dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".prbot-tmp-").tempfile_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Appends one line; a single `write` of a short line is atomic for O_APPEND files. A
/// last line a crash cut short is ended first, so the new line never joins it.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Never through a link: the state can come from a ref others can push to.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let len = f.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        f.read_exact_at(&mut last, len - 1)?;
    }
    let mut buf = String::with_capacity(line.len() + 2);
    if last[0] != b'\n' {
        buf.push('\n');
    }
    buf.push_str(line);
    buf.push('\n');
    f.write_all(buf.as_bytes())
}

/// A whole regular file, opened without following a link.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Calls `each` with the lines of a file from its last to its first, until it returns
/// false; reads only as much of the end as that takes. A missing file has no lines.
pub fn lines_from_end(path: &Path, mut each: impl FnMut(&str) -> bool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 * 1024;
    let f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut end = f.metadata()?.len();
    // Bytes after the last newline seen, not yet a whole line.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        f.read_exact_at(&mut buf, start)?;
        buf.extend_from_slice(&carry);
        let mut cut = buf.len();
        while let Some(nl) = buf[..cut].iter().rposition(|b| *b == b'\n') {
            let line = &buf[nl + 1..cut];
            cut = nl;
            if !line.is_empty() && !each(&String::from_utf8_lossy(line)) {
                return Ok(());
            }
        }
        carry = buf[..cut].to_vec();
        end = start;
    }
    if !carry.is_empty() {
        each(&String::from_utf8_lossy(&carry));
    }
    Ok(())
}

/// Removes a folder and everything in it, also when a command left folders without
/// write or search permission in it (which would stop a plain `remove_dir_all`).
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(dir);
            std::fs::remove_dir_all(dir)
        }
    }
}

/// Gives the owner full access to every folder under `dir` (links are not followed).
pub fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_tree_a_command_locked_is_opened_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("tmp");
        let locked = top.join("a/b");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::write(locked.join("f"), "x").unwrap();
        for d in [&locked, &top.join("a")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o000)).unwrap();
        }
        make_writable(&top);
        let mode = std::fs::metadata(&locked).unwrap().permissions().mode() & 0o700;
        assert_eq!(mode, 0o700, "a locked folder stayed locked");
        remove_tree(&top).unwrap();
        assert!(!top.exists());
    }
}
