//! The signup page in a real headless Chromium (Debian's `chromium`, driven through Debian's
//! `chromedriver` with the W3C WebDriver protocol): fill the form, submit, follow the link to
//! the new site, and see a freshly provisioned Trac 1.6 site's WikiStart.

mod adminkit;
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adminkit::{within, Admin, Setup};
use common::{free_port, nix_is_root, venv};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and its browser session; both ended on drop.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/install-deps.sh (Debian's chromium and chromium-driver)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut b = Browser { driver, addr, session: String::new() };
        let up = within(Duration::from_secs(20), || b.call("GET", "/status", None).is_ok());
        assert!(up.is_some(), "chromedriver did not start");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1024,768",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let v = b.call("POST", "/session", Some(caps)).expect("new session");
        b.session = v["sessionId"].as_str().expect("sessionId").to_string();
        b
    }

    /// One WebDriver command; `Ok(value)` or `Err(error object)`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let (status, body) =
            exchange(self.addr, req.as_bytes()).map_err(|e| json!(e.to_string()))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| json!(e.to_string()))?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> Option<String> {
        let full = format!("/session/{}/element", self.session);
        let v =
            self.call("POST", &full, Some(json!({"using": "css selector", "value": css}))).ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    /// Wait (bounded) for an element to appear.
    fn wait_for(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if Instant::now() >= deadline {
                panic!("no `{css}` after {timeout:?}; page:\n{}", self.source());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css, Duration::from_secs(10));
        self.cmd("POST", &format!("/element/{e}/value"), Some(json!({ "text": text })));
    }

    fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None).as_str().unwrap_or_default().to_string()
    }

    fn screenshot(&self, to: &Path) {
        if let Some(png) = self.cmd("GET", "/screenshot", None).as_str().and_then(base64_decode) {
            let _ = std::fs::write(to, png);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        // Only the chromedriver this test started.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One request; the answer is read up to its `Content-Length` (chromedriver keeps connections
/// open whatever the client asks).
fn exchange(addr: SocketAddr, req: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(150)))?;
    s.write_all(req)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = common::parse_response(&buf[..end + 4])?;
            let len: usize =
                head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok((head.status, buf[end + 4..end + 4 + len].to_vec()));
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed early"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Standard base64 (WebDriver screenshots), without a dependency for one test.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[test]
fn signup_in_a_real_browser_then_visit_the_new_trac_site() {
    let venv = venv().to_str().expect("utf-8").to_string();
    let admin = if nix_is_root() {
        adminkit::ensure_user();
        "signup_user = \"paddock-e2e\""
    } else {
        ""
    };
    let defaults = format!(
        "app = \"trac.web.main:dispatch_request\"\nvirtualenv = \"{venv}\"\n[defaults.auth]\nhtpasswd = \"{{tenant_dir}}/htpasswd\"\n"
    );
    let a = Admin::start(Setup { admin, defaults: &defaults, args: &[] });
    let profile = a.dir.path().join("chromium-profile");
    let b = Browser::start(&profile);

    b.goto(&format!("http://{}/signup", a.admin));
    b.type_into("#name", "browser-site");
    b.type_into("#admin_user", "carol");
    b.type_into("#password", "open sesame");
    let submit = b.wait_for("#submit", Duration::from_secs(10));
    b.click(&submit);
    // Provisioning a real Trac environment takes a few seconds.
    let link = b.wait_for("#site-link", Duration::from_secs(120));
    let href = b.cmd("GET", &format!("/element/{link}/property/href"), None);
    assert_eq!(href, json!(format!("http://{}/trac/browser-site/", a.server.addr)));
    b.screenshot(&a.dir.path().join("signed-up.png"));
    b.click(&link);
    let shown = within(Duration::from_secs(120), || b.source().contains("Welcome to Trac"));
    let shot = std::env::var_os("PADDOCK_SCREENSHOT").map(std::path::PathBuf::from);
    if let Some(to) = &shot {
        b.screenshot(to);
    }
    assert!(shown.is_some(), "WikiStart not shown:\n{}\n{}", b.source(), a.server.log_text());
    let title = b.cmd("GET", "/title", None);
    assert!(title.as_str().is_some_and(|t| t.contains("browser-site")), "{title}");
    let url = b.cmd("GET", "/url", None);
    assert_eq!(url, json!(format!("http://{}/trac/browser-site/", a.server.addr)));
    assert!(a.sites().join("browser-site/htpasswd").is_file());
}
