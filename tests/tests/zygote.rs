//! Workers forked by a zygote (`docs/zygote.md`): they run as their tenant's uid/gid with only
//! their own environment, tenants of different users share one zygote, a killed zygote is
//! replaced without losing the tenants, an untrusted python path gets no zygote, and a real
//! Trac site is served through one, started at boot.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    chown, ensure_user, eventually, nix_is_root, repo_root, trac_env, venv, write, Server,
};

const USERS: [&str; 2] = ["paddock-e2e", "paddock-e2e2"];
const WAIT: Duration = Duration::from_secs(60);

fn public_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// One test-app tenant per (name, extra lines), preloading `testapps` from `tests/apps`.
fn config(dir: &Path, tenants: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = "index = false\n".to_string();
    for (name, extra) in tenants {
        let tdir = dir.join(name);
        std::fs::create_dir_all(&tdir).expect("mkdir");
        common::private(&tdir);
        text.push_str(&format!(
            "[tenants.{name}]\ndir = \"{}\"\nmount = \"/{name}\"\napp = \"testapps:application\"\nprocesses = 1\nwatch_files = []\n",
            tdir.display()
        ));
        if !extra.contains("python_path") {
            text.push_str(&format!(
                "python_path = [\"{}\"]\npreload = [\"testapps\"]\n",
                repo_root().join("tests/apps").display()
            ));
        }
        // Last: it may open a sub-table.
        text.push_str(extra);
        text.push('\n');
    }
    let path = dir.join("paddock.toml");
    write(&path, &text);
    path
}

fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = s.lines().find(|l| l.starts_with(key)).expect("line");
    line.split_whitespace().skip(1).map(|n| n.parse().expect("id")).collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// `(pid, environment)` of the worker that answers `/NAME/osenv`.
fn osenv(server: &Server, name: &str) -> (u32, serde_json::Map<String, serde_json::Value>) {
    let r = server.get(&format!("/{name}/osenv"));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let pid = v["pid"].as_u64().expect("pid") as u32;
    (pid, v["env"].as_object().expect("env").clone())
}

#[test]
fn forked_workers_run_as_their_tenant_with_only_their_environment() {
    let dir = public_tempdir();
    let cfg = config(
        dir.path(),
        &[("a", "[tenants.a.env]\nONLY_A = \"a\"\n"), ("b", "[tenants.b.env]\nONLY_B = \"b\"\n")],
    );
    let ids: Vec<(u32, u32)> = if nix_is_root() {
        USERS
            .iter()
            .zip(["a", "b"])
            .map(|(u, t)| {
                let ids = ensure_user(u);
                chown(&dir.path().join(t), u);
                ids
            })
            .collect()
    } else {
        let me =
            (status_ids(std::process::id(), "Uid:")[0], status_ids(std::process::id(), "Gid:")[0]);
        vec![me, me]
    };
    let server = Server::start_with(
        &["--config", cfg.to_str().expect("utf-8")],
        false,
        &[("PADDOCK_E2E_SECRET", "must-not-leak")],
    );
    let (pid_a, env_a) = osenv(&server, "a");
    let (pid_b, env_b) = osenv(&server, "b");
    let zygotes = server.zygote_pids();
    assert_eq!(zygotes.len(), 1, "two tenants of one Python configuration share one zygote");
    for (pid, (uid, gid)) in [(pid_a, ids[0]), (pid_b, ids[1])] {
        assert_eq!(parent_of(pid), Some(zygotes[0]), "worker {pid} was forked by the zygote");
        assert_eq!(status_ids(pid, "Uid:"), vec![uid; 4], "real, effective, saved, fs uid");
        assert_eq!(status_ids(pid, "Gid:"), vec![gid; 4], "real, effective, saved, fs gid");
    }
    let has = |env: &serde_json::Map<String, serde_json::Value>, k: &str| env.contains_key(k);
    assert!(has(&env_a, "ONLY_A") && !has(&env_a, "ONLY_B"), "{env_a:?}");
    assert!(has(&env_b, "ONLY_B") && !has(&env_b, "ONLY_A"), "{env_b:?}");
    for env in [&env_a, &env_b] {
        assert!(!has(env, "PADDOCK_E2E_SECRET"), "router environment leaked: {env:?}");
    }
    let home = env_a.get("HOME").and_then(|v| v.as_str()).expect("HOME");
    assert_eq!(Path::new(home), dir.path().join("a"), "not the zygote's HOME");
    let log = server.log_text();
    assert!(!log.contains("starting the worker directly"), "{log}");
}

