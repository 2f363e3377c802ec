//! `paddock backup`: a consistent copy of each site into a dated directory, made by the site's
//! own tool running as the site's user (for Trac `trac-admin ENV hotcopy DEST`, which copies
//! the environment with its database locked; any app: its `backup` command).
//!
//! Layout: `DEST/<YYYYMMDDTHHMMSSZ>/<tenant>/` holds what the command wrote (for Trac the
//! environment, in `env/`). Root makes `DEST` and the dated directory (mode 0711: a site's
//! user can reach its own directory but list nothing) and each `<tenant>` directory fresh
//! (mode 0700, owned by the site's user); then only the site's user writes below it. Root
//! never opens or walks what a tenant wrote. Restore: see `docs/operations.md`.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use paddock_config::tenant::TenantSpec;
use paddock_config::Config;
use paddock_supervise::command::{self, TenantCommand};
use paddock_supervise::identity;
use paddock_sys::safefs::Place;

/// umask of a backup command: nothing it writes is readable by other users.
const BACKUP_UMASK: u32 = 0o077;

/// One tenant's backup, as reported.
#[derive(Debug)]
pub struct Outcome {
    pub tenant: String,
    /// Where it went, or why it did not.
    pub result: Result<PathBuf, String>,
}

/// Back up `names` (every tenant if empty) of `cfg` into a new dated directory below `dest`,
/// one after the other (a hotcopy locks the site's database meanwhile: not all at once).
pub async fn run(
    cfg: &Config,
    names: &[String],
    dest: &Path,
    timeout: Duration,
) -> Result<(PathBuf, Vec<Outcome>), String> {
    let specs: Vec<TenantSpec> = if names.is_empty() {
        cfg.all_tenants()
    } else {
        let mut v = Vec::new();
        for n in names {
            v.push(cfg.tenant(n).ok_or_else(|| format!("no tenant named `{n}`"))?);
        }
        v
    };
    let stamp = crate::admin::tenants::timestamp(SystemTime::now());
    make_dir(dest, 0o711).map_err(|e| format!("cannot make {}: {e}", dest.display()))?;
    let day = new_dir(dest, &stamp)?;
    let mut out = Vec::new();
    for spec in &specs {
        let result = one(cfg, spec, &day, timeout).await;
        out.push(Outcome { tenant: spec.name.clone(), result });
    }
    Ok((day, out))
}

async fn one(
    cfg: &Config,
    spec: &TenantSpec,
    day: &Path,
    timeout: Duration,
) -> Result<PathBuf, String> {
    let env_path = spec
        .settings
        .request
        .environ
        .get("trac.env_path")
        .cloned()
        .unwrap_or_else(|| spec.dir.display().to_string());
    let argv_template = command_of(spec, cfg.sites.as_deref(), &env_path)?;
    let ident = identity::resolve(spec, cfg.allow_root).map_err(|e| e.to_string())?;
    let creds = ident.creds();
    let dir = day.join(&spec.name);
    // Fresh: the dated directory is new and root's, so nothing here is a tenant's path yet.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    if let Some(c) = &creds {
        std::os::unix::fs::chown(&dir, Some(c.uid), Some(c.gid))
            .map_err(|e| format!("cannot give {} to the site's user: {e}", dir.display()))?;
    }
    let python = match &spec.settings.process.virtualenv {
        Some(v) => format!("{v}/bin/python3"),
        None => "/usr/bin/python3".to_string(),
    };
    let target = dir.join("env");
    let argv: Vec<String> = argv_template
        .iter()
        .map(|a| {
            a.replace("{dest}", &target.display().to_string())
                .replace("{env_path}", &env_path)
                .replace("{python}", &python)
        })
        .collect();
    let limits = paddock_supervise::spawn::limits(&spec.settings.process.limits, creds.as_ref());
    let c = TenantCommand { argv: &argv, dir: &spec.dir, creds, umask: BACKUP_UMASK, limits };
    let deadline = tokio::time::Instant::now() + timeout;
    command::run(&c, deadline).await.map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The tenant's backup command: its `backup` setting, or Trac's hotcopy when `env_path` holds
/// a Trac environment (its `VERSION` file, looked up without following a symlink below the
/// tenant directory).
fn command_of(
    spec: &TenantSpec,
    sites: Option<&Path>,
    env_path: &str,
) -> Result<Vec<String>, String> {
    if let Some(b) = &spec.settings.ops.backup {
        return Ok(b.clone());
    }
    let version = Path::new(env_path).join("VERSION");
    if !paddock_sys::safefs::is_file(&Place::of(&version, Some(&spec.dir), sites)) {
        return Err(format!(
            "no backup command: {env_path} is not a Trac environment; set `backup` for this tenant"
        ));
    }
    Ok(["{python}", "-m", "trac.admin.console", "{env_path}", "hotcopy", "{dest}"]
        .iter()
        .map(|s| s.to_string())
        .collect())
}

/// A new directory `dest/stamp` (mode 0711), or `stamp-2`, `stamp-3`, ... when a backup of the
/// same second has it already.
fn new_dir(dest: &Path, stamp: &str) -> Result<PathBuf, String> {
    for n in 1..=100u32 {
        let name = if n == 1 { stamp.to_string() } else { format!("{stamp}-{n}") };
        let day = dest.join(name);
        match std::fs::DirBuilder::new().mode(0o711).create(&day) {
            // Whatever the umask: sites' users must pass through it to their own directory.
            Ok(()) => {
                return std::fs::set_permissions(&day, std::fs::Permissions::from_mode(0o711))
                    .map(|()| day.clone())
                    .map_err(|e| format!("cannot chmod {}: {e}", day.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot make {}: {e}", day.display())),
        }
    }
    Err(format!("cannot make a new directory for {stamp} in {}: 100 exist", dest.display()))
}

/// Make `dir` (and its parents) with `mode` if missing. An existing one is the operator's and
/// keeps its mode, but must be a real directory that sites' users can pass through.
fn make_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir)?;
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode));
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory (a symlink is not followed)"));
    }
    if meta.permissions().mode() & 0o001 == 0 {
        return Err(std::io::Error::other(
            "sites' users cannot pass through it to write their backups: chmod o+x it, or name a new directory",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_of_the_same_second_get_directories_of_their_own() {
        let dest = tempfile::tempdir().expect("tempdir");
        let first = new_dir(dest.path(), "20261203T120000Z").expect("first");
        let second = new_dir(dest.path(), "20261203T120000Z").expect("second");
        assert_eq!(first, dest.path().join("20261203T120000Z"));
        assert_eq!(second, dest.path().join("20261203T120000Z-2"));
        let mode = std::fs::metadata(&second).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o711);
    }
}
