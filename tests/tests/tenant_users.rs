//! Tenants as root: one Unix user per signup site, private tenant directories, and a signup
//! that never lets root act on a path the new site's user controls. Root only (the tests
//! create users, named `pe2e-*`, and remove them at the end).

mod adminkit;
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use adminkit::{Admin, Setup, FAKE_PROVISION};
use common::{nix_is_root, repo_root, write, Server};

fn skip_unless_root(test: &str) -> bool {
    if !nix_is_root() {
        eprintln!("{test}: skipped, needs root (creates users and changes owners)");
        return true;
    }
    false
}

/// Field `n` (0-based) of `getent DB KEY`.
fn getent(db: &str, key: &str, n: usize) -> Option<String> {
    let out = Command::new("getent").args([db, key]).output().ok()?;
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    line.split(':').nth(n).map(str::to_string)
}

/// The real, effective, saved and file-system uids of `pid`.
fn uids_of(pid: u64) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or_default();
    line.split_whitespace().filter_map(|n| n.parse().ok()).collect()
}

/// Pids of every process whose real uid is `uid`.
fn processes_of(uid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|&pid| uids_of(pid).first() == Some(&uid))
        .collect()
}

const SITE_USERS: &str = "site_user = \"pe2e-{name}\"\nsite_uid_min = 39900\nsite_uid_max = 39999";

#[test]
fn every_signup_site_gets_its_own_user_locked_when_deleted() {
    if skip_unless_root("every_signup_site_gets_its_own_user_locked_when_deleted") {
        return;
    }
    let users = adminkit::TestUsers::new(&["pe2e-alpha", "pe2e-beta"]);
    let admin = format!("provision = {FAKE_PROVISION}\n{SITE_USERS}");
    let a = Admin::start(Setup { admin: &admin, ..Setup::default() });
    let mut uids = Vec::new();
    for name in ["alpha", "beta"] {
        let (s, t) = a.signup(name);
        assert_eq!(s, 201, "{t}\n{}", a.server.log_text());
        let dir = a.sites().join(name);
        let meta = std::fs::metadata(&dir).expect("site dir");
        let user = format!("pe2e-{name}");
        let uid: u32 = getent("passwd", &user, 2).and_then(|u| u.parse().ok()).expect("uid");
        assert_eq!(meta.uid(), uid, "{name} belongs to {user}");
        assert!((39900..=39999).contains(&uid), "{uid}");
        assert_eq!(getent("group", &user, 2), Some(uid.to_string()), "own group, gid = uid");
        assert_eq!(getent("passwd", &user, 6).as_deref(), Some("/usr/sbin/nologin"));
        assert_eq!(meta.mode() & 0o777, 0o750, "{name}: private directory");
        let made = std::fs::metadata(dir.join("made-for")).expect("made-for");
        assert_eq!(made.mode() & 0o007, 0, "provisioning runs at umask 027");
        assert_eq!(a.server.get(&format!("/trac/{name}/")).status, 200);
        let (_, t) = a.api("GET", &format!("/api/v1/tenants/{name}"), None);
        assert_eq!(t["pool"]["user"], user.as_str(), "{t}");
        let pids = t["pool"]["ready_pids"].as_array().cloned().unwrap_or_default();
        assert!(!pids.is_empty(), "{t}");
        for pid in pids.iter().filter_map(|p| p.as_u64()) {
            assert_eq!(uids_of(pid), vec![uid; 4], "worker {pid} of {name}");
        }
        uids.push(uid);
    }
    assert_ne!(uids[0], uids[1], "two sites, two users");

    // A name whose user name would pass 32 characters is refused before anything is made.
    let (s, b) = a.signup(&"x".repeat(30));
    assert_eq!(s, 422, "{b}");
    assert!(b["error"].as_str().is_some_and(|e| e.contains("32")), "{b}");

    // Delete: archived, the user locked (never reused), its processes gone.
    let (s, d) = a.api("DELETE", "/api/v1/tenants/alpha", None);
    assert_eq!(s, 200, "{d}");
    let shadow = getent("shadow", "pe2e-alpha", 1).unwrap_or_default();
    assert!(shadow.starts_with('!'), "password locked: {shadow}");
    assert_eq!(getent("shadow", "pe2e-alpha", 7).as_deref(), Some("1"), "account expired");
    let gone = adminkit::within(Duration::from_secs(10), || processes_of(uids[0]).is_empty());
    assert!(gone.is_some(), "processes of a deleted site: {:?}", processes_of(uids[0]));
    assert_eq!(getent("passwd", "pe2e-beta", 2), Some(uids[1].to_string()));
    assert_eq!(a.server.get("/trac/beta/").status, 200, "the other site is untouched");
    // The locked user still owns the archive: the name is not handed out again.
    assert_eq!(a.signup("alpha").0, 409);
    drop(a);
    drop(users);
}

