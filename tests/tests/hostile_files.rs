//! Files a hostile tenant plants in its own directory, which the router (often root) reads:
//! a FIFO as `conf/trac.ini` or `htpasswd` must not stall the front door, a huge sparse
//! `trac.ini` must not cost memory, an `htpasswd` symlinked to a private host file must not be
//! read (nor its user names logged), an `htdocs` symlink must not publish `/etc`, and a
//! tenant must not be able to disable or re-enable itself. Works as any user; as root the
//! "private host file" is really root-only.

mod common;
mod hostilekit;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ensure_user, repo_root, write, Server};
use hostilekit::{cores, flood, mkfifo, tenant, Host};

#[test]
fn a_fifo_trac_ini_does_not_stop_the_front_door() {
    let mut h = Host::start(|sites| {
        tenant(sites, "good");
        tenant(sites, "evil");
    });
    let fifo = h.sites().join("evil/conf/trac.ini");
    mkfifo(&fifo);
    h.fifos.push(fifo);
    flood(h.server.addr, "/trac/", "", cores() + 2);
    let started = Instant::now();
    let index = h.get("/trac/", "").expect("the index answers");
    println!("index with a FIFO trac.ini answered in {:?}", started.elapsed());
    assert_eq!(index.status, 200);
    let text = index.text();
    assert!(text.contains("Project good") && text.contains(">evil<"), "{text}");
    assert_eq!(h.status("/trac/good/"), 200, "{}", h.server.log_text());
    assert_eq!(h.api("GET", "/api/v1/tenants").map(|r| r.status), Some(200));
    assert_eq!(h.status("/trac/good/chrome/site/site.css"), 200);
}

#[test]
fn a_fifo_htpasswd_refuses_its_logins_only() {
    let mut h = Host::start(|sites| {
        tenant(sites, "good");
        tenant(sites, "evil");
    });
    let fifo = h.sites().join("evil/htpasswd");
    mkfifo(&fifo);
    h.fifos.push(fifo);
    let creds = "Authorization: Basic ZXJpbjpwYXNzd29yZA==\r\n"; // erin:password
    flood(h.server.addr, "/trac/evil/login", creds, cores() + 2);
    let started = Instant::now();
    let r = h.get("/trac/evil/login", creds).expect("a protected request answers");
    assert!(matches!(r.status, 401 | 500), "{}", r.status);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(h.get("/trac/good/login", creds).map(|r| r.status), Some(200));
    assert_eq!(h.status("/trac/"), 200);
    assert_eq!(h.api("GET", "/api/v1/tenants").map(|r| r.status), Some(200));
    let log = h.server.log_text();
    assert!(log.contains("not a regular file"), "{log}");
}

/// Peak resident memory of `pid` in KiB (VmHWM: a read freed at once still counts).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("number")
}

#[test]
fn a_huge_sparse_trac_ini_costs_no_memory() {
    let h = Host::start(|sites| {
        tenant(sites, "good");
        let t = tenant(sites, "big");
        let f = std::fs::File::create(t.join("conf/trac.ini")).expect("create");
        f.set_len(1 << 30).expect("sparse 1 GiB");
    });
    // The baseline before any index request: the first one is what would cost the GiB.
    assert_eq!(h.status("/nothing-here"), 404);
    let before = peak_kib(h.server.child.id());
    for _ in 0..2 {
        let r = h.get("/trac/", "").expect("the index answers");
        assert!(r.status == 200 && r.text().contains(">big<"), "{}", r.text());
    }
    let grew = peak_kib(h.server.child.id()).saturating_sub(before);
    println!("peak RSS after two index requests: +{grew} KiB");
    assert!(grew < 100 * 1024, "peak RSS grew by {grew} KiB");
    let log = h.server.log_text();
    assert!(log.contains("larger than"), "{log}");
}

#[test]
fn an_htpasswd_symlink_to_a_private_file_is_refused_and_not_logged() {
    let secret_names: Vec<String> =
        (0..3).map(|i| format!("paddock-e2e-hostacct{i}-{}", std::process::id())).collect();
    let outside = tempfile::tempdir().expect("tempdir");
    let shadow = outside.path().join("shadow");
    let text: String = secret_names
        .iter()
        .map(|n| format!("{n}:$y$j9T$abcdefgh$ijklmnopqrstuvwxyz:19000:0:99999:7:::\n"))
        .collect();
    write(&shadow, &text);
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let h = Host::start(|sites| {
        let t = tenant(sites, "evil");
        std::fs::remove_file(t.join("htpasswd")).expect("rm");
        symlink(&shadow, t.join("htpasswd")).expect("symlink");
    });
    let creds = "Authorization: Basic ZXJpbjpwYXNzd29yZA==\r\n";
    let r = h.get("/trac/evil/login", creds).expect("answers");
    assert_eq!(r.status, 401);
    let log = h.server.log_text();
    for n in &secret_names {
        assert!(!log.contains(n.as_str()), "{n} leaked into the log:\n{log}");
    }
    assert!(log.contains("symbolic link"), "{log}");
}

#[test]
fn an_htdocs_symlink_does_not_publish_the_host() {
    let h = Host::start(|sites| {
        tenant(sites, "good");
        let t = tenant(sites, "evil");
        std::fs::remove_dir_all(t.join("htdocs")).expect("rm");
        symlink("/etc", t.join("htdocs")).expect("symlink");
        // A symlink lower down, too.
        let g = tenant(sites, "sneaky");
        symlink("/etc/passwd", g.join("htdocs/passwd")).expect("symlink");
    });
    assert_eq!(h.status("/trac/good/chrome/site/site.css"), 200);
    assert_eq!(h.status("/trac/evil/chrome/site/passwd"), 404);
    assert_eq!(h.status("/trac/evil/chrome/site/hostname"), 404);
    assert_eq!(h.status("/trac/sneaky/chrome/site/passwd"), 404);
    assert_eq!(h.status("/trac/sneaky/chrome/site/site.css"), 200);
}

