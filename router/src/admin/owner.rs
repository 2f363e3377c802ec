//! Who owns a new tenant and runs its provisioning. As root: a user of its own, made for the
//! site (see `siteuser`), or the shared `signup_user`/`signup_group` when the operator opts
//! in; the new directory is theirs, so the pool later runs as them too. Not root: paddock's
//! own user.

use std::ffi::CString;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use paddock_config::SignupConfig;
use paddock_sys::Creds;

/// Who a new site will belong to.
#[derive(Debug, Clone)]
pub enum Owner {
    /// Paddock's own user (it is not root).
    Me,
    /// The shared `signup_user`.
    Shared(Creds),
    /// A user of its own, to be created (as root, without `signup_user`).
    PerSite,
}

/// The owner of new sites, or why signup cannot run.
pub fn resolve(sc: &SignupConfig, allow_root: bool) -> Result<Owner, String> {
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
        return Ok(Owner::Me);
    }
    let Some(want) = &sc.user else { return Ok(Owner::PerSite) };
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
    Ok(Owner::Shared(Creds { uid: user.uid.as_raw(), gid, groups }))
}
