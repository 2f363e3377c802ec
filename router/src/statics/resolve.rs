//! From the path below a static prefix to an open file, never outside the root.
//!
//! The path is checked segment by segment (no `.`, `..`, dotfiles, NUL). A root inside a
//! tenant directory is the tenant's: the root is reached from the tenant directory and the
//! file from the root with no symlink at all (`openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, see [`paddock_sys::safefs`]), so an `htdocs -> /etc` publishes nothing.
//! A root outside every tenant directory is the operator's (Trac's own `htdocs`): the path is
//! joined to it and resolved with `canonicalize`, and the result must still lie under the
//! canonical root, so a symlink pointing out of the root is refused. Resolving and opening
//! are two steps there; a directory swapped for a symlink between them could redirect the
//! open, so the opened file's real path is checked again through `/proc/self/fd`.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;

use paddock_sys::safefs::{self, Place};

/// Why a file is not served. Every variant is a 404 to the client (no listing, no hint).
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    #[error("the path names a directory")]
    Directory,
    #[error("a path segment starts with `.` (hidden files are not served)")]
    Hidden,
    #[error("invalid path segment (`.`, `..` or NUL)")]
    BadSegment,
    #[error("the file resolves outside the static root")]
    Outside,
    #[error("not a regular file")]
    NotFile,
    #[error("the file is not readable by everyone (mode o+r)")]
    NotWorldReadable,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A file opened for serving, with the metadata of the open descriptor.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
}

/// Open `rest` (the request path below the prefix, `/css/trac.css`) under `root`.
/// Blocking: call it off the async threads.
pub fn open(root: &Place, rest: &[u8]) -> Result<Opened, Miss> {
    let relative = relative(rest)?;
    match root {
        Place::Operator(root) => open_operator(root, &relative),
        tenant => open_tenant(tenant, &relative),
    }
}

/// A root in a tenant directory: no symlink from the tenant directory to the file.
fn open_tenant(root: &Place, relative: &Path) -> Result<Opened, Miss> {
    let dir = safefs::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let file = File::from(safefs::below(&dir, relative, OFlag::O_RDONLY)?);
    let meta = file.metadata()?;
    servable(file, meta)
}

fn open_operator(root: &Path, relative: &Path) -> Result<Opened, Miss> {
    let root = std::fs::canonicalize(root)?;
    let canonical = std::fs::canonicalize(root.join(relative))?;
    let inside = canonical.strip_prefix(&root).map_err(|_| Miss::Outside)?;
    if inside.as_os_str().is_empty() {
        return Err(Miss::Directory);
    }
    // A symlink inside the root may point at a dotfile inside it (`a.css -> .git/config`).
    if inside.components().any(|c| matches!(c, Component::Normal(n) if hidden(n))) {
        return Err(Miss::Hidden);
    }
    // O_NONBLOCK: a FIFO planted under the root must not hang the open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&canonical)?;
    let meta = file.metadata()?;
    if !opened_inside(&file, &meta, &canonical, &root) {
        return Err(Miss::Outside);
    }
    servable(file, meta)
}

/// Only regular, world-readable files are served.
fn servable(file: File, meta: Metadata) -> Result<Opened, Miss> {
    if meta.is_dir() {
        return Err(Miss::Directory);
    }
    if !meta.is_file() {
        return Err(Miss::NotFile);
    }
    // The router may run as root; serving only what any local user could read keeps a
    // hard link to a private file (e.g. /etc/shadow, 0640) from being published.
    if meta.mode() & 0o004 == 0 {
        return Err(Miss::NotWorldReadable);
    }
    Ok(Opened { file, meta })
}

/// The segments of `rest` as a relative path; refuses what could leave or hide in the root.
fn relative(rest: &[u8]) -> Result<PathBuf, Miss> {
    if rest.contains(&0) {
        return Err(Miss::BadSegment);
    }
    if rest.ends_with(b"/") {
        return Err(Miss::Directory);
    }
    let mut path = PathBuf::new();
    for segment in rest.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if segment == b"." || segment == b".." {
            return Err(Miss::BadSegment);
        }
        let segment = OsStr::from_bytes(segment);
        if hidden(segment) {
            return Err(Miss::Hidden);
        }
        path.push(segment);
    }
    if path.as_os_str().is_empty() {
        return Err(Miss::Directory);
    }
    Ok(path)
}

fn hidden(name: &OsStr) -> bool {
    name.as_bytes().first() == Some(&b'.')
}

/// Where the open descriptor really points, checked against the root. Without `/proc`, the
/// descriptor must at least be the very file still found at `canonical`.
fn opened_inside(file: &File, meta: &Metadata, canonical: &Path, root: &Path) -> bool {
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(real) => real.starts_with(root) && real != root,
        Err(_) => std::fs::symlink_metadata(canonical)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_refuses_dots_dotfiles_nul_and_directories() {
        assert_eq!(relative(b"/css/trac.css").ok(), Some(PathBuf::from("css/trac.css")));
        assert_eq!(relative(b"//css//trac.css").ok(), Some(PathBuf::from("css/trac.css")));
        assert!(matches!(relative(b"/../etc/passwd"), Err(Miss::BadSegment)));
        assert!(matches!(relative(b"/css/./trac.css"), Err(Miss::BadSegment)));
        assert!(matches!(relative(b"/a\0b"), Err(Miss::BadSegment)));
        assert!(matches!(relative(b"/.htaccess"), Err(Miss::Hidden)));
        assert!(matches!(relative(b"/.git/config"), Err(Miss::Hidden)));
        assert!(matches!(relative(b"/css/"), Err(Miss::Directory)));
        assert!(matches!(relative(b""), Err(Miss::Directory)));
        assert!(matches!(relative(b"/"), Err(Miss::Directory)));
    }
}
