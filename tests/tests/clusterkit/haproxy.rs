//! HAProxy (Debian's haproxy, /usr/sbin/haproxy) in front of the nodes' public listeners, in
//! the foreground (`-db`) on a free loopback port with a generated configuration; killed by
//! PID on drop. Requests are spread by `balance uri depth 2` on a consistent hash, so every
//! request under `/trac/<name>` goes to one node while that node is up.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, write};

pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn bin() -> String {
    std::env::var("PADDOCK_TEST_HAPROXY").unwrap_or_else(|_| "/usr/sbin/haproxy".into())
}

/// The configuration: TCP health checks every 200 ms (a killed node is out after one failed
/// check) and a redispatch to another node when a connection is refused.
fn config(addr: SocketAddr, backends: &[(String, SocketAddr)]) -> String {
    let mut text = format!(
        "global\n  maxconn 2000\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  \
         retries 3\n  option redispatch 1\n\
         frontend front\n  bind {addr}\n  default_backend nodes\n\
         backend nodes\n  balance uri depth 2\n  hash-type consistent\n"
    );
    for (name, a) in backends {
        text.push_str(&format!("  server {name} {a} check inter 200ms fall 1 rise 1\n"));
    }
    text
}

impl Haproxy {
    /// HAProxy with one server per `(name, public address)`; listening on return.
    pub fn start(backends: &[(String, SocketAddr)]) -> Haproxy {
        assert!(
            std::path::Path::new(&bin()).exists(),
            "{} is missing: install Debian's haproxy (scripts/install-deps.sh)",
            bin()
        );
        let dir = tempfile::tempdir().expect("haproxy temp dir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let cfg = dir.path().join("haproxy.cfg");
        write(&cfg, &config(addr, backends));
        let log = dir.path().join("haproxy.log");
        let logf = std::fs::File::create(&log).expect("haproxy log");
        let child = Command::new(bin())
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log fd"))
            .stderr(logf)
            .spawn()
            .expect("start haproxy");
        let mut h = Haproxy { child, addr, log, _dir: dir };
        h.wait_listening();
        h
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("haproxy exited ({st}):\n{}", self.log_text());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("haproxy did not listen within 10 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
