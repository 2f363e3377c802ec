//! The isolation suite: two tenants with different Unix users, `a` running a hostile app
//! (tests/apps/hostile.py) that tries every path from one tenant to another or to the host,
//! and `b` a victim whose files, processes and state must stay out of `a`'s reach. Each
//! attempt is asserted refused, and `b` must keep answering. Root only (as in CI): without
//! root there is no second user to isolate from.
//!
//! The other isolation tests live beside their features: process_isolation.rs (cgroups,
//! limits), zygote_memory.rs (no tenant data in a zygote), hostile_files.rs (root never
//! follows a tenant's path), admin.rs (per-site users, safe signup), isolation.rs (uid
//! switch, scrubbed environment, private sockets). docs/security.md lists them all.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{chown, ensure_user, free_port, nix_is_root, repo_root, send_raw, write, Server};

const USER_A: &str = "paddock-e2e";
const USER_B: &str = "paddock-e2e2";
const TOKEN: &str = "isolation-suite-token";

/// Two tenants, `a` (hostile, user A) and `b` (victim, user B), each in its own 0750
/// directory under a root-owned sites directory, with an admin listener.
struct Hosts {
    server: Server,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Hosts {
    fn start(extra_a: &str) -> Option<Hosts> {
        if !nix_is_root() {
            eprintln!("skipped: the isolation suite needs root (two tenant users)");
            return None;
        }
        ensure_user(USER_A);
        ensure_user(USER_B);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let sites = dir.path().join("sites");
        for (name, user) in [("a", USER_A), ("b", USER_B)] {
            let t = sites.join(name);
            std::fs::create_dir_all(&t).expect("mkdir");
            std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o750)).expect("chmod");
            chown(&t, user);
        }
        let tokens = dir.path().join("tokens");
        write(&tokens, &format!("{TOKEN}\n"));
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let port = free_port();
        let apps = repo_root().join("tests/apps");
        let tenant = |name: &str, extra: &str| {
            format!(
                "[tenants.{name}]\nmount = \"/{name}\"\napp = \"hostile:application\"\npython_path = [\"{}\"]\nprocesses = 1\nthreads = 2\nwatch_files = []\n{extra}\n",
                apps.display()
            )
        };
        let config = dir.path().join("paddock.toml");
        write(
            &config,
            &format!(
                "index = false\nsites = \"{sites}\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"{tokens}\"\nsignup = false\n{a}{b}",
                sites = sites.display(),
                tokens = tokens.display(),
                a = tenant("a", extra_a),
                b = tenant("b", ""),
            ),
        );
        let server = Server::start_with(&["--config", config.to_str().expect("utf-8")], false, &[]);
        let admin = format!("127.0.0.1:{port}").parse().expect("addr");
        Some(Hosts { server, admin, dir })
    }

    fn sites(&self) -> PathBuf {
        self.dir.path().join("sites")
    }

    /// What `a`'s hostile app answers for `op` on `arg`.
    fn a(&self, op: &str, arg: &str) -> String {
        let r = self.server.get(&format!("/a/{op}?arg={arg}"));
        assert_eq!(r.status, 200, "/a/{op}: {}\n{}", r.text(), self.server.log_text());
        r.text()
    }

    fn b_pid(&self) -> u32 {
        let r = self.server.get("/b/pid");
        assert_eq!(
            r.status,
            200,
            "b must keep answering: {}\n{}",
            r.text(),
            self.server.log_text()
        );
        r.text().trim().parse().expect("pid")
    }

    fn admin(&self, method: &str, path: &str) -> u16 {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        send_raw(self.admin, raw.as_bytes()).expect("admin request").status
    }
}

fn assert_denied(what: &str, answer: &str) {
    assert!(answer.starts_with("denied"), "tenant a could {what}: {answer}");
}

