//! HTTP Basic authentication (`[tenants.NAME.auth]`) end to end: challenges, every htpasswd
//! format, `REMOTE_USER` as a real Unicode string, spoofing attempts, a file edited while
//! serving, a missing file, and logging in to a real Trac 1.6 site.

mod common;

use std::path::PathBuf;

use common::{private, repo_root, trac_env, venv, write, Response, Server};

/// Made with Apache 2.4.71's htpasswd: `joé`/`sésame` (bcrypt, -B), `alice`/`wonderland`
/// (-m, apr1), `bob`/`builder` (-s, SHA-1), `dave`/`password` (-d, crypt: refused).
const USERS: &str = "# Paddock test users\n\n\
jo\u{e9}:$2y$05$6FDpcM8yd0iE35pFKhvBBuwPUlWOJK5dycfh.SP7UREPJRNJQYAH2\n\
alice:$apr1$pb9XU6FY$DQFpZ0VA5fj4jsz6zSNaR0\n\
   # an indented comment\n\
bob:{SHA}9SMYoF5RilWWASry7TjeaKwmpGg=\n\
dave:zxpSJ05Vh6dyM\n";
/// `htpasswd -nbs erin password`.
const ERIN: &str = "erin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n";

struct Apps {
    server: Server,
    dir: tempfile::TempDir,
}

impl Apps {
    fn htpasswd(&self) -> PathBuf {
        self.dir.path().join("apps/htpasswd")
    }
}

/// The test app at `/apps` with `/login` and `^/admin` protected (realm ""), and a second
/// tenant `/broken` whose htpasswd file does not exist.
fn start() -> Apps {
    let dir = tempfile::tempdir().expect("tempdir");
    let apps = repo_root().join("tests/apps");
    write(&dir.path().join("apps/htpasswd"), USERS);
    std::fs::create_dir_all(dir.path().join("broken")).expect("mkdir");
    private(&dir.path().join("apps"));
    private(&dir.path().join("broken"));
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            r#"index = false
[defaults]
app = "testapps:application"
python_path = ["{apps}"]
processes = 1
threads = 2
environ = {{ REMOTE_USER = "from-config", AUTH_TYPE = "none" }}
[defaults.auth]
htpasswd = "{{tenant_dir}}/htpasswd"
realm = ""
[tenants.apps]
dir = "{root}/apps"
mount = "/apps"
auth = {{ paths = ["/login", "^/admin(/|$)"] }}
[tenants.broken]
dir = "{root}/broken"
mount = "/broken"
"#,
            apps = apps.display(),
            root = dir.path().display(),
        ),
    );
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    Apps { server, dir }
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// GET `path` with `user:password` bytes as Basic credentials (if any) and extra header lines.
fn get(s: &Server, path: &str, creds: Option<&[u8]>, extra: &str) -> Response {
    let auth = creds.map(|c| format!("Authorization: Basic {}\r\n", base64(c))).unwrap_or_default();
    s.request(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// A string value of the test app's flat JSON environ (`\uXXXX` escapes decoded).
fn env(r: &Response, key: &str) -> Option<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let start = text.find(&format!("\"{key}\": \""))? + key.len() + 5;
    let mut out = String::new();
    let mut it = text[start..].chars();
    while let Some(c) = it.next() {
        match c {
            '"' => return Some(out),
            '\\' => match it.next() {
                Some('u') => {
                    let hex: String = it.by_ref().take(4).collect();
                    out.push(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)?);
                }
                Some(o) => out.push(o),
                None => return None,
            },
            c => out.push(c),
        }
    }
    None
}

fn assert_challenge(r: &Response, realm: &str) {
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("WWW-Authenticate"), Some(format!("Basic realm=\"{realm}\"").as_str()));
    assert!(r.text().contains("401 Unauthorized"), "{}", r.text());
}

