//! One Unix user (and group) per signup site, when paddock runs as root: a site's code,
//! provisioning and pool run as its own user, so one site's admin (or its plugins) cannot
//! touch another site's files.
//!
//! Users are made with Debian's `groupadd`/`useradd` (system account, a group of its own, no
//! home directory made, no login shell) with an explicit uid from `site_uid_min..=site_uid_max`
//! whose gid is free too, given to the group. Creation is serialised in this process and,
//! across processes, with a lock file. A deleted site's user is locked, never removed: its
//! archived files keep its uid, which must not go to another site.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};

use super::error::{internal, SignupError};
use paddock_sys::Creds;

/// Serialises user creation across paddock processes (root's own directory).
const LOCK_FILE: &str = "/run/paddock-useradd.lock";
/// Longest user name useradd accepts.
const MAX_NAME: usize = 32;
const NOLOGIN: &str = "/usr/sbin/nologin";

/// The user name of site `site` from the `site_user` pattern; refused (422) when too long.
pub fn name_for(pattern: &str, site: &str) -> Result<String, SignupError> {
    let user = pattern.replace("{name}", site);
    if user.len() > MAX_NAME {
        let room = MAX_NAME.saturating_sub(pattern.len().saturating_sub("{name}".len()));
        return Err(SignupError::Invalid(format!(
            "site name `{site}`: its Unix user `{user}` would be longer than {MAX_NAME} characters; use at most {room} characters"
        )));
    }
    if !paddock_config::tenant::valid_unix_name(&user) {
        return Err(SignupError::Invalid(format!(
            "site name `{site}`: `{user}` is not a valid user name"
        )));
    }
    Ok(user)
}

/// Create user `name` (home `home`, never made) with a free uid from `range`.
pub fn create(
    name: &str,
    site: &str,
    home: &Path,
    range: (u32, u32),
) -> Result<Creds, SignupError> {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let _guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let _lock = lock_file().map_err(|e| internal(format!("cannot lock {LOCK_FILE}: {e}")))?;
    if User::from_name(name).ok().flatten().is_some() {
        tracing::warn!(user = %name, "signup: the site's user exists already (an earlier site's, locked?)");
        return Err(SignupError::Taken(site.into()));
    }
    let (uids, gids) = (ids_in("/etc/passwd"), ids_in("/etc/group"));
    let free =
        (range.0..=range.1).filter(|n| !uids.contains(n) && !gids.contains(n)).filter(|&n| {
            User::from_uid(Uid::from_raw(n)).ok().flatten().is_none()
                && Group::from_gid(Gid::from_raw(n)).ok().flatten().is_none()
        });
    for uid in free.take(20) {
        match add(name, home, uid)? {
            Added::Yes => return created(name, uid),
            Added::IdTaken => continue, // taken meanwhile (by someone not using our lock)
            Added::NameTaken => return Err(SignupError::Taken(site.into())),
        }
    }
    Err(SignupError::Unavailable(format!(
        "no free uid left in site_uid_min..site_uid_max ({}..{})",
        range.0, range.1
    )))
}

enum Added {
    Yes,
    IdTaken,
    NameTaken,
}

/// `groupadd` then `useradd` with that group: the gid is the uid, which `useradd
/// --user-group` alone does not promise for system users.
fn add(name: &str, home: &Path, id: u32) -> Result<Added, SignupError> {
    let n = id.to_string();
    let run = |c: &mut Command| {
        c.output().map_err(|e| internal(format!("cannot run {:?}: {e}", c.get_program())))
    };
    let out = run(admin_tool("groupadd").args(["--system", "--gid", &n, name]))?;
    match out.status.code() {
        Some(0) => {}
        Some(4) => return Ok(Added::IdTaken),
        Some(9) => return Ok(Added::NameTaken),
        _ => return Err(failed("groupadd", name, &out)),
    }
    let out = run(admin_tool("useradd")
        .args(["--system", "--no-create-home", "--shell", NOLOGIN, "--uid", &n, "--gid", &n])
        .arg("--home-dir")
        .arg(home)
        .arg(name))?;
    let added = match out.status.code() {
        Some(0) => return Ok(Added::Yes),
        Some(4) => Ok(Added::IdTaken),
        Some(9) => Ok(Added::NameTaken),
        _ => Err(failed("useradd", name, &out)),
    };
    let _ = run(admin_tool("groupdel").arg(name));
    added
}

fn failed(tool: &str, name: &str, out: &std::process::Output) -> SignupError {
    let err = String::from_utf8_lossy(&out.stderr);
    internal(format!("{tool} {name} failed ({}): {}", out.status, err.trim()))
}

fn created(name: &str, uid: u32) -> Result<Creds, SignupError> {
    let user = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| internal(format!("user {name} missing right after useradd")))?;
    let gid = user.gid.as_raw();
    tracing::info!(user = %name, uid, gid, "signup: created the site's user");
    Ok(Creds { uid, gid, groups: vec![gid] })
}

/// Remove a user made for a signup that failed before anything of it was kept.
pub fn remove(name: &str) {
    kill_all(User::from_name(name).ok().flatten().map(|u| u.uid.as_raw()));
    match admin_tool("userdel").arg(name).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            tracing::error!(user = %name, "userdel failed: {}", String::from_utf8_lossy(&o.stderr).trim())
        }
        Err(e) => tracing::error!(user = %name, "cannot run userdel: {e}"),
    }
    // userdel removes the user's group only with USERGROUPS_ENAB.
    let _ = admin_tool("groupdel").arg(name).output();
}

/// Lock a deleted site's user for good (no password, expired, no shell) and end its
/// processes. The user stays, so its uid is never given to another site.
pub fn lock(name: &str, uid: u32) -> Result<(), String> {
    let out = admin_tool("usermod")
        .args(["--lock", "--expiredate", "1", "--shell", NOLOGIN, name])
        .output()
        .map_err(|e| format!("cannot run usermod: {e}"))?;
    kill_all(Some(uid));
    if !out.status.success() {
        return Err(format!(
            "usermod --lock {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// SIGKILL every process of `uid`: `kill(-1)` from a child running as that uid reaches all of
/// them at once (new forks included); repeated while any is left.
pub fn kill_all(uid: Option<u32>) {
    let Some(uid) = uid.filter(|&u| u >= 1000) else { return };
    for _ in 0..5 {
        if !any_process_of(uid) {
            return;
        }
        use std::os::unix::process::CommandExt;
        let _ = Command::new("/bin/sh")
            .args(["-c", "kill -KILL -1"])
            .env_clear()
            .uid(uid)
            .gid(uid)
            .status();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::error!(uid, "processes of the site's user survive SIGKILL");
}

fn any_process_of(uid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).any(|pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let ids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap_or_default();
        ids.split_whitespace().any(|n| n.parse() == Ok(uid))
    })
}

/// `useradd`, `usermod`, `userdel` with a clean environment.
fn admin_tool(name: &str) -> Command {
    let mut c = Command::new(format!("/usr/sbin/{name}"));
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("LANG", "C");
    c
}

/// The numeric ids (third field) of a passwd or group file.
fn ids_in(file: &str) -> BTreeSet<u32> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().filter_map(|l| l.split(':').nth(2)?.parse().ok()).collect()
}

fn lock_file() -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(LOCK_FILE)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_fit_in_32_characters() {
        assert_eq!(name_for("site-{name}", "acme").ok().as_deref(), Some("site-acme"));
        assert!(name_for("site-{name}", &"x".repeat(27)).is_ok());
        let e = name_for("site-{name}", &"x".repeat(28)).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("at most 27")));
    }
}
