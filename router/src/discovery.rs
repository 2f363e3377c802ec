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
//! flag survives restarts, needs no database, and costs one more `stat` per request. It lives
//! in the router's `state_dir` (mode 0700), never in the tenant directory, where the tenant
//! could delete it to re-enable itself, or plant a symlink for root to write through. (A
//! `.paddock-disabled` file in a tenant directory, the old place, means nothing any more.)

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use paddock_config::tenant::TenantSpec;
use paddock_config::Config;

/// Directory of `state_dir` with one file per disabled tenant.
const DISABLED: &str = "disabled";

/// Why a tenant cannot be disabled without `sites` or `state_dir`.
pub const NO_STATE_DIR: &str = "no state_dir is configured (it defaults to <sites>/.paddock, and there is no sites directory): set `state_dir` to be able to disable tenants";

/// The tenant is disabled: one `lstat` in the operator's `state_dir`.
pub fn is_disabled(cfg: &Config, spec: &TenantSpec) -> bool {
    cfg.state_dir
        .as_ref()
        .is_some_and(|d| std::fs::symlink_metadata(d.join(DISABLED).join(&spec.name)).is_ok())
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
