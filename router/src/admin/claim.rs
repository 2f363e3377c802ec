//! The claim of a new site's name: `<sites>/.creating-NAME`, made with `mkdir` (atomic: of two
//! signups for one name exactly one gets it) and opened by root at once.
//!
//! The directory is handed to the site's user before provisioning, so whatever is inside is
//! the user's to change at any moment. Root therefore never acts on a path inside it: files
//! root writes are created through the directory's descriptor (`O_EXCL|O_NOFOLLOW`) and
//! changed through their own descriptor (`fchown`, `fchmod`), and the marker is looked up
//! beneath the descriptor with no symlink followed. `<sites>` itself is root's, so the claim's
//! own path cannot be swapped.
//!
//! A claim not committed is renamed away (at once freeing the name and leaving no
//! `.creating-*`), then removed; the site's own user, if one was made, loses its processes
//! first and is then removed, or locked if any of its files could not be removed.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{fchown, Gid, Uid};

use super::error::{internal, SignupError};
use super::siteuser;
use paddock_sys::Creds;

/// Mode of a claim and of the site directory it becomes: private to the site's user and group.
const DIR_MODE: u32 = 0o750;

/// Names being created by this server (one set per admin listener); a [`Claim`] holds its
/// name in it until it is dropped.
#[derive(Clone, Default)]
pub struct Claims(Arc<Mutex<BTreeSet<String>>>);

impl Claims {
    fn names(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `<sites>/.creating-NAME`, discarded on drop unless committed.
pub struct Claim {
    name: String,
    sites: PathBuf,
    pub dir: PathBuf,
    fd: OwnedFd,
    /// The site's own user, made for this signup: `(name, uid)`.
    user: Option<(String, u32)>,
    committed: bool,
    claims: Claims,
}

impl Claim {
    pub fn take(claims: &Claims, sites: &Path, name: &str) -> Result<Claim, SignupError> {
        if !claims.names().insert(name.to_string()) {
            return Err(SignupError::Taken(name.into()));
        }
        let dir = sites.join(format!(".creating-{name}"));
        let made = match mkdir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Not ours (we hold the name): left behind by a paddock that died mid-signup.
                tracing::warn!(dir = %dir.display(), "removing a signup directory left behind");
                discard(sites, &dir, name);
                mkdir(&dir)
            }
            r => r,
        };
        let opened = made.and_then(|()| open_dir(&dir));
        match opened {
            Ok(fd) => Ok(Claim {
                name: name.into(),
                sites: sites.to_path_buf(),
                dir,
                fd,
                user: None,
                committed: false,
                claims: claims.clone(),
            }),
            Err(e) => {
                claims.names().remove(name);
                Err(internal(format!("cannot create {}: {e}", dir.display())))
            }
        }
    }

    /// Create the site's own user (blocking: useradd), to be removed if the signup fails.
    pub async fn new_user(
        &mut self,
        user: &str,
        range: (u32, u32),
        home: &Path,
    ) -> Result<Creds, SignupError> {
        let (u, site, home) = (user.to_string(), self.name.clone(), home.to_path_buf());
        let creds = tokio::task::spawn_blocking(move || siteuser::create(&u, &site, &home, range))
            .await
            .map_err(|e| internal(format!("useradd task failed: {e}")))??;
        self.user = Some((user.to_string(), creds.uid));
        Ok(creds)
    }

    /// Give the claim to the site's user: through its descriptor, never its path.
    pub fn hand_over(&self, c: &Creds) -> Result<(), SignupError> {
        fchown(self.fd.as_raw_fd(), Some(Uid::from_raw(c.uid)), Some(Gid::from_raw(c.gid)))
            .map_err(|e| internal(format!("cannot chown {}: {e}", self.dir.display())))
    }

    /// Whether `rel` is a regular file inside the claim, found without following any symlink.
    pub fn has_file(&self, rel: &Path) -> bool {
        paddock_sys::safefs::below(&self.fd, rel, OFlag::O_PATH)
            .ok()
            .and_then(|f| fstat(f.as_raw_fd()).ok())
            .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    }

    /// Create `name` (which must not exist) with `text`, mode 0640, owned by `owner`.
    pub fn write_new(&self, name: &str, text: &str, owner: Option<&Creds>) -> std::io::Result<()> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
        let mode = Mode::from_bits_truncate(0o640);
        let fd = paddock_sys::openat(Some(self.fd.as_fd()), Path::new(name), flags, mode)?;
        if let Some(c) = owner {
            fchown(fd.as_raw_fd(), Some(Uid::from_raw(c.uid)), Some(Gid::from_raw(c.gid)))?;
        }
        fchmod(fd.as_raw_fd(), mode)?;
        let mine = fstat(fd.as_raw_fd())?;
        std::fs::File::from(fd).write_all(text.as_bytes())?;
        // The user may have replaced the file meanwhile: then the site would not have ours.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW;
        let now = paddock_sys::openat(Some(self.fd.as_fd()), Path::new(name), flags, Mode::empty())
            .and_then(|f| Ok(fstat(f.as_raw_fd())?));
        match now {
            Ok(st) if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino) => Ok(()),
            _ => Err(std::io::Error::other("it was replaced while it was written")),
        }
    }

    /// Rename into place, never replacing what is there.
    pub fn commit(mut self, to: &Path) -> Result<(), SignupError> {
        use nix::fcntl::{renameat2, RenameFlags};
        match renameat2(None, &self.dir, None, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(nix::errno::Errno::EEXIST) => Err(SignupError::Taken(self.name.clone())),
            Err(e) => Err(internal(format!(
                "cannot rename {} to {}: {e}",
                self.dir.display(),
                to.display()
            ))),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.committed {
            // Its processes could keep writing while the directory is removed.
            siteuser::kill_all(self.user.as_ref().map(|u| u.1));
            let removed = discard(&self.sites, &self.dir, &self.name);
            match &self.user {
                Some((user, _)) if removed => siteuser::remove(user),
                Some((user, uid)) => {
                    if let Err(e) = siteuser::lock(user, *uid) {
                        tracing::error!(user = %user, "{e}");
                    }
                }
                None => {}
            }
        }
        self.claims.names().remove(&self.name);
    }
}

