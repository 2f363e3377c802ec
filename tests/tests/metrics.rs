//! Metrics end to end: paddock with an admin listener and two test-app tenants gets traffic
//! (2xx, a 404, a 503 from a full queue); a real Prometheus server (Debian's `prometheus`)
//! scrapes `/metrics` every second; then every query of the Grafana dashboard is evaluated
//! through Prometheus's HTTP API and must return data. Also: the text format as served, and
//! the JSON access log with tenant, status, duration and queue wait; every counter family
//! and the `process_*` figures on a fresh router; the label slot of a deleted tenant freed.

mod adminkit;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, free_port, repo_root, send_raw, write, Response, Server};
use serde_json::Value;

/// Tenant `alpha` (roomy) and `beta` (one slot, no queue: a second request gets 503).
fn config(dir: &Path) -> PathBuf {
    common::apps_config(
        dir,
        "",
        &[("alpha", ""), ("beta", "processes = 1\nthreads = 1\nqueue_limit = 0\n")],
    )
}

fn get(addr: SocketAddr, path: &str) -> Response {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// Percent-encode everything but unreserved characters (for a query-string value).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the sample line `series` in the text format.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Debian's Prometheus server binary; installed (as root) when missing.
fn prometheus_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PADDOCK_PROMETHEUS") {
        return PathBuf::from(p);
    }
    let bin = PathBuf::from("/usr/bin/prometheus");
    if !bin.is_file() && common::nix_is_root() {
        // policy-rc.d (where present) keeps the Debian service from starting; the test runs
        // its own server on its own port either way.
        let st = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "prometheus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .expect("run apt-get");
        assert!(st.success(), "apt-get install prometheus failed");
    }
    assert!(
        bin.is_file(),
        "{} is missing: install Debian's `prometheus` package (scripts/install-deps.sh)",
        bin.display()
    );
    bin
}

/// A Prometheus server on a free loopback port scraping `target` every second; stopped by
/// its pid (SIGTERM, then SIGKILL) when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("prometheus.yml");
        write(
            &cfg,
            &format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: paddock\n    scrape_interval: 1s\n    \
                 scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}):\n{}", p.log());
            }
            if send_raw(addr, b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok_and(|r| r.status == 200)
            {
                return p;
            }
            assert!(Instant::now() < deadline, "prometheus not ready in 60 s:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path; the decoded JSON answer (status must be `success`).
    fn api(&self, path_and_query: &str) -> Value {
        let r = get(self.addr, path_and_query);
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{path_and_query}: not JSON ({e}): {}", r.text()));
        assert_eq!(v["status"], "success", "{path_and_query}: {v}");
        v
    }

    /// Evaluate an instant query; its result list.
    fn query(&self, q: &str) -> Vec<Value> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(q)));
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        common::stop_child(&mut self.child, 15, Duration::from_secs(10));
    }
}

/// Every panel query (`expr`) and variable query in the dashboard JSON.
fn dashboard_queries(v: &Value, exprs: &mut Vec<String>, vars: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                exprs.push(e.clone());
            }
            if m.get("type") == Some(&Value::String("query".into())) {
                let q = m.get("definition").or_else(|| m.get("query"));
                let q = match q {
                    Some(Value::Object(o)) => o.get("query").and_then(Value::as_str),
                    Some(Value::String(s)) => Some(s.as_str()),
                    _ => None,
                };
                vars.push(q.expect("a query variable has a query").to_string());
            }
            m.values().for_each(|x| dashboard_queries(x, exprs, vars));
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_queries(x, exprs, vars)),
        _ => {}
    }
}

fn load_dashboard() -> Value {
    let path = repo_root().join("grafana/dashboards/paddock.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Panels, including those nested in rows.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed() {
    let dash = load_dashboard();
    assert_eq!(dash["uid"], "paddock-overview");
    let mut ids = std::collections::HashSet::new();
    for p in panels(&dash) {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate id: {p}");
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "gridPos.{k} of {}", p["title"]);
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().expect("expr");
            assert!(e.contains("paddock_"), "{}: {e}", p["title"]);
        }
    }
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let tenant = vars.iter().find(|v| v["name"] == "tenant").expect("$tenant variable");
    assert_eq!(tenant["definition"], "label_values(paddock_requests_total, tenant)");
    // The drill-down row exists and uses the variable.
    assert!(panels(&dash)
        .iter()
        .any(|p| p["type"] == "row" && p["title"].as_str().is_some_and(|t| t.contains("$tenant"))));
}

