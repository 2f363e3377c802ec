//! A tenant's processes live and die with its pool: every pool gets a cgroup v2 directory and
//! every worker process a leaf in it, so whatever a worker forks (double fork and `setsid`
//! included) stays in the leaf and is killed with it (`cgroup.kill`).
//!
//! Layout: `<router's cgroup>/paddock-<router pid>/<tenant>.<pool seq>/w<spawn seq>`. A leaf is
//! killed and removed when its worker ends (recycled, crashed, stopped); a pool's directory
//! when the pool is dropped. Leftovers of a router that is gone are removed at start-up.
//! Only the cgroup2 hierarchy is used: processes are never moved between v1 hierarchies.
//!
//! Where the host delegates controllers to the router's cgroup (systemd `Delegate=yes`), the
//! router moves itself into `<base>/router` (the no-internal-processes rule), enables
//! `memory`, `cpu` and `pids` below, and each pool gets `memory.max`, `cpu.max`, `pids.max`.
//! Without cgroup2 (or without the right to write it) the fallback is the worker's process
//! group (see `docs/security.md`).

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

mod parse;
pub use paddock_config::units::CpuMax;
pub use parse::{cgroup2_mount, own_cgroup, tree_parent};

/// The router's cgroup tree, when it has one.
#[derive(Debug)]
pub struct Tree {
    /// `<mount><router cgroup>/paddock-<pid>`.
    base: PathBuf,
    /// `memory`, `cpu` and `pids` are enabled for the pools.
    controllers: bool,
}

static TREE: OnceLock<Option<Tree>> = OnceLock::new();

/// The tree set up by [`init`]; `None` before it, or where there is no usable cgroup2.
pub fn tree() -> Option<&'static Tree> {
    TREE.get().and_then(Option::as_ref)
}

/// Set the tree up once, at start-up, logging what is and is not available.
pub fn init() {
    TREE.get_or_init(|| match Tree::create() {
        Ok(t) => {
            match t.controllers {
                true => tracing::info!(base = %t.base.display(), "pools run in cgroups with memory_max, cpu_max and pids_max"),
                false => tracing::info!(base = %t.base.display(), "pools run in cgroups (killed as a whole); no delegated controllers, so limits come from rlimits only"),
            }
            Some(t)
        }
        Err(e) => {
            tracing::warn!("no cgroup v2 for the pools ({e}): a worker's process group is killed with it instead, and limits come from rlimits only");
            None
        }
    });
}

/// At shutdown, after every pool stopped: kill and remove what is left (pools' directories;
/// the router's own leaf stays while it runs and is removed by the next start).
pub fn shutdown() {
    let Some(t) = tree() else { return };
    if let Ok(rd) = fs::read_dir(&t.base) {
        for e in rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            if e.file_name() != "router" {
                kill(&e.path());
                remove_tree(&e.path(), 100);
            }
        }
    }
    if !t.controllers {
        remove_tree(&t.base, 10);
    }
}

/// Remove the trees of routers that are gone (as at start-up): an upgraded router calls it
/// once its predecessor has exited, whose tree it could not remove while that one ran.
pub fn sweep() {
    let Some(t) = tree() else { return };
    if let Some(parent) = t.base.parent() {
        remove_stale(parent);
    }
}

impl Tree {
    fn create() -> io::Result<Tree> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let mount = cgroup2_mount(&mountinfo).ok_or_else(|| io::Error::other("not mounted"))?;
        let own = own_cgroup(&fs::read_to_string("/proc/self/cgroup")?)
            .ok_or_else(|| io::Error::other("no 0:: line in /proc/self/cgroup"))?;
        let parent = mount.join(tree_parent(&own).trim_start_matches('/'));
        remove_stale(&parent);
        let base = parent.join(format!("paddock-{}", std::process::id()));
        fs::create_dir(&base)?;
        let controllers = delegate(&parent, &base).unwrap_or_else(|e| {
            tracing::debug!("cgroup controllers not delegated: {e}");
            false
        });
        Ok(Tree { base, controllers })
    }

    /// Whether `memory_max`, `cpu_max` and `pids_max` take effect.
    pub fn has_controllers(&self) -> bool {
        self.controllers
    }
}

const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Enable the controllers for the pools if `parent` offers all of them: the router moves into
/// `<base>/router` first, since a cgroup with controllers enabled below holds no processes.
fn delegate(parent: &Path, base: &Path) -> io::Result<bool> {
    let offered = fs::read_to_string(parent.join("cgroup.controllers"))?;
    if !CONTROLLERS.iter().all(|c| offered.split_whitespace().any(|o| o == *c)) {
        return Ok(false);
    }
    let me = base.join("router");
    fs::create_dir(&me)?;
    write_file(&me.join("cgroup.procs"), &std::process::id().to_string())?;
    let enable = "+memory +cpu +pids";
    write_file(&parent.join("cgroup.subtree_control"), enable)?;
    write_file(&base.join("cgroup.subtree_control"), enable)?;
    Ok(true)
}

