//! Which Unix user a tenant's workers run as. Resolved in the router, before any fork.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use paddock_config::tenant::TenantSpec;
use paddock_sys::Creds;

/// The identity a pool runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None`: the router is not root; workers keep its credentials.
    pub creds: Option<(u32, u32, Vec<u32>)>,
    pub user_name: String,
}

impl Identity {
    pub fn creds(&self) -> Option<Creds> {
        self.creds.as_ref().map(|(uid, gid, groups)| Creds {
            uid: *uid,
            gid: *gid,
            groups: groups.clone(),
        })
    }
}

/// Why a tenant's workers have no identity to run with; each says what is wrong and how to fix
/// it.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("tenant `{tenant}` is configured to run as user `{want}`, but paddock runs as `{running_as}`, not root, and cannot switch users")]
    CannotSwitch { tenant: String, want: String, running_as: String },
    #[error("tenant `{tenant}`: cannot read {}: {source}", dir.display())]
    Unreadable { tenant: String, dir: PathBuf, source: std::io::Error },
    #[error("tenant `{tenant}`: cannot resolve {}: {source}", dir.display())]
    Unresolvable { tenant: String, dir: PathBuf, source: std::io::Error },
    #[error("user `{0}` does not exist (create it with useradd)")]
    NoUser(String),
    #[error("group `{0}` does not exist (create it with groupadd)")]
    NoGroup(String),
    #[error(
        "tenant `{tenant}` would run as root: {d} is owned by uid 0 and no `user` is configured. \
         Give the tenant its own user (`chown -R USER {d}` or `user = \"USER\"` in [tenants.{tenant}]); \
         `allow_root = true` permits root but is not recommended",
        d = dir.display()
    )]
    Root { tenant: String, dir: PathBuf },
    #[error(
        "tenant `{tenant}`: {d} is open to other users (mode {mode:04o}, and every directory above it lets them through), so other tenants could read its files. \
         Run `chmod o-rwx {d}` (or `chmod 0750 {d}`), or set `allow_world_readable = true` in [tenants.{tenant}] if that is intended",
        d = dir.display()
    )]
    WorldReadable { tenant: String, dir: PathBuf, mode: u32 },
}

/// Decide the identity of `t`'s workers; the error says what is wrong and how to fix it.
pub fn resolve(t: &TenantSpec, allow_root: bool) -> Result<Identity, IdentityError> {
    let me = Uid::effective();
    if !me.is_root() {
        let name =
            User::from_uid(me).ok().flatten().map(|u| u.name).unwrap_or_else(|| me.to_string());
        if let Some(want) = &t.settings.process.user {
            if want != &name && want != &me.to_string() {
                return Err(IdentityError::CannotSwitch {
                    tenant: t.name.clone(),
                    want: want.clone(),
                    running_as: name,
                });
            }
        }
        return Ok(Identity { creds: None, user_name: name });
    }
    let meta = std::fs::metadata(&t.dir).map_err(|source| IdentityError::Unreadable {
        tenant: t.name.clone(),
        dir: t.dir.clone(),
        source,
    })?;
    let user = match &t.settings.process.user {
        Some(u) => Some(lookup_user(u)?),
        None => User::from_uid(Uid::from_raw(meta.uid())).ok().flatten(),
    };
    let uid = user.as_ref().map(|u| u.uid.as_raw()).unwrap_or(meta.uid());
    let gid = match &t.settings.process.group {
        Some(g) => lookup_group(g)?,
        None => user.as_ref().map(|u| u.gid.as_raw()).unwrap_or(meta.gid()),
    };
    if uid == 0 && !allow_root {
        return Err(IdentityError::Root { tenant: t.name.clone(), dir: t.dir.clone() });
    }
    if !t.settings.process.allow_world_readable {
        check_private(t, meta.mode())?;
    }
    let groups = match &user {
        Some(u) => CString::new(u.name.clone())
            .ok()
            .and_then(|c| getgrouplist(&c, Gid::from_raw(gid)).ok())
            .map(|g| g.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_else(|| vec![gid]),
        None => vec![gid],
    };
    let user_name = user.map(|u| u.name).unwrap_or_else(|| uid.to_string());
    Ok(Identity { creds: Some((uid, gid, groups)), user_name })
}

/// Refuse a tenant directory other users can reach: any `o+rwx` bit on it while every
/// directory above lets others through (`o+x`). Tenants run as different users, and one must
/// not read another's database (its login cookies, say). A parent closed to others (a 0700
/// directory) hides everything below it.
fn check_private(t: &TenantSpec, mode: u32) -> Result<(), IdentityError> {
    if mode & 0o007 == 0 {
        return Ok(());
    }
    let real = std::fs::canonicalize(&t.dir).map_err(|source| IdentityError::Unresolvable {
        tenant: t.name.clone(),
        dir: t.dir.clone(),
        source,
    })?;
    let passable = |d: &std::path::Path| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0);
    if !real.ancestors().skip(1).all(passable) {
        return Ok(());
    }
    Err(IdentityError::WorldReadable {
        tenant: t.name.clone(),
        dir: t.dir.clone(),
        mode: mode & 0o7777,
    })
}

fn lookup_user(u: &str) -> Result<User, IdentityError> {
    let found = match u.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(u),
    };
    found.ok().flatten().ok_or_else(|| IdentityError::NoUser(u.to_string()))
}

fn lookup_group(g: &str) -> Result<u32, IdentityError> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    Group::from_name(g)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| IdentityError::NoGroup(g.to_string()))
}
