//! The worker's one door to `unsafe`: adopting inherited file descriptors, the shutdown signal
//! handler and its self-pipe, `poll(2)`, the per-thread `epoll` wait for connections and the
//! stdout redirection, and (in `confine`) a forked worker's cgroup and limits. Everything else
//! in the crate is safe code.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

mod confine;
pub use confine::cap_last_cap;
use confine::{confine, join_cgroup};

/// Set by the SIGTERM/SIGINT handler; read by the accept and connection loops.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Write end of the self-pipe the handler writes to (-1 until installed).
static WAKE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// Whether a shutdown signal has arrived.
pub fn shutdown_requested() -> bool {
    SHUTDOWN.load(Ordering::SeqCst)
}

/// Take ownership of an inherited listening Unix socket and mark it close-on-exec, so programs
/// the application spawns (Trac runs `svn`, `git`, ...) never hold the tenant's socket.
pub fn adopt_listener(fd: RawFd) -> io::Result<UnixListener> {
    check_open(fd)?;
    set_cloexec(fd)?;
    // SAFETY: `fd` is open (checked above) and, by the command-line contract with the router,
    // handed to this process for its exclusive use; nothing else in the process owns it yet
    // because Python has not started.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    listener.local_addr().map_err(|e| {
        io::Error::new(e.kind(), format!("fd {fd} is not a Unix stream socket: {e}"))
    })?;
    Ok(listener)
}

/// A close-on-exec duplicate of a descriptor that something else in the process owns (a Python
/// file object's `fileno()`), so it can be used without borrowing from Python.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC reads `fd` and makes a new descriptor; an invalid `fd` is an
    // EBADF error, not undefined behaviour.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Take ownership of the inherited control pipe's write end.
pub fn adopt_pipe(fd: RawFd) -> io::Result<File> {
    check_open(fd)?;
    set_cloexec(fd)?;
    // SAFETY: as in `adopt_listener`: the fd is open and given to us alone.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn check_open(fd: RawFd) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative fd"));
    }
    // SAFETY: F_GETFD only reads the descriptor flags; any integer is acceptable to it.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("fd {fd} is not open: {e}")));
    }
    Ok(())
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor checked to be open; no memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Point file descriptor 1 at stderr: stdout must never carry output (C extensions and
/// subprocesses that write to fd 1 would otherwise reach whatever the router left there).
pub fn redirect_stdout_to_stderr() -> io::Result<()> {
    // SAFETY: dup2 on the two standard descriptors; it touches no Rust-owned memory and Rust's
    // `Stdout` keeps using fd 1, which now names stderr's file.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Install SIGTERM and SIGINT handlers and return the read end of the self-pipe they write to.
/// Nobody drains the pipe, so once a signal arrived it stays readable and wakes every `poll`.
pub fn install_shutdown_signals() -> io::Result<OwnedFd> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are new and owned by nobody else. The write
    // end is deliberately leaked into the static for the handler.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    WAKE_WRITE_FD.store(fds[1], Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid starting value; we set the handler and an empty
        // mask. The handler only performs async-signal-safe operations (atomics and write(2)).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_shutdown_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(read)
}

extern "C" fn on_shutdown_signal(_sig: libc::c_int) {
    SHUTDOWN.store(true, Ordering::SeqCst);
    let fd = WAKE_WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: errno is saved and restored around write(2), both async-signal-safe, so the
        // interrupted code never sees a changed errno. The pipe is non-blocking: a full pipe
        // (signals repeated) just fails the write, which is fine since it is readable already.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, b"x".as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Wait until one of `fds` is readable (or hung up), or `timeout_ms` passes (-1: forever);
/// returns which ones are. EINTR counts as "nothing ready" so callers re-check the shutdown
/// flag.
pub fn poll_in(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    let nfds = libc::nfds_t::try_from(pfds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds"))?;
    // SAFETY: `pfds` is a valid array of `nfds` pollfd structs whose descriptors are kept open
    // by the borrows in `fds` for the duration of the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), nfds, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// Token of the listening socket in an [`AcceptWait`].
const LISTENER: u64 = 1;
/// Token of the shutdown self-pipe in an [`AcceptWait`].
const WAKE: u64 = 2;

/// What woke an [`AcceptWait`]; both `false` after a signal interrupted the wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Woken {
    /// The listening socket has a connection to accept, and this thread was chosen for it.
    pub connection: bool,
    /// The shutdown self-pipe is readable.
    pub shutdown: bool,
}

/// One worker thread's wait for a new connection or for shutdown: its own epoll instance with
/// the shared listening socket registered `EPOLLEXCLUSIVE` (Linux 4.5+), so the kernel wakes
/// one waiting thread of the whole pool per new connection instead of every idle thread of
/// every process, and the self-pipe registered normally, so shutdown wakes every thread.
#[derive(Debug)]
pub struct AcceptWait {
    epoll: OwnedFd,
}

impl AcceptWait {
    pub fn new(listener: BorrowedFd<'_>, wake: BorrowedFd<'_>) -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 succeeded, so `fd` is a new descriptor nobody else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let exclusive = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
        epoll_add(&epoll, listener, exclusive, LISTENER)?;
        epoll_add(&epoll, wake, libc::EPOLLIN as u32, WAKE)?;
        Ok(Self { epoll })
    }

    /// Block until a connection is there for this thread or shutdown was requested.
    pub fn wait(&self) -> io::Result<Woken> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // SAFETY: `events` is a writable array of 2 epoll_event and we pass its length; the
        // epoll descriptor is owned by `self` and so open.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 2, -1) };
        let n = match usize::try_from(n) {
            Ok(n) => n.min(events.len()),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(Woken::default());
                }
                return Err(e);
            }
        };
        let mut woken = Woken::default();
        for e in &events[..n] {
            // A copy: the struct is packed on x86-64, so no reference to the field.
            let token = e.u64;
            woken.connection |= token == LISTENER;
            woken.shutdown |= token == WAKE;
        }
        Ok(woken)
    }
}

