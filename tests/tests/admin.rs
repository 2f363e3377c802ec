//! The admin listener end to end: bearer tokens, every API endpoint (checked against
//! docs/openapi.yaml), signup (validation, races, failing and hanging provisioning, the public
//! page and its rate limit), disable/enable surviving a restart, delete archiving, live
//! discovery, and one signup of a real Trac 1.6 site.

mod adminkit;
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use adminkit::{within, Admin, Setup, FAKE_PROVISION, TOKEN};
use common::{nix_is_root, repo_root, venv, write};
use serde_json::{json, Value};

fn fake() -> String {
    format!("provision = {FAKE_PROVISION}")
}

#[test]
fn api_needs_a_valid_bearer_token_read_from_the_file() {
    let a = Admin::start(Setup::default());
    let r = a.raw("GET", "/api/v1/tenants", None, None, "");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"paddock\""));
    let (s, _) = a.call("GET", "/api/v1/tenants", None, None);
    assert_eq!(s, 401);
    let (s, body) = a.call("GET", "/api/v1/tenants", Some("wrong"), None);
    assert_eq!(s, 403, "{body}");
    // Prefixes and suffixes of the token are wrong tokens.
    assert_eq!(a.call("GET", "/api/v1/tenants", Some(&TOKEN[..5]), None).0, 403);
    assert_eq!(a.call("GET", "/api/v1/tenants", Some(&format!("{TOKEN}x")), None).0, 403);
    assert_eq!(a.api("GET", "/api/v1/tenants", None).0, 200);
    // Mutating endpoints too.
    assert_eq!(a.call("POST", "/api/v1/reload", None, None).0, 401);
    assert_eq!(a.call("DELETE", "/api/v1/tenants/x", Some("nope"), None).0, 403);
    // The file is followed: a new token works, a removed one stops working.
    write(&a.dir.path().join("tokens"), "second-token\n");
    assert_eq!(a.call("GET", "/api/v1/tenants", Some("second-token"), None).0, 200);
    assert_eq!(a.api("GET", "/api/v1/tenants", None).0, 403);
    // The health check needs no token; tokens never reach the log.
    assert_eq!(a.raw("GET", "/healthz", None, None, "").status, 200);
    let log = a.server.log_text();
    assert!(!log.contains(TOKEN) && !log.contains("second-token"), "{log}");
}

