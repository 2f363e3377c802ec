//! `paddock check CONFIG` after the file itself has validated: what a start of each tenant
//! would find. For every configured and every discovered tenant ([`Config::all_tenants`]): its
//! directory, its user and group (with [`identity::resolve`], what a pool start uses), its
//! virtualenv against the Python `paddock-worker` embeds, its `python_path`, its htpasswd
//! file and static directories; the admin `tokens_file`; then, unless told not to, a trial
//! import of each tenant's app as its user ([`appcheck::import_app`], started like a worker).
//!
//! Each problem is one string `FILE: tenant NAME: problem` (`FILE: problem` when it is not a
//! tenant's); errors make the check fail, warnings do not.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::{Group, Uid, User};
use paddock_config::tenant::TenantSpec;
use paddock_config::Config;
use paddock_supervise::appcheck;
use paddock_supervise::identity::{self, Identity};
use paddock_sys::safefs::{self, Place, HTPASSWD_CAP};
use paddock_sys::Creds;

/// Trial imports running at once (each is a Python process importing an app).
const IMPORTS_AT_ONCE: usize = 4;
/// Time `paddock-worker python-version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a failed import's stderr shown (its end: the traceback).
const STDERR_LINES: usize = 25;

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Tenants checked, and how many of their apps were imported.
    pub tenants: usize,
    pub imported: usize,
}

/// Check what a start of every tenant of `config` needs; with `import`, also import each
/// tenant's app in a trial worker.
pub async fn run(config: &Config, import: bool) -> Report {
    let file = config.source.as_deref().unwrap_or(Path::new("<command line>")).display();
    let mut r = Report::default();
    let root = Uid::effective().is_root();
    if !root {
        r.warnings.push(format!(
            "{file}: warning: not running as root, so only what this user can do was checked: \
             tenants run as this user, and whether other users could read their files was not checked"
        ));
    }
    let worker = config.worker_bin.clone().unwrap_or_else(crate::default_worker_bin);
    let worker_ok = worker.is_file();
    if !worker_ok {
        r.errors.push(format!(
            "{file}: worker binary {} not found; build it (cargo build) or set `worker_bin`",
            worker.display()
        ));
    }
    if let Some(sites) = &config.sites {
        if !sites.is_dir() {
            r.warnings.push(format!(
                "{file}: warning: `sites` {} is not a directory: no tenant is discovered",
                sites.display()
            ));
        }
    }
    if let Some(tokens) = config.admin.as_ref().and_then(|a| a.tokens_file.as_ref()) {
        if let Err(e) = std::fs::File::open(tokens).and_then(|f| f.metadata()) {
            r.errors.push(format!(
                "{file}: admin `tokens_file` {}: {e} (the router reads it {})",
                tokens.display(),
                as_whom(root)
            ));
        }
    }
    if let Some(c) = &config.cluster {
        if let Some(w) = etcd_unreachable(&c.endpoints).await {
            r.warnings.push(format!("{file}: warning: [cluster] {w}"));
        }
    }
    let tenants = config.all_tenants();
    r.tenants = tenants.len();
    let needs_version = tenants.iter().any(|t| t.settings.process.virtualenv.is_some());
    let mut python = None;
    if needs_version && worker_ok {
        match embedded_python(&worker).await {
            Ok(v) => python = Some(v),
            Err(e) => r.errors.push(format!("{file}: {e}")),
        }
    }
    let mut trials = Vec::new();
    let mut by_uid: BTreeMap<u32, Vec<&TenantSpec>> = BTreeMap::new();
    for t in &tenants {
        let mut errs = Vec::new();
        let mut warns = Vec::new();
        let identity = check_tenant(config, t, python.as_deref(), root, &mut errs, &mut warns);
        // Not root, the workers keep this user's credentials and no rlimit_nproc is set.
        if let Some((uid, _, _)) = identity.as_ref().and_then(|i| i.creds.as_ref()) {
            by_uid.entry(*uid).or_default().push(t);
        }
        if let (Some(id), true, true) = (identity, errs.is_empty(), import && worker_ok) {
            trials.push((t.clone(), id));
        }
        let name = &t.name;
        r.errors.extend(errs.into_iter().map(|e| format!("{file}: tenant {name}: {e}")));
        r.warnings
            .extend(warns.into_iter().map(|w| format!("{file}: warning: tenant {name}: {w}")));
    }
    for (uid, shared) in &by_uid {
        if let Some(w) = shared_nproc(*uid, shared) {
            r.warnings.push(format!("{file}: warning: {w}"));
        }
    }
    r.imported = trials.len();
    for (name, problem) in import_all(trials, &worker).await {
        r.errors.push(format!("{file}: tenant {name}: {problem}"));
    }
    r
}