fn epoll_add(epoll: &OwnedFd, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: both descriptors are open (owned or borrowed for the call) and `ev` is a valid
    // epoll_event the kernel only reads.
    let r =
        unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Write end of the SIGCHLD self-pipe of a zygote (-1 until installed).
static CHLD_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// Zygote: install a SIGCHLD handler and return the read end of the (non-blocking) self-pipe
/// it writes to; drain it with [`drain_pipe`] and then reap with [`reap_child`].
pub fn install_sigchld() -> io::Result<OwnedFd> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both descriptors are new and ours. The write end is leaked into
    // the static for the handler.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    CHLD_WRITE_FD.store(fds[1], Ordering::SeqCst);
    // SAFETY: as in `install_shutdown_signals`; the handler only does atomics and write(2).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigchld as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(read)
}

extern "C" fn on_sigchld(_sig: libc::c_int) {
    let fd = CHLD_WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: as in `on_shutdown_signal`: errno saved and restored around a non-blocking
        // write(2), all async-signal-safe.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, b"c".as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Read and discard whatever a non-blocking pipe holds.
pub fn drain_pipe(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is a writable buffer of the given length; the fd is borrowed, so open.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// One ended child of this process, without blocking: `(pid, raw wait status)`.
pub fn reap_child() -> Option<(u32, i32)> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes one int to `status`, a valid local.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid as u32, status))
}

/// Threads of this process (from `/proc/self/task`); a zygote forks only when it is 1.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Take ownership of the zygote's inherited `SOCK_SEQPACKET` socket (fd 3 by convention).
pub fn adopt_socket(fd: RawFd) -> io::Result<OwnedFd> {
    check_open(fd)?;
    set_cloexec(fd)?;
    // SAFETY: the fd is open and handed to this process alone by the router (see
    // `adopt_listener`); Python has not started yet.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a forked worker must become, taken from its spawn request.
pub struct Become<'a> {
    pub creds: Option<&'a paddock_proto::zygote::Creds>,
    pub umask: u32,
    pub cwd: &'a std::ffi::CStr,
    /// Received descriptors: the tenant's listening socket, the control pipe, stderr.
    pub listener: OwnedFd,
    pub control: OwnedFd,
    pub stderr: OwnedFd,
    /// The zygote's pid: the child checks it is still its parent after PR_SET_PDEATHSIG.
    pub parent: libc::pid_t,
    /// rlimits to set before the uid change.
    pub limits: &'a crate::Limits,
    /// The worker's `cgroup.procs`, joined first.
    pub cgroup_procs: Option<&'a std::ffi::CStr>,
    /// The highest capability number (read by the zygote before the fork).
    pub cap_last: libc::c_ulong,
}

