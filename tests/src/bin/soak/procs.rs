//! What /proc says about the router and its processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub state: char,
    /// Start time in clock ticks since boot: with the pid, names one process for good.
    pub start: u64,
    pub exe: Option<PathBuf>,
    /// Second argv word (`zygote` for a zygote).
    pub arg1: Option<String>,
}

impl Proc {
    pub fn is_zygote(&self) -> bool {
        self.arg1.as_deref() == Some("zygote")
    }
}

/// Every process, by pid.
pub fn table() -> HashMap<i32, Proc> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(p) = read(pid) {
            out.insert(pid, p);
        }
    }
    out
}

fn read(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    // Fields 5..21 of stat come before starttime (field 22).
    let start = f.nth(17)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let arg1 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| c.split(|&b| b == 0).nth(1).map(|a| String::from_utf8_lossy(a).into_owned()));
    Some(Proc { pid, ppid, uid, state, start, exe, arg1 })
}

/// Whether `exe` (maybe `... (deleted)`) is the binary `bin`.
pub fn is_bin(exe: &Option<PathBuf>, bin: &Path) -> bool {
    let Some(exe) = exe else { return false };
    let s = exe.to_string_lossy();
    let b = bin.to_string_lossy();
    s == b || s.strip_suffix(" (deleted)") == Some(&b)
}

/// Live (not zombie) processes descending from `root`.
pub fn descendants(t: &HashMap<i32, Proc>, root: i32) -> Vec<Proc> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for c in t.values().filter(|c| c.ppid == p) {
            frontier.push(c.pid);
            if c.state != 'Z' && c.state != 'X' {
                out.push(c.clone());
            }
        }
    }
    out
}

/// The live descendants of `root` as (pid, start time).
pub fn family(root: i32) -> Vec<(i32, u64)> {
    descendants(&table(), root).iter().map(|p| (p.pid, p.start)).collect()
}

/// Whether the working directory of `pid` is `dir` or below it.
pub fn cwd_below(pid: i32, dir: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir))
}

/// (workers, zygotes) of the router: its `paddock-worker` descendants.
pub fn workers_and_zygotes(router: i32, worker_bin: &Path) -> (Vec<i32>, Vec<i32>) {
    let t = table();
    let (mut w, mut z) = (Vec::new(), Vec::new());
    for p in descendants(&t, router) {
        if is_bin(&p.exe, worker_bin) {
            // A forked worker keeps the zygote's argv: only the router's children are zygotes.
            match p.is_zygote() && p.ppid == router {
                true => z.push(p.pid),
                false => w.push(p.pid),
            }
        }
    }
    (w, z)
}

/// The tenant (its URL prefix in the soak) a worker serves, from its working directory.
pub fn tenant_of(pid: i32) -> Option<String> {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let name = cwd.file_name()?.to_str()?.to_string();
    let parent = cwd.parent()?.file_name()?.to_str()?;
    match parent {
        "apps" => Some(format!("/{name}")),
        _ => Some(format!("/trac/{name}")),
    }
}

pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn fd_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Descriptions of the router's open fds (socket:[..], paths), for a leak report.
pub fn fd_targets(pid: i32) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| {
            let s = p.to_string_lossy().into_owned();
            if s.starts_with("socket:") {
                "socket".into()
            } else if s.starts_with("pipe:") {
                "pipe".into()
            } else if s.starts_with("anon_inode:") {
                s
            } else {
                format!("file {s}")
            }
        })
        .collect();
    v.sort();
    v
}

/// The cgroup v2 path of `pid` (`0::/...`), relative to the cgroup2 mount.
pub fn cgroup_of(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

pub fn cgroup2_mount() -> Option<PathBuf> {
    let m = std::fs::read_to_string("/proc/mounts").ok()?;
    m.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fs) = (f.next()?, f.next()?, f.next()?);
        (fs == "cgroup2").then(|| PathBuf::from(dir))
    })
}
