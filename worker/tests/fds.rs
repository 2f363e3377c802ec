//! Inherited descriptors, as the router passes them: `--listen-fd` and `--control-fd`.
//! Its own test binary with a single test, so the inheritable descriptors it creates cannot
//! leak into children spawned by other tests.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use paddock_proto::{decode, Frame, Hello, VERSION};

fn inheritable(fd: i32) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear CLOEXEC");
}

fn is_cloexec_in(pid: u32, fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .expect("flags");
    flags & 0o2000000 != 0
}

#[test]
fn inherited_listener_and_control_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("testapps.py"), common::TEST_APPS).expect("write");
    let sock = dir.path().join("tenant.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let (control_read, control_write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    inheritable(listener.as_raw_fd());
    inheritable(control_write.as_raw_fd());
    let (lfd, cfd) = (listener.as_raw_fd(), control_write.as_raw_fd());
    let mut child = Command::new(env!("CARGO_BIN_EXE_paddock-worker"))
        .args(["--tenant", "fds", "--app", "testapps:dispatch", "--threads", "2"])
        .args(["--listen-fd", &lfd.to_string(), "--control-fd", &cfd.to_string()])
        .arg("--python-path")
        .arg(dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.path().join("stderr.log")).expect("log"))
        .spawn()
        .expect("spawn");
    // Our copies must go, or a dead worker would never give us EOF on the pipe.
    drop(control_write);
    drop(listener);
    let mut control = File::from(control_read);
    let mut buf = vec![0u8; 64];
    let n = control.read(&mut buf).expect("read control pipe");
    let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    match decode(&buf[..n]).expect("frame") {
        Some((Frame::Ready(r), _)) => assert_eq!(r.pid, child.id(), "{stderr}"),
        other => panic!("expected Ready, got {other:?}: {stderr}"),
    }
    assert!(is_cloexec_in(child.id(), lfd), "listener fd should be close-on-exec");
    assert!(is_cloexec_in(child.id(), cfd), "control fd should be close-on-exec");

    let stream = UnixStream::connect(&sock).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut c = common::Client::new(stream);
    c.send(&[Frame::Hello(Hello { version: VERSION, pid: 1 })]);
    assert_eq!(c.get("/simple").text(), "hello /simple");
    assert_eq!(c.hello.map(|h| h.pid), Some(child.id()));
    let _ = child.kill();
    let _ = child.wait();
}
