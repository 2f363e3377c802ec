//! `paddock check` and start-up refusal on bad configuration.

mod common;

use std::process::Command;

use common::{bins, write};

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("ok.toml");
    write(&f, "sites = \"/srv/trac/sites\"\n[[rules]]\nrule = \"^/$ /trac/ [R=301,L]\"\n");
    let out = Command::new(&bins().0).arg("check").arg(&f).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_reports_file_line_and_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("site.rules");
    write(&rules, "RewriteEngine On\nRewriteCond %{REQUEST_URI} ^/trac/([^/]+)\nRewriteRule ^/(broken - [F]\nRewriteBase /\n");
    let f = dir.path().join("bad.toml");
    write(&f, "sites = \"/srv\"\nrules_file = \"site.rules\"\n[defaults]\nthreads = 0\n");
    let out = Command::new(&bins().0).arg("check").arg(&f).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    let rules_path = rules.display().to_string();
    assert!(err.contains(&format!("{rules_path}:3:")), "regex error at line 3: {err}");
    assert!(err.contains(&format!("{rules_path}:4:")) && err.contains("RewriteBase"), "{err}");
    assert!(err.contains(&format!("{}:4:", f.display())) && err.contains("threads"), "{err}");
}

#[test]
fn serve_refuses_a_bad_config_with_the_same_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.toml");
    write(&f, "sites = \"/srv\"\nlisten = \"not an address\"\n");
    let out = Command::new(&bins().0).args(["serve", "--config"]).arg(&f).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:", f.display())) && err.contains("not an address"),
        "{err}"
    );
}

#[test]
fn check_of_a_missing_file_names_it() {
    let out =
        Command::new(&bins().0).args(["check", "/nonexistent/paddock.toml"]).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/paddock.toml"));
}

/// `paddock check` on `text`: (exit code, stdout, stderr).
fn check(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("paddock.toml");
    write(&f, text);
    let out = Command::new(&bins().0).arg("check").arg(&f).output().expect("run");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn check_warns_about_signup_without_a_pool_cap_or_auth() {
    let auth = "[defaults.auth]\nhtpasswd = \"{tenant_dir}/htpasswd\"\n";
    // An existing sites directory (the config's own): a missing one is a warning of its own.
    let base = "sites = \".\"\n";
    // Unlimited pools with signup on: a warning, still valid.
    let (code, out, err) = check(&format!("{base}max_workers_total = 0\n{auth}[admin]\n"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("OK") && out.contains("max_workers_total 0"), "{out}");
    assert!(err.contains("warning") && err.contains("max_workers_total"), "{err}");
    assert!(!err.contains("defaults.auth"), "{err}");
    // Signup without [defaults.auth]: its admins could never log in.
    let (code, _, err) = check(&format!("{base}[admin]\n"));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("warning") && err.contains("[defaults.auth]"), "{err}");
    assert!(!err.contains("max_workers_total"), "the default is a cap: {err}");
    // Both fine, or signup off: silence.
    for quiet in [
        format!("{base}{auth}[admin]\n"),
        format!("{base}max_workers_total = 0\n[admin]\nsignup = false\n"),
    ] {
        let (code, _, err) = check(&quiet);
        assert_eq!(code, Some(0), "{err}");
        assert!(!err.contains("warning"), "{quiet}: {err}");
    }
}
