//! The router's one door for `unsafe`: what a worker child does between `fork` and `exec`,
//! and descriptors from raw system calls.
//!
//! std's `Command::uid` drops supplementary groups and runs `pre_exec` closures only after the
//! uid change, so the groups a tenant needs could not be set. We do the whole credential switch
//! here, with async-signal-safe calls only (no allocation, no locks), in the order the kernel
//! requires: groups, gid, uid. Before that the child joins its cgroup and, when it will run
//! tenant code, takes its limits (rlimits, empty capability bounding set, no ambient
//! capabilities, `no_new_privs`), while it still has the right to.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// What the child must become before it runs `paddock-worker`.
#[derive(Debug, Clone)]
pub struct ChildSetup {
    /// Switch to these credentials (None: keep the router's, when it is not root).
    pub creds: Option<Creds>,
    pub umask: u32,
    /// `(from, to)` pairs: `from` is duplicated onto `to` without close-on-exec. `from` fds must
    /// all be above every `to` so one dup never clobbers a later source.
    pub fds: Vec<(RawFd, RawFd)>,
    /// An open `cgroup.procs` the child writes its pid to first (see `cgroup.rs`).
    pub cgroup_procs: Option<RawFd>,
    /// Limits of a process that runs tenant code; `None` for the zygote, which must keep its
    /// capabilities to switch its children's uid.
    pub confine: Option<Limits>,
}

/// Resource limits (soft = hard) set in a child that runs tenant code; 0 or `None`: leave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub nofile: u64,
    pub nproc: u64,
    pub address_space: u64,
    pub core: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Install the credential switch, fd layout, new session and parent-death signal on `cmd`.
pub fn prepare(cmd: &mut tokio::process::Command, setup: ChildSetup) {
    let parent = std::process::id() as libc::pid_t;
    // Read before the fork: the child may not allocate. Only root can drop from the bounding
    // set (CAP_SETPCAP); an unprivileged router has no capabilities to pass on anyway.
    let root = nix::unistd::geteuid().is_root();
    let cap_last = match (&setup.confine, root) {
        (Some(_), true) => Some(cap_last_cap()),
        _ => None,
    };
    let groups: Vec<libc::gid_t> = setup
        .creds
        .as_ref()
        .map(|c| c.groups.iter().map(|&g| g as libc::gid_t).collect())
        .unwrap_or_default();
    // SAFETY: the closure runs in the forked child before exec; it only makes raw syscalls
    // (setsid, write, get/setrlimit, setgroups, setgid, setuid, umask, dup2, prctl, getppid),
    // which are async-signal-safe, and touches no memory that another thread could hold locked: the
    // captured vectors were allocated before the fork and are only read.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // First: every process this child ever starts is born in the leaf.
            if let Some(fd) = setup.cgroup_procs {
                write_own_pid(fd)?;
            }
            if let Some(l) = &setup.confine {
                set_limits(l, root)?;
                drop_privileges(cap_last)?;
            }
            if let Some(c) = &setup.creds {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(c.gid as libc::gid_t) != 0
                    || libc::setuid(c.uid as libc::uid_t) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            libc::umask(setup.umask as libc::mode_t);
            for &(from, to) in &setup.fds {
                if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Set after the uid change, which clears it. Workers must not outlive the router.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("router exited during spawn"));
            }
            Ok(())
        });
    }
}

/// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`); 63 if it
/// cannot be read (dropping an unknown one is then an EINVAL, which is ignored).
fn cap_last_cap() -> libc::c_ulong {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// `pid` in decimal at the end of `buf`, without allocating (for a child between fork and
/// exec).
fn format_pid(pid: u32, buf: &mut [u8; 10]) -> &[u8] {
    let (mut n, mut i) = (pid, buf.len());
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// In the child: write our pid to an open `cgroup.procs`. Async-signal-safe.
fn write_own_pid(fd: RawFd) -> io::Result<()> {
    let mut buf = [0u8; 10];
    // SAFETY: getpid takes nothing; write reads `text`, a live slice, for its length.
    let ok = unsafe {
        let text = format_pid(libc::getpid() as u32, &mut buf);
        libc::write(fd, text.as_ptr().cast(), text.len()) == text.len() as isize
    };
    match ok {
        true => Ok(()),
        false => Err(io::Error::last_os_error()),
    }
}

/// In the child: the rlimits (soft = hard). Without root a limit above the current hard one is
/// lowered to it (raising it would fail). Async-signal-safe.
fn set_limits(l: &Limits, root: bool) -> io::Result<()> {
    let wanted = [
        (libc::RLIMIT_NOFILE, Some(l.nofile).filter(|&n| n > 0)),
        (libc::RLIMIT_NPROC, Some(l.nproc).filter(|&n| n > 0)),
        (libc::RLIMIT_AS, Some(l.address_space).filter(|&n| n > 0)),
        (libc::RLIMIT_CORE, l.core),
    ];
    for (res, value) in wanted {
        let Some(v) = value else { continue };
        let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one struct to `cur`, a valid local; setrlimit only reads it.
        unsafe {
            if libc::getrlimit(res, &mut cur) != 0 {
                return Err(io::Error::last_os_error());
            }
            let v = if root { v } else { v.min(cur.rlim_max) };
            let new = libc::rlimit { rlim_cur: v, rlim_max: v };
            if libc::setrlimit(res, &new) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// In the child: an empty capability bounding set (when `cap_last` is given: we are root),
/// no ambient capabilities, and `no_new_privs`, so that neither the uid change nor any later
/// exec (a setuid program, file capabilities) can give tenant code a privilege.
/// Async-signal-safe.
fn drop_privileges(cap_last: Option<libc::c_ulong>) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        for cap in cap_last.map(|last| 0..=last).into_iter().flatten() {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                return Err(io::Error::last_os_error());
            }
        }
        let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
        if libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A close-on-exec duplicate of `fd` numbered 10 or above, so that the `dup2` onto 3 and 4 in
/// the child never overwrites a descriptor it still has to copy.
pub fn dup_high(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; it does not take ownership of it.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a descriptor fcntl just created; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has ended, and a handle that
/// signals exactly that process even after its pid is reused. Used for workers forked by a
/// zygote, which are not the router's children.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Send `sig` to the process behind `pidfd`.
pub fn pidfd_signal(pidfd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: integers only; a null siginfo asks the kernel to fill in the usual kill(2) info.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Register an owned descriptor with tokio's reactor.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is open for as long as it lives and always reports the same
    // descriptor, and the `AsyncFd` owns it until it is dropped.
    Ok(unsafe { tokio::io::unix::AsyncFd::register(fd) }?)
}

/// `openat2(2)` through nix, owning the new descriptor. `dirfd` `None` is the working
/// directory (paths are absolute there anyway).
pub fn openat2(
    dirfd: Option<std::os::fd::BorrowedFd<'_>>,
    path: &std::path::Path,
    how: nix::fcntl::OpenHow,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let fd = nix::fcntl::openat2(dirfd, path, how)?;
    // SAFETY: `fd` was just returned by openat2 and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)` through nix (always close-on-exec), owning the new descriptor; `mode` is used
/// with `O_CREAT` only.
pub fn openat(
    dirfd: Option<std::os::fd::BorrowedFd<'_>>,
    path: &std::path::Path,
    flags: nix::fcntl::OFlag,
    mode: nix::sys::stat::Mode,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let dirfd = dirfd.map(|d| d.as_raw_fd());
    let fd = nix::fcntl::openat(dirfd, path, flags | nix::fcntl::OFlag::O_CLOEXEC, mode)?;
    // SAFETY: `fd` was just returned by openat and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arrange for `cmd`'s child to find each `from` descriptor at `to`, open across `exec`, and
/// nothing else (the router's own descriptors are all close-on-exec). For handing the
/// listening sockets to a new router process (the router's `upgrade` module). `from` fds must
/// all be above every `to` (see [`dup_high`]).
pub fn pass_fds(cmd: &mut std::process::Command, fds: Vec<(RawFd, RawFd)>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls dup2, which is
    // async-signal-safe; `fds` was allocated before the fork and is only read.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &fds {
                if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Take ownership of an inherited descriptor `fd` that must be a listening TCP socket: it is
/// made close-on-exec (tenant processes never inherit it) and non-blocking (for tokio).
/// Refused if `fd` is a standard stream, not open, not a socket or not listening, so a wrong
/// number in the environment never makes the router adopt a descriptor it does not own.
pub fn inherited_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    if fd < 3 {
        return Err(io::Error::other(format!("descriptor {fd} is a standard stream")));
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `listening`, a local c_int; an fd that
    // is not open or not a socket makes it fail with EBADF or ENOTSOCK, and nothing is owned.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if listening == 0 {
        return Err(io::Error::other(format!("descriptor {fd} is a socket that does not listen")));
    }
    // SAFETY: fcntl on an fd just shown to be an open socket; only its flags change.
    let ok = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            && libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK)
                == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is an open listening socket handed to this process for it to own (the
    // caller read its number from the hand-over variable, which it then removes); nothing
    // else in this process refers to it.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// Take ownership of an inherited descriptor `fd` that must be a pipe (the upgrade's ready
/// pipe); made close-on-exec. Refused for standard streams and anything but a FIFO.
pub fn inherited_pipe(fd: RawFd) -> io::Result<std::fs::File> {
    if fd < 3 {
        return Err(io::Error::other(format!("descriptor {fd} is a standard stream")));
    }
    // SAFETY: fstat writes into a zeroed local struct; a closed fd makes it fail with EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::other(format!("descriptor {fd} is not a pipe")));
    }
    // SAFETY: fcntl on an fd just shown to be an open pipe; only its flags change.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an open pipe handed to this process for it to own (its number came from the
    // hand-over variable, which the caller removes); nothing else here refers to it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_formatted_without_allocating() {
        let mut buf = [0u8; 10];
        assert_eq!(format_pid(0, &mut buf), b"0");
        assert_eq!(format_pid(7, &mut buf), b"7");
        assert_eq!(format_pid(4194304, &mut buf), b"4194304");
        assert_eq!(format_pid(u32::MAX, &mut buf), b"4294967295");
    }
}
