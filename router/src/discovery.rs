//! Live discovery: which tenants exist right now, and which are switched off.
//!
//! There is no index to keep fresh. A request resolves its tenant with one `stat` of the
//! marker file ([`Config::tenant`]), so a directory that appears under `sites` is served by
//! the very next request and one that disappears answers 404 at once; thousands of idle
//! tenants cost nothing, not even an inotify watch. What a `stat` per request cannot do is
//! stop the pool of a tenant nobody asks for any more: the monitor asks [`still_served`] for
//! every running pool once a second and stops those whose tenant is gone or disabled.
//!
//! A disabled tenant keeps its directory and gets a file `<state_dir>/disabled/<name>`: the
//! flag survives restarts and needs no database. The directory's names are kept in memory
//! and read again when its mtime changed, looked at no more than once a second ([`RECHECK`])
//! and at once after this process changed it: a request costs no system call for it, and a
//! change made elsewhere (another node on the shared file system, an operator's `rm`) counts
//! within a second. It lives
//! in the router's `state_dir` (mode 0700), never in the tenant directory, where the tenant
//! could delete it to re-enable itself, or plant a symlink for root to write through. (A
//! `.paddock-disabled` file in a tenant directory, the old place, means nothing any more.)

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use paddock_config::tenant::TenantSpec;
use paddock_config::Config;

/// Directory of `state_dir` with one file per disabled tenant.
const DISABLED: &str = "disabled";

/// Why a tenant cannot be disabled without `sites` or `state_dir`.
pub const NO_STATE_DIR: &str = "no state_dir is configured (it defaults to <sites>/.paddock, and there is no sites directory): set `state_dir` to be able to disable tenants";

/// How old the in-memory view of `<state_dir>/disabled/` may be before its mtime is looked at.
pub const RECHECK: Duration = Duration::from_secs(1);

/// `<state_dir>/disabled/` as last read.
struct Seen {
    state_dir: PathBuf,
    checked: Instant,
    mtime: Option<SystemTime>,
    names: HashSet<String>,
}

/// One view for the process (there is one `state_dir`; a different one, as in tests, is
/// simply read afresh).
static SEEN: RwLock<Option<Seen>> = RwLock::new(None);

/// The tenant is disabled (a file `<state_dir>/disabled/<name>`, as of at most [`RECHECK`]
/// ago, or of this process's last change).
pub fn is_disabled(cfg: &Config, spec: &TenantSpec) -> bool {
    let Some(state) = cfg.state_dir.as_deref() else { return false };
    {
        let seen = SEEN.read().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = seen.as_ref() {
            if s.state_dir == state && s.checked.elapsed() < RECHECK {
                return s.names.contains(&spec.name);
            }
        }
    }
    let mut seen = SEEN.write().unwrap_or_else(|p| p.into_inner());
    let dir = state.join(DISABLED);
    // The directory is the router's own (0700), but `lstat`: never follow a link there.
    let mtime = std::fs::symlink_metadata(&dir).and_then(|m| m.modified()).ok();
    // An mtime is only as fine as the file system's clock tick: one that recent may hide a
    // second change made in the same tick, so the names are read again.
    let settled = mtime
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > Duration::from_secs(2));
    let unchanged =
        settled && seen.as_ref().is_some_and(|s| s.state_dir == state && s.mtime == mtime);
    if unchanged {
        if let Some(s) = seen.as_mut() {
            s.checked = Instant::now();
            return s.names.contains(&spec.name);
        }
    }
    let names = read_names(&dir);
    let hit = names.contains(&spec.name);
    *seen = Some(Seen { state_dir: state.to_path_buf(), checked: Instant::now(), mtime, names });
    hit
}

/// The file names in `dir` (none if it cannot be read: nothing was ever disabled).
fn read_names(dir: &Path) -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return HashSet::new() };
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()
}

/// Forget the in-memory view: this process has just changed the directory.
fn forget() {
    *SEEN.write().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Disable (with `note` as the file's text) or enable `name`; the state directories are made
/// (0700) as needed. Blocking (a few small writes).
pub fn set_disabled(cfg: &Config, name: &str, note: Option<&str>) -> io::Result<PathBuf> {
    let Some(state) = &cfg.state_dir else {
        // Nothing can be disabled without one, so enabling is done already.
        return match note {
            None => Ok(PathBuf::new()),
            Some(_) => Err(io::Error::new(io::ErrorKind::Unsupported, NO_STATE_DIR)),
        };
    };
    let file = state.join(DISABLED).join(name);
    let _forget = Forget;
    let Some(note) = note else {
        return match std::fs::remove_file(&file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(file),
            r => r.map(|()| file),
        };
    };
    private_dir(state)?;
    private_dir(&state.join(DISABLED))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&file)?;
    io::Write::write_all(&mut f, note.as_bytes())?;
    Ok(file)
}

/// Forgets the view when dropped: after a change, whichever way it ended.
struct Forget;

impl Drop for Forget {
    fn drop(&mut self) {
        forget();
    }
}

/// Make `dir` (mode 0700) or make an existing one 0700; a symlink is refused.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        r => r?,
    }
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    d.set_permissions(std::fs::Permissions::from_mode(0o700))
}

