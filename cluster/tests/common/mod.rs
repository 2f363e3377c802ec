//! A real etcd (Debian's etcd-server, /usr/bin/etcd) per test: loopback, free client and peer
//! ports, a temp data dir; killed by PID on drop. Restartable on the same data dir and ports.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paddock_cluster::{ClusterConfig, Node};

pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let bin = std::env::var("PADDOCK_TEST_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: install Debian's etcd-server (scripts/install-deps.sh)"
        );
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        e.spawn();
        e
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let bin = std::env::var("PADDOCK_TEST_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log");
        let child = Command::new(bin)
            .arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(self.url())
            .arg("--advertise-client-urls")
            .arg(self.url())
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        self.wait_healthy();
    }

    /// Polls `/health` on the client URL, for at most 30 s.
    fn wait_healthy(&mut self) {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("etcd exited with {st}: {}", self.log());
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.contains("\"health\":\"true\"") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd not healthy within 30 s: {}", self.log());
    }

    pub fn log(&self) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        s.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    /// Kills etcd (SIGKILL by its PID) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same data dir and ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn config(etcd: &Etcd, id: &str, ttl_secs: u64) -> ClusterConfig {
    let mut c = ClusterConfig::new(
        vec![etcd.url()],
        "/paddock-test/",
        id,
        format!("127.0.0.1:{}", 9000 + id.len()),
        100,
    );
    c.ttl = Duration::from_secs(ttl_secs);
    c.connect_timeout = Duration::from_secs(1);
    c.request_timeout = Duration::from_secs(1);
    c
}

pub async fn join(etcd: &Etcd, id: &str, ttl_secs: u64) -> Node {
    Node::join(config(etcd, id, ttl_secs)).await.expect("join")
}
