//! Start-up and shutdown of `paddock-worker`: entries, virtualenv, load failures, SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{head, request_frames, Worker, STEP};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paddock_proto::BodyKind;

#[test]
fn import_failure_exits_3_with_the_traceback() {
    let mut w = Worker::start_with(1, "broken:application", &[], |dir| {
        let src =
            "import os\n\ndef helper():\n    raise ImportError('broken on purpose')\n\nhelper()\n";
        std::fs::write(dir.join("broken.py"), src).expect("write");
    });
    let status = w.wait_exit(STEP).expect("worker should exit");
    assert_eq!(status.code(), Some(3));
    let log = w.stderr();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    assert!(log.contains("in helper"), "{log}");
    assert!(log.contains("ImportError: broken on purpose"), "{log}");
    assert!(log.contains("tenant=test"), "{log}");
}

#[test]
fn missing_module_or_callable_exits_3() {
    for app in ["no_such_module:app", "testapps:no_such_callable", "testapps:_kept"] {
        let mut w = Worker::start_with(1, app, &[], |_| {});
        let status = w.wait_exit(STEP).expect("worker should exit");
        assert_eq!(status.code(), Some(3), "{app}: {}", w.stderr());
    }
}

#[test]
fn bad_command_line_exits_64() {
    let mut w = Worker::start_with(1, "not a valid entry:", &[], |_| {});
    assert_eq!(w.wait_exit(STEP).expect("exit").code(), Some(64));
    let mut w = Worker::start_with(1, "testapps:dispatch", &["--bogus"], |_| {});
    assert_eq!(w.wait_exit(STEP).expect("exit").code(), Some(64));
}

const SCRIPT: &str = "def application(environ, start_response):\n    \
    start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
    return [('script ' + __name__ + ' ' + __file__).encode()]\n";

#[test]
fn script_file_entry() {
    for relative in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("app.wsgi");
        std::fs::write(&script, SCRIPT).expect("write");
        let app = if relative { "app.wsgi".to_owned() } else { script.display().to_string() };
        let w = Worker::start_with(1, &app, &[], |d| {
            std::fs::write(d.join("app.wsgi"), SCRIPT).expect("write");
        });
        let mut c = w.connect();
        let r = c.get("/");
        assert_eq!(r.status(), 200, "{}", w.stderr());
        let text = r.text();
        assert!(text.starts_with("script _paddock_wsgi_"), "{text}");
        assert!(text.ends_with("/app.wsgi"), "{text}");
    }
}

const VENV_APP: &str = "import sys, somemod, extramod, yaml\n\
def application(environ, start_response):\n    \
    start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
    sp = [p for p in sys.path if p.endswith('site-packages') or p.endswith('dist-packages')]\n    \
    return [('%s %s %s %s' % (somemod.NAME, extramod.NAME, getattr(yaml, 'FAKE', 'real'), sp[0])).encode()]\n";

#[test]
fn virtualenv_wins_over_system_packages() {
    let w = Worker::start_with(1, "venvapp", &["--virtualenv", "venv"], |dir| {
        let site = dir.join("venv/lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).expect("mkdir");
        std::fs::create_dir_all(dir.join("venv/extra")).expect("mkdir");
        std::fs::write(site.join("somemod.py"), "NAME = 'somemod'\n").expect("write");
        // Shadows Debian's PyYAML in /usr/lib/python3/dist-packages.
        std::fs::write(site.join("yaml.py"), "FAKE = 'fake-yaml'\n").expect("write");
        let extra = dir.join("venv/extra");
        std::fs::write(site.join("extra.pth"), format!("{}\n", extra.display())).expect("write");
        std::fs::write(extra.join("extramod.py"), "NAME = 'extramod'\n").expect("write");
        std::fs::write(dir.join("venvapp.py"), VENV_APP).expect("write");
    });
    let mut c = w.connect();
    let r = c.get("/");
    assert_eq!(r.status(), 200, "{}", w.stderr());
    let text = r.text();
    assert!(text.starts_with("somemod extramod fake-yaml "), "{text}");
    assert!(text.ends_with("venv/lib/python3.11/site-packages"), "{text}");
}

#[test]
fn missing_virtualenv_exits_3() {
    let mut w = Worker::start_with(1, "testapps:dispatch", &["--virtualenv", "nowhere"], |_| {});
    assert_eq!(w.wait_exit(STEP).expect("exit").code(), Some(3));
    assert!(w.stderr().contains("nowhere"), "{}", w.stderr());
}

fn sigterm(w: &Worker) {
    kill(Pid::from_raw(w.pid()), Signal::SIGTERM).expect("kill");
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let mut w = Worker::start(2);
    let mut idle = w.connect();
    assert_eq!(idle.get("/simple").status(), 200);
    let mut busy = w.connect();
    busy.send(&request_frames(head("GET", "/sleep", "1", BodyKind::Empty), b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    sigterm(&w);
    let r = busy.reply();
    assert_eq!(r.text(), "slept", "{}", w.stderr());
    assert!(idle.recv().is_none(), "idle connection should be closed");
    let status = w.wait_exit(STEP).expect("worker should exit");
    assert_eq!(status.code(), Some(0), "{}", w.stderr());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(w.stderr().contains("all requests done"), "{}", w.stderr());
}

#[test]
fn sigterm_gives_up_after_the_drain_timeout() {
    let mut w = Worker::start_with(1, "testapps:dispatch", &["--drain-timeout", "1"], |_| {});
    let mut busy = w.connect();
    busy.send(&request_frames(head("GET", "/sleep", "20", BodyKind::Empty), b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    sigterm(&w);
    let status = w.wait_exit(STEP).expect("worker should exit");
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(w.stderr().contains("drain timeout"), "{}", w.stderr());
}

fn run_plain(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_paddock-worker"))
        .args(["--tenant", "plain", "--app", "testapps:dispatch", "--threads", "1"])
        .args(args)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn unusable_inherited_fds() {
    let (code, log) = run_plain(&["--listen-fd", "57"]);
    assert_eq!(code, Some(71), "{log}");
    assert!(log.contains("fd 57 is not open"), "{log}");
    let (code, log) = run_plain(&["--listen-fd", "1"]);
    assert_eq!(code, Some(64), "{log}");
    let (code, log) = run_plain(&["--listen-fd", "5", "--control-fd", "5"]);
    assert_eq!(code, Some(64), "{log}");
}
