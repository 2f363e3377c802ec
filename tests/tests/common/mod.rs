//! Shared harness for the end-to-end tests: builds (once) the real binaries, the Trac
//! virtualenv and Trac environments, starts `paddock serve` on a free loopback port, and
//! speaks raw HTTP/1.1 to it so tests control every byte of the request target.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Paths of the `paddock` and `paddock-worker` binaries, built once per test process.
pub fn bins() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "paddock-router", "-p", "paddock-worker"])
            .current_dir(repo_root())
            .status()
            .expect("run cargo build");
        assert!(st.success(), "cargo build of the binaries failed");
        let dir = target_dir().join("debug");
        (dir.join("paddock"), dir.join("paddock-worker"))
    })
}

/// The virtualenv with Trac 1.6 (made with Debian's python3.11), created once.
pub fn venv() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = std::env::var_os("PADDOCK_TEST_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv-test"));
        let st = Command::new("bash")
            .arg(repo_root().join("scripts/ensure-venv.sh"))
            .arg(&dir)
            .status()
            .expect("run ensure-venv.sh");
        assert!(st.success(), "creating the Trac virtualenv failed (see scripts/ensure-venv.sh)");
        dir
    })
}

/// Make a Trac 1.6 environment named `name` in `dir` with `trac-admin initenv`.
pub fn trac_env(dir: &Path, name: &str) {
    let out = Command::new(venv().join("bin/trac-admin"))
        .arg(dir)
        .args(["initenv", name, "sqlite:db/trac.db"])
        .output()
        .expect("run trac-admin");
    assert!(
        out.status.success(),
        "trac-admin initenv failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    private(dir);
}

/// Mode 0750: as root, Paddock refuses a tenant directory other users can reach (the test
/// temp dirs are 0755).
pub fn private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).expect("chmod 0750");
}

/// (uid, gid) of the system user `name`, made for the root-only tests if it is missing. Users
/// made here (`paddock-e2e*`) stay; two concurrent useradds for one name race, so this is
/// serialised across test processes with flock.
pub fn ensure_user(name: &str) -> (u32, u32) {
    let script = format!(
        "id -u {name} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {name}"
    );
    let st = Command::new("flock")
        .args(["/tmp/paddock-e2e-useradd.lock", "sh", "-c", &script])
        .status()
        .expect("run useradd");
    assert!(st.success(), "creating user {name} failed");
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").arg(flag).arg(name).output().expect("id");
        String::from_utf8_lossy(&o.stdout).trim().parse().expect("number")
    };
    (id("-u"), id("-g"))
}

/// `chown -R USER: path` (the user's own group).
pub fn chown(path: &Path, user: &str) {
    let st = Command::new("chown").arg("-R").arg(format!("{user}:")).arg(path).status();
    assert!(st.is_ok_and(|s| s.success()), "chown -R {user}: {}", path.display());
}

/// A free loopback port (bound then released; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `paddock serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Server {
    /// Start `paddock serve ARGS --listen 127.0.0.1:PORT` and wait until it accepts. As root,
    /// `--allow-root` is added: test tenants live in root-owned temp dirs.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, nix_is_root(), &[])
    }

    /// Like [`Server::start`], choosing `--allow-root` and adding environment variables.
    pub fn start_with(args: &[&str], allow_root: bool, env: &[(&str, &str)]) -> Server {
        let (paddock, _) = bins();
        let port = free_port();
        let logdir = tempfile::tempdir().expect("tempdir");
        let log = logdir.path().join("paddock.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(paddock);
        cmd.arg("serve").args(args).args(["--listen", &listen]);
        if allow_root {
            cmd.arg("--allow-root");
        }
        let child = cmd
            .envs(env.iter().copied())
            .env("PADDOCK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn paddock");
        let mut s = Server { child, addr: listen.parse().expect("addr"), log, _logdir: logdir };
        s.wait_listening();
        s
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("paddock exited early ({st}):\n{}", self.log_text());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("paddock did not listen within 30 s:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(
            format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr)
                .as_bytes(),
        )
    }

    /// Send raw request bytes on a new connection and read the whole response.
    pub fn request(&self, raw: &[u8]) -> Response {
        send_raw(self.addr, raw)
            .unwrap_or_else(|e| panic!("request failed: {e}\nserver log:\n{}", self.log_text()))
    }

    /// Pids of the worker processes paddock started: its direct children, except that a
    /// zygote (`paddock-worker zygote`) counts as the workers it forked.
    pub fn worker_pids(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for pid in children_of(self.child.id()) {
            match is_zygote(pid) {
                true => out.extend(children_of(pid)),
                false => out.push(pid),
            }
        }
        out
    }

    /// Pids of paddock's zygotes.
    pub fn zygote_pids(&self) -> Vec<u32> {
        children_of(self.child.id()).into_iter().filter(|&p| is_zygote(p)).collect()
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        stop_child(&mut self.child, libc_sigterm(), Duration::from_secs(30))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn libc_sigterm() -> i32 {
    15
}

/// Stop a server process this test started: signal `sig`, wait up to `grace` for it to exit,
/// then SIGKILL. Nothing if it has already exited.
pub fn stop_child(
    child: &mut Child,
    sig: i32,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    signal(child.id(), sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Send a signal with the `kill` command (no unsafe needed): only to pids this test started.
pub fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

pub fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `pid` runs `paddock-worker zygote`.
pub fn is_zygote(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).nth(1) == Some(b"zygote"))
        .unwrap_or(false)
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        if rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Wait (bounded) until `f` holds.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection; the response is read to EOF (send `Connection: close`).
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    s.write_all(raw)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status =
        status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let raw_body = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(raw_body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        raw_body.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..nl]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Write a file, creating parent directories.
pub fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, text).expect("write file");
}

/// Write `DIR/paddock.toml` with one test-app tenant (`tests/apps/testapps.py`) per entry of
/// `tenants`: (name, extra TOML lines), mounted at `/NAME`, and `top` lines at the top level.
pub fn apps_config(dir: &Path, top: &str, tenants: &[(&str, &str)]) -> PathBuf {
    let mut text = format!("index = false\n{top}\n");
    for (name, extra) in tenants {
        let tdir = dir.join(name);
        std::fs::create_dir_all(&tdir).expect("mkdir");
        private(&tdir);
        text.push_str(&format!(
            "[tenants.{name}]\ndir = \"{}\"\nmount = \"/{name}\"\napp = \"testapps:application\"\npython_path = [\"{}\"]\nwatch_files = []\n{extra}\n",
            tdir.display(),
            repo_root().join("tests/apps").display()
        ));
    }
    let path = dir.join("paddock.toml");
    write(&path, &text);
    path
}

/// The value of the sample `series` (its full name, labels included) in the `/metrics` of the
/// admin listener at `admin`.
pub fn admin_sample(admin: SocketAddr, series: &str) -> Option<f64> {
    let req = "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    let text = send_raw(admin, req.as_bytes()).ok()?.text();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
