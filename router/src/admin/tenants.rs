//! API actions on one tenant: disable/enable, delete (archive), pool restart.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Response, StatusCode};
use serde_json::json;

use super::json::{error, info, ok, with_tenant};
use crate::front::State;
use crate::respond::Body;
use paddock_config::Config;
use paddock_supervise::counters::Reason;

/// Disable: write `<state_dir>/disabled/<name>` (requests get 503 from now on) and stop the
/// pool. Enable: remove it; the next request starts the pool.
pub fn set_disabled(st: &State, cfg: &Config, name: &str, disabled: bool) -> Response<Body> {
    with_tenant(cfg, name, |t| {
        let note = format!("disabled through the admin API at {}\n", timestamp(SystemTime::now()));
        let note = disabled.then_some(note.as_str());
        if disabled && cfg.state_dir.is_none() {
            return error(StatusCode::SERVICE_UNAVAILABLE, crate::discovery::NO_STATE_DIR);
        }
        if let Err(e) = crate::discovery::set_disabled(cfg, name, note) {
            tracing::error!(tenant = %name, "cannot change the disabled state: {e}");
            let msg = format!("cannot change the disabled state: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, &msg);
        }
        if disabled {
            st.registry.remove(name);
        }
        tracing::info!(tenant = %name, disabled, "tenant {}", if disabled { "disabled" } else { "enabled" });
        ok(info(st, cfg, &t))
    })
}

/// Stop the pool and move the tenant directory to the archive: nothing is destroyed.
pub async fn delete(st: &State, cfg: &Config, name: &str) -> Response<Body> {
    let Some(t) = cfg.tenant(name) else {
        return error(StatusCode::NOT_FOUND, &format!("no tenant named `{name}`"));
    };
    if cfg.tenants.contains_key(name) {
        let msg = format!("`{name}` is configured in the configuration file: remove its [tenants.{name}] section and reload instead");
        return error(StatusCode::CONFLICT, &msg);
    }
    let Some(archive) = cfg.admin.as_ref().and_then(|a| a.signup.archive_dir(cfg.sites.as_deref()))
    else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no archive directory is configured");
    };
    st.registry.remove(name);
    let owner = std::fs::metadata(&t.dir).ok().map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    match archive_dir(&t.dir, &archive, name) {
        Ok(to) => {
            // A new tenant of the same name must not inherit the flag.
            if let Err(e) = crate::discovery::set_disabled(cfg, name, None) {
                tracing::warn!(tenant = %name, "cannot clear the disabled state: {e}");
            }
            tracing::info!(tenant = %name, archived_to = %to.display(), "tenant deleted (archived)");
            lock_site_user(cfg, name, owner).await;
            // The name is free again across the cluster (the owner's pool stops when its
            // discovery sees the directory gone).
            if let Some(c) = st.cluster() {
                c.unreserve_tenant(name, None).await;
            }
            ok(json!({ "name": name, "archived_to": to.display().to_string() }))
        }
        Err(e) => {
            tracing::error!(tenant = %name, "cannot archive {}: {e}", t.dir.display());
            let hint = if e.raw_os_error() == Some(libc::EXDEV) {
                " (archive_dir must be on the same file system as the sites directory)"
            } else {
                ""
            };
            let msg =
                format!("cannot move {} to {}: {e}{hint}", t.dir.display(), archive.display());
            error(StatusCode::INTERNAL_SERVER_ERROR, &msg)
        }
    }
}

/// As root, lock the deleted site's own user and end its processes (see `siteuser`): only a
/// user that is this site's by the `site_user` pattern and uid range, never a shared one.
async fn lock_site_user(cfg: &Config, name: &str, owner: Option<u32>) {
    let Some(sc) = cfg.admin.as_ref().map(|a| &a.signup) else { return };
    let Some(uid) = owner.filter(|u| (sc.site_uids.0..=sc.site_uids.1).contains(u)) else {
        return;
    };
    let Ok(want) = super::siteuser::name_for(&sc.site_user, name) else { return };
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten();
    if !nix::unistd::Uid::effective().is_root() || user.is_none_or(|u| u.name != want) {
        return;
    }
    let locked = tokio::task::spawn_blocking(move || super::siteuser::lock(&want, uid)).await;
    match locked {
        Ok(Ok(())) => tracing::info!(tenant = %name, uid, "the site's user is locked"),
        Ok(Err(e)) => tracing::error!(tenant = %name, "{e}"),
        Err(e) => tracing::error!(tenant = %name, "locking the site's user failed: {e}"),
    }
}

/// Move `dir` to `<archive>/<name>.<UTC timestamp>[-N]`, never replacing anything. The
/// archive is made 0700: an archived tenant no longer reaches its files.
fn archive_dir(dir: &Path, archive: &Path, name: &str) -> std::io::Result<PathBuf> {
    use nix::fcntl::{renameat2, RenameFlags};
    if let Some(parent) = archive.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::discovery::private_dir(archive)?;
    let stamp = timestamp(SystemTime::now());
    for n in 1..=100 {
        let to = match n {
            1 => archive.join(format!("{name}.{stamp}")),
            n => archive.join(format!("{name}.{stamp}-{n}")),
        };
        match renameat2(None, dir, None, &to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(to),
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other("too many archived copies with this timestamp"))
}

/// Replace every process of the tenant's pool, one by one, with no pause.
pub fn restart(st: &State, cfg: &Config, name: &str) -> Response<Body> {
    with_tenant(cfg, name, |_| {
        let pool = st.registry.pools().into_iter().find(|p| p.spec.name == name);
        let running = pool.is_some();
        if let Some(p) = pool {
            tracing::info!(tenant = %name, "pool restart requested through the admin API");
            p.recycle_all(Reason::Reload);
        }
        ok(json!({ "name": name, "restarted": running }))
    })
}

/// `YYYYMMDDTHHMMSSZ` (UTC): RFC 3339 (humantime) without its separators, so it sorts and
/// fits a file name.
pub fn timestamp(t: SystemTime) -> String {
    // humantime formats times from the epoch on.
    let t = t.max(UNIX_EPOCH);
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(timestamp(t), "20240229T123456Z");
    }

    #[test]
    fn archiving_never_replaces() {
        let root = tempfile::tempdir().expect("tempdir");
        let archive = root.path().join("archive");
        for _ in 0..2 {
            std::fs::create_dir_all(root.path().join("site/conf")).expect("mkdir");
            let to = archive_dir(&root.path().join("site"), &archive, "site").expect("archive");
            assert!(to.join("conf").is_dir());
        }
        assert_eq!(std::fs::read_dir(&archive).expect("read").count(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive).expect("archive").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