#[test]
fn prometheus_scrapes_and_every_dashboard_query_has_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin_s = admin.to_string();
    let server = Server::start(&[
        "--config",
        cfg.to_str().expect("utf-8"),
        "--admin",
        &admin_s,
        "--log-format",
        "json",
    ]);
    let metrics = || {
        let r = get(admin, "/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        r
    };
    // Scrapeable before any traffic, with no token (metrics_token is off by default).
    let first = metrics();
    assert!(
        first.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        first.headers
    );
    assert_eq!(sample(&first.text(), "paddock_tenants_known"), Some(2.0), "{}", first.text());

    let prom = Prometheus::start(admin);

    // Traffic: 2xx on both tenants, a 404 for no tenant, a 503 from beta's full queue.
    for _ in 0..20 {
        assert_eq!(server.get("/alpha/").status, 200);
    }
    assert_eq!(server.get("/beta/").status, 200);
    assert_eq!(server.get("/nosuch/").status, 404);
    let addr = server.addr;
    // The slow request itself says when it runs (a pidfile): the slot of the request before
    // it may still be held for a moment after its client has the whole response.
    let marker = tempfile::tempdir().expect("tempdir");
    let pidfile = marker.path().join("sleeper.pid");
    let slow = format!("/beta/sleep?s=3&pidfile={}", pidfile.display());
    let sleeper = std::thread::spawn(move || get(addr, &slow).status);
    eventually("beta's only slot is busy", Duration::from_secs(30), || {
        pidfile.exists()
            && sample(&metrics().text(), r#"paddock_in_flight_requests{tenant="beta"}"#)
                == Some(1.0)
    });
    let full = server.get("/beta/");
    assert_eq!(full.status, 503, "{}", full.text());
    assert_eq!(sleeper.join().expect("sleeper"), 200);

    let text = metrics().text();
    for (series, want) in [
        (r#"paddock_requests_total{class="2xx",tenant="alpha"}"#, 20.0),
        (r#"paddock_requests_total{class="2xx",tenant="beta"}"#, 2.0),
        (r#"paddock_requests_total{class="5xx",tenant="beta"}"#, 1.0),
        (r#"paddock_requests_total{class="4xx",tenant="_none"}"#, 1.0),
        (r#"paddock_rejected_requests_total{reason="queue_full",tenant="beta"}"#, 1.0),
        (r#"paddock_request_duration_seconds_count{tenant="alpha"}"#, 20.0),
        (r#"paddock_queue_wait_seconds_count{tenant="beta"}"#, 3.0),
        (r#"paddock_workers{state="ready",tenant="beta"}"#, 1.0),
        ("paddock_tenants_active", 2.0),
        ("paddock_metrics_labelled_tenants", 2.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }
    assert!(sample(&text, r#"paddock_worker_spawns_total{tenant="alpha"}"#).unwrap_or(0.0) >= 1.0);
    assert!(sample(&text, r#"paddock_worker_rss_bytes{tenant="alpha"}"#).unwrap_or(0.0) > 1e6);

    // The access log: one JSON line per request, with tenant, status, duration, queue wait.
    let log = server.log_text();
    let access: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "paddock::access")
        .collect();
    assert_eq!(access.len(), 24, "one access line per request:\n{log}");
    let rejected = access
        .iter()
        .find(|v| v["fields"]["status"] == 503)
        .unwrap_or_else(|| panic!("no 503 access line:\n{log}"));
    assert_eq!(rejected["fields"]["tenant"], "beta");
    for v in &access {
        let f = &v["fields"];
        assert!(f["tenant"].is_string() && f["status"].is_u64(), "{v}");
        assert!(f["ms"].is_u64() && f["queue_ms"].is_u64(), "{v}");
    }

    // Prometheus has scraped paddock.
    eventually("prometheus scraped paddock", Duration::from_secs(30), || {
        prom.query(r#"up{job="paddock"} == 1"#).len() == 1
    });

    // Every dashboard query, for each tenant, returns data.
    let dash = load_dashboard();
    let (mut exprs, mut vars) = (Vec::new(), Vec::new());
    dashboard_queries(&dash, &mut exprs, &mut vars);
    assert!(exprs.len() >= 30, "{exprs:?}");
    assert_eq!(vars, ["label_values(paddock_requests_total, tenant)"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut empty: Vec<String>;
    loop {
        let tenants = prom.api(&format!(
            "/api/v1/label/tenant/values?match[]={}",
            encode("paddock_requests_total")
        ));
        let tenants: Vec<&str> = tenants["data"]
            .as_array()
            .expect("label values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        empty = Vec::new();
        if !(tenants.contains(&"alpha") && tenants.contains(&"beta")) {
            empty.push(format!("label_values(paddock_requests_total, tenant) = {tenants:?}"));
        }
        for tenant in ["alpha", "beta"] {
            for e in &exprs {
                let q = e
                    .replace("$tenant", tenant)
                    .replace("$__rate_interval", "1m")
                    .replace("$__interval", "1m")
                    .replace("$__range", "5m");
                if prom.query(&q).is_empty() {
                    empty.push(q);
                }
            }
        }
        if empty.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}\nprometheus log:\n{}",
        empty.join("\n"),
        prom.log()
    );
    drop(prom);
}

/// The `/metrics` text of the admin listener at `admin`.
fn scrape(admin: SocketAddr) -> String {
    let r = get(admin, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn a_fresh_router_has_every_counter_family_and_its_process_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin_s = admin.to_string();
    let _server = Server::start(&["--config", cfg.to_str().expect("utf-8"), "--admin", &admin_s]);
    // Before any request, pool or static file.
    let text = scrape(admin);
    let counters: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    assert!(counters.len() >= 12, "{counters:?}");
    for family in &counters {
        let samples = text
            .lines()
            .filter(|l| {
                l.strip_prefix(family).is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .count();
        assert!(samples > 0, "counter {family} has no sample before the first event:\n{text}");
    }
    for family in ["paddock_static_responses_total", "paddock_worker_exits_total"] {
        assert!(counters.contains(&family), "{family}");
    }
    assert_eq!(sample(&text, r#"paddock_static_responses_total{status="404"}"#), Some(0.0));
    // The router's own process figures (the prometheus crate's collector).
    for g in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(sample(&text, g).is_some(), "{g} missing:\n{text}");
    }
    let rss = sample(&text, "process_resident_memory_bytes").unwrap_or(0.0);
    assert!(rss > 1e6 && rss < 4e9, "{rss}");
    let started = sample(&text, "process_start_time_seconds").unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(started <= now && now - started < 600.0, "started {started}, now {now}");
    // The build's git revision, as git says it (when there is git and a repository).
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let version = env!("CARGO_PKG_VERSION");
    let revision = head.unwrap_or_else(|| "unknown".to_string());
    let series = format!("paddock_build_info{{revision=\"{revision}\",version=\"{version}\"}}");
    assert_eq!(sample(&text, &series), Some(1.0), "{series}:\n{text}");
}

#[test]
fn a_deleted_tenant_gives_its_label_slot_to_the_next() {
    use adminkit::{Admin, Setup, FAKE_PROVISION};
    let admin_lines = format!("metrics_max_tenants = 1\nprovision = {FAKE_PROVISION}");
    let a = Admin::start(Setup { admin: &admin_lines, ..Setup::default() });
    for name in ["aa", "bb"] {
        let (st, body) = a.signup(name);
        assert_eq!(st, 201, "{body}");
    }
    let requests =
        |tenant: &str| format!("paddock_requests_total{{class=\"2xx\",tenant=\"{tenant}\"}}");
    assert_eq!(a.server.get("/trac/aa/").status, 200, "{}", a.server.log_text());
    assert_eq!(a.server.get("/trac/bb/").status, 200);
    let text = scrape(a.admin);
    assert_eq!(sample(&text, &requests("aa")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &requests("_other")), Some(1.0), "bb is beyond the bound");
    assert_eq!(sample(&text, "paddock_metrics_labelled_tenants"), Some(1.0));

    let (st, body) = a.api("DELETE", "/api/v1/tenants/aa", None);
    assert_eq!(st, 200, "{body}");
    // Freed at the first scrape after its pool has stopped (the pool stops at once).
    // Freed at the first scrape after its pool has stopped (at once), and taken by the next
    // tenant seen: bb, whose running pool that scrape reads.
    let mut last = String::new();
    let released = adminkit::within(Duration::from_secs(20), || {
        last = scrape(a.admin);
        !last.contains("tenant=\"aa\"")
            && last.contains("paddock_in_flight_requests{tenant=\"bb\"}")
    });
    assert!(released.is_some(), "aa's label not released:\n{last}");
    assert_eq!(sample(&last, "paddock_metrics_labelled_tenants"), Some(1.0));
    assert_eq!(a.server.get("/trac/bb/").status, 200);
    let text = scrape(a.admin);
    assert_eq!(sample(&text, &requests("bb")), Some(1.0), "bb got the free label:\n{text}");
    assert_eq!(sample(&text, "paddock_metrics_labelled_tenants"), Some(1.0));
    assert_eq!(
        sample(&text, &requests("_other")),
        Some(1.0),
        "what bb did as _other stays there; _other never goes backwards"
    );
}