/// Threads of a worker process besides its request threads (the main thread and the
/// control thread), for the estimate below.
const WORKER_EXTRA_THREADS: usize = 2;

/// The kernel counts `RLIMIT_NPROC` per user, over all of its processes and threads: tenants
/// that run as one user (signup's `signup_user`, one owner for many sites) share it. A warning
/// when their workers at full load would need more than the lowest limit among them (a start
/// then fails with EAGAIN: the density benchmark's 300 sites of one user stopped at 85
/// workers under the default 512).
fn shared_nproc(uid: u32, tenants: &[&TenantSpec]) -> Option<String> {
    let limit = tenants.iter().map(|t| t.settings.process.limits.nproc).filter(|&n| n > 0).min()?;
    if tenants.len() < 2 {
        return None;
    }
    let need: usize = tenants
        .iter()
        .map(|t| {
            let p = &t.settings.process;
            p.processes * (p.threads + WORKER_EXTRA_THREADS)
        })
        .sum();
    if (need as u64) <= limit {
        return None;
    }
    let mut names: Vec<&str> = tenants.iter().map(|t| t.name.as_str()).take(5).collect();
    if tenants.len() > names.len() {
        names.push("...");
    }
    Some(format!(
        "{} tenants run as uid {uid} ({}): at full load their workers need about {need} \
         processes and threads, over rlimit_nproc = {limit}, which the kernel counts per user \
         across all of them; starts would fail with EAGAIN. Give the sites their own users, or \
         raise rlimit_nproc for them (0: no limit; cgroups' pids_max can bound each pool instead)",
        tenants.len(),
        names.join(", ")
    ))
}

/// Why none of the etcd endpoints accepts a TCP connection within a second, if none does
/// (the node would refuse to start).
async fn etcd_unreachable(endpoints: &[String]) -> Option<String> {
    let mut why = Vec::new();
    for e in endpoints {
        let hostport = e.split_once("://").map_or(e.as_str(), |(_, r)| r);
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let connect = tokio::net::TcpStream::connect(hostport);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(_)) => return None,
            Ok(Err(err)) => why.push(format!("{e}: {err}")),
            Err(_) => why.push(format!("{e}: no answer within 1 s")),
        }
    }
    Some(format!("no etcd endpoint answers ({}); the node would not start", why.join("; ")))
}

fn as_whom(root: bool) -> &'static str {
    if root {
        "as root"
    } else {
        "as the user paddock runs as"
    }
}

