//! Start-up and shutdown of `paddock-worker`: entries, virtualenv, load failures, SIGTERM and
//! SIGINT, stack dumps on SIGUSR2.

mod common;

use std::time::{Duration, Instant};

use common::{head, hello, request_frames, Worker, STEP};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paddock_proto::{BodyKind, Frame};

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
    // JSON lines at ERROR, which the router relays at their level (its relay adds the tenant).
    let tb = log.lines().find(|l| l.contains("ImportError: broken on purpose")).unwrap_or_default();
    assert!(tb.starts_with('{') && tb.contains("\"level\":\"ERROR\""), "{log}");
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

fn signal(w: &Worker, sig: Signal) {
    kill(Pid::from_raw(w.pid()), sig).expect("kill");
}

fn sigterm(w: &Worker) {
    signal(w, Signal::SIGTERM);
}

fn simple() -> paddock_proto::RequestHead {
    head("GET", "/simple", "", BodyKind::Empty)
}

#[test]
fn sigterm_or_sigint_finishes_in_flight_requests_and_exits_0() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut w = Worker::start(2);
        let mut idle = w.connect();
        assert_eq!(idle.get("/simple").status(), 200);
        let mut busy = w.connect();
        busy.send(&request_frames(head("GET", "/sleep", "1", BodyKind::Empty), b""));
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        signal(&w, sig);
        let r = busy.reply();
        assert_eq!(r.text(), "slept", "{sig}: {}", w.stderr());
        assert_eq!(idle.recv(), Some(Frame::Goodbye), "{sig}: idle connection gets Goodbye");
        assert!(idle.recv().is_none(), "{sig}: idle connection should be closed");
        let status = w.wait_exit(STEP).expect("worker should exit");
        assert_eq!(status.code(), Some(0), "{sig}: {}", w.stderr());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(w.stderr().contains("all requests done"), "{sig}: {}", w.stderr());
    }
}

#[test]
fn with_nothing_running_sigterm_or_sigint_exits_within_100_ms() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let mut w = Worker::start(4);
        let mut idle = w.connect();
        assert_eq!(idle.get("/simple").status(), 200);
        assert_eq!(w.one_shot(simple()).status(), 200);
        let started = Instant::now();
        signal(&w, sig);
        let status = w.wait_exit(STEP).expect("worker should exit");
        let took = started.elapsed();
        assert_eq!(status.code(), Some(0), "{sig}: {}", w.stderr());
        assert!(took < Duration::from_millis(100), "{sig}: exit took {took:?}");
        assert_eq!(idle.recv(), Some(Frame::Goodbye), "{sig}: idle connection gets Goodbye");
        assert!(idle.recv().is_none(), "{sig}: idle connection should be closed");
    }
}

#[test]
fn a_connection_accepted_before_sigterm_is_served_even_if_its_request_comes_after() {
    let mut w = Worker::start(1);
    assert_eq!(w.one_shot(simple()).status(), 200);
    let mut c = w.connect_raw();
    // Time for the idle thread to accept the connection before the signal.
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&w);
    std::thread::sleep(Duration::from_millis(300));
    c.send(&[hello()]);
    // Hello alone must not make the worker answer and then close: nothing has started yet.
    std::thread::sleep(Duration::from_millis(300));
    c.send(&request_frames(simple(), b""));
    let r = c.reply();
    assert_eq!((r.status(), r.text().as_str(), r.ended), (200, "hello /simple", true));
    assert_eq!(c.hello.as_ref().map(|h| h.pid), Some(w.child.id()));
    assert_eq!(c.recv(), Some(Frame::Goodbye), "Goodbye after its request");
    assert!(c.recv().is_none(), "closed after its request");
    let status = w.wait_exit(STEP).expect("worker should exit");
    assert_eq!(status.code(), Some(0), "{}", w.stderr());
}

#[test]
fn a_connection_closed_before_its_request_gets_no_hello() {
    let w = Worker::start_with(1, "testapps:dispatch", &["--read-timeout", "1"], |_| {});
    let mut c = w.connect();
    let started = Instant::now();
    assert!(c.recv().is_none(), "the worker answered a request it never got");
    assert!(started.elapsed() < STEP);
    // The thread is free again.
    assert_eq!(w.one_shot(simple()).status(), 200);
}

#[test]
fn sigusr2_dumps_every_thread_stack_and_disturbs_nothing() {
    let mut w = Worker::start(3);
    assert_eq!(w.one_shot(simple()).status(), 200);
    let mut sleeper = w.connect();
    sleeper.send(&request_frames(head("GET", "/stuck", "4", BodyKind::Empty), b""));
    let mut spinner = w.connect();
    spinner.send(&request_frames(head("GET", "/spin", "4", BodyKind::Empty), b""));
    let mut seen = false;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(100));
        signal(&w, Signal::SIGUSR2);
        std::thread::sleep(Duration::from_millis(20));
        let log = w.stderr();
        if log.contains("in stuck_here") && log.contains("in spin_here") {
            seen = true;
            break;
        }
    }
    assert!(seen, "no stack dump naming both functions:\n{}", w.stderr());
    assert_eq!(sleeper.reply().text(), "unstuck", "{}", w.stderr());
    assert_eq!(spinner.reply().text(), "spun", "{}", w.stderr());
    assert_eq!(w.one_shot(simple()).status(), 200);
    sigterm(&w);
    let status = w.wait_exit(STEP).expect("worker should exit");
    assert_eq!(status.code(), Some(0), "{}", w.stderr());
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