fn mkdir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(DIR_MODE).create(dir)
}

/// Root's descriptor of the claim, opened right after the mkdir, and the claim made private.
fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
    let parent = std::fs::File::open(dir.parent().unwrap_or(Path::new("/")))?;
    let name = Path::new(dir.file_name().unwrap_or_default());
    let fd = paddock_sys::openat(Some(parent.as_fd()), name, flags, Mode::empty())?;
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(DIR_MODE))?;
    Ok(fd)
}

/// Rename `dir` out of the way (atomic: no `.creating-*` stays), then remove it; false if
/// anything of it is left.
fn discard(sites: &Path, dir: &Path, name: &str) -> bool {
    use nix::fcntl::{renameat2, RenameFlags};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let away = sites.join(format!(".removing-{name}.{}.{n}", std::process::id()));
    let target = match renameat2(None, dir, None, &away, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => away,
        Err(nix::errno::Errno::ENOENT) => return true,
        Err(e) => {
            tracing::error!(dir = %dir.display(), "cannot move a failed signup's directory away: {e}");
            dir.to_path_buf()
        }
    };
    // std's remove_dir_all follows no symlink.
    match std::fs::remove_dir_all(&target) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(dir = %target.display(), "cannot remove a failed signup's directory: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_cleaned_up() {
        let sites = tempfile::tempdir().expect("tempdir");
        let claims = Claims::default();
        let a = Claim::take(&claims, sites.path(), "one").expect("first claim");
        assert!(matches!(Claim::take(&claims, sites.path(), "one"), Err(SignupError::Taken(_))));
        std::fs::write(a.dir.join("junk"), "x").expect("write");
        drop(a);
        let left: Vec<_> = std::fs::read_dir(sites.path()).expect("read").collect();
        assert!(left.is_empty(), "failed claim removed: {left:?}");
        // Left behind by a crash: taken over.
        std::fs::create_dir(sites.path().join(".creating-two")).expect("mkdir");
        let b = Claim::take(&claims, sites.path(), "two").expect("stale claim taken over");
        std::fs::create_dir(sites.path().join("two")).expect("mkdir");
        std::fs::write(sites.path().join("two/x"), "x").expect("write");
        assert!(matches!(b.commit(&sites.path().join("two")), Err(SignupError::Taken(_))));
        assert!(!sites.path().join(".creating-two").exists());
        let c = Claim::take(&claims, sites.path(), "three").expect("claim");
        c.commit(&sites.path().join("three")).expect("commit");
        assert!(sites.path().join("three").is_dir());
    }

    #[test]
    fn files_are_written_through_the_claim_and_never_through_a_symlink() {
        let sites = tempfile::tempdir().expect("tempdir");
        let claims = Claims::default();
        let c = Claim::take(&claims, sites.path(), "files").expect("claim");
        let outside = sites.path().join("outside");
        std::fs::write(&outside, "keep").expect("write");
        std::os::unix::fs::symlink(&outside, c.dir.join("htpasswd")).expect("symlink");
        assert!(c.write_new("htpasswd", "x\n", None).is_err(), "a symlink is not followed");
        assert_eq!(std::fs::read_to_string(&outside).expect("read"), "keep");
        c.write_new("other", "alice:hash\n", None).expect("write");
        assert_eq!(std::fs::read_to_string(c.dir.join("other")).expect("read"), "alice:hash\n");
        std::fs::create_dir(c.dir.join("conf")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, c.dir.join("conf/trac.ini")).expect("symlink");
        assert!(!c.has_file(Path::new("conf/trac.ini")), "a symlinked marker does not count");
        std::fs::remove_file(c.dir.join("conf/trac.ini")).expect("rm");
        std::fs::write(c.dir.join("conf/trac.ini"), "").expect("write");
        assert!(c.has_file(Path::new("conf/trac.ini")));
    }

    /// The set was a process-wide static: a name held by one server was taken for another.
    #[test]
    fn each_server_has_its_own_claims() {
        let (one, two) = (Claims::default(), Claims::default());
        let (s1, s2) =
            (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let a = Claim::take(&one, s1.path(), "same").expect("claim on server one");
        let b = Claim::take(&two, s2.path(), "same").expect("the same name on server two");
        assert!(matches!(Claim::take(&one, s2.path(), "same"), Err(SignupError::Taken(_))));
        drop(a);
        assert!(one.names().is_empty() && two.names().len() == 1);
        drop(b);
        assert!(two.names().is_empty());
    }
}