#[test]
fn tenant_lifecycle_create_disable_enable_restart_delete() {
    let a = Admin::start(Setup { admin: &fake(), ..Setup::default() });
    let (s, t) = a.signup("shop");
    assert_eq!(s, 201, "{t}\n{}", a.server.log_text());
    assert_eq!(t["name"], "shop");
    assert_eq!(t["mount"], "/trac/shop");
    assert_eq!(t["url"], format!("http://{}/trac/shop/", a.server.addr));
    assert_eq!(t["pool"], Value::Null, "no pool before the first request");
    assert_eq!(a.site_entries(), ["shop"]);
    let htpasswd = std::fs::read_to_string(a.sites().join("shop/htpasswd")).expect("htpasswd");
    assert!(htpasswd.starts_with("alice:$2b$10$"), "{htpasswd}");
    assert!(!a.server.log_text().contains("correct horse"), "password logged");
    // Served at once, no restart.
    assert_eq!(a.server.get("/trac/shop/").status, 200);
    let (s, one) = a.api("GET", "/api/v1/tenants/shop", None);
    assert_eq!(s, 200);
    assert_eq!(one["pool"]["status"], "ready", "{one}");
    let pids = one["pool"]["ready_pids"].clone();
    assert_eq!(pids.as_array().map(Vec::len), Some(1), "{one}");
    let (_, list) = a.api("GET", "/api/v1/tenants", None);
    assert_eq!(list["tenants"].as_array().map(Vec::len), Some(1), "{list}");

    // Pool restart: a new process replaces the old one.
    let (s, r) = a.api("POST", "/api/v1/tenants/shop/restart", None);
    assert_eq!((s, &r["restarted"]), (200, &json!(true)), "{r}");
    let changed = within(Duration::from_secs(30), || {
        let (_, t) = a.api("GET", "/api/v1/tenants/shop", None);
        let now = &t["pool"]["ready_pids"];
        now.as_array().is_some_and(|p| p.len() == 1) && *now != pids
    });
    assert!(changed.is_some(), "pool not restarted:\n{}", a.server.log_text());

    // Disable: 503 on the front door, the pool stops, the flag survives a restart.
    let (s, d) = a.api("POST", "/api/v1/tenants/shop/disable", None);
    assert_eq!((s, &d["disabled"]), (200, &json!(true)), "{d}");
    let r = a.server.get("/trac/shop/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(within(Duration::from_secs(10), || a.server.worker_pids().is_empty()).is_some());
    drop(a.server);
    let a2 = restart(a.dir, a.config, a.seen);
    assert_eq!(a2.server.get("/trac/shop/").status, 503, "disabled after a restart");
    assert!(a2.server.worker_pids().is_empty(), "a disabled tenant never starts a pool");
    let (s, e) = a2.api("POST", "/api/v1/tenants/shop/enable", None);
    assert_eq!((s, &e["disabled"]), (200, &json!(false)), "{e}");
    assert_eq!(a2.server.get("/trac/shop/").status, 200);

    // Delete: archived with a timestamp, 404 afterwards, the name is free again.
    let (s, d) = a2.api("DELETE", "/api/v1/tenants/shop", None);
    assert_eq!(s, 200, "{d}");
    let archived = Path::new(d["archived_to"].as_str().expect("archived_to")).to_path_buf();
    assert!(archived.starts_with(a2.sites().join(".archive")), "{archived:?}");
    assert!(archived.join("conf/trac.ini").is_file() && archived.join("htpasswd").is_file());
    assert_eq!(a2.server.get("/trac/shop/").status, 404);
    assert_eq!(a2.api("GET", "/api/v1/tenants/shop", None).0, 404);
    assert!(within(Duration::from_secs(10), || a2.server.worker_pids().is_empty()).is_some());
    assert_eq!(a2.signup("shop").0, 201, "name reusable after delete");
    check_openapi(&a2);
}

/// Paddock again on the same directory and configuration.
fn restart(
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    seen: std::sync::Mutex<Vec<Value>>,
) -> Admin {
    let text = std::fs::read_to_string(&config).expect("config");
    let port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse().ok())
        .expect("admin port");
    let server = common::Server::start(&["--config", config.to_str().expect("utf-8")]);
    let admin = format!("127.0.0.1:{port}").parse().expect("addr");
    within(Duration::from_secs(10), || std::net::TcpStream::connect(admin).is_ok());
    Admin { server, admin, dir, config, seen }
}

#[test]
fn bad_requests_are_refused_with_the_documented_statuses() {
    let a = Admin::start(Setup {
        admin: &format!("{}\nreserved_names = [\"acme\"]", fake()),
        ..Setup::default()
    });
    for bad in [
        "{",
        "[]",
        "{\"name\": \"x\"}",
        "{\"name\":\"x\",\"admin_user\":\"a\",\"password\":\"12345678\",\"extra\":1}",
        "",
    ] {
        let (s, b) = a.api("POST", "/api/v1/tenants", Some(bad));
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(b["error"].is_string());
    }
    let mk = |name: &str, user: &str, pw: &str| {
        json!({"name": name, "admin_user": user, "password": pw}).to_string()
    };
    let long = "x".repeat(64);
    for (name, user, pw) in [
        ("Upper", "alice", "password1"),
        ("-dash", "alice", "password1"),
        ("dash-", "alice", "password1"),
        ("a_b", "alice", "password1"),
        ("a.b", "alice", "password1"),
        (long.as_str(), "alice", "password1"),
        ("", "alice", "password1"),
        ("admin", "alice", "password1"),
        ("metrics", "alice", "password1"),
        ("acme", "alice", "password1"),
        ("okname", "bad user", "password1"),
        ("okname", "anonymous", "password1"),
        ("okname", "alice", "short"),
    ] {
        let (s, b) = a.api("POST", "/api/v1/tenants", Some(&mk(name, user, pw)));
        assert_eq!(s, 422, "{name}/{user}: {b}");
    }
    std::fs::create_dir_all(a.sites().join("taken")).expect("mkdir");
    assert_eq!(a.api("POST", "/api/v1/tenants", Some(&mk("taken", "alice", "password1"))).0, 409);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70_000));
    assert_eq!(a.api("POST", "/api/v1/tenants", Some(&big)).0, 413);
    for (m, p) in [
        ("GET", "/api/v1/tenants/nope"),
        ("DELETE", "/api/v1/tenants/nope"),
        ("POST", "/api/v1/tenants/nope/disable"),
        ("POST", "/api/v1/tenants/nope/enable"),
        ("POST", "/api/v1/tenants/nope/restart"),
        ("GET", "/api/v1/tenants/..%2f..%2fetc"),
    ] {
        let (s, b) = a.api(m, p, None);
        assert_eq!(s, 404, "{m} {p}: {b}");
    }
    let r = a.raw("PUT", "/api/v1/tenants", Some(TOKEN), None, "");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")));
    assert_eq!(a.raw("GET", "/api/v1/nothing", Some(TOKEN), None, "").status, 404);
    assert_eq!(a.site_entries(), ["taken"], "nothing made by refused requests");
}