#[test]
fn a_killed_zygote_is_replaced_and_tenants_keep_service() {
    let dir = public_tempdir();
    let cfg = config(dir.path(), &[("a", ""), ("b", "")]);
    if nix_is_root() {
        for (u, t) in USERS.iter().zip(["a", "b"]) {
            ensure_user(u);
            chown(&dir.path().join(t), u);
        }
    }
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8")], false, &[]);
    assert_eq!(server.get("/a/pid").status, 200, "{}", server.log_text());
    assert_eq!(server.get("/b/pid").status, 200);
    let old = server.zygote_pids();
    assert_eq!(old.len(), 1);
    common::signal(old[0], 9);
    for name in ["a", "b"] {
        let deadline = Instant::now() + WAIT;
        let mut ok = false;
        for _ in 0..600 {
            let r = common::send_raw(
                server.addr,
                format!("GET /{name}/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            if r.is_ok_and(|r| r.status == 200) {
                ok = true;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ok, "tenant {name} did not recover:\n{}", server.log_text());
    }
    eventually("a new zygote", WAIT, || {
        let now = server.zygote_pids();
        now.len() == 1 && now[0] != old[0]
    });
    let fresh = server.zygote_pids()[0];
    eventually("both workers forked by the new zygote", WAIT, || {
        let w = server.worker_pids();
        w.len() == 2 && w.iter().all(|&p| parent_of(p) == Some(fresh))
    });
}

#[test]
fn a_tenant_writable_python_path_gets_no_zygote() {
    let dir = public_tempdir();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).expect("mkdir");
    std::fs::copy(repo_root().join("tests/apps/testapps.py"), code.join("testapps.py"))
        .expect("copy");
    let extra = format!("python_path = [\"{}\"]\npreload = [\"testapps\"]\n", code.display());
    let cfg = config(dir.path(), &[("w", &extra)]);
    if nix_is_root() {
        ensure_user(USERS[0]);
        chown(&dir.path().join("w"), USERS[0]);
        chown(&code, USERS[0]);
    } else {
        std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8")], false, &[]);
    let r = server.get("/w/pid");
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert!(server.zygote_pids().is_empty(), "a zygote imported tenant-writable code");
    assert_eq!(server.worker_pids().len(), 1, "started directly instead");
    let log = server.log_text();
    assert!(log.contains("no zygote, starting workers directly"), "{log}");
}

#[test]
fn a_trac_site_is_served_through_a_zygote() {
    let dir = public_tempdir();
    let sites = dir.path().join("sites");
    std::fs::create_dir_all(&sites).expect("mkdir");
    trac_env(&sites.join("zt"), "zt");
    // A site with its own copy of a template Trac ships: the zygote's cache of Trac's compiled
    // templates must not stand in for it.
    trac_env(&sites.join("zo"), "zo");
    let own = "<html><body>the own wiki_view of zo: ${page.name}</body></html>\n";
    std::fs::write(sites.join("zo/templates/wiki_view.html"), own).expect("template");
    if nix_is_root() {
        ensure_user(USERS[0]);
        chown(&sites.join("zt"), USERS[0]);
        chown(&sites.join("zo"), USERS[0]);
    }
    let server = Server::start_with(
        &[
            "--sites",
            sites.to_str().expect("utf-8"),
            "--virtualenv",
            venv().to_str().expect("utf-8"),
        ],
        false,
        &[],
    );
    // Started at boot, before any request: the first one waits only for its fork.
    eventually("the zygote warm with no request made", WAIT, || {
        server.log_text().contains("zygote warm")
    });
    assert!(server.worker_pids().is_empty(), "a worker started before any request");
    let r = server.get("/trac/zt/wiki/WikiStart");
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert!(r.text().contains("Welcome to Trac"), "{}", r.text());
    let zygotes = server.zygote_pids();
    assert_eq!(zygotes.len(), 1, "Trac's app preloads by default:\n{}", server.log_text());
    let workers = server.worker_pids();
    assert!(!workers.is_empty() && workers.iter().all(|&p| parent_of(p) == Some(zygotes[0])));
    // The zygote forks between warm-up steps (the request above did not wait for it), and
    // shuts the warm-up's environment down first: no worker holds a file of it.
    for &pid in &workers {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds");
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            assert!(!target.contains("paddock-zygote-warmup"), "worker {pid} holds {target}");
        }
    }
    eventually("the warm-up's end", WAIT, || server.log_text().contains("Trac warm-up: "));
    let log = server.log_text();
    // The warm-up's last page rendered whole (its write() callable worked) and Trac's
    // templates were compiled into the cache the workers inherit.
    let warm = log.lines().find(|l| l.contains("Trac warm-up: ")).unwrap_or_default();
    assert!(warm.contains("Trac warm-up: 200 Ok;"), "the zygote's warm-up failed:\n{log}");
    let cached: usize = warm
        .split(" templates, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(cached >= 50, "Trac's templates not cached: {warm}");
    // The readiness probe is no refused request (it was a warning at every start).
    assert!(!log.contains("refused"), "{log}");
    let r = server.get("/trac/zo/wiki/WikiStart");
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert!(r.text().contains("the own wiki_view of zo: WikiStart"), "{}", r.text());
    let r = server.get("/trac/zt/wiki/WikiStart");
    assert!(r.text().contains("Welcome to Trac"), "{}", r.text());
}

#[test]
fn a_zygote_with_a_thread_refuses_to_fork_and_workers_start_directly() {
    let dir = public_tempdir();
    let extra = format!(
        "python_path = [\"{}\"]\npreload = [\"testapps\", \"zygote_thread\"]\n",
        repo_root().join("tests/apps").display()
    );
    let cfg = config(dir.path(), &[("t", &extra)]);
    if nix_is_root() {
        ensure_user(USERS[0]);
        chown(&dir.path().join("t"), USERS[0]);
    }
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8")], false, &[]);
    let r = server.get("/t/pid");
    assert_eq!(r.status, 200, "{}", server.log_text());
    let pid: u32 = r.text().trim().parse().expect("pid");
    assert_eq!(parent_of(pid), Some(server.child.id()), "started directly, not forked");
    let log = server.log_text();
    assert!(log.contains("not single-threaded"), "{log}");
    assert!(log.contains("starting the worker directly"), "{log}");
}

/// The warm-up's steps and its template cache, in the test virtualenv's Python
/// (`tests/apps/warmup_check.py`): paused between steps, it leaves nothing of its environment
/// open for a fork to inherit; finished, nothing on disk; the cache takes only templates under
/// its root, keys them by the environment's settings and compiles a changed source anew.
#[test]
fn the_warm_up_pauses_cleanly_and_its_template_cache_checks_the_source() {
    let out = std::process::Command::new(venv().join("bin/python"))
        .arg(repo_root().join("tests/apps/warmup_check.py"))
        .arg(repo_root().join("worker/src/python/warmup_trac.py"))
        .env("HOME", "/nonexistent")
        .output()
        .expect("run the venv's python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<&str> = text.lines().collect();
    let expect_prefix = |p: &str| assert!(got.iter().any(|l| l.starts_with(p)), "{p}: {text}");
    // Mid-way the environment's database and log are open (so the check can see a leak) ...
    assert!(!got.contains(&"open_mid=0"), "{text}");
    // ... and a pause closes them.
    for line in [
        "open_paused=0",
        "dir_left=False",
        "first=root 1",
        "cached=1",
        "outside=other 1 cached=1",
        "changed=changed 1",
        "other_settings=changed 1 cached=2",
    ] {
        assert!(got.contains(&line), "{line}: {text}");
    }
    expect_prefix("summary=200 Ok; ");
}
