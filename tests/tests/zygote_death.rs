//! A zygote's death is not its tenants' crash (`docs/zygote.md`, "A zygote that dies"): the
//! zygote of two tenants is killed with SIGKILL seven times, each time once both tenants'
//! workers are forked by it again; every request after each kill is answered 200, and soon:
//! the slots did not escalate their back-off (before, seven kills stalled tenants for 20 s).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{chown, ensure_user, eventually, nix_is_root, parse_response, Server};

const USERS: [&str; 2] = ["paddock-e2e", "paddock-e2e2"];
const KILLS: usize = 7;
/// Far above a worker start, far below the escalated back-off the failure gave.
const WORST: Duration = Duration::from_secs(5);

fn config(dir: &Path) -> std::path::PathBuf {
    let extra = "processes = 1\npreload = [\"testapps\"]";
    common::apps_config(dir, "", &[("a", extra), ("b", extra)])
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// GET `/NAME/pid`, each attempt with a short timeout, at most 5 attempts: the status and
/// the time from the first attempt to the answer.
fn timed_get(server: &Server, name: &str) -> (u16, Duration) {
    let t = Instant::now();
    let mut status = 0;
    for _ in 0..5 {
        let attempt = || -> std::io::Result<u16> {
            let mut s = TcpStream::connect(server.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            let req = format!("GET /{name}/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes())?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf)?;
            Ok(parse_response(&buf)?.status)
        };
        status = attempt().unwrap_or(0);
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (status, t.elapsed())
}

#[test]
fn killing_the_zygote_again_and_again_does_not_stall_its_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cfg = config(dir.path());
    if nix_is_root() {
        for (u, t) in USERS.iter().zip(["a", "b"]) {
            ensure_user(u);
            chown(&dir.path().join(t), u);
        }
    }
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8")], false, &[]);
    let mut worst = Duration::ZERO;
    for kill in 1..=KILLS {
        // Both workers forked by the live zygote: the kill takes them down with it.
        let mut zygote = 0;
        eventually("both workers forked by one zygote", Duration::from_secs(90), || {
            for name in ["a", "b"] {
                let _ = timed_get(&server, name);
            }
            let z = server.zygote_pids();
            let w = server.worker_pids();
            zygote = z.first().copied().unwrap_or(0);
            z.len() == 1 && w.len() == 2 && w.iter().all(|&p| parent_of(p) == Some(zygote))
        });
        let before = server.worker_pids();
        common::signal(zygote, 9);
        for round in 0..5 {
            for name in ["a", "b"] {
                let (status, took) = timed_get(&server, name);
                assert_eq!(
                    status,
                    200,
                    "kill {kill}, request {round} to {name}:\n{}",
                    server.log_text()
                );
                worst = worst.max(took);
                eprintln!("kill {kill}: /{name}/pid answered in {took:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eventually("the killed zygote's workers are gone", Duration::from_secs(30), || {
            let after = server.worker_pids();
            before.iter().all(|p| !after.contains(p))
        });
    }
    eprintln!("worst request after a zygote kill: {worst:?}");
    assert!(worst < WORST, "a request took {worst:?}: the slots' back-off escalated");
    let log = server.log_text();
    assert!(log.contains("worker ended with its zygote"), "{log}");
}
