//! `paddock check` checks what a start of each tenant would find: its user, virtualenv, the
//! files the configuration names, and (unless `--no-import`) that its app imports, in a trial
//! worker running as the tenant's user. Every problem is reported, exit code 64.

mod common;

use std::path::Path;
use std::process::Command;

use common::{bins, chown, ensure_user, nix_is_root, private, repo_root, venv, write};

/// A temp dir others may pass through (tenant users must reach what is below it).
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// A tenant directory `name` in `dir`: private, and as root owned by the test user (a tenant
/// never runs as root).
fn tenant_dir(dir: &Path, name: &str) -> String {
    let t = dir.join(name);
    std::fs::create_dir_all(&t).expect("mkdir");
    private(&t);
    if nix_is_root() {
        ensure_user("paddock-e2e");
        chown(&t, "paddock-e2e");
    }
    t.display().to_string()
}

/// `[tenants.NAME]` serving the test apps from `python_path`, with `extra` lines.
fn tenant(dir: &Path, name: &str, extra: &str) -> String {
    format!(
        "[tenants.{name}]\ndir = \"{}\"\napp = \"testapps:application\"\npython_path = [\"{}\", \"{}\"]\n{extra}\n",
        tenant_dir(dir, name),
        repo_root().join("tests/apps").display(),
        dir.join("apps").display(),
    )
}

/// `paddock check [args] FILE` on `text` written to `dir/paddock.toml`: (exit code, stdout,
/// stderr).
fn check(dir: &Path, text: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let f = dir.join("paddock.toml");
    write(&f, text);
    let out = Command::new(&bins().0).arg("check").args(args).arg(&f).output().expect("run");
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), s(&out.stdout), s(&out.stderr))
}

/// The module `broken_app` in `dir/apps`, whose import raises ImportError.
fn broken_app(dir: &Path) {
    write(
        &dir.join("apps/broken_app.py"),
        "import frobnicate_is_not_installed  # ImportError\napplication = None\n",
    );
}

