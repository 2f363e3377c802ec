//! Trac sites on a real PostgreSQL (Debian's server, started here on a free port in a temp
//! directory, stopped by its pid): how many connections the server sees, as
//! `pg_stat_activity` reports them, without a process budget and with `max_workers_total`
//! (idle pools stopped least recently used first), and that the per-tenant gauge
//! `paddock_tenant_database_connections` agrees with the server. The figures go to the test
//! output (`--nocapture`) and to `docs/operations.md` ("Databases").
//!
//! What Trac 1.6 opens: its connection pool (`trac/db/pool.py`) is per process, gives each
//! thread one connection (re-entrant within the thread) and keeps returned connections for
//! reuse (closing those unused for 120 s, and only when a request ends), so a process holds
//! at most `threads` connections (and at most `TRAC_DB_POOL_SIZE`, default 10) for as long as
//! it lives. Bound: `max_workers_total` × `threads`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{admin_sample, eventually, free_port, venv, write, Server};

/// Trac sites (tenants `site0`…; PostgreSQL role and database of the same name).
const SITES: usize = 6;
/// Threads per worker process (one process per pool).
const THREADS: usize = 2;
/// `max_workers_total` of the bounded run.
const BUDGET: usize = 2;
/// Requests sent at once to a site: more than its threads, so each thread gets one.
const AT_ONCE: usize = 4;