/// In a child just forked by the zygote, before anything else runs: new session, its cgroup,
/// its limits (see [`confine`]), the tenant's groups, gid and uid (checked to have taken, including the saved ids), umask, working
/// directory, descriptors (0 = /dev/null, 1 and 2 = the router's stderr pipe, 3 = listener,
/// 4 = control pipe; everything else closed, the zygote's own socket included), SIGCHLD back to
/// its default, and the parent-death signal (SIGTERM: a worker whose zygote died finishes its
/// requests and exits; the router starts its successor through a new zygote).
pub fn become_worker(b: Become<'_>) -> io::Result<()> {
    let err = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    // SAFETY: plain system calls on integers and on memory we own for the call's duration
    // (`groups`, the C string); the process is single-threaded (the zygote checks it before
    // forking), so no other thread can observe the half-switched credentials.
    unsafe {
        if libc::setsid() < 0 {
            return Err(err("setsid"));
        }
    }
    if let Some(p) = b.cgroup_procs {
        join_cgroup(p).map_err(|e| io::Error::new(e.kind(), format!("joining its cgroup: {e}")))?;
    }
    confine(b.limits, b.cap_last)?;
    // SAFETY: as the block above; still single-threaded, now confined.
    unsafe {
        if let Some(c) = b.creds {
            let groups: Vec<libc::gid_t> = c.groups.iter().map(|&g| g as libc::gid_t).collect();
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(err("setgroups"));
            }
            if libc::setresgid(c.gid, c.gid, c.gid) != 0 {
                return Err(err("setresgid"));
            }
            if libc::setresuid(c.uid, c.uid, c.uid) != 0 {
                return Err(err("setresuid"));
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            let (mut gr, mut ge, mut gs) = (0, 0, 0);
            if libc::getresuid(&mut r, &mut e, &mut s) != 0
                || libc::getresgid(&mut gr, &mut ge, &mut gs) != 0
                || [r, e, s] != [c.uid; 3]
                || [gr, ge, gs] != [c.gid; 3]
            {
                return Err(io::Error::other("the credential switch did not take"));
            }
            // Going back to root must be impossible now.
            if c.uid != 0 && libc::setuid(0) == 0 {
                return Err(io::Error::other("could regain root after the switch"));
            }
        }
        libc::umask(b.umask as libc::mode_t);
        if libc::chdir(b.cwd.as_ptr()) != 0 {
            return Err(err("chdir to the tenant directory"));
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null < 0 {
            return Err(err("open /dev/null"));
        }
        // Sources are moved to 10 and above first, so no dup2 below clobbers a later source.
        let mut high = [0; 4];
        for (i, fd) in [null, b.stderr.as_raw_fd(), b.listener.as_raw_fd(), b.control.as_raw_fd()]
            .into_iter()
            .enumerate()
        {
            high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
            if high[i] < 0 {
                return Err(err("dup"));
            }
        }
        for (from, to) in [(high[0], 0), (high[1], 1), (high[1], 2), (high[2], 3), (high[3], 4)] {
            if libc::dup2(from, to) < 0 {
                return Err(err("dup2"));
            }
        }
        // Everything from 5 up goes, the zygote's socket, SIGCHLD pipe and the originals
        // included; the OwnedFds above are forgotten so nothing closes a reused number later.
        std::mem::forget((b.listener, b.control, b.stderr));
        if libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32) != 0 {
            return Err(err("close_range"));
        }
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()) < 0 {
            return Err(err("reset SIGCHLD"));
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // After the uid change, which clears it.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(err("PR_SET_PDEATHSIG"));
        }
        if libc::getppid() != b.parent {
            return Err(io::Error::other("the zygote exited during the spawn"));
        }
    }
    Ok(())
}

/// Own the descriptors that just arrived in an `SCM_RIGHTS` message.
pub fn own_received(raw: &[RawFd]) -> Vec<OwnedFd> {
    raw.iter()
        // SAFETY: the kernel installed these descriptors in this process for this message
        // alone (recvmsg with SCM_RIGHTS); nothing else refers to them yet.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}
