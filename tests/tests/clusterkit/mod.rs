//! Harness for the multi-node tests: an etcd of 1 member (default, CI's quick mode) or 3
//! (`PADDOCK_CLUSTER_FULL=1`), N `paddock serve` nodes started from generated paddock.toml
//! files that share one sites directory of discovered test-app tenants, and HAProxy in front.
//! Which node served a request is told by the worker's pid (`/trac/NAME/pid`): its chain of
//! parents in /proc leads to one node's router.
#![allow(dead_code)]

pub mod etcd;
pub mod haproxy;
pub mod load;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, private, repo_root, signal, stop_child, write, Response, Server};

pub use etcd::Etcd;
// Not every test file that includes the kit starts a balancer.
#[allow(unused_imports)]
pub use haproxy::Haproxy;

pub const TOKEN: &str = "cluster-test-token";
pub const SIGKILL: i32 = 9;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;
pub const SIGTERM: i32 = 15;

/// `PADDOCK_CLUSTER_FULL=1`: 3 etcd members instead of 1.
pub fn full_mode() -> bool {
    std::env::var("PADDOCK_CLUSTER_FULL").is_ok_and(|v| v == "1")
}

/// How the nodes are configured.
pub struct Opts {
    pub nodes: usize,
    /// `[cluster]` present (false: plain single-node Paddocks on one sites dir).
    pub cluster: bool,
    pub ttl_secs: u64,
    pub capacity: u32,
    /// Extra lines at the end of `[admin]`.
    pub admin: String,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts { nodes: 3, cluster: true, ttl_secs: 4, capacity: 200, admin: String::new() }
    }
}

/// One `paddock serve` node.
pub struct Node {
    pub id: String,
    pub server: Server,
    pub admin: SocketAddr,
    pub internal: SocketAddr,
    pub config: PathBuf,
    stopped: AtomicBool,
}

pub struct Cluster {
    // Dropped in this order: the nodes before etcd, the directory last.
    pub nodes: Vec<Node>,
    pub etcd: Etcd,
    pub dir: tempfile::TempDir,
    pub ttl: Duration,
}

impl Cluster {
    /// etcd, then the nodes one by one; with `[cluster]`, waits until every node is live and
    /// sees all the others.
    pub fn start(opts: Opts) -> Cluster {
        use std::os::unix::fs::PermissionsExt;
        let etcd = Etcd::start(if full_mode() { 3 } else { 1 });
        let dir = tempfile::tempdir().expect("tempdir");
        // Traversable by a tenant user when the tests run as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir_all(dir.path().join("sites")).expect("mkdir sites");
        write(&dir.path().join("tokens"), &format!("{TOKEN}\n"));
        let mut c =
            Cluster { nodes: Vec::new(), etcd, dir, ttl: Duration::from_secs(opts.ttl_secs) };
        for i in 0..opts.nodes {
            let node = c.start_node(i, &opts);
            c.nodes.push(node);
        }
        if opts.cluster {
            c.wait_converged(Duration::from_secs(30));
        }
        c
    }