#[test]
fn eight_concurrent_signups_for_one_name_one_wins() {
    // A slow provisioning command widens the race window.
    let slow = r#"provision = [["sh", "-c", "sleep 1; mkdir conf && touch conf/trac.ini"]]"#;
    let a = Admin::start(Setup { admin: slow, ..Setup::default() });
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| a.signup("race").0)).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 409).count(), 7, "{statuses:?}");
    assert_eq!(a.site_entries(), ["race"]);
    assert_eq!(a.server.get("/trac/race/").status, 200);
}

#[test]
fn failing_or_hanging_provisioning_leaves_nothing_behind() {
    let failing = r#"provision = [["sh", "-c", "mkdir conf && touch conf/trac.ini"], ["sh", "-c", "echo 'initenv: database is on fire' >&2; exit 3"]]"#;
    let a = Admin::start(Setup { admin: failing, ..Setup::default() });
    let (s, b) = a.signup("doomed");
    assert_eq!(s, 500, "{b}");
    let msg = b["error"].as_str().expect("error");
    assert!(msg.contains("database is on fire") && msg.contains("exit status: 3"), "{msg}");
    assert!(a.site_entries().is_empty(), "left behind: {:?}", a.site_entries());
    assert_eq!(a.server.get("/trac/doomed/").status, 404);
    assert!(a.server.log_text().contains("database is on fire"), "the failure is logged");

    // `false`, a command that never makes the marker, and a missing program.
    for provision in [
        r#"provision = [["false"]]"#,
        r#"provision = [["true"]]"#,
        r#"provision = [["/nonexistent/trac-admin", "{dir}"]]"#,
    ] {
        a.rewrite(&Setup { admin: provision, ..Setup::default() });
        assert_eq!(a.api("POST", "/api/v1/reload", None).0, 200);
        let (s, b) = a.signup("doomed");
        assert_eq!(s, 500, "{provision}: {b}");
        assert!(a.site_entries().is_empty(), "{provision}: {:?}", a.site_entries());
    }

    // A hanging command is killed at provision_timeout, with what it started.
    let hang = r#"provision = [["sh", "-c", "mkdir conf; touch conf/trac.ini; sleep 300 & sleep 300"]]
provision_timeout = "1s""#;
    a.rewrite(&Setup { admin: hang, ..Setup::default() });
    assert_eq!(a.api("POST", "/api/v1/reload", None).0, 200);
    let t0 = std::time::Instant::now();
    let (s, b) = a.signup("doomed");
    assert_eq!(s, 500, "{b}");
    assert!(b["error"].as_str().is_some_and(|e| e.contains("timed out")), "{b}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(a.site_entries().is_empty(), "{:?}", a.site_entries());
    let gone = within(Duration::from_secs(5), || a.server.worker_pids().is_empty());
    assert!(gone.is_some(), "provisioning processes left: {:?}", a.server.worker_pids());

    // A refused reload names the problem, and the running configuration stays.
    a.rewrite(&Setup { admin: "provision_timeout = \"soon\"", ..Setup::default() });
    let (s, b) = a.api("POST", "/api/v1/reload", None);
    assert_eq!(s, 422, "{b}");
    assert!(b["error"].as_str().is_some_and(|e| e.contains("provision_timeout")), "{b}");
}

/// The hidden form token of a signup page.
fn form_token(html: &str) -> String {
    let after = html.split("name=\"token\" value=\"").nth(1).expect("a token field");
    after.split('"').next().expect("quoted").to_string()
}

#[test]
fn public_signup_page_is_rate_limited_per_address() {
    let admin = format!("{}\nsignup_limit = 2\nsignup_window = \"10m\"", fake());
    let a = Admin::start(Setup { admin: &admin, ..Setup::default() });
    let page = a.raw("GET", "/signup", None, None, "");
    assert_eq!(page.status, 200);
    let html = page.text();
    for field in ["id=\"name\"", "id=\"admin_user\"", "id=\"password\"", "action=\"/signup\""] {
        assert!(html.contains(field), "{field}: {html}");
    }
    let token = form_token(&html);
    let form =
        |name: &str| format!("token={token}&name={name}&admin_user=bob&password=hunter2%21%21");
    let post = |name: &str| {
        a.raw("POST", "/signup", None, Some(&form(name)), "application/x-www-form-urlencoded")
    };
    let ok = post("from-page");
    assert_eq!(ok.status, 201, "{}", ok.text());
    let link = format!("href=\"http://{}/trac/from-page/\"", a.server.addr);
    assert!(ok.text().contains(&link), "{}", ok.text());
    assert_eq!(a.server.get("/trac/from-page/").status, 200);
    let bad = post("Bad_Name");
    assert_eq!(bad.status, 422);
    assert!(bad.text().contains("id=\"error\""), "{}", bad.text());
    let limited = post("third");
    assert_eq!(limited.status, 429, "{}", limited.text());
    let wait: u64 =
        limited.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((500..=600).contains(&wait), "{wait}");
    assert!(!a.sites().join("third").exists());
    // The API (with a token) is not rate-limited.
    assert_eq!(a.signup("fourth").0, 201);
}

#[test]
fn metrics_token_is_enforced_and_signups_are_counted() {
    let admin = format!("{}\nmetrics_token = true", fake());
    let a = Admin::start(Setup { admin: &admin, ..Setup::default() });
    assert_eq!(a.raw("GET", "/metrics", None, None, "").status, 401);
    assert_eq!(a.raw("GET", "/metrics", Some("wrong"), None, "").status, 403);
    assert_eq!(a.signup("counted").0, 201);
    assert_eq!(a.signup("counted").0, 409);
    assert_eq!(a.signup("Not-Valid").0, 422);
    let m = a.raw("GET", "/metrics", Some(TOKEN), None, "");
    assert_eq!(m.status, 200);
    let text = m.text();
    for outcome in ["created", "conflict", "invalid"] {
        let line = format!("paddock_signups_total{{outcome=\"{outcome}\"}} 1");
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
}

#[test]
fn signup_page_can_be_switched_off() {
    let a = Admin::start(Setup { admin: "signup = false", ..Setup::default() });
    assert_eq!(a.raw("GET", "/signup", None, None, "").status, 404);
}

#[test]
fn discovery_follows_directories_within_a_second() {
    let a = Admin::start(Setup::default());
    let site = a.sites().join("handmade");
    assert_eq!(a.server.get("/trac/handmade/").status, 404);
    private_dir(&site); // as root, a tenant directory others can reach is refused
    write(&site.join("conf/trac.ini"), "[project]\n");
    let seen = within(Duration::from_secs(1), || a.server.get("/trac/handmade/").status == 200);
    assert!(seen.is_some(), "new site not served within 1 s:\n{}", a.server.log_text());
    let (_, t) = a.api("GET", "/api/v1/tenants/handmade", None);
    assert_eq!(t["pool"]["status"], "ready", "{t}");
    assert!(!a.server.worker_pids().is_empty());
    // Moved away by hand: 404 at once, and its pool is stopped.
    std::fs::rename(&site, a.dir.path().join("elsewhere")).expect("mv");
    let gone = within(Duration::from_secs(1), || a.server.get("/trac/handmade/").status == 404);
    assert!(gone.is_some(), "removed site still served");
    let stopped = within(Duration::from_secs(5), || a.server.worker_pids().is_empty());
    assert!(stopped.is_some(), "pool of a removed site still running:\n{}", a.server.log_text());
    assert!(a.server.log_text().contains("tenant gone; stopping its pool"));
}

#[test]
fn thousands_of_tenants_cost_nothing_until_their_first_request() {
    let a = Admin::start(Setup::default());
    for i in 0..2000 {
        write(&a.sites().join(format!("t{i:04}/conf/trac.ini")), "");
    }
    std::fs::set_permissions(a.sites().join("t1234"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", a.server.child.id()));
        let status = status.expect("status");
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
        kb.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).expect("VmRSS")
    };
    let before = rss();
    let t0 = std::time::Instant::now();
    let (s, list) = a.api("GET", "/api/v1/tenants", None);
    assert_eq!(s, 200);
    let tenants = list["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 2000);
    assert!(tenants.iter().all(|t| t["pool"].is_null()));
    assert!(t0.elapsed() < Duration::from_secs(5), "listing took {:?}", t0.elapsed());
    assert!(a.server.worker_pids().is_empty(), "no worker before a request");
    assert_eq!(a.server.get("/trac/t1234/").status, 200);
    assert_eq!(a.server.get("/trac/").status, 200);
    assert_eq!(a.server.worker_pids().len(), 1, "only the asked-for tenant's pool runs");
    // Nothing is kept per tenant: memory does not grow with 2000 of them listed twice.
    a.api("GET", "/api/v1/tenants", None);
    assert!(rss() < before + 64 * 1024, "RSS grew from {before} kB to {} kB", rss());
}

/// `dir`, made with mode 0750.
fn private_dir(dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o750).create(dir).expect("mkdir");
}

/// Checks every answer recorded by `a` against docs/openapi.yaml.
fn check_openapi(a: &Admin) {
    // Exercise what the lifecycle did not: a bad body, 404s, reload (good and refused).
    a.api("POST", "/api/v1/tenants", Some("{"));
    a.api(
        "POST",
        "/api/v1/tenants",
        Some(&json!({"name": "Bad", "admin_user": "a", "password": "12345678"}).to_string()),
    );
    a.signup("shop");
    a.api("GET", "/api/v1/tenants/nope", None);
    a.api("DELETE", "/api/v1/tenants/nope", None);
    a.api("POST", "/api/v1/tenants/nope/disable", None);
    a.api("POST", "/api/v1/tenants/nope/enable", None);
    a.api("POST", "/api/v1/tenants/nope/restart", None);
    a.api("POST", "/api/v1/tenants/shop/restart", None);
    a.api("GET", "/api/v1/tenants", None);
    a.call("GET", "/api/v1/tenants", None, None);
    a.call("GET", "/api/v1/tenants", Some("wrong"), None);
    a.api("POST", "/api/v1/reload", None);
    // Not a cluster node: the cluster resources answer 404 (their 200s are checked in
    // cluster_nodes.rs).
    a.api("GET", "/api/v1/cluster", None);
    a.api("GET", "/api/v1/cluster/tenants/shop", None);
    a.api("POST", "/api/v1/cluster/tenants/shop/move", Some(r#"{"to": "n2"}"#));
    a.api("POST", "/api/v1/cluster/drain", None);
    a.api("POST", "/api/v1/cluster/activate", None);
    let text = std::fs::read_to_string(&a.config).expect("config");
    write(&a.config, &format!("{text}\nbogus_key = 1\n"));
    a.api("POST", "/api/v1/reload", None);
    // The new process refuses the file and exits: the running one serves on (500). A
    // successful upgrade has its own test (upgrade.rs): this server must stay the test's.
    a.api("POST", "/api/v1/upgrade", None);
    write(&a.config, &text);
    let obs = a.dir.path().join("observations.json");
    let seen = a.seen.lock().expect("lock").clone();
    std::fs::write(&obs, serde_json::to_vec_pretty(&seen).expect("json")).expect("write");
    let venv = repo_root().join(".venv-openapi");
    let st = Command::new("bash")
        .arg(repo_root().join("scripts/ensure-openapi-venv.sh"))
        .arg(&venv)
        .status()
        .expect("ensure-openapi-venv");
    assert!(st.success(), "cannot create the OpenAPI tools' virtualenv");
    let out = Command::new(venv.join("bin/python"))
        .arg(repo_root().join("tests/openapi/check.py"))
        .arg(repo_root().join("docs/openapi.yaml"))
        .arg(&obs)
        .output()
        .expect("run check.py");
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the API does not match docs/openapi.yaml:\n{report}");
}

#[test]
fn real_trac_signup_runs_as_its_own_user_and_serves_wikistart() {
    let venv = venv().to_str().expect("utf-8").to_string();
    // As root, the new site gets its own user (the test's own pattern and uid range), its
    // pool runs as it, and its files are private.
    let root = nix_is_root();
    let users = root.then(|| adminkit::TestUsers::new(&["pe2e-real-trac"]));
    let admin = match root {
        true => "site_user = \"pe2e-{name}\"\nsite_uid_min = 39800\nsite_uid_max = 39899",
        false => "",
    };
    let defaults = format!(
        "app = \"trac.web.main:dispatch_request\"\nvirtualenv = \"{venv}\"\n[defaults.auth]\nhtpasswd = \"{{tenant_dir}}/htpasswd\"\n"
    );
    let a = Admin::start(Setup { admin, defaults: &defaults, args: &[] });
    let body = json!({"name": "real-trac", "admin_user": "alice", "password": "wonderland"});
    let (s, t) = a.api("POST", "/api/v1/tenants", Some(&body.to_string()));
    assert_eq!(s, 201, "{t}\n{}", a.server.log_text());
    let dir = a.sites().join("real-trac");
    if root {
        use std::os::unix::fs::MetadataExt;
        let uid = adminkit::uid_of("pe2e-real-trac").expect("the site's user exists");
        let meta = std::fs::metadata(&dir).expect("dir");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o750), "owned by its user, private");
        let db = std::fs::metadata(dir.join("db/trac.db")).expect("db");
        assert_eq!(db.uid(), uid);
        assert_eq!(db.mode() & 0o007, 0, "trac.db not readable by others: {:o}", db.mode());
    }
    let ini = std::fs::read_to_string(dir.join("conf/trac.ini")).expect("trac.ini");
    assert!(ini.contains("trac.admin.web_ui.pluginadminpanel = disabled"), "{ini}");
    let wiki = a.server.get("/trac/real-trac/wiki/WikiStart");
    assert_eq!(wiki.status, 200, "{}", a.server.log_text());
    assert!(wiki.text().contains("Welcome to Trac"), "{}", wiki.text());
    assert!(wiki.text().contains("real-trac"), "project name: {}", wiki.text());
    // The signing-up user can log in and is TRAC_ADMIN.
    let host = a.server.addr;
    let login = a.server.request(
        format!("GET /trac/real-trac/login HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(matches!(login.status, 302 | 303), "{}", login.text());
    let cookie = login
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.split(';').next().filter(|c| c.starts_with("trac_auth=")))
        .expect("trac_auth cookie")
        .to_string();
    let get = |path: &str| {
        a.server.request(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let admin_page = get("/trac/real-trac/admin");
    assert_eq!(admin_page.status, 200, "{}", admin_page.text());
    assert!(admin_page.text().contains("Administration"), "{}", admin_page.text());
    // Plugin upload (code run as the site's user) is off by default.
    let plugins = get("/trac/real-trac/admin/general/plugin");
    assert_eq!(plugins.status, 404, "{}", plugins.text());
    if root {
        let (_, t) = a.api("GET", "/api/v1/tenants/real-trac", None);
        assert_eq!(t["pool"]["user"], "pe2e-real-trac", "{t}");
    }
    drop(a);
    drop(users);
}

/// A migrated host's `[defaults.auth]` reading one shared file: signup would write the new
/// admin into the site's own `htpasswd`, where nothing reads it (a 401 for the new admin).
/// Signup is refused with the reason instead, and `paddock check` warns.
#[test]
fn signup_refuses_while_auth_reads_a_file_it_does_not_write() {
    let a = Admin::start(Setup {
        admin: &fake(),
        defaults: "[defaults.auth]\nhtpasswd = \"/etc/paddock-e2e-shared.htpasswd\"\n",
        ..Setup::default()
    });
    let (s, b) = a.signup("shop");
    assert_eq!(s, 503, "{b}");
    let e = b["error"].as_str().unwrap_or_default();
    assert!(e.contains("/etc/paddock-e2e-shared.htpasswd") && e.contains("401"), "{e}");
    assert!(a.site_entries().is_empty(), "{:?}", a.site_entries());
    let out = Command::new(&common::bins().0)
        .args(["check", "--file-only"])
        .arg(&a.config)
        .output()
        .expect("check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: signup is on, but [defaults.auth] htpasswd is"), "{err}");
}