/// The checks that need no process; the identity the tenant's workers would run with, if it
/// resolves.
fn check_tenant(
    config: &Config,
    t: &TenantSpec,
    python: Option<&str>,
    root: bool,
    errs: &mut Vec<String>,
    warns: &mut Vec<String>,
) -> Option<Identity> {
    let p = &t.settings.process;
    match std::fs::metadata(&t.dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => errs.push(format!("directory {} is not a directory", t.dir.display())),
        Err(e) => errs.push(format!("directory {}: {e}", t.dir.display())),
    }
    if !root {
        // As root `resolve` looks these up; otherwise it only compares with this user.
        if let Some(u) = &p.user {
            if u.parse::<u32>().is_err() && !matches!(User::from_name(u), Ok(Some(_))) {
                errs.push(format!("user `{u}` does not exist"));
            }
        }
        if let Some(g) = &p.group {
            if g.parse::<u32>().is_err() && !matches!(Group::from_name(g), Ok(Some(_))) {
                errs.push(format!("group `{g}` does not exist"));
            }
        }
    }
    let identity = if errs.is_empty() {
        match identity::resolve(t, config.allow_root) {
            Ok(id) => Some(id),
            Err(e) => {
                let own = format!("tenant `{}`: ", t.name);
                let e = e.to_string();
                errs.push(e.strip_prefix(&own).unwrap_or(&e).to_string());
                None
            }
        }
    } else {
        None
    };
    let creds = identity.as_ref().and_then(Identity::creds);
    let who = identity.as_ref().map_or("", |i| i.user_name.as_str());
    let in_dir = |x: &str| t.dir.join(x);
    if let Some(v) = &p.virtualenv {
        let v = in_dir(v);
        check_venv(&v, python, errs);
        if let Some(c) = &creds {
            reach(&v, c, who, true, errs);
        }
    }
    for d in &p.python_path {
        let d = in_dir(d);
        if !d.is_dir() {
            errs.push(format!("`python_path` entry {} is not a directory", d.display()));
        } else if let Some(c) = &creds {
            reach(&d, c, who, true, errs);
        }
    }
    if let (Some(script), Some(c)) = (app_script(&p.app), &creds) {
        let s = in_dir(script);
        if s.is_file() {
            reach(&s, c, who, false, errs);
        }
    }
    if let Some(a) = &t.settings.request.auth {
        let place = Place::of(Path::new(&a.htpasswd), a.tenant_dir.as_deref(), a.sites.as_deref());
        if let Err(e) = safefs::read(&place, HTPASSWD_CAP) {
            errs.push(format!(
                "auth `htpasswd` {}: {e} (the router reads it {}; until it can, protected pages refuse every login)",
                a.htpasswd,
                as_whom(root)
            ));
        }
    }
    for (prefix, dir) in &config.static_files(&t.name).mappings {
        let Some(d) = crate::statics::expand(dir, t, config.sites.as_deref()) else { continue };
        if !d.is_dir() {
            warns.push(format!(
                "static directory {} (for `{prefix}`) is not a directory: its URLs answer 404",
                d.display()
            ));
        }
    }
    if let Some(w) = script_without_trac_statics(config, t) {
        warns.push(w);
    }
    identity
}

/// A script `app` (a migrated `trac.wsgi`) gets no default `static` mappings, since Paddock
/// cannot know the script runs Trac: with Trac in its virtualenv and no `/chrome/common`
/// mapping, Trac's own files go through Python (slower, and missing if the script's app does
/// not serve them). The warning, if that is the case.
fn script_without_trac_statics(config: &Config, t: &TenantSpec) -> Option<String> {
    let p = &t.settings.process;
    let script = app_script(&p.app)?;
    let statics = config.static_files(&t.name);
    if statics.mappings.iter().any(|(prefix, _)| prefix == "/chrome/common") {
        return None;
    }
    let venv = t.dir.join(p.virtualenv.as_ref()?);
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let htdocs = lib
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/trac/htdocs"))
        .find(|h| h.is_dir())?;
    Some(format!(
        "app `{script}` is a script, so no static files are served by the router for it (only \
         Trac's module app gets /chrome/common and /chrome/site by default): Trac's {} is served \
         through Python, or not at all if the script's app does not serve it. If the script only \
         runs Trac, use app = \"trac.web.main:dispatch_request\" with environ trac.env_path; \
         otherwise map static = {{ \"/chrome/common\" = \"{}\" }}",
        "/chrome/common",
        htdocs.display()
    ))
}

/// The script file an `app` names (contains `/` or ends in `.wsgi`/`.py`), as the worker
/// decides (`docs/worker.md`).
fn app_script(app: &str) -> Option<&str> {
    (app.contains('/') || app.ends_with(".wsgi") || app.ends_with(".py")).then_some(app)
}

