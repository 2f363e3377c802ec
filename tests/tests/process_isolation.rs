//! A tenant's processes live and die with its pool, and run with limits: a grandchild the app
//! detaches (double fork + `setsid`) is killed when its pool stops, when its worker is
//! recycled and when the server stops, for direct and zygote-forked workers alike; workers
//! have `no_new_privs`, no capabilities and the configured rlimits. Root only (the tenant runs
//! as a real unprivileged user); skipped otherwise.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    ensure_user, eventually, free_port, is_zygote, nix_is_root, private, repo_root, send_raw,
    write, Server,
};

const USER: &str = "paddock-e2e";
const TOKEN: &str = "process-isolation-token";
const WAIT: Duration = Duration::from_secs(30);
/// How long a detached grandchild may outlive its worker.
const GONE_WITHIN: Duration = Duration::from_secs(1);

struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    admin_port: u16,
    zygote: bool,
}

impl Site {
    /// Tenant `esc` (the test app, one process) owned by the test user, with an admin listener.
    fn new(zygote: bool) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let tenant = dir.path().join("esc");
        std::fs::create_dir_all(&tenant).expect("mkdir");
        private(&tenant);
        let st = Command::new("chown").arg(format!("{USER}:")).arg(&tenant).status();
        assert!(st.expect("chown").success());
        write(&dir.path().join("tokens"), &format!("{TOKEN}\n"));
        let site =
            Site { config: dir.path().join("paddock.toml"), dir, admin_port: free_port(), zygote };
        site.write_config(true);
        site
    }

    fn write_config(&self, with_tenant: bool) {
        let d = self.dir.path();
        // `keep` is never requested: a configuration must serve something.
        let mut text = format!(
            "index = false\n[admin]\nlisten = \"127.0.0.1:{}\"\ntokens_file = \"{}\"\n\
             [tenants.keep]\ndir = \"{}\"\nmount = \"/keep\"\n",
            self.admin_port,
            d.join("tokens").display(),
            d.display()
        );
        if with_tenant {
            text.push_str(&format!(
                "[tenants.esc]\ndir = \"{}\"\nmount = \"/esc\"\napp = \"testapps:application\"\n\
                 python_path = [\"{}\"]\nprocesses = 1\nthreads = 2\nwatch_files = []\n\
                 preload = {}\nrlimit_nofile = 1000\nrlimit_nproc = 300\nrlimit_as = \"3G\"\n",
                d.join("esc").display(),
                repo_root().join("tests/apps").display(),
                if self.zygote { "[\"testapps\"]" } else { "[]" },
            ));
        }
        write(&self.config, &text);
    }

    fn start(&self) -> Server {
        // Without --allow-root: the tenant runs as its directory's owner.
        Server::start_with(&["--config", self.config.to_str().expect("utf-8")], false, &[])
    }

    fn restart_pool(&self, server: &Server) {
        let req = format!(
            "POST /api/v1/tenants/esc/restart HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let addr = format!("127.0.0.1:{}", self.admin_port).parse().expect("addr");
        let r = send_raw(addr, req.as_bytes()).expect("admin request");
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    }
}

/// Ask the app to detach a grandchild; (worker pid, grandchild pid), both checked to run as the
/// tenant, and the worker to have been started the way the test wants.
fn detach_grandchild(site: &Site, server: &Server, uid: u32) -> (u32, u32) {
    let r = server.get("/esc/orphan");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let pid = |k: &str| v[k].as_u64().and_then(|n| u32::try_from(n).ok()).expect("pid");
    let (worker, orphan) = (pid("worker"), pid("orphan"));
    assert!(alive(orphan), "the grandchild did not start");
    assert_eq!(field(orphan, "Uid:").split_whitespace().next(), Some(uid.to_string().as_str()));
    let forked = parent_of(worker).is_some_and(is_zygote);
    assert_eq!(forked, site.zygote, "worker {worker} forked by a zygote?\n{}", server.log_text());
    (worker, orphan)
}

fn status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn field(pid: u32, key: &str) -> String {
    let s = status(pid);
    s.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim().to_string()
}

/// Running (a zombie nobody reaps yet counts as gone).
fn alive(pid: u32) -> bool {
    let state = field(pid, "State:");
    !state.is_empty() && !state.starts_with('Z')
}

fn parent_of(pid: u32) -> Option<u32> {
    field(pid, "PPid:").parse().ok()
}