    fn start_node(&self, i: usize, opts: &Opts) -> Node {
        let id = format!("n{}", i + 1);
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let internal: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let config = self.dir.path().join(format!("{id}.toml"));
        write(&config, &self.config_text(&id, admin, internal, opts));
        let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(admin).is_err() {
            assert!(Instant::now() < deadline, "{id}: no admin listener:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        Node { id, server, admin, internal, config, stopped: AtomicBool::new(false) }
    }

    fn config_text(&self, id: &str, admin: SocketAddr, internal: SocketAddr, o: &Opts) -> String {
        let cluster = match o.cluster {
            true => format!(
                "[cluster]\netcd = {etcd:?}\nprefix = \"/paddock-e2e/\"\nnode_id = \"{id}\"\n\
                 internal_listen = \"{internal}\"\npeers = [\"127.0.0.0/8\"]\n\
                 capacity = {cap}\nttl = \"{ttl}s\"\n",
                etcd = self.etcd.urls(),
                cap = o.capacity,
                ttl = o.ttl_secs,
            ),
            false => String::new(),
        };
        format!(
            "sites = \"{sites}\"\nindex = false\n\
             [defaults]\nprocesses = 1\nthreads = 4\napp = \"testapps:application\"\n\
             python_path = [\"{apps}\"]\nwatch_files = []\ngraceful_timeout = \"5s\"\n\
             {cluster}\
             [admin]\nlisten = \"{admin}\"\ntokens_file = \"{dir}/tokens\"\n{extra}\n",
            sites = self.sites().display(),
            apps = repo_root().join("tests/apps").display(),
            dir = self.dir.path().display(),
            extra = if o.admin.is_empty() { "signup = false" } else { &o.admin },
        )
    }

    pub fn sites(&self) -> PathBuf {
        self.dir.path().join("sites")
    }

    /// A discovered tenant: `sites/NAME/conf/trac.ini` (the marker), the directory 0750.
    pub fn add_site(&self, name: &str) {
        let d = self.sites().join(name);
        write(&d.join("conf/trac.ini"), "[project]\n");
        private(&d);
    }

    /// Until every running node says it is live and lists `n` nodes.
    pub fn wait_converged(&self, timeout: Duration) {
        let want = self.nodes.iter().filter(|n| n.alive()).count();
        let ok = within(timeout, || {
            self.nodes.iter().filter(|n| n.alive()).all(|n| {
                let (s, v) = n.api("GET", "/api/v1/cluster", None);
                s == 200
                    && v["health"] == "live"
                    && v["nodes"].as_array().map(Vec::len) == Some(want)
            })
        });
        if ok.is_none() {
            self.dump("cluster did not converge");
        }
    }

    /// Index of the node whose router is an ancestor of `pid` (a worker, maybe forked by a
    /// zygote), if any.
    pub fn node_of_pid(&self, pid: u32) -> Option<usize> {
        let routers: Vec<u32> = self.nodes.iter().map(|n| n.pid()).collect();
        let mut p = pid;
        for _ in 0..32 {
            if let Some(i) = routers.iter().position(|&r| r == p) {
                return Some(i);
            }
            p = parent_of(p)?;
            if p <= 1 {
                return None;
            }
        }
        None
    }

    /// `GET /trac/NAME/pid` through `addr`: the status and, on 200, which node served it.
    pub fn who_serves(&self, addr: SocketAddr, name: &str, timeout: Duration) -> Served {
        self.who_serves_path(addr, name, "pid", timeout)
    }

    /// Like [`Cluster::who_serves`] for `/trac/NAME/PATH` (a test-app path answering the pid:
    /// `pid`, `sleep?s=0.2`).
    pub fn who_serves_path(
        &self,
        addr: SocketAddr,
        name: &str,
        path: &str,
        timeout: Duration,
    ) -> Served {
        match get(addr, &format!("/trac/{name}/{path}"), timeout) {
            Ok(r) if r.status == 200 => {
                let pid: Option<u32> = r.text().trim().parse().ok();
                Served { status: 200, pid, node: pid.and_then(|p| self.node_of_pid(p)), err: None }
            }
            Ok(r) => Served { status: r.status, pid: None, node: None, err: Some(r.text()) },
            Err(e) => Served { status: 0, pid: None, node: None, err: Some(e.to_string()) },
        }
    }

    /// The first request for `name` (made a site here) through node `i`: nobody owns it, so
    /// node `i` claims it and serves it. The worker's pid.
    pub fn start_on(&self, i: usize, name: &str) -> u32 {
        self.add_site(name);
        let s = self.who_serves(self.nodes[i].server.addr, name, Duration::from_secs(30));
        if s.status != 200 || s.node != Some(i) {
            self.dump(&format!("first request for {name} through {}: {s:?}", self.nodes[i].id));
        }
        s.pid.expect("pid")
    }

    /// Until every node in `on` names `want` as the owner of `name` (their caches may lag).
    pub fn owner_agreed(&self, name: &str, on: &[usize], want: Option<&str>) {
        let agree = || on.iter().all(|&i| self.nodes[i].owner(name).as_deref() == want);
        if within(Duration::from_secs(10), agree).is_none() {
            let seen: Vec<_> =
                on.iter().map(|&i| (&self.nodes[i].id, self.nodes[i].owner(name))).collect();
            self.dump(&format!("owner of {name}: want {want:?} on every node, saw {seen:?}"));
        }
    }

    /// The metric `series` summed over the nodes in `on` (a missing sample counts 0).
    pub fn sum(&self, on: &[usize], series: &str) -> f64 {
        on.iter().map(|&i| self.nodes[i].metric(series).unwrap_or(0.0)).sum()
    }

    /// Index of the node `node.id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Every node's log (its last lines apart from the access log), then panic with `why`.
    /// With `PADDOCK_TEST_LOG_DIR` set, the whole logs are copied there too.
    pub fn dump(&self, why: &str) -> ! {
        let keep = std::env::var_os("PADDOCK_TEST_LOG_DIR").map(PathBuf::from);
        let mut text = String::new();
        for n in &self.nodes {
            let log = n.server.log_text();
            if let Some(d) = &keep {
                let _ = std::fs::create_dir_all(d);
                let _ = std::fs::write(d.join(format!("{}.log", n.id)), &log);
            }
            let mut last: Vec<&str> =
                log.lines().rev().filter(|l| !l.contains("paddock::access")).take(40).collect();
            last.reverse();
            // The harness signals SIGTERM only when the cluster is dropped, after this.
            if log.contains("SIGTERM: shutting down") {
                text.push_str(&format!(
                    "NOTE: {} got a SIGTERM this test did not send (another process on this machine?)\n",
                    n.id
                ));
            }
            let (public, internal) = (n.server.addr, n.internal);
            text.push_str(&format!(
                "--- {} (public {public}, internal {internal}, pid {}), last lines but access:\n{}\n",
                n.id,
                n.pid(),
                last.join("\n")
            ));
        }
        panic!("{why}\n{text}");
    }

    /// Node `i` and HAProxy addresses as (name, public address) pairs for [`Haproxy::start`].
    pub fn backends(&self) -> Vec<(String, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id.clone(), n.server.addr)).collect()
    }
}