/// `venv` holds the Python the worker embeds: `lib/pythonX.Y`, `bin/python3`, and a
/// `pyvenv.cfg` of that version.
fn check_venv(venv: &Path, python: Option<&str>, errs: &mut Vec<String>) {
    let v = venv.display();
    if !venv.is_dir() {
        errs.push(format!("virtualenv {v} does not exist (or is not a directory)"));
        return;
    }
    if !venv.join("bin/python3").exists() {
        errs.push(format!("virtualenv {v} has no working bin/python3: recreate it"));
    }
    let Some(py) = python else { return };
    if !venv.join(format!("lib/python{py}/site-packages")).is_dir() {
        let has: Vec<String> = std::fs::read_dir(venv.join("lib"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with("python"))
                    .collect()
            })
            .unwrap_or_default();
        let has = match has.is_empty() {
            true => String::new(),
            false => format!("; it has lib/{}", has.join(", lib/")),
        };
        errs.push(format!(
            "virtualenv {v} has no lib/python{py}/site-packages, but paddock-worker embeds Python {py}{has}: recreate it with python{py} -m venv"
        ));
        return;
    }
    if let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg")) {
        let version = cfg.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            matches!(k.trim(), "version" | "version_info").then(|| v.trim().to_string())
        });
        if let Some(version) = version {
            if version != py && !version.starts_with(&format!("{py}.")) {
                errs.push(format!(
                    "virtualenv {v} was made with Python {version} (pyvenv.cfg), but paddock-worker embeds Python {py}"
                ));
            }
        }
    }
}

