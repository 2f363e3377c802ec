//! A real etcd of 1 or 3 members (Debian's etcd-server, /usr/bin/etcd) on free loopback ports,
//! each member on its own temp data dir; killed by PID on drop. A member can be stopped and
//! started again on the same data dir and ports. (The approach of cluster/tests/common.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

pub struct Etcd {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

fn bin() -> String {
    std::env::var("PADDOCK_TEST_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into())
}

impl Etcd {
    /// `n` members forming one cluster, each healthy (the cluster has a leader) on return.
    pub fn start(n: usize) -> Etcd {
        assert!(
            std::path::Path::new(&bin()).exists(),
            "{} is missing: install Debian's etcd-server (scripts/install-deps.sh)",
            bin()
        );
        let dir = tempfile::tempdir().expect("etcd temp dir");
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                dir: dir.path().join(format!("m{i}")),
                child: None,
            })
            .collect();
        let mut e = Etcd { members, _dir: dir };
        // A member of a new cluster is healthy only once a quorum runs: spawn all, then wait.
        for i in 0..n {
            e.spawn(i);
        }
        for i in 0..n {
            e.wait_healthy(i);
        }
        e
    }

    /// The client URLs of every member, for `[cluster] etcd`.
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client_port)).collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    fn initial_cluster(&self) -> String {
        let each: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        each.join(",")
    }

    fn spawn(&mut self, i: usize) {
        let cluster = self.initial_cluster();
        let m = &mut self.members[i];
        std::fs::create_dir_all(&m.dir).expect("member dir");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("etcd.log"))
            .expect("etcd log");
        let child = Command::new(bin())
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "paddock-e2e"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Polls `/health` of member `i` (true once the cluster has a leader), for at most 30 s.
    fn wait_healthy(&mut self, i: usize) {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Some(Ok(Some(st))) = self.members[i].child.as_mut().map(|c| c.try_wait()) {
                panic!("etcd {} exited with {st}: {}", self.members[i].name, self.log(i));
            }
            if self.healthy(i) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd {} not healthy within 30 s: {}", self.members[i].name, self.log(i));
    }

    fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.members[i].client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// How many keys are `key` (0 or 1), read through etcd's JSON gateway on the first member
    /// that answers; None if none does.
    pub fn key_count(&self, key: &str) -> Option<u64> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let body = format!("{{\"key\":\"{b64}\"}}");
        self.members.iter().filter(|m| m.child.is_some()).find_map(|m| {
            let mut s = TcpStream::connect(("127.0.0.1", m.client_port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let req = format!(
                "POST /v3/kv/range HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            let json = answer.split_once("\r\n\r\n")?.1;
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            v.get("header")?;
            Some(v["count"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0))
        })
    }

    /// The last lines of member `i`'s log.
    pub fn log(&self, i: usize) -> String {
        let s = std::fs::read_to_string(self.members[i].dir.join("etcd.log")).unwrap_or_default();
        let mut last: Vec<&str> = s.lines().rev().take(20).collect();
        last.reverse();
        last.join("\n")
    }

    /// Kills member `i` (SIGKILL by its PID) and reaps it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data dir and ports; waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
        self.wait_healthy(i);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}