/// The tenant still exists and is not disabled: its pool may keep running.
pub fn still_served(cfg: &Config, name: &str) -> bool {
    cfg.tenant(name).is_some_and(|t| !is_disabled(cfg, &t))
}

/// Tenants whose Python configuration is known before any request: every configured one,
/// and for the sites directory, the defaults when they do not name the tenant (a
/// `{tenant}` in the virtualenv or python path makes a configuration per tenant: those
/// zygotes start with their first request).
pub fn zygote_specs(cfg: &Config) -> Vec<TenantSpec> {
    let mut specs: Vec<TenantSpec> = cfg.tenants.keys().filter_map(|n| cfg.tenant(n)).collect();
    if let Some(sites) = &cfg.sites {
        let spec = |name: &str| {
            let dir = sites.join(name);
            let settings = cfg.defaults.expand(name, &dir, Some(sites));
            TenantSpec { name: name.to_string(), mount: String::new(), dir, settings }
        };
        let (a, b) = (spec("a"), spec("b"));
        let (pa, pb) = (&a.settings.process, &b.settings.process);
        let same = pa.app == pb.app
            && pa.virtualenv == pb.virtualenv
            && pa.python_path == pb.python_path
            && pa.lang == pb.lang
            && pa.preload == pb.preload;
        if same {
            specs.push(a);
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_config::Overrides;

    #[test]
    fn disabled_and_gone_tenants_are_not_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("one");
        std::fs::create_dir_all(site.join("conf")).expect("mkdir");
        std::fs::write(site.join("conf/trac.ini"), "").expect("write");
        std::fs::create_dir_all(dir.path().join("bare")).expect("mkdir");
        let ov = Overrides { sites: Some(dir.path().to_path_buf()), ..Overrides::default() };
        let cfg = Config::from_overrides(&ov).expect("config");
        assert!(still_served(&cfg, "one"));
        assert_eq!(cfg.all_tenants().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["one"]);
        // The old in-directory marker means nothing.
        std::fs::write(site.join(".paddock-disabled"), "").expect("write");
        assert!(still_served(&cfg, "one"));
        let file = set_disabled(&cfg, "one", Some("off\n")).expect("disable");
        assert_eq!(file, dir.path().join(".paddock/disabled/one"));
        assert!(!still_served(&cfg, "one"));
        let mode = std::fs::metadata(dir.path().join(".paddock")).expect("state").permissions();
        assert_eq!(mode.mode() & 0o777, 0o700);
        set_disabled(&cfg, "one", None).expect("enable");
        assert!(still_served(&cfg, "one"));
        set_disabled(&cfg, "one", None).expect("enable twice");
        std::fs::remove_dir_all(&site).expect("rm");
        assert!(!still_served(&cfg, "one"));
        assert!(!still_served(&cfg, "bare"));
    }

    #[test]
    fn a_change_made_elsewhere_counts_within_a_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("one/conf")).expect("mkdir");
        std::fs::write(dir.path().join("one/conf/trac.ini"), "").expect("write");
        let ov = Overrides { sites: Some(dir.path().to_path_buf()), ..Overrides::default() };
        let cfg = Config::from_overrides(&ov).expect("config");
        set_disabled(&cfg, "one", Some("off")).expect("disable");
        assert!(!still_served(&cfg, "one"));
        // Another node (or an operator) enables it by removing the file.
        std::fs::remove_file(dir.path().join(".paddock/disabled/one")).expect("rm");
        let deadline = Instant::now() + RECHECK * 3;
        while !still_served(&cfg, "one") {
            assert!(
                Instant::now() < deadline,
                "still disabled {:?} after the file went",
                RECHECK * 3
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn zygotes_are_known_for_the_defaults_unless_they_name_the_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |defaults: &str| {
            let text = format!(
                "sites = \"{d}/sites\"\n[defaults]\n{defaults}\n[tenants.x]\ndir = \"{d}/x\"\n",
                d = dir.path().display()
            );
            let path = dir.path().join("paddock.toml");
            std::fs::write(&path, text).expect("write");
            Config::load(&path, &Overrides::default()).expect("config")
        };
        let names =
            |cfg: &Config| zygote_specs(cfg).into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(&load("virtualenv = \"/srv/venv\"")), ["x", "a"]);
        assert_eq!(names(&load("virtualenv = \"/srv/venv/{tenant}\"")), ["x"]);
    }

    #[test]
    fn without_sites_disabling_needs_a_state_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |extra: &str| {
            let text = format!("{extra}\n[tenants.a]\ndir = \"{}\"\n", dir.path().display());
            let path = dir.path().join("paddock.toml");
            std::fs::write(&path, text).expect("write");
            Config::load(&path, &Overrides::default()).expect("config")
        };
        let cfg = load("");
        assert_eq!(cfg.state_dir, None);
        let e = set_disabled(&cfg, "a", Some("off")).expect_err("no state_dir");
        assert!(e.to_string().contains("set `state_dir`"), "{e}");
        assert!(set_disabled(&cfg, "a", None).is_ok(), "nothing to enable");
        let cfg = load(&format!("state_dir = \"{}/state\"", dir.path().display()));
        set_disabled(&cfg, "a", Some("off")).expect("disable");
        assert!(!still_served(&cfg, "a"));
    }
}