/// The directory of Debian's PostgreSQL server binaries (the newest installed version);
/// installed (as root) when missing.
fn pg_bin() -> PathBuf {
    let find = || -> Option<PathBuf> {
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|e| {
                let v: u32 = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("postgres").is_file().then_some((v, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, b)| b)
    };
    if find().is_none() && common::nix_is_root() {
        let st = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .expect("run apt-get");
        assert!(st.success(), "apt-get install postgresql failed");
    }
    find().expect(
        "no /usr/lib/postgresql/*/bin/postgres: install Debian's `postgresql` package \
         (scripts/install-deps.sh)",
    )
}

/// uid and gid of the `postgres` user, when running as root (the server refuses root).
fn server_user() -> Option<(u32, u32)> {
    if !common::nix_is_root() {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").arg(flag).arg("postgres").output().expect("id");
        assert!(o.status.success(), "no `postgres` user (Debian's postgresql package makes it)");
        String::from_utf8_lossy(&o.stdout).trim().parse().expect("number")
    };
    Some((id("-u"), id("-g")))
}

/// A PostgreSQL server on 127.0.0.1:`port` with its Unix socket in the temp directory;
/// stopped by its pid (SIGINT: fast shutdown, then SIGKILL) when dropped.
struct Postgres {
    child: Child,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Postgres {
    fn start() -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let bin = pg_bin();
        let user = server_user();
        let dir = tempfile::tempdir().expect("tempdir");
        // The server's user must reach its data and socket directories.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let (data, sock) = (dir.path().join("data"), dir.path().join("sock"));
        for d in [&data, &sock] {
            std::fs::create_dir(d).expect("mkdir");
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).expect("chown");
            }
        }
        let as_server = |cmd: &mut Command| {
            cmd.current_dir(dir.path());
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        as_server(&mut initdb);
        let out = initdb.output().expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&sock)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "max_connections=200", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        as_server(&mut postgres);
        let child = postgres.spawn().expect("spawn postgres");
        let mut pg = Postgres { child, port, bin, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = pg.child.try_wait() {
                panic!("postgres exited ({st}):\n{}", pg.log());
            }
            if pg.try_sql("SELECT 1").is_ok_and(|o| o == "1") {
                return pg;
            }
            assert!(Instant::now() < deadline, "postgres not ready in 60 s:\n{}", pg.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Run statements as the superuser over the Unix socket (each `-c` its own transaction);
    /// the unaligned output of the last.
    fn try_sql_all(&self, statements: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres"])
            .arg("-h")
            .arg(self.dir.path().join("sock"))
            .args(["-p", &self.port.to_string()]);
        for s in statements {
            cmd.args(["-c", s]);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    fn try_sql(&self, statement: &str) -> Result<String, String> {
        self.try_sql_all(&[statement])
    }

    fn sql(&self, statement: &str) -> String {
        self.try_sql(statement).unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// Backends of the sites' roles (`site0`, ...), or of one of them.
    fn connections(&self, role: Option<&str>) -> usize {
        let filter = match role {
            Some(r) => format!("usename = '{r}'"),
            None => "usename LIKE 'site%'".to_string(),
        };
        let n = self.sql(&format!("SELECT count(*) FROM pg_stat_activity WHERE {filter}"));
        n.parse().unwrap_or_else(|_| panic!("count: {n:?}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        common::stop_child(&mut self.child, 2, Duration::from_secs(20));
    }
}

/// `SITES` Trac environments under `sites/`, each on its own role and database.
fn make_sites(pg: &Postgres, sites: &Path) {
    std::fs::create_dir_all(sites).expect("mkdir sites");
    for i in 0..SITES {
        let name = format!("site{i}");
        pg.try_sql_all(&[
            &format!("CREATE ROLE {name} LOGIN PASSWORD 'pw{i}'"),
            &format!("CREATE DATABASE {name} OWNER {name}"),
        ])
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let url = format!("postgres://{name}:pw{i}@127.0.0.1:{}/{name}", pg.port);
        let dir = sites.join(&name);
        let out = Command::new(venv().join("bin/trac-admin"))
            .arg(&dir)
            .args(["initenv", &format!("Site {i}"), &url])
            .output()
            .expect("run trac-admin");
        assert!(
            out.status.success(),
            "trac-admin initenv {url} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        common::private(&dir);
    }
}

/// paddock serving every site, one process of `THREADS` threads each, counting connections
/// to the server; `max_workers_total = budget`.
fn serve(dir: &Path, pg: &Postgres, budget: usize, admin: SocketAddr) -> Server {
    let cfg = dir.join(format!("paddock-{budget}.toml"));
    write(
        &cfg,
        &format!(
            "sites = \"{}\"\nmax_workers_total = {budget}\ndatabase_servers = [\"{}\"]\n\
             [defaults]\nvirtualenv = \"{}\"\nprocesses = 1\nthreads = {THREADS}\n",
            dir.join("sites").display(),
            pg.addr(),
            venv().display()
        ),
    );
    Server::start(&["--config", cfg.to_str().expect("utf-8"), "--admin", &admin.to_string()])
}

/// `AT_ONCE` requests at once to each site's timeline, site after site, `rounds` times.
fn visit_all(server: &Server, rounds: usize) {
    for _ in 0..rounds {
        for i in 0..SITES {
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..AT_ONCE)
                    .map(|_| s.spawn(|| server.get(&format!("/trac/site{i}/timeline")).status))
                    .collect();
                for h in hs {
                    let st = h.join().expect("request thread");
                    assert_eq!(st, 200, "site{i}:\n{}", server.log_text());
                }
            });
        }
    }
}

/// The largest count `pg_stat_activity` showed for the sites' roles while `f` ran, sampled
/// every 50 ms (at most 10 minutes).
fn peak_while(pg: &Postgres, f: impl FnOnce()) -> usize {
    let done = AtomicBool::new(false);
    let peak = Mutex::new(0usize);
    std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                let n = pg.connections(None);
                let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                *p = (*p).max(n);
                drop(p);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        f();
        done.store(true, Ordering::Release);
    });
    let p = *peak.lock().unwrap_or_else(|e| e.into_inner());
    p.max(pg.connections(None))
}

fn gauge(admin: SocketAddr, tenant: &str) -> Option<f64> {
    admin_sample(admin, &format!("paddock_tenant_database_connections{{tenant=\"{tenant}\"}}"))
}

#[test]
fn max_workers_total_bounds_the_servers_connection_count() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    make_sites(&pg, &dir.path().join("sites"));
    assert_eq!(pg.connections(None), 0, "trac-admin keeps no connection");

    // Without a budget: every site visited keeps its pool, and each pool its connections.
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut server = serve(dir.path(), &pg, 0, admin);
    let unbounded = peak_while(&pg, || visit_all(&server, 2));
    let per_site: Vec<usize> =
        (0..SITES).map(|i| pg.connections(Some(&format!("site{i}")))).collect();
    println!(
        "figures: {SITES} sites, 1 process x {THREADS} threads each, {AT_ONCE} requests at once \
         per site: max_workers_total = 0: peak {unbounded} connections, per site now {per_site:?}"
    );
    // Trac keeps what it opened: at least one per site, at most one per thread.
    assert!(per_site.iter().all(|&n| (1..=THREADS).contains(&n)), "{per_site:?}");
    assert!(unbounded <= SITES * THREADS, "{unbounded}");
    // The gauge counts what the server sees, tenant by tenant.
    for (i, &n) in per_site.iter().enumerate() {
        assert_eq!(gauge(admin, &format!("site{i}")), Some(n as f64), "site{i}");
    }
    server.stop();
    eventually("the workers' connections close", Duration::from_secs(30), || {
        pg.connections(None) == 0
    });

    // With a budget of BUDGET processes: visiting a site stops the least recently used idle
    // pool, whose process takes its connections with it.
    let bound = BUDGET * THREADS;
    assert!(unbounded > bound, "the unbounded run must exceed the bound to show anything");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = serve(dir.path(), &pg, BUDGET, admin);
    let bounded = peak_while(&pg, || visit_all(&server, 2));
    println!(
        "figures: max_workers_total = {BUDGET}: peak {bounded} connections (bound {BUDGET} x \
         {THREADS} = {bound})"
    );
    assert!(bounded <= bound, "pg_stat_activity showed {bounded} > {bound}");
    println!(
        "figures: max_workers_total = {BUDGET}: {} connections after the requests",
        pg.connections(None)
    );
    assert!(bounded >= 1);
    // The last site visited still runs; an evicted one has neither pool nor connections.
    let last = format!("site{}", SITES - 1);
    eventually("the gauge agrees with pg_stat_activity", Duration::from_secs(10), || {
        let n = pg.connections(Some(&last));
        n >= 1 && gauge(admin, &last) == Some(n as f64)
    });
    assert_eq!(pg.connections(Some("site0")), 0);
    // Its pool is parked: the gauge says 0 (absent once the pool is gone).
    assert_eq!(gauge(admin, "site0").unwrap_or(0.0), 0.0);
    drop(server);
    eventually("the workers' connections close", Duration::from_secs(30), || {
        pg.connections(None) == 0
    });

    // The `poolable = False` workaround as a plugin in every site: no budget, yet once the
    // requests are over no connection stays open, while every pool still runs.
    let plugin = common::repo_root().join("deploy/trac-plugins/close_db_connections.py");
    for i in 0..SITES {
        let to = dir.path().join(format!("sites/site{i}/plugins/close_db_connections.py"));
        std::fs::copy(&plugin, to).expect("copy the plugin");
    }
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let server = serve(dir.path(), &pg, 0, admin);
    let unpooled = peak_while(&pg, || visit_all(&server, 2));
    let workers = server.worker_pids().len();
    println!(
        "figures: max_workers_total = 0 with close_db_connections.py: peak {unpooled} \
         connections while requests ran, {} once they were over ({workers} workers running)",
        pg.connections(None)
    );
    assert_eq!(workers, SITES, "every pool runs:\n{}", server.log_text());
    eventually("no connection outlives its request", Duration::from_secs(10), || {
        pg.connections(None) == 0
    });
    assert!(unpooled <= SITES * THREADS, "{unpooled}");
    assert_eq!(gauge(admin, "site0"), Some(0.0));
    drop(server);
    drop(pg);
}
