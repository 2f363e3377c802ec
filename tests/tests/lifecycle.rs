//! Starting and stopping pools cleanly: SIGTERM drains and leaves no worker behind; a worker
//! that dies is replaced.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, repo_root, signal, write, Server};

fn apps_server(dir: &Path) -> Server {
    let tenant = dir.join("apps");
    std::fs::create_dir_all(&tenant).expect("mkdir");
    common::private(&tenant);
    let config = dir.join("paddock.toml");
    write(
        &config,
        &format!(
            "index = false\n[tenants.apps]\ndir = \"{}\"\nmount = \"/apps\"\napp = \"testapps:application\"\npython_path = [\"{}\"]\nprocesses = 2\nthreads = 2\n",
            tenant.display(),
            repo_root().join("tests/apps").display()
        ),
    );
    Server::start(&["--config", config.to_str().expect("utf-8")])
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

#[test]
fn sigterm_stops_every_worker_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = apps_server(dir.path());
    assert_eq!(server.get("/apps/env").status, 200);
    eventually("2 workers", Duration::from_secs(30), || server.worker_pids().len() == 2);
    let pids = server.worker_pids();
    let status = server.stop().expect("paddock exits after SIGTERM");
    assert!(status.success(), "{status}");
    eventually("workers gone", Duration::from_secs(10), || pids.iter().all(|&p| !alive(p)));
    assert!(server.log_text().contains("stopped"));
}

#[test]
fn a_killed_worker_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = apps_server(dir.path());
    assert_eq!(server.get("/apps/env").status, 200);
    eventually("2 workers", Duration::from_secs(30), || server.worker_pids().len() == 2);
    let before = server.worker_pids();
    signal(before[0], 9);
    eventually("a replacement worker", Duration::from_secs(30), || {
        let now = server.worker_pids();
        now.len() == 2 && !now.contains(&before[0])
    });
    for _ in 0..10 {
        assert_eq!(server.get("/apps/env").status, 200);
    }
    assert!(server.log_text().contains("killed by signal 9"), "the exit is logged with its cause");
}
