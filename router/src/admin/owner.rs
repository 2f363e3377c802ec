//! Who owns a new tenant and runs its provisioning: `signup_user`/`signup_group` when paddock
//! runs as root (the new directory is theirs, so the pool later runs as them too), paddock's
//! own user otherwise.

use std::ffi::CString;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use crate::config::SignupConfig;
use crate::sys::Creds;

/// Credentials to switch to (`None`: keep paddock's own), or why signup cannot run.
pub fn resolve(sc: &SignupConfig, allow_root: bool) -> Result<Option<Creds>, String> {
    let me = Uid::effective();
    if !me.is_root() {
        if let Some(want) = &sc.user {
            let name = User::from_uid(me).ok().flatten().map(|u| u.name).unwrap_or_default();
            if want != &name && want != &me.to_string() {
                return Err(format!(
                    "`signup_user` is `{want}` but paddock runs as `{name}`, not root, and cannot switch users"
                ));
            }
        }
        return Ok(None);
    }
    let Some(want) = &sc.user else {
        if allow_root {
            return Ok(Some(Creds { uid: 0, gid: 0, groups: vec![0] }));
        }
        return Err("signup needs `signup_user` in [admin]: paddock runs as root, and new sites must not belong to root".into());
    };
    let user = match want.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(want),
    }
    .ok()
    .flatten()
    .ok_or_else(|| format!("`signup_user` `{want}` does not exist (create it with useradd)"))?;
    if user.uid.is_root() && !allow_root {
        return Err("`signup_user` is root; give new sites an unprivileged user".into());
    }
    let gid = match &sc.group {
        None => user.gid.as_raw(),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| format!("`signup_group` `{g}` does not exist"))?,
        },
    };
    let groups = CString::new(user.name.clone())
        .ok()
        .and_then(|c| getgrouplist(&c, Gid::from_raw(gid)).ok())
        .map(|g| g.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|| vec![gid]);
    Ok(Some(Creds { uid: user.uid.as_raw(), gid, groups }))
}