/// After the worker is gone, its detached grandchild follows within [`GONE_WITHIN`].
fn assert_follows(server: &Server, worker: u32, orphan: u32, what: &str) {
    eventually(&format!("worker {worker} to exit ({what})"), WAIT, || !alive(worker));
    let start = Instant::now();
    while alive(orphan) && start.elapsed() < GONE_WITHIN {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survived = alive(orphan);
    if survived {
        // Ours to clean up: the test started it (through the app).
        common::signal(orphan, 9);
    }
    assert!(!survived, "grandchild {orphan} outlived its worker ({what}):\n{}", server.log_text());
}

fn skip_unless_root(name: &str) -> bool {
    if !nix_is_root() {
        eprintln!("{name}: skipped (needs root to run a tenant as another user)");
        return true;
    }
    false
}

fn killed_when_the_tenant_is_removed(zygote: bool) {
    let (uid, _) = ensure_user(USER);
    let site = Site::new(zygote);
    let server = site.start();
    let (worker, orphan) = detach_grandchild(&site, &server, uid);
    site.write_config(false);
    common::signal(server.child.id(), 1);
    assert_follows(&server, worker, orphan, "tenant removed, SIGHUP");
}

#[test]
fn grandchild_dies_when_its_tenant_is_removed_direct() {
    if !skip_unless_root("grandchild_dies_when_its_tenant_is_removed_direct") {
        killed_when_the_tenant_is_removed(false);
    }
}

#[test]
fn grandchild_dies_when_its_tenant_is_removed_zygote() {
    if !skip_unless_root("grandchild_dies_when_its_tenant_is_removed_zygote") {
        killed_when_the_tenant_is_removed(true);
    }
}

fn killed_on_pool_restart(zygote: bool) {
    let (uid, _) = ensure_user(USER);
    let site = Site::new(zygote);
    let server = site.start();
    let (worker, orphan) = detach_grandchild(&site, &server, uid);
    site.restart_pool(&server);
    assert_follows(&server, worker, orphan, "pool restart");
    // The pool itself lives on in its new process.
    assert_eq!(server.get("/esc/pid").status, 200);
}

#[test]
fn grandchild_dies_on_pool_restart_direct() {
    if !skip_unless_root("grandchild_dies_on_pool_restart_direct") {
        killed_on_pool_restart(false);
    }
}

#[test]
fn grandchild_dies_on_pool_restart_zygote() {
    if !skip_unless_root("grandchild_dies_on_pool_restart_zygote") {
        killed_on_pool_restart(true);
    }
}

#[test]
fn grandchildren_die_when_the_server_stops() {
    if skip_unless_root("grandchildren_die_when_the_server_stops") {
        return;
    }
    let (uid, _) = ensure_user(USER);
    for zygote in [false, true] {
        let site = Site::new(zygote);
        let mut server = site.start();
        let (worker, orphan) = detach_grandchild(&site, &server, uid);
        assert!(server.stop().is_some_and(|s| s.success()), "{}", server.log_text());
        assert_follows(&server, worker, orphan, "server stopped");
    }
}

/// `Max open files  1000  1000  files` → ("1000", "1000").
fn limit(pid: u32, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = text.lines().find(|l| l.starts_with(name)).expect("limit line");
    let mut f = line[name.len()..].split_whitespace();
    let mut next = || f.next().unwrap_or("").to_string();
    (next(), next())
}

fn assert_confined(pid: u32, what: &str) {
    let s = status(pid);
    for (key, want) in [
        ("NoNewPrivs:", "1"),
        ("CapBnd:", "0000000000000000"),
        ("CapEff:", "0000000000000000"),
        ("CapPrm:", "0000000000000000"),
        ("CapAmb:", "0000000000000000"),
    ] {
        assert_eq!(field(pid, key), want, "{what} {pid}: {key}\n{s}");
    }
    let both = |v: &str| (v.to_string(), v.to_string());
    assert_eq!(limit(pid, "Max open files"), both("1000"), "{what}");
    assert_eq!(limit(pid, "Max processes"), both("300"), "{what}");
    assert_eq!(limit(pid, "Max address space"), both(&(3u64 << 30).to_string()), "{what}");
    assert_eq!(limit(pid, "Max core file size"), both("0"), "{what}");
}

#[test]
fn workers_have_no_privileges_and_the_configured_limits() {
    if skip_unless_root("workers_have_no_privileges_and_the_configured_limits") {
        return;
    }
    let (uid, _) = ensure_user(USER);
    for zygote in [false, true] {
        let site = Site::new(zygote);
        let server = site.start();
        let (worker, orphan) = detach_grandchild(&site, &server, uid);
        let _reap = Reap(orphan);
        let what = if zygote { "zygote-forked worker" } else { "direct worker" };
        assert_confined(worker, what);
        // What the app starts inherits them (sleep was exec'd: no way back to privileges).
        assert_confined(orphan, "its grandchild");
    }
}

/// Kills the grandchild the test made the app start, whatever the outcome.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        if alive(self.0) {
            common::signal(self.0, 9);
        }
    }
}