/// A racer running as the shared signup user swaps `.creating-*/htpasswd` for a symlink to
/// a root-owned file the moment root creates it: root must never hand that file over.
#[test]
fn htpasswd_race_never_hands_a_root_file_to_the_signup_user() {
    if skip_unless_root("htpasswd_race_never_hands_a_root_file_to_the_signup_user") {
        return;
    }
    adminkit::ensure_user();
    let admin = format!("provision = {FAKE_PROVISION}\nsignup_user = \"paddock-e2e\"");
    let a = Admin::start(Setup { admin: &admin, ..Setup::default() });
    let canary = a.dir.path().join("canary");
    write(&canary, "root's secret\n");
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut racer = Command::new("runuser")
        .args(["-u", "paddock-e2e", "--", "/usr/bin/python3"])
        .arg(repo_root().join("tests/apps/htpasswd_racer.py"))
        .arg(a.sites())
        .arg(&canary)
        .arg("60")
        .spawn()
        .expect("start the racer");
    std::thread::sleep(Duration::from_millis(300));
    let mut statuses = Vec::new();
    for i in 0..16 {
        statuses.push(a.signup(&format!("race{i}")).0);
        let meta = std::fs::symlink_metadata(&canary).expect("canary");
        if meta.uid() != 0 {
            break;
        }
    }
    let _ = racer.kill();
    let _ = racer.wait();
    let meta = std::fs::symlink_metadata(&canary).expect("canary");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "root's file given away after {statuses:?}");
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert!(statuses.iter().all(|s| [201, 500].contains(s)), "{statuses:?}");
    let left: Vec<String> =
        a.site_entries().into_iter().filter(|e| e.starts_with(".creating-")).collect();
    assert!(left.is_empty(), "claims left behind: {left:?}");
}

#[test]
fn tenant_directories_reachable_by_others_are_refused_as_root() {
    if skip_unless_root("tenant_directories_reachable_by_others_are_refused_as_root") {
        return;
    }
    adminkit::ensure_user();
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    mode(dir.path(), 0o755);
    let hidden = dir.path().join("hidden");
    let sites = [
        ("open", dir.path().join("open"), 0o755),
        ("private", dir.path().join("private"), 0o750),
        ("optout", dir.path().join("optout"), 0o755),
        ("behind", hidden.join("behind"), 0o755),
    ];
    let mut text = "index = false\n[defaults]\napp = \"testapps:application\"\n".to_string();
    text.push_str(&format!("python_path = [\"{}\"]\n", repo_root().join("tests/apps").display()));
    for (name, path, m) in &sites {
        std::fs::create_dir_all(path).expect("mkdir");
        let st = Command::new("chown").arg("paddock-e2e:").arg(path).status().expect("chown");
        assert!(st.success());
        mode(path, *m);
        text.push_str(&format!(
            "[tenants.{name}]\ndir = \"{}\"\nmount = \"/{name}\"\n",
            path.display()
        ));
        if *name == "optout" {
            text.push_str("allow_world_readable = true\n");
        }
    }
    mode(&hidden, 0o700); // others cannot pass: nothing below is exposed
    let config = dir.path().join("paddock.toml");
    write(&config, &text);
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    let open = server.get("/open/");
    assert_eq!(open.status, 503, "{}", open.text());
    let log = server.log_text();
    let want = format!("chmod o-rwx {}", sites[0].1.display());
    assert!(log.contains(&want) && log.contains("allow_world_readable"), "{log}");
    for name in ["private", "optout", "behind"] {
        let r = server.get(&format!("/{name}/"));
        assert_eq!(r.status, 200, "{name}: {}\n{}", r.text(), server.log_text());
    }
    // Fixed as the message says: served from the next request on.
    mode(&sites[0].1, 0o750);
    assert_eq!(server.get("/open/").status, 200, "{}", server.log_text());
}
