//! A worker forked by a zygote confines itself, while still root and before its uid change:
//! its cgroup leaf first, then rlimits, an empty capability bounding set, no ambient
//! capabilities and `no_new_privs` (a directly started worker gets the same from the router's
//! `pre_exec`).

use std::io;

/// `/proc/sys/kernel/cap_last_cap`; 63 if unreadable (unknown numbers are skipped).
pub fn cap_last_cap() -> libc::c_ulong {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Join a cgroup by writing "0" (this process) to its `cgroup.procs`, a path in cgroupfs that
/// the router made (root-owned; no tenant can write there).
pub(super) fn join_cgroup(procs: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: open reads a NUL-terminated string we borrow; write reads 1 byte of a literal;
    // close takes the descriptor open just returned.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
        let e = io::Error::last_os_error();
        libc::close(fd);
        if !ok {
            return Err(e);
        }
    }
    Ok(())
}

/// rlimits (soft = hard), an empty capability bounding set, no ambient capabilities and
/// `no_new_privs`: set while still root, so nothing the tenant's code runs later can gain a
/// privilege.
pub(super) fn confine(l: &crate::Limits, cap_last: libc::c_ulong) -> io::Result<()> {
    let err = |what: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let wanted = [
        (libc::RLIMIT_NOFILE, Some(l.rlimit_nofile).filter(|&n| n > 0)),
        (libc::RLIMIT_NPROC, Some(l.rlimit_nproc).filter(|&n| n > 0)),
        (libc::RLIMIT_AS, Some(l.rlimit_as).filter(|&n| n > 0)),
        (libc::RLIMIT_CORE, l.rlimit_core),
    ];
    let root = nix::unistd::geteuid().is_root();
    // SAFETY: get/setrlimit on a local struct, prctl with integers only.
    unsafe {
        for (res, value) in wanted {
            let Some(v) = value else { continue };
            let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(res, &mut cur) != 0 {
                return Err(err("getrlimit"));
            }
            // Without root a limit cannot be raised: lower it to the hard limit instead.
            let v = if root { v } else { v.min(cur.rlim_max) };
            if libc::setrlimit(res, &libc::rlimit { rlim_cur: v, rlim_max: v }) != 0 {
                return Err(err("setrlimit"));
            }
        }
        // Only root may drop (CAP_SETPCAP); a zygote of an unprivileged router has nothing.
        for cap in (0..=cap_last).filter(|_| root) {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
            {
                return Err(err("PR_CAPBSET_DROP"));
            }
        }
        let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
        if libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) != 0 {
            return Err(err("PR_CAP_AMBIENT_CLEAR_ALL"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(err("PR_SET_NO_NEW_PRIVS"));
        }
    }
    Ok(())
}