#[test]
fn protected_paths_challenge_and_accept_every_format() {
    let a = start();
    let s = &a.server;
    assert_challenge(&get(s, "/apps/login", None, ""), "");
    assert_challenge(&get(s, "/apps/login/sub", None, ""), "");
    assert_challenge(&get(s, "/apps/admin", None, ""), "");
    assert_challenge(&get(s, "/apps/./login", None, ""), "");
    assert_challenge(&get(s, "/apps/login", Some("jo\u{e9}:wrong".as_bytes()), ""), "");
    assert_challenge(&get(s, "/apps/login", Some(b"nobody:builder"), ""), "");
    assert_challenge(&get(s, "/apps/login", Some(b"bob"), ""), "");

    let joe = get(s, "/apps/login", Some("jo\u{e9}:s\u{e9}same".as_bytes()), "");
    assert_eq!(env(&joe, "REMOTE_USER").as_deref(), Some("jo\u{e9}"), "a real Unicode str");
    assert_eq!(env(&joe, "AUTH_TYPE").as_deref(), Some("Basic"));
    assert_eq!(env(&joe, "PATH_INFO").as_deref(), Some("/login"));
    // Browsers may send latin-1; the same user, checked against the UTF-8 password.
    let latin1 = get(s, "/apps/login", Some(b"jo\xe9:s\xe9same"), "");
    assert_eq!(env(&latin1, "REMOTE_USER").as_deref(), Some("jo\u{e9}"));

    for (user, password) in [("alice", "wonderland"), ("bob", "builder")] {
        let creds = format!("{user}:{password}");
        let r = get(s, "/apps/admin/x", Some(creds.as_bytes()), "");
        assert_eq!(env(&r, "REMOTE_USER").as_deref(), Some(user));
        assert_challenge(&get(s, "/apps/login", Some(format!("{user}:x").as_bytes()), ""), "");
    }
    // crypt(3) entries are refused, and logged without their hash.
    assert_challenge(&get(s, "/apps/login", Some(b"dave:password"), ""), "");
    let log = s.log_text();
    assert!(log.contains("\"dave\"") && log.contains("unsupported format"), "{log}");
    assert!(!log.contains("zxpSJ05Vh6dyM") && !log.contains("s\u{e9}same"), "{log}");
}

#[test]
fn spoofed_headers_never_become_remote_user() {
    let a = start();
    let s = &a.server;
    let spoof = "Remote-User: evil\r\nX-Remote-User: evil2\r\nRemote_User: evil3\r\n";
    let open = get(s, "/apps/wiki", None, spoof);
    assert_eq!(env(&open, "REMOTE_USER"), None, "configured and spoofed values are dropped");
    assert_eq!(env(&open, "AUTH_TYPE"), None);
    assert_eq!(env(&open, "HTTP_REMOTE_USER").as_deref(), Some("evil"));
    assert_eq!(env(&open, "HTTP_X_REMOTE_USER").as_deref(), Some("evil2"));
    // Unprotected paths ignore credentials, which reach the app as sent.
    let with_creds = get(s, "/apps/wiki", Some(b"bob:builder"), spoof);
    assert_eq!(env(&with_creds, "REMOTE_USER"), None);
    assert!(env(&with_creds, "HTTP_AUTHORIZATION").is_some_and(|v| v.starts_with("Basic ")));

    let bob = get(s, "/apps/login", Some(b"bob:builder"), spoof);
    assert_eq!(env(&bob, "REMOTE_USER").as_deref(), Some("bob"));
    assert_eq!(env(&bob, "HTTP_REMOTE_USER").as_deref(), Some("evil"));
    assert_challenge(&get(s, "/apps/login", None, spoof), "");
}

#[test]
fn users_added_or_removed_while_serving_count_at_once() {
    let a = start();
    let s = &a.server;
    assert_challenge(&get(s, "/apps/login", Some(b"erin:password"), ""), "");
    assert_eq!(get(s, "/apps/login", Some(b"bob:builder"), "").status, 200);
    // Rewritten in place, as htpasswd does: erin in, bob out.
    std::fs::write(a.htpasswd(), USERS.replace("bob:", "#bob:") + ERIN).expect("write");
    let erin = get(s, "/apps/login", Some(b"erin:password"), "");
    assert_eq!(env(&erin, "REMOTE_USER").as_deref(), Some("erin"));
    assert_challenge(&get(s, "/apps/login", Some(b"bob:builder"), ""), "");
    // Replaced by rename, as editors do.
    let tmp = a.dir.path().join("apps/htpasswd.new");
    std::fs::write(&tmp, USERS).expect("write");
    std::fs::rename(&tmp, a.htpasswd()).expect("rename");
    assert_challenge(&get(s, "/apps/login", Some(b"erin:password"), ""), "");
    assert_eq!(get(s, "/apps/login", Some(b"bob:builder"), "").status, 200);
}

