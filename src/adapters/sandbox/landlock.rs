//! Landlock, for hosts where bwrap cannot create namespaces (many CI containers).
//!
//! The command may read the host minus the hidden places (Landlock only grants, so the
//! grant is the complement of the hidden paths, found by walking down to them), and write
//! only the view's writable folders. It runs without capabilities, even as root, so
//! prbot, which is not dumpable, keeps `/proc/<prbot>/environ` and its memory to itself;
//! Landlock's signal scope keeps prbot from being signalled.
//! Network: a private network namespace with only loopback where prbot may make one
//! (CAP_SYS_ADMIN); otherwise Landlock denies every TCP bind and connect.

use super::{SandboxError, View};
use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, Scope, ABI,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const ABI_WANTED: ABI = ABI::V6;

/// Whether the kernel enforces Landlock; asked once per process.
pub fn usable() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| match abi_version() {
            v if v >= 1 => Ok(()),
            _ => Err("the kernel does not enforce Landlock".into()),
        })
        .clone()
}

fn abi_version() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only
    // returns a number.
    unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) }
}

/// The hook that enters the Landlock domain in the child (and, without network, a private
/// network namespace where prbot may make one).
pub fn confine(view: &View, network: bool) -> Result<crate::infra::process::PreExec, SandboxError> {
    let own_netns = !network && has_cap_sys_admin();
    let deny_tcp = !network && !own_netns;
    let ruleset = ruleset(view, deny_tcp).map_err(|e| SandboxError::Setup(format!("Landlock: {e}")))?;
    let mut ruleset = Some(ruleset);
    let hook = Box::new(move || {
        if own_netns {
            // SAFETY: plain system calls on this (child) process.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                loopback_up()?;
            }
        }
        // SAFETY: plain system calls on this (child) process.
        unsafe { drop_capabilities()? };
        match ruleset.take() {
            Some(r) => r.restrict_self().map(|_| ()).map_err(std::io::Error::other),
            None => Ok(()),
        }
    });
    Ok(hook)
}

fn ruleset(view: &View, deny_tcp: bool) -> Result<RulesetCreated, landlock::RulesetError> {
    let abi = ABI_WANTED;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .scope(Scope::Signal | Scope::AbstractUnixSocket)?;
    if deny_tcp {
        rs = rs.handle_access(AccessNet::from_all(abi))?;
    }
    let mut created = rs.create()?;
    let mut hidden: Vec<&Path> = view.hidden.iter().map(PathBuf::as_path).collect();
    hidden.sort();
    let mut readable = Vec::new();
    complement(Path::new("/"), &hidden, &mut readable);
    for extra in &view.read_only {
        // Granted although it lies in a hidden place; what is hidden inside it stays hidden.
        let inside: Vec<&Path> =
            hidden.iter().copied().filter(|h| h.starts_with(extra) && *h != extra).collect();
        complement(extra, &inside, &mut readable);
    }
    for p in &readable {
        created = add(created, p, read)?;
    }
    for p in &view.read_write {
        created = add(created, p, all)?;
    }
    // Devices that programs write to.
    for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/pts"] {
        created = add(created, Path::new(dev), all)?;
    }
    Ok(created)
}

fn add(
    rs: RulesetCreated,
    path: &Path,
    access: landlock::BitFlags<AccessFs>,
) -> Result<RulesetCreated, landlock::RulesetError> {
    match PathFd::new(path) {
        Ok(fd) => {
            let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
            let access = if is_dir { access } else { access & AccessFs::from_file(ABI_WANTED) };
            rs.add_rule(PathBeneath::new(fd, access))
        }
        // A path that vanished or cannot be opened is simply not granted.
        Err(_) => Ok(rs),
    }
}

/// The largest paths under `dir` that hold nothing hidden: `dir` itself when no hidden
/// path lies inside it, else its entries, each treated the same way. Symlinks are not
/// granted as such: what they point to is granted, or not, by its own path.
fn complement(dir: &Path, hidden: &[&Path], out: &mut Vec<PathBuf>) {
    if hidden.iter().any(|h| dir.starts_with(h)) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(dir)) {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_symlink() {
            continue;
        }
        complement(&e.path(), hidden, out);
    }
}

fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Brings `lo` up in a fresh network namespace, so tests can still serve on loopback.
///
/// # Safety
/// Only system calls on a local socket.
unsafe fn loopback_up() -> std::io::Result<()> {
    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
    if result == 0 {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        result = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
    }
    let err = std::io::Error::last_os_error();
    libc::close(fd);
    if result == 0 {
        Ok(())
    } else {
        Err(err)
    }
}

/// Empties every capability set, the bounding set included, and stops root from getting
/// them back at exec.
///
/// # Safety
/// Only system calls on this process.
unsafe fn drop_capabilities() -> std::io::Result<()> {
    const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
    const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
    let mut cap = 0;
    // Dropping from the bounding set needs CAP_SETPCAP; without it there is nothing to drop.
    while libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) >= 0 && cap < 64 {
        libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        cap += 1;
    }
    libc::prctl(
        libc::PR_SET_SECUREBITS,
        SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED,
        0,
        0,
        0,
    );
    libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header { version: 0x2008_0522, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