impl Drop for Cluster {
    /// SIGTERM every node at once (a stopped one is continued first), then wait for each.
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if n.alive() {
                if n.stopped.load(Ordering::Relaxed) {
                    n.sigcont();
                }
                signal(n.pid(), SIGTERM);
            }
        }
        for n in &mut self.nodes {
            stop_child(&mut n.server.child, SIGTERM, Duration::from_secs(20));
        }
    }
}

/// What one `/trac/NAME/pid` request got.
#[derive(Debug, Clone)]
pub struct Served {
    /// 0: no HTTP answer (refused, reset, timed out).
    pub status: u16,
    pub pid: Option<u32>,
    pub node: Option<usize>,
    pub err: Option<String>,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }

    /// The process has not exited (a stopped one counts as alive).
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).is_ok_and(|s| {
            s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) != Some("Z")
        })
    }

    /// SIGKILL (reaped when the cluster is dropped).
    pub fn kill9(&self) {
        signal(self.pid(), SIGKILL);
    }

    /// SIGSTOP the router (its workers keep running); continued on drop at the latest.
    pub fn sigstop(&self) {
        signal(self.pid(), SIGSTOP);
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn sigcont(&self) {
        signal(self.pid(), SIGCONT);
        self.stopped.store(false, Ordering::Relaxed);
    }

    /// One admin API call with the test token; the JSON answer (Null if none).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.api_timeout(method, path, body, Duration::from_secs(30))
    }

    pub fn api_timeout(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> (u16, Value) {
        let body = body.unwrap_or("");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n",
            self.admin
        );
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        match http(self.admin, req.as_bytes(), timeout) {
            Ok(r) => (r.status, serde_json::from_slice(&r.body).unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// The owner this node reports for `name` (`GET /api/v1/cluster/tenants/NAME`).
    pub fn owner(&self, name: &str) -> Option<String> {
        let (s, v) = self.api("GET", &format!("/api/v1/cluster/tenants/{name}"), None);
        assert_eq!(s, 200, "{}: owner of {name}: {v}", self.id);
        v["owner"]["node"].as_str().map(str::to_string)
    }

    /// `GET /api/v1/cluster` on this node.
    pub fn status(&self) -> Value {
        let (s, v) = self.api("GET", "/api/v1/cluster", None);
        assert_eq!(s, 200, "{}: cluster status: {v}", self.id);
        v
    }

    /// The sample `series` (labels included) of this node's `/metrics`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        crate::common::admin_sample(self.admin, series)
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) != Some("Z")
    })
}

/// `GET path` on a new connection, every step bounded by `timeout`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Response> {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http(addr, raw.as_bytes(), timeout)
}

/// One request on a new connection; the whole answer is read (to EOF) within `timeout`.
pub fn http(addr: SocketAddr, raw: &[u8], timeout: Duration) -> std::io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "answer too slow"));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut chunk)? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    crate::common::parse_response(&buf)
}

/// Poll `f` every 20 ms until it holds or `timeout` passes; the time it took.
pub fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `paddock ARGS --admin ADDR --token-file TOKENS --json` (a `paddock cluster` subcommand):
/// exit code and stdout.
pub fn cli(c: &Cluster, node: usize, args: &[&str]) -> (Option<i32>, String, String) {
    let tokens = c.dir.path().join("tokens");
    let out = std::process::Command::new(&crate::common::bins().0)
        .args(args)
        .arg("--admin")
        .arg(c.nodes[node].admin.to_string())
        .arg("--token-file")
        .arg(&tokens)
        .env_remove("PADDOCK_TOKEN")
        .env_remove("PADDOCK_ADMIN")
        .output()
        .expect("run paddock");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