#[test]
fn a_tenant_can_neither_disable_nor_re_enable_itself() {
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    write(&victim, "precious\n");
    let h = Host::start(|sites| {
        let t = tenant(sites, "self");
        write(&t.join(".paddock-disabled"), "I disable myself\n");
        tenant(sites, "other");
        // The old marker as a symlink: an admin disable must not write through it.
        symlink(&victim, sites.join("other/.paddock-disabled")).expect("symlink");
    });
    assert_eq!(h.status("/trac/self/"), 200, "the in-directory marker is not honoured");
    assert_eq!(h.status("/trac/other/"), 200);
    let r = h.api("POST", "/api/v1/tenants/other/disable").expect("disable");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.status("/trac/other/"), 503);
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious\n");
    // Everything the tenant may delete in its directory, except the marker that makes it one.
    let t = h.sites().join("other");
    for e in std::fs::read_dir(&t).expect("read").filter_map(Result::ok) {
        let p = e.path();
        if e.file_name() != "VERSION" {
            let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.status("/trac/other/"), 503, "still disabled");
    let r = h.api("POST", "/api/v1/tenants/other/enable").expect("enable");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.status("/trac/other/"), 200);
    let state = h.sites().join(".paddock");
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).ok();
    assert_eq!(mode(&state), Some(0o700), "{}", state.display());
    // Deleting archives the directory where the tenant no longer reaches it, and forgets the
    // flag (disabled again first, so there is one to forget).
    assert_eq!(h.api("POST", "/api/v1/tenants/other/disable").map(|r| r.status), Some(200));
    let r = h.api("DELETE", "/api/v1/tenants/other").expect("delete");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mode(&h.sites().join(".archive")), Some(0o700));
    assert!(!state.join("disabled/other").exists());
}

#[test]
fn symlinks_below_a_tenant_directory_decide_nothing() {
    let rule = "[[rules]]\nconditions = [\"%{REQUEST_URI} ^/trac/([^/]+)/gated\", \"@SITES@/%1/flag.txt !-f\"]\nrule = \". - [F]\"\n";
    let h = Host::start_with(rule, |sites| {
        let good = tenant(sites, "good");
        write(&good.join("flag.txt"), "yes\n");
        // The marker as a symlink: an oracle for files root can see, were it followed.
        let ghost = sites.join("ghost");
        std::fs::create_dir_all(&ghost).expect("mkdir");
        symlink(good.join("VERSION"), ghost.join("VERSION")).expect("symlink");
        // A rule's file test through a symlink to another tenant's file.
        let linked = tenant(sites, "linked");
        symlink(good.join("flag.txt"), linked.join("flag.txt")).expect("symlink");
    });
    assert_eq!(h.status("/trac/good/"), 200);
    assert_eq!(h.status("/trac/ghost/"), 404, "a symlinked marker makes no tenant");
    assert_eq!(h.status("/trac/good/gated"), 200);
    assert_eq!(h.status("/trac/linked/gated"), 403, "-f does not follow a tenant's symlink");
}

#[test]
fn a_symlink_in_a_tenant_python_path_gets_no_zygote() {
    if !common::nix_is_root() {
        println!("skipped: needs root (a directory owned by a tenant user)");
        return;
    }
    ensure_user("paddock-e2e");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let t = dir.path().join("w");
    std::fs::create_dir_all(&t).expect("mkdir");
    common::private(&t);
    // Points at trusted, root-owned code now; the tenant may re-point it at its own later.
    symlink(repo_root().join("tests/apps"), t.join("lib")).expect("symlink");
    let st = Command::new("chown").args(["-R", "-h", "paddock-e2e:"]).arg(&t).status();
    assert!(st.expect("chown").success());
    let config = dir.path().join("paddock.toml");
    let text = format!(
        "index = false\n[tenants.w]\ndir = \"{t}\"\nmount = \"/w\"\napp = \"testapps:application\"\n\
         processes = 1\nwatch_files = []\npython_path = [\"{t}/lib\"]\npreload = [\"testapps\"]\n",
        t = t.display()
    );
    write(&config, &text);
    let server = Server::start_with(&["--config", config.to_str().expect("utf-8")], false, &[]);
    let r = server.get("/w/pid");
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert!(server.zygote_pids().is_empty(), "root imports through a tenant's symlink");
    assert!(server.log_text().contains("no zygote, starting workers directly"));
}

#[test]
fn a_watched_symlink_is_not_followed() {
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("private");
    write(&target, "root's\n");
    let h = Host::start_full(
        "",
        "watch_files = [\"{tenant_dir}/watched\", \"{tenant_dir}/real\"]",
        |sites| {
            let t = tenant(sites, "w");
            symlink(&target, t.join("watched")).expect("symlink");
            write(&t.join("real"), "v1\n");
        },
    );
    let pid = || h.get("/trac/w/pid", "").map(|r| r.text()).unwrap_or_default();
    let first = pid();
    assert!(!first.is_empty(), "{}", h.server.log_text());
    // A change of the file behind the tenant's symlink is invisible: no restart.
    std::thread::sleep(Duration::from_millis(1100));
    write(&target, "root's, changed and longer\n");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pid(), first, "the pool restarted on a file outside the tenant's reach");
    // The tenant's own file still counts.
    write(&h.sites().join("w/real"), "v2, longer\n");
    let start = Instant::now();
    while pid() == first && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(pid(), first, "a change of a watched file restarts the pool");
}
