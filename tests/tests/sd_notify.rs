//! The service manager's view (`Type=notify`): READY=1 once listening, RELOADING=1 with
//! MONOTONIC_USEC and READY=1 again on SIGHUP, STOPPING=1 on SIGTERM; a fake NOTIFY_SOCKET
//! stands in for systemd.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{signal, Server};

/// The next datagram, within `timeout`.
fn next(sock: &UnixDatagram, timeout: Duration) -> String {
    sock.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).expect("bind");
    let sites = dir.path().join("sites");
    std::fs::create_dir_all(&sites).expect("mkdir");
    let t0 = Instant::now();
    let mut server = Server::start_with(
        &["--sites", sites.to_str().expect("utf-8")],
        common::nix_is_root(),
        &[("NOTIFY_SOCKET", path.to_str().expect("utf-8"))],
    );
    let ready = next(&sock, Duration::from_secs(10));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains(&format!("STATUS=serving on {}", server.addr)), "{ready:?}");
    assert!(t0.elapsed() < Duration::from_secs(30));

    signal(server.child.id(), 1);
    let reloading = next(&sock, Duration::from_secs(10));
    let lines: Vec<&str> = reloading.lines().collect();
    assert!(lines.contains(&"RELOADING=1"), "{reloading:?}");
    let usec = lines.iter().find_map(|l| l.strip_prefix("MONOTONIC_USEC="));
    assert!(usec.and_then(|u| u.parse::<u64>().ok()).is_some_and(|u| u > 0), "{reloading:?}");
    let again = next(&sock, Duration::from_secs(10));
    assert!(again.lines().any(|l| l == "READY=1"), "{again:?}");
    assert!(again.contains("configuration reloaded"), "{again:?}");

    signal(server.child.id(), 15);
    let stopping = next(&sock, Duration::from_secs(10));
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(server.stop().is_some_and(|s| s.success()));
}
