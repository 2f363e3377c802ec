//! The router's one door for `unsafe`: what a worker child does between `fork` and `exec`.
//!
//! std's `Command::uid` drops supplementary groups and runs `pre_exec` closures only after the
//! uid change, so the groups a tenant needs could not be set. We do the whole credential switch
//! here, with async-signal-safe calls only (no allocation, no locks), in the order the kernel
//! requires: groups, gid, uid.
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
    let groups: Vec<libc::gid_t> = setup
        .creds
        .as_ref()
        .map(|c| c.groups.iter().map(|&g| g as libc::gid_t).collect())
        .unwrap_or_default();
    // SAFETY: the closure runs in the forked child before exec; it only makes raw syscalls
    // (setsid, setgroups, setgid, setuid, umask, dup2, prctl, getppid), which are
    // async-signal-safe, and touches no memory that another thread could hold locked: the
    // captured vectors were allocated before the fork and are only read.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
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

/// `openat(2)` through nix, owning the new descriptor (the fallback where openat2 is missing).
pub fn openat(
    dirfd: Option<std::os::fd::BorrowedFd<'_>>,
    path: &std::path::Path,
    flags: nix::fcntl::OFlag,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let dirfd = dirfd.map(|d| d.as_raw_fd());
    let fd = nix::fcntl::openat(dirfd, path, flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: `fd` was just returned by openat and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