/// `path` can be reached (and read; listed too if a directory) by `c`, by the mode bits of it
/// and every directory above it (ACLs are not looked at).
fn reach(path: &Path, c: &Creds, who: &str, dir: bool, errs: &mut Vec<String>) {
    if c.uid == 0 {
        return;
    }
    let Ok(real) = std::fs::canonicalize(path) else { return };
    let allowed = |m: &std::fs::Metadata, bits: u32| {
        let mode = m.mode();
        let class = if m.uid() == c.uid {
            mode >> 6
        } else if m.gid() == c.gid || c.groups.contains(&m.gid()) {
            mode >> 3
        } else {
            mode
        };
        class & bits == bits
    };
    let mut above: Vec<&Path> = real.ancestors().skip(1).collect();
    above.reverse();
    for d in above {
        match std::fs::metadata(d) {
            Ok(m) if allowed(&m, 0o1) => {}
            Ok(m) => {
                errs.push(format!(
                    "user `{who}` cannot pass through {} (mode {:04o}, owner {}:{}), so it cannot reach {}",
                    d.display(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    path.display()
                ));
                return;
            }
            Err(_) => return,
        }
    }
    let bits = if dir { 0o5 } else { 0o4 };
    if let Ok(m) = std::fs::metadata(&real) {
        if !allowed(&m, bits) {
            errs.push(format!(
                "user `{who}` cannot read {} (mode {:04o}, owner {}:{})",
                path.display(),
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ));
        }
    }
}

/// `major.minor` of the Python `worker` embeds.
async fn embedded_python(worker: &Path) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(worker);
    cmd.arg("python-version").kill_on_drop(true);
    let what = format!("`{} python-version`", worker.display());
    let out = tokio::time::timeout(VERSION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{what} did not answer within {}s", VERSION_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let looks_right = v.split('.').count() == 2 && v.split('.').all(|n| n.parse::<u8>().is_ok());
    if !out.status.success() || !looks_right {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(v)
}

/// Import every tenant's app, [`IMPORTS_AT_ONCE`] at a time; the failures as (tenant,
/// problem), by tenant name.
async fn import_all(trials: Vec<(TenantSpec, Identity)>, worker: &Path) -> Vec<(String, String)> {
    let gate = Arc::new(tokio::sync::Semaphore::new(IMPORTS_AT_ONCE));
    let mut set = tokio::task::JoinSet::new();
    for (spec, id) in trials {
        let gate = gate.clone();
        let worker: PathBuf = worker.to_path_buf();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let timeout = spec.settings.process.startup_timeout;
            let res = appcheck::import_app(&spec, &id, &worker, timeout).await;
            (spec, id, res)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (spec, id, res) = match joined {
            Ok(done) => done,
            Err(e) => {
                failed.push((String::new(), format!("a trial import failed: {e}")));
                continue;
            }
        };
        if let Err(f) = res {
            let mut msg = format!(
                "importing the app `{}` as user `{}` failed: {}",
                spec.settings.process.app, id.user_name, f.what
            );
            let lines: Vec<&str> = f.stderr.lines().collect();
            for l in &lines[lines.len().saturating_sub(STDERR_LINES)..] {
                msg.push_str("\n    ");
                msg.push_str(l);
            }
            failed.push((spec.name, msg));
        }
    }
    failed.sort();
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venv(dir: &Path, lib: &str, cfg: &str) -> PathBuf {
        let v = dir.join(lib);
        std::fs::create_dir_all(v.join(format!("lib/{lib}/site-packages"))).expect("mkdir");
        std::fs::create_dir_all(v.join("bin")).expect("mkdir");
        std::fs::write(v.join("bin/python3"), "").expect("write");
        std::fs::write(v.join("pyvenv.cfg"), cfg).expect("write");
        v
    }

    fn venv_errors(v: &Path, py: Option<&str>) -> Vec<String> {
        let mut errs = Vec::new();
        check_venv(v, py, &mut errs);
        errs
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_named() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let up = format!("http://{}", open.local_addr().expect("addr"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let down = format!("http://{}/", closed.local_addr().expect("addr"));
        drop(closed);
        assert_eq!(etcd_unreachable(&[down.clone(), up]).await, None, "one answers");
        let w = etcd_unreachable(std::slice::from_ref(&down)).await.expect("none answers");
        assert!(w.contains(&down) && w.contains("would not start"), "{w}");
    }

    #[test]
    fn virtualenvs_must_match_the_embedded_python() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = venv(dir.path(), "python3.11", "home = /usr/bin\nversion = 3.11.2\n");
        assert_eq!(venv_errors(&good, Some("3.11")), Vec::<String>::new());
        let other = venv(dir.path(), "python3.12", "version = 3.12.1\n");
        let e = venv_errors(&other, Some("3.11"));
        assert!(
            e.len() == 1
                && e[0].contains("no lib/python3.11")
                && e[0].contains("it has lib/python3.12"),
            "{e:?}"
        );
        let lying = venv(dir.path(), "python3.11x", "version_info = 3.12.0.final.0\n");
        std::fs::create_dir_all(lying.join("lib/python3.11/site-packages")).expect("mkdir");
        let e = venv_errors(&lying, Some("3.11"));
        assert!(e.len() == 1 && e[0].contains("made with Python 3.12.0"), "{e:?}");
        std::fs::remove_file(good.join("bin/python3")).expect("rm");
        let e = venv_errors(&good, Some("3.11"));
        assert!(e.len() == 1 && e[0].contains("bin/python3"), "{e:?}");
        let e = venv_errors(&dir.path().join("none"), Some("3.11"));
        assert!(e.len() == 1 && e[0].contains("does not exist"), "{e:?}");
    }

    #[test]
    fn scripts_are_told_from_modules() {
        assert_eq!(app_script("trac.web.main:dispatch_request"), None);
        assert_eq!(app_script("apache/trac.wsgi"), Some("apache/trac.wsgi"));
        assert_eq!(app_script("app.py"), Some("app.py"));
    }

    #[test]
    fn reach_follows_the_mode_bits_of_the_file_and_the_directories_above() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        mode(dir.path(), 0o755);
        let f = dir.path().join("f");
        std::fs::write(&f, "x").expect("write");
        let me = std::fs::metadata(&f).expect("stat");
        // Someone else: neither owner nor in the group.
        let other = Creds { uid: me.uid() + 1, gid: me.gid() + 1, groups: vec![me.gid() + 1] };
        let group = Creds { uid: me.uid() + 1, gid: me.gid() + 1, groups: vec![me.gid()] };
        let errs = |c: &Creds, p: &Path, dir: bool| {
            let mut e = Vec::new();
            reach(p, c, "u", dir, &mut e);
            e
        };
        mode(&f, 0o644);
        assert!(errs(&other, &f, false).is_empty());
        mode(&f, 0o640);
        let e = errs(&other, &f, false);
        assert!(e.len() == 1 && e[0].contains("cannot read") && e[0].contains("0640"), "{e:?}");
        assert!(errs(&group, &f, false).is_empty(), "in the file's group");
        mode(&f, 0o644);
        mode(dir.path(), 0o750);
        let e = errs(&other, &f, false);
        assert!(e.len() == 1 && e[0].contains("cannot pass through"), "{e:?}");
        assert!(errs(&group, &f, false).is_empty());
        mode(dir.path(), 0o744);
        assert!(errs(&other, dir.path(), true).len() == 1, "a directory needs x too");
        let root = Creds { uid: 0, gid: 0, groups: vec![] };
        assert!(errs(&root, &f, false).is_empty());
        mode(dir.path(), 0o700);
    }
}
