//! The soak: `paddock` under mixed load over 50 tenants with faults injected at random
//! bounded intervals (SIGKILL of workers and zygotes, SIGHUP reloads, sites appearing and
//! disappearing, signups and deletes, slow and non-reading clients), then invariants checked
//! and a summary printed; exit status 1 if any fails. Run through `scripts/soak.sh` (root).
//!
//! Over 500 lines: a test program, not library code. Its load, fault and check loops share
//! one `Shared` (the tenants, the clients' tallies, the faults' log) and read as one scenario;
//! HTTP and process helpers are in `http.rs` and `procs.rs`.

mod http;
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http::{get_req, post_req, Conn, Fail, Resp};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The two tenant users (app tenants alternate; Trac sites and signups are the first's).
const USERS: [&str; 2] = ["paddock-soak1", "paddock-soak2"];
const APPS: usize = 46;
const TRAC_SITES: usize = 4;
const SPARE_SITES: usize = 2;
/// Most signed-up sites alive at once.
const MAX_SIGNUPS: usize = 3;
const CLIENTS: usize = 10;
const MAX_WORKERS_TOTAL: usize = 12;
const HEADER_READ_TIMEOUT: u64 = 3;
const BODY_READ_TIMEOUT: u64 = 3;
const SEND_TIMEOUT: u64 = 3;
const IDLE_TIMEOUT: u64 = 15;
/// Longest stretch with more worker processes than max_workers_total (graceful_timeout 5 s
/// plus a worker start).
const OVER_BUDGET_SECS: f64 = 10.0;
/// Router fds after the idle period may exceed those at start by this many.
const FD_SLACK: usize = 10;
/// RSS bound after warm-up: warm-up max × (1 + RSS_PCT/100) + RSS_MIB.
const RSS_PCT: u64 = 30;
const RSS_MIB: u64 = 20;
const TOKEN: &str = "soak-token-0123456789abcdef";
/// A kill that may cut responses of any tenant (a zygote's: its forked workers end with it).
const ANY_TENANT: &str = "*";
const MIB: usize = 1 << 20;

struct Opts {
    secs: u64,
    venv: PathBuf,
    bin_dir: PathBuf,
    repo: PathBuf,
    seed: u64,
}

fn opts() -> Result<Opts> {
    let mut o = Opts {
        secs: 1800,
        venv: PathBuf::new(),
        bin_dir: PathBuf::new(),
        repo: PathBuf::new(),
        seed: seed_from_clock(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => o.secs = val()?.parse().context("--secs")?,
            "--venv" => o.venv = val()?.into(),
            "--bin-dir" => o.bin_dir = val()?.into(),
            "--repo" => o.repo = val()?.into(),
            "--seed" => o.seed = val()?.parse().context("--seed")?,
            other => bail!("unknown argument {other:?} (--secs N --venv DIR --bin-dir DIR --repo DIR [--seed N])"),
        }
    }
    if o.venv.as_os_str().is_empty()
        || o.bin_dir.as_os_str().is_empty()
        || o.repo.as_os_str().is_empty()
    {
        bail!("--venv, --bin-dir and --repo are required");
    }
    Ok(o)
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// xorshift64*: enough randomness for choosing faults, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Trac,
}

#[derive(Clone)]
struct Target {
    prefix: String,
    kind: Kind,
    dynamic: bool,
}

/// A site that comes and goes: whether it is live, and when that last changed.
struct Dyn {
    kind: Kind,
    live: bool,
    changed: Instant,
}

#[derive(Default)]
struct Stats {
    total: u64,
    by_status: BTreeMap<u16, u64>,
    by_fail: BTreeMap<&'static str, u64>,
    ok: u64,
    router_5xx: u64,
    /// Answers (404, or the app's error) for a dynamic site removed during the request.
    gone: BTreeMap<u16, u64>,
    /// Responses cut in the body by a SIGKILL of a worker of their tenant during the request.
    killed_mid: u64,
    bad: u64,
    details: Vec<String>,
}

#[derive(Default)]
struct Faults {
    worker_kills: u64,
    zygote_kills: u64,
    reloads: u64,
    sites_added: u64,
    sites_removed: u64,
    signups: BTreeMap<u16, u64>,
    deletes: BTreeMap<u16, u64>,
    slow: BTreeMap<&'static str, u64>,
    problems: Vec<String>,
}

struct Sample {
    t: f64,
    rss_kib: u64,
    fds: usize,
    workers: usize,
    zygotes: usize,
}

struct Shared {
    addr: SocketAddr,
    admin: SocketAddr,
    t0: Instant,
    stop: AtomicBool,
    router: i32,
    worker_bin: PathBuf,
    run: PathBuf,
    targets: Vec<Target>,
    dynamic: Mutex<BTreeMap<String, Dyn>>,
    stats: Mutex<Stats>,
    faults: Mutex<Faults>,
    samples: Mutex<Vec<Sample>>,
    slow_active: AtomicUsize,
    /// SIGKILLs sent to workers, recorded just before the signal: (tenant prefix or `*` for a
    /// zygote, when).
    kills: Mutex<Vec<(String, Instant)>>,
    cgroup_seen: Mutex<Option<PathBuf>>,
    /// Every process seen descending from the router, as (pid, start time).
    family: Mutex<BTreeSet<(i32, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn t(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn note(&self, what: &str) {
        eprintln!("soak [{:7.1}s] {what}", self.t());
    }
    fn problem(&self, what: String) {
        self.note(&format!("PROBLEM: {what}"));
        lock(&self.faults).problems.push(format!("[{:.1}s] {what}", self.t()));
    }
    /// Whether a worker of `prefix` (or a zygote) was SIGKILLed since `since`.
    fn killed_since(&self, prefix: &str, since: Instant) -> bool {
        lock(&self.kills).iter().any(|(p, t)| (p == prefix || p == ANY_TENANT) && *t >= since)
    }
    /// Whether the dynamic site `prefix` is gone, or changed after `since`.
    fn gone_since(&self, prefix: &str, since: Instant) -> bool {
        lock(&self.dynamic).get(prefix).is_none_or(|d| !d.live || d.changed >= since)
    }
}

fn main() {
    match soak() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: FAIL (setup or harness error: {e:#})");
            std::process::exit(2);
        }
    }
}

fn sh(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn chmod(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

fn ensure_user(name: &str) -> Result<u32> {
    let script = format!(
        "id -u {name} >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin {name}"
    );
    sh(Command::new("flock").args(["/tmp/paddock-e2e-useradd.lock", "sh", "-c", &script]))?;
    let o = Command::new("id").arg("-u").arg(name).output()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().context("uid")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn app_name(i: usize) -> String {
    format!("t{i:02}")
}

fn config_text(run: &Path, o: &Opts, port: u16, aport: u16, generation: u64) -> String {
    let apps = o.repo.join("tests/apps");
    let mut s = format!(
        r#"# Written by the soak (generation {generation}).
listen = "127.0.0.1:{port}"
sites = "{run}/sites"
mount = "/trac"
index = false
runtime_dir = "{run}/rt"
max_workers_total = {MAX_WORKERS_TOTAL}
# Its 50 tenants, evenly loaded, are many more than fit: with the default 30 s a cold tenant
# mostly waits for a pool to age (about 300 requests in 2 minutes); the soak's apps start
# in milliseconds, and it is the churn of stops and starts it puts under faults.
min_residency = "2s"
header_read_timeout = "{HEADER_READ_TIMEOUT}s"
send_timeout = "{SEND_TIMEOUT}s"

[defaults]
processes = 1
threads = 2
virtualenv = "{venv}"
idle_timeout = "{IDLE_TIMEOUT}s"
queue_timeout = "15s"
request_timeout = "30s"
startup_timeout = "30s"
body_read_timeout = "{BODY_READ_TIMEOUT}s"
body_min_rate = 0
max_requests = 300
graceful_timeout = "5s"

[defaults.environ]
"trac.env_path" = "{{tenant_dir}}"

[admin]
listen = "127.0.0.1:{aport}"
tokens_file = "{run}/tokens"
signup_user = "{user}"
signup_limit = 0
provision_timeout = "120s"
"#,
        run = run.display(),
        venv = o.venv.display(),
        user = USERS[0],
    );
    for i in 0..APPS {
        let name = app_name(i);
        // The first 30 are forked by a zygote, the rest started directly; four hot ones
        // have two processes and a recycle limit a reload toggles (a graceful replace).
        let preload = if i < 30 { "[\"testapps\"]" } else { "[]" };
        let procs = if i < 4 { 2 } else { 1 };
        let max_req = if i < 4 {
            format!("max_requests = {}\n", 200 + generation % 2)
        } else {
            String::new()
        };
        s.push_str(&format!(
            "\n[tenants.{name}]\ndir = \"{}/apps/{name}\"\nmount = \"/{name}\"\napp = \"testapps:application\"\npython_path = [\"{}\"]\nwatch_files = []\npreload = {preload}\nprocesses = {procs}\n{max_req}",
            run.display(),
            apps.display()
        ));
    }
    s
}

struct Setup {
    run: PathBuf,
    config: PathBuf,
    port: u16,
    aport: u16,
}

fn setup(o: &Opts) -> Result<Setup> {
    let run = PathBuf::from(format!("/tmp/paddock-soak-{}", std::process::id()));
    if run.exists() {
        std::fs::remove_dir_all(&run)?;
    }
    for d in ["apps", "sites", "spare", "rt"] {
        std::fs::create_dir_all(run.join(d))?;
    }
    chmod(&run, 0o755)?;
    for d in ["apps", "sites", "spare"] {
        chmod(&run.join(d), 0o755)?;
    }
    for u in USERS {
        ensure_user(u)?;
    }
    for i in 0..APPS {
        let d = run.join("apps").join(app_name(i));
        std::fs::create_dir_all(&d)?;
        chmod(&d, 0o750)?;
        sh(Command::new("chown").arg(format!("{}:", USERS[i % 2])).arg(&d))?;
    }
    eprintln!("soak: making the Trac environments");
    let template = run.join("trac-template");
    sh(Command::new(o.venv.join("bin/trac-admin")).arg(&template).args([
        "initenv",
        "soak",
        "sqlite:db/trac.db",
    ]))?;
    let mut dirs: Vec<PathBuf> =
        (0..TRAC_SITES).map(|i| run.join(format!("sites/site{i}"))).collect();
    dirs.extend((0..SPARE_SITES).map(|i| run.join(format!("spare/extra{i}"))));
    for d in &dirs {
        sh(Command::new("cp").arg("-a").arg(&template).arg(d))?;
        sh(Command::new("chown").arg("-R").arg(format!("{}:", USERS[1])).arg(d))?;
        chmod(d, 0o750)?;
    }
    std::fs::write(run.join("tokens"), format!("# soak\n{TOKEN}\n"))?;
    chmod(&run.join("tokens"), 0o600)?;
    let (port, aport) = (free_port()?, free_port()?);
    let config = run.join("paddock.toml");
    std::fs::write(&config, config_text(&run, o, port, aport, 0))?;
    Ok(Setup { run, config, port, aport })
}

fn start_router(o: &Opts, s: &Setup) -> Result<Child> {
    let log = std::fs::File::create(s.run.join("paddock.log"))?;
    let child = Command::new(o.bin_dir.join("paddock"))
        .arg("serve")
        .arg("--config")
        .arg(&s.config)
        .env("PADDOCK_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawn paddock")?;
    Ok(child)
}

fn wait_listening(child: &mut Child, addrs: &[SocketAddr]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            bail!("paddock exited early ({st})");
        }
        if addrs.iter().all(|a| TcpStream::connect(a).is_ok()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("paddock did not listen within 30 s")
}

// ---------------------------------------------------------------------------------------
// Load

fn pick(sh: &Shared, rng: &mut Rng) -> Target {
    let roll = rng.below(100);
    if roll < 6 {
        let live: Vec<Target> = lock(&sh.dynamic)
            .iter()
            .filter(|(_, d)| d.live)
            .map(|(p, d)| Target { prefix: p.clone(), kind: d.kind, dynamic: true })
            .collect();
        if !live.is_empty() {
            return live[rng.below(live.len())].clone();
        }
    }
    let (apps, trac): (Vec<&Target>, Vec<&Target>) =
        sh.targets.iter().partition(|t| t.kind == Kind::App);
    let t = match roll {
        0..=15 => trac[rng.below(trac.len())],
        16..=65 => apps[rng.below(8)],
        _ => apps[rng.below(apps.len())],
    };
    t.clone()
}

type Outcome = Result<Resp, (Fail, String)>;

/// Count one exchange; `check` says what is wrong with a 200.
fn record(
    sh: &Shared,
    t: &Target,
    what: &str,
    started: Instant,
    out: &Outcome,
    check: &dyn Fn(&Resp) -> Option<String>,
) {
    let mut detail = None;
    let mut st = lock(&sh.stats);
    st.total += 1;
    match out {
        Ok(r) => {
            *st.by_status.entry(r.status).or_default() += 1;
            if r.status == 200 {
                match check(r) {
                    None => st.ok += 1,
                    // Trac ends its page early when its directory vanishes mid-request.
                    Some(_) if t.dynamic && sh.gone_since(&t.prefix, started) => {
                        *st.gone.entry(r.status).or_default() += 1;
                    }
                    Some(e) => {
                        *st.by_fail.entry("bad_200_body").or_default() += 1;
                        detail = Some(format!("200 with a bad body: {e}"));
                    }
                }
            } else if r.status >= 500 && r.is_router_page() {
                st.router_5xx += 1;
            } else if t.dynamic && sh.gone_since(&t.prefix, started) {
                *st.gone.entry(r.status).or_default() += 1;
            } else {
                *st.by_fail.entry("unexpected_status").or_default() += 1;
                let body = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned();
                detail = Some(format!("status {} {:?}", r.status, body));
            }
        }
        Err((Fail::Truncated, msg)) if sh.killed_since(&t.prefix, started) => {
            st.killed_mid += 1;
            sh.note(&format!("{what}: cut by the kill of its worker ({msg})"));
        }
        Err((f, msg)) => {
            *st.by_fail.entry(f.name()).or_default() += 1;
            detail = Some(format!("{}: {msg}", f.name()));
        }
    }
    if let Some(d) = detail {
        st.bad += 1;
        let line =
            format!("[{:.1}s] {what}: {d} (after {:.2}s)", sh.t(), started.elapsed().as_secs_f64());
        eprintln!("soak BAD {line}");
        if st.details.len() < 40 {
            st.details.push(line);
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(60);

fn no_check(_: &Resp) -> Option<String> {
    None
}

fn pid_check(r: &Resp) -> Option<String> {
    let ok = !r.body.is_empty() && r.body.iter().all(u8::is_ascii_digit);
    (!ok).then(|| {
        format!("not a pid: {:?}", String::from_utf8_lossy(&r.body[..r.body.len().min(80)]))
    })
}

fn html_check(r: &Resp) -> Option<String> {
    let ok = r.body.windows(7).any(|w| w.eq_ignore_ascii_case(b"</html>"));
    (!ok).then(|| format!("no </html> in {} bytes", r.body.len()))
}

fn stream_check(r: &Resp) -> Option<String> {
    if r.body.len() != MIB {
        return Some(format!("{} bytes, not {MIB}", r.body.len()));
    }
    let bad = r.body.iter().enumerate().position(|(i, &b)| b != (i % 256) as u8);
    bad.map(|i| format!("wrong byte at {i}"))
}

fn load_client(sh: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    while !sh.stopping() {
        let t = pick(sh, &mut rng);
        let p = &t.prefix;
        let started = Instant::now();
        if t.kind == Kind::Trac {
            let path = if rng.chance(70) { format!("{p}/") } else { format!("{p}/wiki/WikiStart") };
            let out = http::once(sh.addr, &get_req(&path, false), TIMEOUT);
            record(sh, &t, &format!("GET {path}"), started, &out, &html_check);
            continue;
        }
        match rng.below(10) {
            0..=4 => {
                let path = format!("{p}/pid");
                let out = http::once(sh.addr, &get_req(&path, false), TIMEOUT);
                record(sh, &t, &format!("GET {path}"), started, &out, &pid_check);
            }
            5 | 6 => {
                let n = rng.range(1, 64 * 1024) as usize;
                let b = rng.next() as u8;
                let body: Vec<u8> = (0..n).map(|i| b.wrapping_add((i % 251) as u8)).collect();
                let path = format!("{p}/echo");
                let out = http::once(
                    sh.addr,
                    &post_req(&path, "application/octet-stream", "", &body),
                    TIMEOUT,
                );
                let check = |r: &Resp| {
                    (r.body != body).then(|| format!("echo of {n} bytes gave {}", r.body.len()))
                };
                record(sh, &t, &format!("POST {path} ({n} B)"), started, &out, &check);
            }
            7 => {
                let path = format!("{p}/stream?mb=1");
                let out = http::once(sh.addr, &get_req(&path, false), TIMEOUT);
                record(sh, &t, &format!("GET {path}"), started, &out, &stream_check);
            }
            _ => keep_alive(sh, &t, started),
        }
    }
}

/// Three requests on one connection (the last asks to close).
fn keep_alive(sh: &Shared, t: &Target, started: Instant) {
    let path = format!("{}/pid", t.prefix);
    let mut c = match Conn::open(sh.addr, TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            return record(sh, t, &format!("GET {path} (keep-alive)"), started, &Err(e), &no_check)
        }
    };
    for i in 0..3 {
        let t1 = Instant::now();
        let out = c.send(&get_req(&path, i < 2)).and_then(|()| c.read_response(false));
        let closes = out.as_ref().map_or(true, Resp::closes);
        record(sh, t, &format!("GET {path} (keep-alive #{i})"), t1, &out, &pid_check);
        if closes {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Slow clients: each must be resolved by the router within its timeout plus slack.

fn slow_client(sh: &Shared, kind: usize, tenant: &str) {
    let slack = Duration::from_secs(10);
    let started = Instant::now();
    let res: std::result::Result<&'static str, String> = (|| match kind {
        0 => {
            let mut c = Conn::open(sh.addr, Duration::from_secs(HEADER_READ_TIMEOUT) + slack)
                .map_err(|e| e.1)?;
            c.send(format!("GET /{tenant}/pid HTTP/1.1\r\nHost: soak\r\n").as_bytes())
                .map_err(|e| e.1)?;
            match c.drain() {
                Ok(_) | Err((Fail::Reset, _)) => Ok("slow_head_cut"),
                Err((f, m)) => Err(format!("slow head not cut off: {} {m}", f.name())),
            }
        }
        1 => {
            let mut c = Conn::open(
                sh.addr,
                Duration::from_secs(BODY_READ_TIMEOUT) + slack + Duration::from_secs(15),
            )
            .map_err(|e| e.1)?;
            let head = format!("POST /{tenant}/echo HTTP/1.1\r\nHost: soak\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n");
            c.send(head.as_bytes()).map_err(|e| e.1)?;
            c.send(&[b'x'; 100]).map_err(|e| e.1)?;
            match c.read_response(false) {
                Ok(r) if r.status == 408 && r.is_router_page() => Ok("slow_body_408"),
                // Queued behind the budget or a start (503), or its worker killed (502),
                // before the body was read at all.
                Ok(r) if r.status == 503 && r.is_router_page() => Ok("slow_body_router_503"),
                Ok(r) if r.status == 502 && r.is_router_page() => Ok("slow_body_router_502"),
                Ok(r) => Err(format!("slow body got {}", r.status)),
                Err((f, m)) => Err(format!("slow body: {} {m}", f.name())),
            }
        }
        _ => {
            // Time for the tenant to start (queued behind the budget or a killed zygote under
            // load): the client stops reading only once the response has begun, so a late
            // start is not taken for a router that never cut it off (CI: "got all bytes").
            let mut c = Conn::open(sh.addr, slack + Duration::from_secs(60)).map_err(|e| e.1)?;
            c.send(format!("GET /{tenant}/stream?mb=64 HTTP/1.1\r\nHost: soak\r\n\r\n").as_bytes())
                .map_err(|e| e.1)?;
            match c.read_head() {
                Ok(200) => {}
                Ok(503) => return Ok("non_reader_router_503"),
                Ok(502) => return Ok("non_reader_router_502"),
                Ok(st) => return Err(format!("non-reader got {st}")),
                Err((f, m)) => return Err(format!("non-reader: {} {m}", f.name())),
            }
            let early = c.buffered();
            std::thread::sleep(Duration::from_secs(SEND_TIMEOUT * 2 + 2));
            match c.drain().map(|n| n + early) {
                Ok(n) if n < 64 * MIB => Ok("non_reader_cut"),
                Err((Fail::Reset, _)) => Ok("non_reader_cut"),
                Ok(n) => Err(format!("non-reader got all {n} bytes: never cut off")),
                Err((f, m)) => Err(format!("non-reader not cut off: {} {m}", f.name())),
            }
        }
    })();
    let mut f = lock(&sh.faults);
    match res {
        Ok(k) => *f.slow.entry(k).or_default() += 1,
        Err(e) => {
            *f.slow.entry("unresolved").or_default() += 1;
            drop(f);
            sh.problem(format!(
                "slow client on /{tenant} after {:.1}s: {e}",
                started.elapsed().as_secs_f64()
            ));
        }
    }
}

fn slow_clients(sh: &Arc<Shared>, seed: u64) -> Vec<std::thread::JoinHandle<()>> {
    let mut rng = Rng::new(seed);
    let mut hs = Vec::new();
    let mut kind = 0;
    while !sh.stopping() {
        std::thread::sleep(Duration::from_millis(rng.range(1500, 4000)));
        if sh.slow_active.load(Ordering::Relaxed) >= 3 || sh.stopping() {
            continue;
        }
        let tenant = app_name(rng.below(APPS));
        let s = sh.clone();
        let k = kind % 3;
        kind += 1;
        s.slow_active.fetch_add(1, Ordering::Relaxed);
        hs.push(std::thread::spawn(move || {
            slow_client(&s, k, &tenant);
            s.slow_active.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    hs
}

// ---------------------------------------------------------------------------------------
// Faults

fn faults(sh: &Shared, o: &Opts, s: &Setup, seed: u64, ci: bool) {
    let mut rng = Rng::new(seed);
    let mut generation = 0;
    let (lo, hi) = if ci { (1500, 4000) } else { (2000, 8000) };
    while !sh.stopping() {
        std::thread::sleep(Duration::from_millis(rng.range(lo, hi)));
        if sh.stopping() {
            break;
        }
        let roll = rng.below(100);
        let (workers, zygotes) = procs::workers_and_zygotes(sh.router, &sh.worker_bin);
        match roll {
            0..=39 if !workers.is_empty() => {
                let pid = workers[rng.below(workers.len())];
                let tenant = procs::tenant_of(pid).unwrap_or_default();
                // Recorded before the signal: the client may see its cut response before
                // this thread runs again (the 30-minute soak counted one such cut as bad).
                lock(&sh.kills).push((tenant.clone(), Instant::now()));
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    lock(&sh.faults).worker_kills += 1;
                    sh.note(&format!("kill -9 worker {pid} of {tenant}"));
                }
            }
            40..=54 if !zygotes.is_empty() => {
                let pid = zygotes[rng.below(zygotes.len())];
                // The workers it forked end with it, whatever their tenant.
                lock(&sh.kills).push((ANY_TENANT.to_string(), Instant::now()));
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    lock(&sh.faults).zygote_kills += 1;
                    sh.note(&format!("kill -9 zygote {pid}"));
                }
            }
            55..=69 => {
                generation += 1;
                let text = config_text(&s.run, o, s.port, s.aport, generation);
                if let Err(e) = std::fs::write(&s.config, text) {
                    sh.problem(format!("rewrite config: {e}"));
                }
                if kill(Pid::from_raw(sh.router), Signal::SIGHUP).is_ok() {
                    lock(&sh.faults).reloads += 1;
                    sh.note(&format!("SIGHUP (generation {generation})"));
                }
            }
            _ => toggle_spare(sh, &mut rng),
        }
    }
}

/// Move a spare Trac site into the sites directory, or one back out.
fn toggle_spare(sh: &Shared, rng: &mut Rng) {
    let i = rng.below(SPARE_SITES);
    let name = format!("extra{i}");
    let prefix = format!("/trac/{name}");
    let (inside, outside) = (sh.run.join("sites").join(&name), sh.run.join("spare").join(&name));
    let live = lock(&sh.dynamic).get(&prefix).is_some_and(|d| d.live);
    if live {
        // Marked gone first: a 404 from here on is expected.
        lock(&sh.dynamic)
            .insert(prefix.clone(), Dyn { kind: Kind::Trac, live: false, changed: Instant::now() });
        match std::fs::rename(&inside, &outside) {
            Ok(()) => {
                lock(&sh.faults).sites_removed += 1;
                sh.note(&format!("site {name} removed from sites/"));
            }
            Err(e) => sh.problem(format!("mv {name} out: {e}")),
        }
    } else {
        match std::fs::rename(&outside, &inside) {
            Ok(()) => {
                lock(&sh.dynamic)
                    .insert(prefix, Dyn { kind: Kind::Trac, live: true, changed: Instant::now() });
                lock(&sh.faults).sites_added += 1;
                sh.note(&format!("site {name} added to sites/"));
            }
            Err(e) => sh.problem(format!("mv {name} in: {e}")),
        }
    }
}

fn api(sh: &Shared, method: &str, path: &str, body: &str) -> Outcome {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n",
        sh.admin
    );
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    http::once(sh.admin, req.as_bytes(), Duration::from_secs(180))
}

/// Signups and deletes through the admin API.
fn admin_ops(sh: &Shared, seed: u64, ci: bool) {
    let mut rng = Rng::new(seed);
    let mut seq = 0;
    let (lo, hi) = if ci { (6000, 15000) } else { (10000, 40000) };
    while !sh.stopping() {
        let wait = Duration::from_millis(rng.range(lo, hi));
        let until = Instant::now() + wait;
        while Instant::now() < until && !sh.stopping() {
            std::thread::sleep(Duration::from_millis(200));
        }
        if sh.stopping() {
            break;
        }
        let live: Vec<String> = lock(&sh.dynamic)
            .iter()
            .filter(|(p, d)| d.live && p.starts_with("/trac/su"))
            .map(|(p, _)| p.clone())
            .collect();
        if live.len() < MAX_SIGNUPS && (live.is_empty() || rng.chance(60)) {
            seq += 1;
            let name = format!("su{}x{seq}", std::process::id());
            let body = serde_json::json!({"name": name, "admin_user": "alice", "password": "correct horse"});
            let t = Instant::now();
            let out = api(sh, "POST", "/api/v1/tenants", &body.to_string());
            let status = out.as_ref().map_or(0, |r| r.status);
            *lock(&sh.faults).signups.entry(status).or_default() += 1;
            sh.note(&format!("signup {name}: {status} in {:.1}s", t.elapsed().as_secs_f64()));
            if status == 201 {
                lock(&sh.dynamic).insert(
                    format!("/trac/{name}"),
                    Dyn { kind: Kind::Trac, live: true, changed: Instant::now() },
                );
            } else {
                sh.problem(format!("signup {name} answered {status}: {}", describe(&out)));
            }
        } else if let Some(prefix) = live.get(rng.below(live.len().max(1))) {
            let name = prefix.trim_start_matches("/trac/").to_string();
            lock(&sh.dynamic).insert(
                prefix.clone(),
                Dyn { kind: Kind::Trac, live: false, changed: Instant::now() },
            );
            let out = api(sh, "DELETE", &format!("/api/v1/tenants/{name}"), "");
            let status = out.as_ref().map_or(0, |r| r.status);
            *lock(&sh.faults).deletes.entry(status).or_default() += 1;
            sh.note(&format!("delete {name}: {status}"));
            if status != 200 {
                sh.problem(format!("delete {name} answered {status}: {}", describe(&out)));
            }
        }
    }
}

fn describe(out: &Outcome) -> String {
    match out {
        Ok(r) => String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).into_owned(),
        Err((f, m)) => format!("{}: {m}", f.name()),
    }
}

// ---------------------------------------------------------------------------------------
// Sampling

fn monitor(sh: &Shared) {
    while !sh.stopping() {
        sample(sh);
        for _ in 0..10 {
            if sh.stopping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn sample(sh: &Shared) {
    let (w, z) = procs::workers_and_zygotes(sh.router, &sh.worker_bin);
    let s = Sample {
        t: sh.t(),
        rss_kib: procs::rss_kib(sh.router).unwrap_or(0),
        fds: procs::fd_count(sh.router).unwrap_or(0),
        workers: w.len(),
        zygotes: z.len(),
    };
    if s.workers > MAX_WORKERS_TOTAL {
        sh.note(&format!("{} worker processes (max_workers_total {MAX_WORKERS_TOTAL})", s.workers));
    }
    lock(&sh.samples).push(s);
    lock(&sh.family).extend(procs::family(sh.router));
    let mut seen = lock(&sh.cgroup_seen);
    if seen.is_none() {
        *seen = router_cgroup(sh.router).filter(|p| p.is_dir());
    }
}

/// `<cgroup2 mount><router cgroup>/paddock-<pid>`, where the router keeps its pools.
fn router_cgroup(pid: i32) -> Option<PathBuf> {
    let mount = procs::cgroup2_mount()?;
    let cg = procs::cgroup_of(pid)?;
    let mark = format!("/paddock-{pid}");
    let base = match cg.find(&mark) {
        Some(i) => cg[..i + mark.len()].to_string(),
        None => format!("{}{mark}", cg.trim_end_matches('/')),
    };
    Some(mount.join(base.trim_start_matches('/')))
}

// ---------------------------------------------------------------------------------------
// The run

fn soak() -> Result<bool> {
    let o = opts()?;
    if !nix::unistd::geteuid().is_root() {
        bail!("the soak needs root (tenant users, kill, /proc of other users)");
    }
    let ci = o.secs <= 300;
    eprintln!("soak: {} s, seed {}", o.secs, o.seed);
    let s = setup(&o)?;
    let mut child = start_router(&o, &s)?;
    let addr: SocketAddr = format!("127.0.0.1:{}", s.port).parse()?;
    let admin: SocketAddr = format!("127.0.0.1:{}", s.aport).parse()?;
    if let Err(e) = wait_listening(&mut child, &[addr, admin]) {
        let _ = child.kill();
        let log = std::fs::read_to_string(s.run.join("paddock.log")).unwrap_or_default();
        bail!("{e}\n{log}");
    }
    let router = i32::try_from(child.id()).context("pid")?;
    std::thread::sleep(Duration::from_millis(500));
    let fds_start = procs::fd_count(router).unwrap_or(0);
    let fd_list_start = procs::fd_targets(router);

    let mut targets: Vec<Target> = (0..APPS)
        .map(|i| Target { prefix: format!("/{}", app_name(i)), kind: Kind::App, dynamic: false })
        .collect();
    targets.extend((0..TRAC_SITES).map(|i| Target {
        prefix: format!("/trac/site{i}"),
        kind: Kind::Trac,
        dynamic: false,
    }));
    let sh = Arc::new(Shared {
        addr,
        admin,
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        router,
        worker_bin: o.bin_dir.join("paddock-worker"),
        run: s.run.clone(),
        targets,
        dynamic: Mutex::new(BTreeMap::new()),
        stats: Mutex::new(Stats::default()),
        faults: Mutex::new(Faults::default()),
        samples: Mutex::new(Vec::new()),
        slow_active: AtomicUsize::new(0),
        kills: Mutex::new(Vec::new()),
        cgroup_seen: Mutex::new(None),
        family: Mutex::new(BTreeSet::new()),
    });
    sample(&sh);

    let mut rng = Rng::new(o.seed);
    let mut threads = Vec::new();
    for _ in 0..CLIENTS {
        let (s2, seed) = (sh.clone(), rng.next());
        threads.push(std::thread::spawn(move || load_client(&s2, seed)));
    }
    {
        let s2 = sh.clone();
        threads.push(std::thread::spawn(move || monitor(&s2)));
    }
    let slow = {
        let (s2, seed) = (sh.clone(), rng.next());
        std::thread::spawn(move || slow_clients(&s2, seed))
    };
    let admin_t = {
        let (s2, seed) = (sh.clone(), rng.next());
        std::thread::spawn(move || admin_ops(&s2, seed, ci))
    };
    std::thread::scope(|scope| {
        let fault_seed = rng.next();
        let (shr, or, sr) = (&sh, &o, &s);
        let f = scope.spawn(move || faults(shr, or, sr, fault_seed, ci));
        let deadline = Instant::now() + Duration::from_secs(o.secs);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                sh.problem(format!("the router exited during the run ({st})"));
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        sh.stop.store(true, Ordering::Relaxed);
        let _ = f.join();
    });
    sh.note("load stopped; waiting for the clients");
    for t in threads {
        let _ = t.join();
    }
    let _ = admin_t.join();
    if let Ok(hs) = slow.join() {
        for h in hs {
            let _ = h.join();
        }
    }
    let run_secs = sh.t();
    finish(&sh, &o, &s, child, fds_start, fd_list_start, run_secs)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    sh: &Shared,
    o: &Opts,
    s: &Setup,
    mut child: Child,
    fds_start: usize,
    fd_list_start: Vec<String>,
    run_secs: f64,
) -> Result<bool> {
    let mut fails: Vec<String> = Vec::new();
    let alive = matches!(child.try_wait(), Ok(None));

    // Every live tenant still serves.
    let mut live: Vec<Target> = sh.targets.clone();
    live.extend(lock(&sh.dynamic).iter().filter(|(_, d)| d.live).map(|(p, d)| Target {
        prefix: p.clone(),
        kind: d.kind,
        dynamic: true,
    }));
    let mut final_bad = Vec::new();
    let mut retried = 0;
    // A router that accepts nothing would make every tenant wait out its timeouts.
    let mut unreachable = 0;
    for t in &live {
        if unreachable >= 3 {
            final_bad.push(format!("{}: not tried, the router accepts no connection", t.prefix));
            continue;
        }
        let path = match t.kind {
            Kind::App => format!("{}/pid", t.prefix),
            Kind::Trac => format!("{}/", t.prefix),
        };
        let mut last = String::new();
        let mut ok = false;
        for attempt in 0..3 {
            match http::once(sh.addr, &get_req(&path, false), TIMEOUT) {
                Ok(r) if r.status == 200 => {
                    ok = true;
                    retried += usize::from(attempt > 0);
                    break;
                }
                Ok(r) => {
                    last = format!(
                        "{} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
                    )
                }
                Err((f, m)) => {
                    last = format!("{}: {m}", f.name());
                    if f.name() == "connect_error" {
                        unreachable += 1;
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        if !ok {
            final_bad.push(format!("{path}: {last}"));
        }
    }
    if !final_bad.is_empty() {
        fails.push(format!(
            "{} of {} live tenants do not serve: {final_bad:?}",
            final_bad.len(),
            live.len()
        ));
    }

    // Idle: every pool stops after idle_timeout; then descriptors and sockets.
    let idle_deadline = Instant::now() + Duration::from_secs(IDLE_TIMEOUT + 45);
    let mut idle_stopped = false;
    while Instant::now() < idle_deadline {
        if procs::workers_and_zygotes(sh.router, &sh.worker_bin).0.is_empty() {
            idle_stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !idle_stopped {
        fails.push(format!("worker processes still running {}s after the load", IDLE_TIMEOUT + 45));
    }
    std::thread::sleep(Duration::from_secs(2));
    sample(sh);
    let fds_end = procs::fd_count(sh.router).unwrap_or(0);
    let fd_list_end = procs::fd_targets(sh.router);
    let running_now = running_pools(sh).unwrap_or_default();
    let socks = socket_files(&s.run.join("rt"));
    let (w_idle, z_idle) = procs::workers_and_zygotes(sh.router, &sh.worker_bin);
    // A pool keeps its listening socket while it exists (also with no process); a zygote
    // holds three (its socket, pidfd and stderr pipe).
    let fd_bound = fds_start + running_now.len() + 3 * z_idle.len() + FD_SLACK;
    if fds_end > fd_bound {
        fails.push(format!(
            "router fds {fds_start} -> {fds_end} (bound {fd_bound}); new: {:?}",
            multiset_diff(&fd_list_end, &fd_list_start)
        ));
    }
    let sock_tenants: BTreeSet<String> =
        socks.iter().filter_map(|f| f.split('.').next().map(str::to_string)).collect();
    let running_set: BTreeSet<String> = running_now.iter().cloned().collect();
    if sock_tenants != running_set || socks.len() != running_now.len() {
        fails.push(format!(
            "socket files {socks:?} are not those of the live pools {running_now:?}"
        ));
    }

    // Stop the router; nothing of the run may stay.
    let cgroup = lock(&sh.cgroup_seen).clone().or_else(|| router_cgroup(sh.router));
    let _ = kill(Pid::from_raw(sh.router), Signal::SIGTERM);
    let stop_t = Instant::now();
    let mut status = None;
    while stop_t.elapsed() < Duration::from_secs(40) {
        if let Ok(Some(st)) = child.try_wait() {
            status = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop_secs = stop_t.elapsed().as_secs_f64();
    match status {
        Some(st) if st.success() => {}
        Some(st) => fails.push(format!("router exited with {st} after SIGTERM")),
        None => {
            fails.push("router still running 40 s after SIGTERM (killed)".into());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    // The run's processes: those seen descending from the router, its children, and any
    // whose working directory is in the run directory (tenant dirs: a worker the sampler
    // never saw). Not by uid or binary: another soak's processes may share both.
    let family = lock(&sh.family).clone();
    let mut leftovers = Vec::new();
    let leak_deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < leak_deadline {
        leftovers = procs::table()
            .into_values()
            .filter(|p| p.state != 'Z' && p.state != 'X')
            .filter(|p| {
                family.contains(&(p.pid, p.start))
                    || p.ppid == sh.router
                    || procs::cwd_below(p.pid, &s.run)
            })
            .map(|p| format!("{} uid {} {:?} {:?}", p.pid, p.uid, p.exe, p.arg1))
            .collect();
        if leftovers.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !leftovers.is_empty() {
        fails.push(format!("processes left after stop: {leftovers:?}"));
    }
    let cgroup_left = cgroup.as_ref().filter(|p| p.exists());
    if let Some(p) = cgroup_left {
        fails.push(format!("cgroup left after stop: {}", p.display()));
    }
    let rt_left: Vec<String> = std::fs::read_dir(s.run.join("rt"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    if !rt_left.is_empty() {
        fails.push(format!("runtime dir not empty after stop: {rt_left:?}"));
    }
    let log = std::fs::read_to_string(s.run.join("paddock.log")).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked")).take(5).collect();
    if !panics.is_empty() {
        fails.push(format!("the router log has panics: {panics:?}"));
    }

    // Figures.
    let st = lock(&sh.stats);
    let f = lock(&sh.faults);
    let samples = lock(&sh.samples);
    let warm_secs = (o.secs as f64 / 5.0).clamp(30.0, 300.0);
    let warm = samples.iter().filter(|x| x.t <= warm_secs).map(|x| x.rss_kib).max().unwrap_or(0);
    let after = samples.iter().filter(|x| x.t > warm_secs).map(|x| x.rss_kib).max().unwrap_or(0);
    let start_rss = samples.first().map_or(0, |x| x.rss_kib);
    let rss_bound = warm + warm * RSS_PCT / 100 + RSS_MIB * 1024;
    if after > rss_bound {
        fails.push(format!("router RSS {after} KiB after warm-up > bound {rss_bound} KiB"));
    }
    let max_workers = samples.iter().map(|x| x.workers).max().unwrap_or(0);
    let max_fds = samples.iter().map(|x| x.fds).max().unwrap_or(0);
    let max_zygotes = samples.iter().map(|x| x.zygotes).max().unwrap_or(0);
    // max_workers_total budgets the processes that serve; a successor starts before its
    // predecessor retires (recycle, reload, a zygote's death or return) and an evicted pool's
    // processes drain for up to graceful_timeout. So: never above twice the budget, and above
    // it only in stretches shorter than OVER_BUDGET_SECS.
    let over = samples.iter().filter(|x| x.workers > MAX_WORKERS_TOTAL).count();
    let mut longest_over = 0.0f64;
    let mut since: Option<f64> = None;
    for x in samples.iter() {
        match (x.workers > MAX_WORKERS_TOTAL, since) {
            (true, None) => since = Some(x.t),
            (true, Some(t)) => longest_over = longest_over.max(x.t - t),
            (false, Some(t)) => {
                longest_over = longest_over.max(x.t - t);
                since = None;
            }
            (false, None) => {}
        }
    }
    if max_workers > 2 * MAX_WORKERS_TOTAL || longest_over > OVER_BUDGET_SECS {
        fails.push(format!("{max_workers} worker processes at once (max_workers_total {MAX_WORKERS_TOTAL}), over it in {over} of {} samples, longest stretch {longest_over:.1} s (bound: 2x, {OVER_BUDGET_SECS} s)", samples.len()));
    }
    if st.bad > 0 {
        fails.push(format!(
            "{} requests failed other than with a router 5xx: {:?}",
            st.bad, st.by_fail
        ));
    }
    if st.ok == 0 {
        fails.push("no request succeeded".into());
    }
    if !f.problems.is_empty() {
        fails.push(format!("{} fault/slow-client/admin problems", f.problems.len()));
    }
    if !alive {
        fails.push("the router was not running at the end of the load".into());
    }

    println!("==== soak summary ({run_secs:.0} s of load, seed {}) ====", o.seed);
    println!("requests: total {} ok {} router-5xx {} gone-during-request {:?} cut-by-worker-kill {} bad {}", st.total, st.ok, st.router_5xx, st.gone, st.killed_mid, st.bad);
    println!("  by status: {:?}", st.by_status);
    println!("  failures by class: {:?}", st.by_fail);
    for d in &st.details {
        println!("  bad: {d}");
    }
    println!(
        "faults: worker kills {} zygote kills {} reloads {} sites added {} removed {}",
        f.worker_kills, f.zygote_kills, f.reloads, f.sites_added, f.sites_removed
    );
    println!("  signups by status {:?}, deletes by status {:?}", f.signups, f.deletes);
    println!("  slow clients: {:?}", f.slow);
    for p in &f.problems {
        println!("  problem: {p}");
    }
    println!("workers: max {max_workers} at once (max_workers_total {MAX_WORKERS_TOTAL}; over it in {over} of {} samples, longest {longest_over:.1} s; bound 2x and {OVER_BUDGET_SECS} s), zygotes max {max_zygotes}; after idle {} workers {} zygotes", samples.len(), w_idle.len(), z_idle.len());
    println!("router fds: start {fds_start}, max under load {max_fds}, after idle {fds_end} (bound start + 1 per pool + 3 per zygote + {FD_SLACK} = {fd_bound}); {} pools ({}), {} socket files, all matching: {}", running_now.len(), if idle_stopped { "no process left: idle-stopped" } else { "processes still running" }, socks.len(), sock_tenants == running_set && socks.len() == running_now.len());
    println!("router RSS: start {} KiB, warm-up ({warm_secs:.0} s) max {warm} KiB, later max {after} KiB (bound warm-up + {RSS_PCT}% + {RSS_MIB} MiB = {rss_bound} KiB)", start_rss);
    println!(
        "final GET: {} live tenants, {} bad, {retried} needed a retry",
        live.len(),
        final_bad.len()
    );
    println!("stop: SIGTERM -> exit {status:?} in {stop_secs:.1} s; processes left {}; cgroup {} ; runtime dir entries left {}", leftovers.len(),
        match (&cgroup, cgroup_left) { (None, _) => "none used".to_string(), (Some(p), None) => format!("{} removed", p.display()), (Some(p), Some(_)) => format!("{} LEFT", p.display()) }, rt_left.len());
    for x in &fails {
        println!("FAILED: {x}");
    }
    let figures = format!(
        "{run_secs:.0}s requests={} ok={} router5xx={} gone={} cut_by_kill={} bad={} kills={}w/{}z reloads={} sites+{}/-{} signups={} deletes={} slow={} rss={}->{}KiB(max {}) fds={}->{} workers_max={max_workers}",
        st.total, st.ok, st.router_5xx, st.gone.values().sum::<u64>(), st.killed_mid, st.bad, f.worker_kills, f.zygote_kills, f.reloads, f.sites_added, f.sites_removed,
        f.signups.values().sum::<u64>(), f.deletes.values().sum::<u64>(), f.slow.values().sum::<u64>(), warm, after, rss_bound, fds_start, fds_end
    );
    if fails.is_empty() {
        println!("soak: PASS {figures}");
        let _ = std::fs::remove_dir_all(&s.run);
        Ok(true)
    } else {
        println!(
            "soak: FAIL ({} invariant(s)) {figures}; run directory kept: {}",
            fails.len(),
            s.run.display()
        );
        Ok(false)
    }
}

/// Names of the tenants with a running pool, from the admin API.
fn running_pools(sh: &Shared) -> Result<Vec<String>> {
    let r = api(sh, "GET", "/api/v1/tenants", "")
        .map_err(|(f, m)| anyhow::anyhow!("{}: {m}", f.name()))?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    let Some(list) = v["tenants"].as_array() else { bail!("no tenants list: {v}") };
    Ok(list
        .iter()
        .filter(|t| !t["pool"].is_null())
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect())
}

/// `*.sock` files anywhere below `dir`.
fn socket_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) =
                p.file_name().and_then(|n| n.to_str()).filter(|n| n.ends_with(".sock"))
            {
                out.push(n.to_string());
            }
        }
    }
    out.sort();
    out
}

fn multiset_diff(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest = b.to_vec();
    let mut out = Vec::new();
    for x in a {
        match rest.iter().position(|y| y == x) {
            Some(i) => {
                rest.remove(i);
            }
            None => out.push(x.clone()),
        }
    }
    out
}
