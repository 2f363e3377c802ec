//! Pools run as their tenant's Unix user with a scrubbed environment; uid 0 is refused unless
//! allowed. The suite runs as root in CI, where these tests create a real user.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{chown, ensure_user, nix_is_root, repo_root, write, Server};

const TEST_USER: &str = "paddock-e2e";

/// A tenant directory with mode 0750: as root, one that others can reach is refused.
fn private_dir(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
}

fn apps_config(dir: &Path, tenant_dir: &Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("paddock.toml");
    write(
        &config,
        &format!(
            "index = false\n[tenants.iso]\ndir = \"{}\"\nmount = \"/iso\"\napp = \"testapps:application\"\npython_path = [\"{}\"]\nprocesses = 1\n{extra}\n",
            tenant_dir.display(),
            repo_root().join("tests/apps").display()
        ),
    );
    config
}

fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let at = json.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = &json[at + key.len() + 4..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim()
}

#[test]
fn pool_runs_as_the_owner_of_the_tenant_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tenant = dir.path().join("site");
    private_dir(&tenant);
    let config = apps_config(dir.path(), &tenant, "");
    let (uid, gid) = if nix_is_root() {
        let ids = ensure_user(TEST_USER);
        chown(&tenant, TEST_USER);
        ids
    } else {
        let me = |f: &str| -> u32 {
            let o = Command::new("id").arg(f).output().expect("id");
            String::from_utf8_lossy(&o.stdout).trim().parse().expect("number")
        };
        (me("-u"), me("-g"))
    };
    // Without --allow-root: the tenant is not root-owned, so nothing needs it.
    let server = Server::start_with(
        &["--config", config.to_str().expect("utf-8")],
        false,
        &[("PADDOCK_E2E_SECRET", "must-not-leak")],
    );
    let r = server.get("/iso/whoami");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    let json = r.text();
    assert_eq!(field(&json, "uid"), uid.to_string(), "{json}");
    assert_eq!(field(&json, "gid"), gid.to_string(), "{json}");
    assert_eq!(field(&json, "cwd"), format!("\"{}\"", tenant.display()));
    assert_eq!(field(&json, "home"), format!("\"{}\"", tenant.display()));
    assert_eq!(field(&json, "umask"), "23", "umask 027 by default");
    assert!(!json.contains("PADDOCK_E2E_SECRET"), "router environment leaked: {json}");
}

#[test]
fn root_owned_tenant_is_refused_without_allow_root() {
    if !nix_is_root() {
        // Without root there is no uid switch to refuse; the previous test covers this case.
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = dir.path().join("rootsite");
    std::fs::create_dir_all(&tenant).expect("mkdir");
    let config = apps_config(dir.path(), &tenant, "");
    let server = Server::start_with(&["--config", config.to_str().expect("utf-8")], false, &[]);
    let r = server.get("/iso/whoami");
    assert_eq!(r.status, 503);
    assert!(server.worker_pids().is_empty(), "no worker may start as root");
    let log = server.log_text();
    assert!(log.contains("would run as root") && log.contains("chown"), "{log}");
}

#[test]
fn configured_user_wins_over_the_directory_owner() {
    if !nix_is_root() {
        return;
    }
    let (uid, _) = ensure_user(TEST_USER);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tenant = dir.path().join("site");
    private_dir(&tenant);
    let config =
        apps_config(dir.path(), &tenant, &format!("user = \"{TEST_USER}\"\numask = \"027\""));
    let server = Server::start_with(&["--config", config.to_str().expect("utf-8")], false, &[]);
    let r = server.get("/iso/whoami");
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert_eq!(field(&r.text(), "uid"), uid.to_string());
    assert_eq!(field(&r.text(), "umask"), "23");
}

#[test]
fn a_tenant_cannot_read_another_tenants_files_or_reach_its_socket() {
    if !nix_is_root() {
        return;
    }
    let (uid_a, _) = ensure_user(TEST_USER);
    let other = "paddock-e2e2";
    ensure_user(other);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    private_dir(&a);
    private_dir(&b);
    let secret = b.join("secret.txt");
    std::fs::write(&secret, "b's secret").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    chown(&a, TEST_USER);
    chown(&b, other);
    let apps = repo_root().join("tests/apps");
    let cfg = dir.path().join("paddock.toml");
    let runtime = dir.path().join("run");
    std::fs::create_dir_all(&runtime).expect("mkdir");
    write(
        &cfg,
        &format!(
            "index = false\nruntime_dir = \"{run}\"\n[tenants.a]\ndir = \"{a}\"\nmount = \"/a\"\napp = \"testapps:application\"\npython_path = [\"{apps}\"]\nprocesses = 1\n[tenants.b]\ndir = \"{b}\"\nmount = \"/b\"\napp = \"testapps:application\"\npython_path = [\"{apps}\"]\nprocesses = 1\n",
            run = runtime.display(),
            a = a.display(),
            b = b.display(),
            apps = apps.display()
        ),
    );
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8")], false, &[]);
    assert_eq!(server.get("/b/env").status, 200, "b's pool runs, so its socket exists");
    let r = server.get("/a/whoami");
    assert_eq!(field(&r.text(), "uid"), uid_a.to_string());
    let read = server.get(&format!("/a/probe?read={}", secret.display())).text();
    assert!(read.starts_with("denied"), "a read b's 0600 file: {read}");
    // The private runtime directory holds every socket; a tenant cannot even list it, and
    // connecting to any socket in it fails.
    let private =
        std::fs::read_dir(&runtime).expect("runtime").flatten().next().expect("private dir").path();
    let listed = server.get(&format!("/a/probe?list={}", private.display())).text();
    assert!(listed.starts_with("denied"), "a listed the socket directory: {listed}");
    for sock in std::fs::read_dir(&private).expect("sockets").flatten() {
        let r = server.get(&format!("/a/probe?connect={}", sock.path().display())).text();
        assert!(r.starts_with("denied"), "a connected to {}: {r}", sock.path().display());
    }
}
