//! Harness for the admin listener tests: a sites directory, a tokens file, a config with an
//! `[admin]` section, and a JSON client for the API. Every request and answer can be recorded
//! for the OpenAPI check.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, nix_is_root, repo_root, send_raw, write, Response, Server};

pub const TOKEN: &str = "s3cret-token-for-tests";

/// A fake provisioning command: makes the marker like `trac-admin initenv` would.
pub const FAKE_PROVISION: &str =
    r#"[["sh", "-c", "mkdir conf && echo '[project]' > conf/trac.ini && echo {name} > made-for"]]"#;

pub struct Admin {
    pub server: Server,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// What the API answered, for the OpenAPI check: (method, path, status, body).
    pub seen: Mutex<Vec<Value>>,
}

/// `[admin]` body lines and `[defaults]` lines of a test configuration.
#[derive(Default)]
pub struct Setup<'a> {
    pub admin: &'a str,
    pub defaults: &'a str,
    pub args: &'a [&'a str],
}

impl Admin {
    /// Paddock serving `<tmp>/sites` with the WSGI test app and the admin listener.
    pub fn start(setup: Setup<'_>) -> Admin {
        let dir = tempfile::tempdir().expect("tempdir");
        // Traversable by a tenant user when the tests run as root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::create_dir_all(dir.path().join("sites")).expect("mkdir");
        write(&dir.path().join("tokens"), &format!("# test tokens\n\n{TOKEN}\n"));
        let port = free_port();
        let config = dir.path().join("paddock.toml");
        write(&config, &config_text(dir.path(), port, &setup));
        let mut args = vec!["--config", config.to_str().expect("utf-8")];
        args.extend_from_slice(setup.args);
        let server = Server::start(&args);
        let admin: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(admin).is_err() {
            assert!(Instant::now() < deadline, "admin listener not up:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        Admin { server, admin, dir, config, seen: Mutex::new(Vec::new()) }
    }

    pub fn sites(&self) -> PathBuf {
        self.dir.path().join("sites")
    }

    /// Rewrite the configuration (same admin port) for a later reload.
    pub fn rewrite(&self, setup: &Setup<'_>) {
        write(&self.config, &config_text(self.dir.path(), self.admin.port(), setup));
    }

    /// One API request with the test token.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call(method, path, Some(TOKEN), body)
    }

    /// One API request; the answer is recorded for the OpenAPI check.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let r = self.raw(method, path, token, body, "application/json");
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        self.seen.lock().expect("lock").push(serde_json::json!({
            "method": method, "path": path, "status": r.status, "body": v,
        }));
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}: {}",
            r.text()
        );
        (r.status, v)
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        content_type: &str,
    ) -> Response {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.admin);
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        send_raw(self.admin, req.as_bytes())
            .unwrap_or_else(|e| panic!("admin request failed: {e}\n{}", self.server.log_text()))
    }

    /// Create `name` through the API.
    pub fn signup(&self, name: &str) -> (u16, Value) {
        let body =
            serde_json::json!({"name": name, "admin_user": "alice", "password": "correct horse"});
        self.api("POST", "/api/v1/tenants", Some(&body.to_string()))
    }

    /// Entries of the sites directory (to prove nothing was left behind).
    pub fn site_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.sites())
            .expect("read sites")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn config_text(dir: &std::path::Path, port: u16, s: &Setup<'_>) -> String {
    // As root, signup makes a Unix user per site unless told otherwise; tests that do not
    // test that share the one test user instead of creating users.
    let shared = nix_is_root() && !s.admin.contains("_user");
    if shared {
        ensure_user();
    }
    format!(
        r#"sites = "{sites}"
[defaults]
processes = 1
threads = 2
{app}{defaults}
[admin]
listen = "127.0.0.1:{port}"
tokens_file = "{dir}/tokens"
{admin}
{shared}
"#,
        sites = dir.join("sites").display(),
        dir = dir.display(),
        defaults = s.defaults,
        app = if s.defaults.contains("app = ") {
            String::new()
        } else {
            format!(
                "app = \"testapps:application\"\npython_path = [\"{}\"]\n",
                repo_root().join("tests/apps").display()
            )
        },
        admin = s.admin,
        shared = if shared { "signup_user = \"paddock-e2e\"" } else { "" },
    )
}

/// Poll `f` every 20 ms until it holds or `timeout` passes; the time it took.
pub fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The unprivileged user of the isolation tests: as root, signups make sites owned by it.
pub fn ensure_user() -> u32 {
    crate::common::ensure_user("paddock-e2e").0
}

/// Users a test creates through signup (`pe2e-*`), removed at the end (after paddock and
/// its pools are gone), and before the test in case an interrupted run left them.
pub struct TestUsers(Vec<String>);

impl TestUsers {
    pub fn new(names: &[&str]) -> TestUsers {
        let u = TestUsers(names.iter().map(|n| n.to_string()).collect());
        u.remove();
        u
    }

    fn remove(&self) {
        for name in &self.0 {
            let script = format!(
                "(! id -u {name} >/dev/null 2>&1 || userdel -f {name}); (! getent group {name} >/dev/null || groupdel {name})"
            );
            let _ = std::process::Command::new("flock")
                .args(["/tmp/paddock-e2e-useradd.lock", "sh", "-c", &script])
                .status();
        }
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The uid of user `name`, if it exists.
pub fn uid_of(name: &str) -> Option<u32> {
    let out = std::process::Command::new("id").args(["-u", name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
