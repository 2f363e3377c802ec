//! Harness of the hostile-file tests: paddock over a sites directory whose tenants plant
//! files, requests with deadlines, FIFOs that are released at the end.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{free_port, parse_response, repo_root, write, Response, Server};

pub const TOKEN: &str = "hostile-files-token";
/// `erin`/`password` (`htpasswd -nbs`).
pub const ERIN: &str = "erin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n";

pub struct Host {
    pub server: Server,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    /// FIFOs to unblock at the end, so an unfixed router stuck in `open` can exit.
    pub fifos: Vec<PathBuf>,
}

impl Host {
    /// Paddock over `<tmp>/sites` (marker `VERSION`, as every Trac environment has), the test
    /// app, `/login` protected by `{tenant_dir}/htpasswd`, `/chrome/site` from
    /// `{tenant_dir}/htdocs`, and the admin listener. `make` fills the sites first.
    pub fn start(make: impl FnOnce(&Path)) -> Host {
        Host::start_with("", make)
    }

    /// [`Host::start`] with `top` lines at the top of the configuration (`@SITES@` there is
    /// the sites directory).
    pub fn start_with(top: &str, make: impl FnOnce(&Path)) -> Host {
        Host::start_full(top, "", make)
    }

    /// [`Host::start_with`] with `defaults` lines in `[defaults]` too.
    pub fn start_full(top: &str, defaults: &str, make: impl FnOnce(&Path)) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let sites = dir.path().join("sites");
        std::fs::create_dir_all(&sites).expect("mkdir");
        make(&sites);
        // Private tenant directories (as root, ones others can reach are refused).
        for e in std::fs::read_dir(&sites).expect("sites").flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                crate::common::private(&e.path());
            }
        }
        write(&dir.path().join("tokens"), &format!("{TOKEN}\n"));
        let port = free_port();
        let config = dir.path().join("paddock.toml");
        let top = top.replace("@SITES@", &sites.display().to_string());
        let text = format!(
            r#"sites = "{sites}"
marker = "VERSION"
{top}
[defaults]
app = "testapps:application"
python_path = ["{apps}"]
processes = 1
threads = 2
static = {{ "/chrome/site" = "{{tenant_dir}}/htdocs" }}
{defaults}
[defaults.auth]
htpasswd = "{{tenant_dir}}/htpasswd"
[admin]
listen = "127.0.0.1:{port}"
tokens_file = "{dir}/tokens"
"#,
            sites = sites.display(),
            apps = repo_root().join("tests/apps").display(),
            dir = dir.path().display(),
        );
        write(&config, &text);
        let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
        let admin: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let up = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(admin).is_err() {
            assert!(Instant::now() < up, "admin listener not up:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        Host { server, admin, dir, fifos: Vec::new() }
    }

    pub fn sites(&self) -> PathBuf {
        self.dir.path().join("sites")
    }

    pub fn get(&self, path: &str, extra: &str) -> Option<Response> {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
        within(self.server.addr, raw.as_bytes(), Duration::from_secs(10))
    }

    pub fn api(&self, method: &str, path: &str) -> Option<Response> {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n"
        );
        within(self.admin, raw.as_bytes(), Duration::from_secs(10))
    }

    pub fn status(&self, path: &str) -> u16 {
        self.get(path, "").map_or(0, |r| r.status)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Opening a FIFO read-write never blocks and releases readers stuck in `open`.
        for f in &self.fifos {
            let _ = std::fs::OpenOptions::new().read(true).write(true).open(f);
        }
    }
}

/// One request with a deadline: `None` when no full answer came in time.
pub fn within(addr: SocketAddr, raw: &[u8], limit: Duration) -> Option<Response> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, limit).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.set_write_timeout(Some(limit)).ok()?;
    s.write_all(raw).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    parse_response(&buf).ok()
}

/// A tenant directory with the marker and a working `htpasswd` and `htdocs`.
pub fn tenant(sites: &Path, name: &str) -> PathBuf {
    let t = sites.join(name);
    write(&t.join("VERSION"), "Trac Environment Version 1\n");
    write(&t.join("conf/trac.ini"), &format!("[project]\nname = Project {name}\n"));
    write(&t.join("htpasswd"), ERIN);
    write(&t.join("htdocs/site.css"), "body {}\n");
    std::fs::set_permissions(t.join("htdocs/site.css"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    t
}

pub fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Ask for `path` from `n` clients at once (enough to occupy every runtime thread).
pub fn flood(addr: SocketAddr, path: &str, extra: &str, n: usize) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let raw = raw.clone();
            std::thread::spawn(move || within(addr, raw.as_bytes(), Duration::from_secs(3)))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}