#[test]
fn another_tenants_files_are_out_of_reach() {
    let Some(h) = Hosts::start("") else { return };
    h.b_pid();
    // b's app writes a file with the worker's default umask: private (027).
    let made = h.server.get("/b/mkfile?arg=data.txt");
    assert_eq!(made.text(), "0o640", "files a worker makes are private by default");
    let b = h.sites().join("b");
    let data = b.join("data.txt");
    assert_denied("read b's data", &h.a("read", &data.display().to_string()));
    assert_denied("list b's directory", &h.a("list", &b.display().to_string()));
    assert_denied("write into b's directory", &h.a("write", &b.join("x").display().to_string()));
    assert_denied("chmod b's file", &h.a("chmod", &data.display().to_string()));
    assert_denied("delete b's file", &h.a("unlink", &data.display().to_string()));
    let sites = h.sites();
    assert_denied("create a tenant", &h.a("write", &sites.join("c").display().to_string()));
    assert_denied(
        "read the tokens",
        &h.a("read", &h.dir.path().join("tokens").display().to_string()),
    );
    assert_denied("read the host's shadow file", &h.a("read", "/etc/shadow"));
    h.b_pid();
}

#[test]
fn another_tenants_processes_are_out_of_reach() {
    let Some(h) = Hosts::start("") else { return };
    let b = h.b_pid();
    for sig in [0, 9, 15] {
        assert_denied(
            "signal b's worker",
            &h.server.get(&format!("/a/kill?arg={b}&sig={sig}")).text(),
        );
    }
    assert_denied("read b's environment", &h.a("read", &format!("/proc/{b}/environ")));
    assert_denied("read b's memory", &h.a("read", &format!("/proc/{b}/mem")));
    let router = h.server.child.id();
    assert_denied(
        "signal the router",
        &h.server.get(&format!("/a/kill?arg={router}&sig=0")).text(),
    );
    assert_denied(
        "read the router's environment",
        &h.a("read", &format!("/proc/{router}/environ")),
    );
    assert_denied("become root", &h.a("setuid", ""));
    assert_eq!(h.b_pid(), b, "b's worker is untouched");
}

#[test]
fn tenant_code_runs_without_privileges() {
    let Some(h) = Hosts::start("") else { return };
    let status = h.a("status", "");
    assert!(status.contains("\"NoNewPrivs\": \"1\""), "{status}");
    assert!(status.contains("\"CapBnd\": \"0000000000000000\""), "{status}");
    assert!(status.contains("\"CapEff\": \"0000000000000000\""), "{status}");
}

#[test]
fn a_tenant_cannot_change_any_tenants_state() {
    let Some(h) = Hosts::start("") else { return };
    h.b_pid();
    // A marker in its own directory (where the disabled flag used to live) changes nothing.
    let own = h.sites().join("a/.paddock-disabled");
    assert!(h.a("write", &own.display().to_string()).starts_with("allowed"));
    assert_eq!(h.server.get("/a/pid").status, 200, "a tenant's own files decide nothing");
    assert_eq!(h.admin("POST", "/api/v1/tenants/b/disable"), 200);
    assert_eq!(h.server.get("/b/pid").status, 503);
    let state = h.sites().join(".paddock");
    let marker = state.join("disabled/b");
    assert!(marker.is_file(), "the disabled flag lives in the state directory");
    assert_eq!(h.a("list", &state.display().to_string()), "denied: EACCES");
    assert_eq!(h.a("unlink", &marker.display().to_string()), "denied: EACCES");
    let forged = state.join("disabled/a");
    assert_eq!(h.a("write", &forged.display().to_string()), "denied: EACCES");
    assert_eq!(h.server.get("/b/pid").status, 503, "b stays disabled");
    assert_eq!(h.admin("POST", "/api/v1/tenants/b/enable"), 200);
    h.b_pid();
}

#[test]
fn a_tenant_cannot_starve_another_of_processes() {
    let Some(h) = Hosts::start("rlimit_nproc = 64") else { return };
    h.b_pid();
    let started: u32 = h.a("threads", "500").trim().parse().expect("count");
    assert!(started < 64, "the process limit did not hold: {started} threads started");
    h.b_pid();
}