/// Kill and remove `paddock-<pid>` directories whose router is gone (no process `pid`, or one
/// that is not `paddock`: a reused pid). The caller's own cgroup is never among them.
fn remove_stale(parent: &Path) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("paddock-")) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if pid == std::process::id() || comm.trim() == "paddock" {
            continue;
        }
        tracing::info!(cgroup = %e.path().display(), "removing the cgroup of a previous run");
        kill(&e.path());
        remove_tree(&e.path(), 50);
    }
}

/// A pool's cgroup; killed and removed on drop.
#[derive(Debug)]
pub struct PoolGroup {
    dir: PathBuf,
    next_leaf: AtomicU64,
}

/// The cgroup limits of one pool (0 or `None`: no limit).
#[derive(Debug, Clone, Default)]
pub struct GroupLimits {
    pub memory_max: u64,
    pub cpu_max: Option<CpuMax>,
    pub pids_max: u64,
}

impl PoolGroup {
    /// Create `<base>/<tenant>.<seq>`, with the limits where the controllers are there.
    pub fn create(tenant: &str, seq: u64, limits: &GroupLimits) -> Option<PoolGroup> {
        let tree = tree()?;
        let dir = tree.base.join(format!("{tenant}.{seq}"));
        if let Err(e) = fs::create_dir(&dir) {
            tracing::warn!(tenant, "cannot create the pool's cgroup {}: {e}", dir.display());
            return None;
        }
        if tree.controllers {
            apply(&dir, tenant, limits);
        }
        Some(PoolGroup { dir, next_leaf: AtomicU64::new(0) })
    }

    /// A new leaf for one worker process, with its `cgroup.procs` open for writing.
    pub fn leaf(&self) -> io::Result<Leaf> {
        let n = self.next_leaf.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("w{n}"));
        fs::create_dir(&dir)?;
        let procs_path = dir.join("cgroup.procs");
        match fs::OpenOptions::new().write(true).open(&procs_path) {
            Ok(f) => Ok(Leaf { dir, procs_path, procs: f.into() }),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }
}

fn apply(dir: &Path, tenant: &str, l: &GroupLimits) {
    let set = |file: &str, value: String| {
        if let Err(e) = write_file(&dir.join(file), &value) {
            tracing::warn!(tenant, "cannot set {file} = {value}: {e}");
        }
    };
    if l.memory_max > 0 {
        set("memory.max", l.memory_max.to_string());
        // Over the limit the kernel kills the whole pool's cgroup, not one random thread.
        set("memory.oom.group", "1".to_string());
    }
    if let Some(c) = &l.cpu_max {
        set("cpu.max", c.file_value());
    }
    if l.pids_max > 0 {
        set("pids.max", l.pids_max.to_string());
    }
}

impl Drop for PoolGroup {
    fn drop(&mut self) {
        kill(&self.dir);
        reap_later(self.dir.clone());
    }
}

/// One worker process's leaf; killed and removed on drop.
#[derive(Debug)]
pub struct Leaf {
    dir: PathBuf,
    procs_path: PathBuf,
    procs: OwnedFd,
}

impl Leaf {
    /// The open `cgroup.procs`, for a child to write its own pid to before it execs.
    pub fn procs_fd(&self) -> &OwnedFd {
        &self.procs
    }

    /// Its `cgroup.procs` path, for a zygote-forked child to join by itself.
    pub fn procs_path(&self) -> &Path {
        &self.procs_path
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        kill(&self.dir);
        reap_later(self.dir.clone());
    }
}

/// `cgroup.kill`: SIGKILL to every process in `dir` and below, at once (Linux 5.14+).
fn kill(dir: &Path) {
    if let Err(e) = write_file(&dir.join("cgroup.kill"), "1") {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(cgroup = %dir.display(), "cgroup.kill failed: {e}");
        }
    }
}

/// Remove a killed cgroup once its processes are gone (they take a moment to exit): on a
/// blocking thread when there is a runtime, here otherwise.
fn reap_later(dir: PathBuf) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => drop(h.spawn_blocking(move || remove_tree(&dir, 100))),
        Err(_) => remove_tree(&dir, 100),
    }
}

/// `rmdir` `dir` and its sub-cgroups, deepest first, retrying for up to `tries` × 10 ms while
/// processes are still exiting.
fn remove_tree(dir: &Path, tries: u32) {
    for _ in 0..tries {
        if try_remove(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(cgroup = %dir.display(), "cgroup still busy; left behind");
}

fn try_remove(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                try_remove(&e.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}