#[test]
fn check_reports_every_problem_a_start_would_meet() {
    let dir = open_tempdir();
    let d = dir.path();
    broken_app(d);
    let venv = venv().display().to_string();
    let mut text = "index = false\n[admin]\ntokens_file = \"tokens\"\n".to_string();
    text += &tenant(d, "good", &format!("virtualenv = \"{venv}\""));
    text += &tenant(d, "nouser", "user = \"paddock-no-such-user\"");
    text += &tenant(d, "noenv", "virtualenv = \"/nonexistent/venv\"");
    text += &tenant(d, "nopw", "[tenants.nopw.auth]\nhtpasswd = \"{tenant_dir}/htpasswd\"");
    text += &tenant(d, "broken", "app = \"broken_app:application\"")
        .replace("app = \"testapps:application\"\n", "");
    let (code, out, err) = check(d, &text, &[]);
    assert_eq!(code, Some(64), "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("OK"), "{out}");
    let f = d.join("paddock.toml").display().to_string();
    let line = |what: &str| -> String {
        err.lines()
            .find(|l| l.starts_with(&format!("{f}: {what}")))
            .unwrap_or_else(|| panic!("no line `{f}: {what}...` in:\n{err}"))
            .to_string()
    };
    let tokens = line("admin `tokens_file`");
    assert!(tokens.contains(&d.join("tokens").display().to_string()), "{tokens}");
    assert!(line("tenant nouser:").contains("user `paddock-no-such-user` does not exist"), "{err}");
    assert!(line("tenant noenv:").contains("virtualenv /nonexistent/venv does not exist"), "{err}");
    let pw = line("tenant nopw:");
    assert!(
        pw.contains("htpasswd") && pw.contains(&format!("{}/nopw/htpasswd", d.display())),
        "{pw}"
    );
    let broken = line("tenant broken:");
    assert!(broken.contains("importing the app `broken_app:application`"), "{broken}");
    assert!(
        err.contains("ModuleNotFoundError: No module named 'frobnicate_is_not_installed'"),
        "{err}"
    );
    assert!(!err.contains("tenant good:"), "the good tenant has no problem: {err}");
}

#[test]
fn check_of_a_good_config_imports_its_apps_and_says_ok() {
    let dir = open_tempdir();
    let d = dir.path();
    write(&d.join("tokens"), "secret-token\n");
    std::fs::create_dir_all(d.join("apps")).expect("mkdir");
    let venv = venv().display().to_string();
    let mut text = "index = false\n[admin]\ntokens_file = \"tokens\"\n".to_string();
    text += &tenant(
        d,
        "good",
        &format!(
            "virtualenv = \"{venv}\"\n[tenants.good.auth]\nhtpasswd = \"{{tenant_dir}}/htpasswd\""
        ),
    );
    write(&d.join("good/htpasswd"), "admin:{SHA}0DPiKuNIrrVmD8IUCuw1hQxNqZc=\n");
    let (code, out, err) = check(d, &text, &[]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains(": OK (1 configured tenants") && out.contains("1 apps imported"), "{out}");
    assert!(!err.contains("tenant good"), "{err}");
}

#[test]
fn the_import_is_what_finds_an_app_that_does_not_load() {
    let dir = open_tempdir();
    let d = dir.path();
    broken_app(d);
    let text = format!(
        "index = false\n{}",
        tenant(d, "broken", "").replace("testapps:application", "broken_app:application")
    );
    let (code, out, err) = check(d, &text, &["--no-import"]);
    assert_eq!(code, Some(0), "without the import nothing is wrong: {out}{err}");
    assert!(out.contains("apps not imported (--no-import)"), "{out}");
    let (code, out, err) = check(d, &text, &["--file-only"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("tenants not checked (--file-only)"), "{out}");
    let (code, _, err) = check(d, &text, &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("tenant broken: importing the app") && err.contains("exit code 3"),
        "{err}"
    );
}

#[test]
fn check_reports_every_unknown_key_with_a_suggestion() {
    let dir = open_tempdir();
    let text = "sites = \"/srv/sites\"\n[defaults]\ntheads = 4\nprocesses = 0\n[admin]\ntokens_fil = \"t\"\ncolour = 1\n";
    let (code, _, err) = check(dir.path(), text, &[]);
    assert_eq!(code, Some(64), "{err}");
    let f = dir.path().join("paddock.toml").display().to_string();
    let want = [
        format!("{f}:3: unknown key `theads` in [defaults]; did you mean `threads`?"),
        format!("{f}:4: `processes`"),
        format!("{f}:6: unknown key `tokens_fil` in [admin]; did you mean `tokens_file`?"),
        format!("{f}:7: unknown key `colour` in [admin]"),
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), want.len(), "{err}");
    for (l, w) in lines.iter().zip(&want) {
        assert!(l.starts_with(w.as_str()), "{l:?} should start with {w:?}\n{err}");
    }
    assert!(!lines[3].contains("did you mean"), "nothing is close to `colour`: {err}");
}

#[test]
fn discovered_tenants_are_checked_too() {
    let dir = open_tempdir();
    let d = dir.path();
    let sites = d.join("sites");
    std::fs::create_dir_all(&sites).expect("mkdir");
    let t = tenant_dir(&sites, "found");
    write(&Path::new(&t).join("conf/trac.ini"), "[trac]\n");
    if nix_is_root() {
        chown(Path::new(&t), "paddock-e2e");
    }
    let text = format!(
        "sites = \"{}\"\nindex = false\n[defaults]\napp = \"testapps:application\"\npython_path = [\"{}\"]\nvirtualenv = \"/nonexistent/venv-of-{{tenant}}\"\n",
        sites.display(),
        repo_root().join("tests/apps").display()
    );
    let (code, out, err) = check(d, &text, &[]);
    assert_eq!(code, Some(64), "{out}{err}");
    let f = d.join("paddock.toml").display().to_string();
    assert!(
        err.contains(&format!(
            "{f}: tenant found: virtualenv /nonexistent/venv-of-found does not exist"
        )),
        "{err}"
    );
    // Fixed, the same tenant passes, its app imported.
    let (code, out, err) = check(
        d,
        &text.replace("/nonexistent/venv-of-{tenant}", &venv().display().to_string()),
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 tenants checked, 1 apps imported"), "{out}");
}

#[test]
fn an_import_that_hangs_is_killed_at_startup_timeout() {
    let dir = open_tempdir();
    let d = dir.path();
    let pidfile = d.join("apps/slow.pid");
    write(
        &d.join("apps/slow_app.py"),
        &format!(
            "import os, time\nopen({:?}, 'w').write(str(os.getpid()))\ntime.sleep(300)\napplication = None\n",
            pidfile.display().to_string()
        ),
    );
    // The trial worker writes its pid as the tenant's user.
    std::fs::set_permissions(d.join("apps"), std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let text = format!(
        "index = false\n{}",
        tenant(d, "slow", "startup_timeout = \"2s\"")
            .replace("testapps:application", "slow_app:application")
    );
    let started = std::time::Instant::now();
    let (code, out, err) = check(d, &text, &[]);
    assert_eq!(code, Some(64), "{out}{err}");
    // Well before the import would end by itself (300 s): the timeout ended it, however slow
    // the machine (the message below says which timeout).
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "{:?}", started.elapsed());
    assert!(err.contains("tenant slow: importing the app") && err.contains("within 2s"), "{err}");
    let pid = std::fs::read_to_string(&pidfile).expect("the app started");
    let proc_dir = Path::new("/proc").join(pid.trim());
    common::eventually("the trial worker is gone", std::time::Duration::from_secs(10), || {
        !proc_dir.exists()
    });
}

#[test]
fn a_script_app_in_a_trac_virtualenv_without_static_files_is_warned_about() {
    // A migrated `trac.wsgi` kept as a script app gets no default `static` (Paddock cannot know
    // the script runs Trac), so Trac's /chrome/common would go through Python.
    let dir = open_tempdir();
    let d = dir.path();
    write(
        &d.join("apps/site.wsgi"),
        "import trac.web.main\napplication = trac.web.main.dispatch_request\n",
    );
    let venv = venv().display().to_string();
    let script = d.join("apps/site.wsgi").display().to_string();
    let mut text = "index = false\n".to_string();
    for (name, extra) in [
        ("scripted", String::new()),
        (
            "mapped",
            "[tenants.mapped.static]\n\"/chrome/common\" = \"{virtualenv}/lib/python3.11/site-packages/trac/htdocs\"\n"
                .to_string(),
        ),
    ] {
        text += &tenant(d, name, &format!("virtualenv = \"{venv}\"\n{extra}"))
            .replace("testapps:application", &script);
    }
    let (code, out, err) = check(d, &text, &["--no-import"]);
    assert_eq!(code, Some(0), "a warning, not an error: {out}{err}");
    let f = d.join("paddock.toml").display().to_string();
    let w = err
        .lines()
        .find(|l| l.starts_with(&format!("{f}: warning: tenant scripted: ")))
        .unwrap_or_else(|| panic!("no warning for the script app:\n{err}"));
    assert!(
        w.contains("script")
            && w.contains("/chrome/common")
            && w.contains("trac.web.main:dispatch_request"),
        "{w}"
    );
    assert!(!err.contains("tenant mapped:"), "a static mapping is in force: {err}");
}

#[test]
fn tenants_of_one_user_whose_threads_outgrow_its_nproc_limit_are_warned_about() {
    let dir = open_tempdir();
    let d = dir.path();
    std::fs::create_dir_all(d.join("apps")).expect("mkdir");
    // 3 x 2 x (100 + 2) = 612 processes and threads for one user, over the default 512.
    let big = "processes = 2\nthreads = 100\n";
    let text = format!("{}{}{}", tenant(d, "a", big), tenant(d, "b", big), tenant(d, "c", big));
    let (code, _, err) = check(d, &text, &["--no-import"]);
    assert_eq!(code, Some(0), "{err}");
    if nix_is_root() {
        assert!(
            err.contains("3 tenants run as uid") && err.contains("rlimit_nproc = 512"),
            "{err}"
        );
    } else {
        // Not root, workers keep the router's user and no rlimit_nproc is set at all.
        assert!(!err.contains("rlimit_nproc"), "{err}");
    }
    // Within the limit, or with no limit: no warning.
    let small = "processes = 1\nthreads = 4\n";
    let text = format!("{}{}", tenant(d, "a", small), tenant(d, "b", small));
    let (_, _, err) = check(d, &text, &["--no-import"]);
    assert!(!err.contains("rlimit_nproc"), "{err}");
    let free = "processes = 2\nthreads = 100\nrlimit_nproc = 0\n";
    let text = format!("{}{}{}", tenant(d, "a", free), tenant(d, "b", free), tenant(d, "c", free));
    let (_, _, err) = check(d, &text, &["--no-import"]);
    assert!(!err.contains("rlimit_nproc"), "{err}");
}