#[test]
fn a_missing_htpasswd_file_refuses_logins_only() {
    let a = start();
    let s = &a.server;
    assert_challenge(&get(s, "/broken/login", Some(b"bob:builder"), ""), "");
    let open = get(s, "/broken/wiki", None, "");
    assert_eq!(env(&open, "PATH_INFO").as_deref(), Some("/wiki"));
    let missing = a.dir.path().join("broken/htpasswd");
    let log = s.log_text();
    assert!(
        log.contains(&missing.display().to_string()) && log.contains("cannot read htpasswd file"),
        "{log}"
    );
    // Once the file appears, logins work.
    write(&missing, ERIN);
    assert_eq!(get(s, "/broken/login", Some(b"erin:password"), "").status, 200);
}

#[test]
fn trac_login_with_basic_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    trac_env(&site, "Auth Demo");
    write(&site.join("htpasswd"), USERS);
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            r#"index = false
[tenants.site]
dir = "{site}"
mount = "/trac"
virtualenv = "{venv}"
processes = 1
threads = 2
[tenants.site.auth]
htpasswd = "{{tenant_dir}}/htpasswd"
"#,
            site = site.display(),
            venv = venv().display(),
        ),
    );
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    assert_challenge(&get(&server, "/trac/login", None, ""), "Trac");

    let r = get(&server, "/trac/login", Some("jo\u{e9}:s\u{e9}same".as_bytes()), "");
    assert!(matches!(r.status, 302 | 303), "{} {:?}\n{}", r.status, r.headers, server.log_text());
    assert!(r.header("Location").is_some_and(|l| l.contains("/trac")), "{:?}", r.headers);
    let cookie = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie"))
        .find_map(|(_, v)| v.split(';').next().filter(|c| c.starts_with("trac_auth=")))
        .unwrap_or_else(|| panic!("no trac_auth cookie: {:?}", r.headers))
        .to_string();

    // The cookie alone logs the user in on unprotected pages.
    let wiki = get(&server, "/trac/wiki/WikiStart", None, &format!("Cookie: {cookie}\r\n"));
    assert_eq!(wiki.status, 200);
    let html = wiki.text();
    assert!(html.contains("logged in as") && html.contains("jo\u{e9}"), "{html}");
    let anonymous = get(&server, "/trac/wiki/WikiStart", None, "").text();
    assert!(!anonymous.contains("logged in as"), "{anonymous}");
}

/// The realm, an environ entry and `max_body` are read per request: a reload that changes
/// only them applies to the next request and keeps every worker (they used to be restarted).
#[test]
fn a_reload_of_request_settings_keeps_the_workers() {
    let a = start();
    let s = &a.server;
    assert_eq!(s.get("/apps/pid").status, 200);
    assert_eq!(env(&get(s, "/apps/", None, ""), "SITE_NOTE"), None);
    let before = s.worker_pids();
    assert!(!before.is_empty());
    let config = a.dir.path().join("paddock.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    let text = text
        .replace("realm = \"\"", "realm = \"Staff\"")
        .replace("AUTH_TYPE = \"none\"", "AUTH_TYPE = \"none\", SITE_NOTE = \"reloaded\"")
        .replace("threads = 2\n", "threads = 2\nmax_body = \"1K\"\nqueue_limit = 7\n");
    write(&config, &text);
    common::signal(s.child.id(), 1);
    common::eventually("the new realm", std::time::Duration::from_secs(20), || {
        get(s, "/apps/login", None, "").header("WWW-Authenticate") == Some("Basic realm=\"Staff\"")
    });
    assert_eq!(env(&get(s, "/apps/", None, ""), "SITE_NOTE").as_deref(), Some("reloaded"));
    let big = format!(
        "POST /apps/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n{}",
        "x".repeat(2048)
    );
    assert_eq!(s.request(big.as_bytes()).status, 413);
    assert!(s.log_text().contains("configuration reloaded"));
    assert_eq!(s.worker_pids(), before, "a reload of request settings restarted workers");
}
