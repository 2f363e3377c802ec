//! `paddock tenants ...`, `paddock reload`, completions and the manual page, run as an
//! operator would against a real server's admin listener.

mod adminkit;
mod common;

use std::path::Path;
use std::process::{Command, Output};

use adminkit::{Admin, Setup, FAKE_PROVISION};
use common::write;
use serde_json::Value;

/// `paddock ARGS` with the admin address and no token in the environment.
fn paddock(a: &Admin, args: &[&str]) -> Output {
    Command::new(&common::bins().0)
        .args(args)
        .env_remove("PADDOCK_TOKEN")
        .env_remove("PADDOCK_ADMIN")
        .env("PADDOCK_ADMIN", a.admin.to_string())
        .output()
        .expect("run paddock")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_operator_administers_tenants_from_the_command_line() {
    // `ghost` cannot start: its user does not exist (or, not as root, cannot be switched to).
    let a = Admin::start(Setup {
        admin: &format!("provision = {FAKE_PROVISION}"),
        defaults: "[tenants.ghost]\nuser = \"no-such-user-pd\"\n",
        ..Setup::default()
    });
    std::fs::create_dir_all(a.sites().join("ghost")).expect("mkdir");
    let tokens = a.dir.path().join("tokens");
    let tf = tokens.to_str().expect("utf-8");

    let none = paddock(&a, &["tenants", "list"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no API token"));

    let pw = a.dir.path().join("pw");
    write(&pw, "correct horse\n");
    let pwf = pw.to_str().expect("utf-8");
    let created = ok(&paddock(
        &a,
        &[
            "tenants",
            "--token-file",
            tf,
            "create",
            "shop",
            "--admin-user",
            "alice",
            "--password-file",
            pwf,
        ],
    ));
    assert!(created.contains("name:") && created.contains("shop"), "{created}");
    let htpasswd = std::fs::read_to_string(a.sites().join("shop/htpasswd")).expect("htpasswd");
    assert!(htpasswd.starts_with("alice:$2b$"), "the password file's newline is not the password");
    assert_eq!(a.server.get("/trac/shop/").status, 200);

    assert_eq!(a.server.get("/trac/ghost/").status, 503);
    let list = ok(&paddock(&a, &["tenants", "--token-file", tf, "list"]));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATE"), "{list}");
    let row = |n: &str| lines.iter().find(|l| l.starts_with(n)).copied().unwrap_or_default();
    assert!(row("shop ").contains("ready") && row("shop ").contains("1/1"), "{list}");
    assert!(row("ghost").contains("cannot start"), "{list}");

    let shown = ok(&paddock(&a, &["tenants", "--token-file", tf, "show", "ghost"]));
    assert!(shown.contains("cannot start:"), "{shown}");
    assert!(shown.contains("no-such-user-pd") || shown.contains("cannot read"), "{shown}");
    let json = ok(&paddock(&a, &["tenants", "--json", "--token-file", tf, "show", "ghost"]));
    let v: Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert!(v["start_error"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(v["start_error"]["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");

    let off = ok(&paddock(&a, &["tenants", "--token-file", tf, "disable", "shop"]));
    assert_eq!(off, "shop: disabled\n");
    assert_eq!(a.server.get("/trac/shop/").status, 503);
    assert_eq!(
        ok(&paddock(&a, &["tenants", "--token-file", tf, "enable", "shop"])),
        "shop: enabled\n"
    );
    assert_eq!(a.server.get("/trac/shop/").status, 200);
    let restarted = ok(&paddock(&a, &["tenants", "--token-file", tf, "restart", "shop"]));
    assert!(restarted.contains("restarting"), "{restarted}");
    assert_eq!(ok(&paddock(&a, &["reload", "--token-file", tf])), "configuration reloaded\n");

    let unsure = paddock(&a, &["tenants", "--token-file", tf, "delete", "shop"]);
    assert_eq!(unsure.status.code(), Some(2), "delete needs --yes");
    assert_eq!(a.server.get("/trac/shop/").status, 200);
    let missing = paddock(&a, &["tenants", "--token-file", tf, "show", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"), "{missing:?}");

    let wrong = a.dir.path().join("wrong-token");
    write(&wrong, "# not ours\nnot-the-token\n");
    let denied = paddock(&a, &["tenants", "--token-file", wrong.to_str().expect("utf-8"), "list"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("403"), "{denied:?}");

    let deleted = ok(&paddock(&a, &["tenants", "--token-file", tf, "delete", "shop", "--yes"]));
    assert!(deleted.starts_with("shop: deleted, archived to "), "{deleted}");
    assert_eq!(a.server.get("/trac/shop/").status, 404);
}

#[test]
fn the_admin_address_comes_from_the_configuration_and_failures_say_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let cfg = dir.path().join("paddock.toml");
    write(&cfg, &format!("sites = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"/nonexistent\"\n", dir.path().display()));
    let out = Command::new(&common::bins().0)
        .args(["tenants", "--config"])
        .arg(&cfg)
        .arg("list")
        .env("PADDOCK_TOKEN", "x")
        .env_remove("PADDOCK_ADMIN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("cannot reach"), "{err}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definitions() {
    let run = |args: &[&str]| Command::new(&common::bins().0).args(args).output().expect("run");
    let bash = run(&["completions", "bash"]);
    let text = String::from_utf8_lossy(&bash.stdout);
    assert!(bash.status.success() && text.contains("tenants") && text.contains("reload"), "{text}");
    let man = run(&["man"]);
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success() && text.contains(".TH") && text.contains("tenants"), "{text}");
    assert!(!Path::new("paddock.1").exists());
}
