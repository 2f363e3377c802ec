//! Root-side file access on tenant paths.
//!
//! The router often runs as root, and a tenant controls everything inside its own directory
//! (`<sites>/<name>` or a configured `dir`). A path there is never resolved the ordinary way:
//! the tenant directory itself (made by the operator, possibly an operator's symlink) is the
//! trusted base, and the rest is resolved beneath it with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (or, on kernels without openat2, one `openat(O_NOFOLLOW)` per
//! component). Every open has `O_NONBLOCK`, so a FIFO cannot hang it; reads `fstat` that the
//! descriptor is a regular file and stop at a cap. Paths outside every tenant directory belong
//! to the operator: their last component is still opened with `O_NOFOLLOW | O_NONBLOCK`.
//!
//! Opening and reading block (a disk, not a peer): callers run them off the async threads.
//! [`stat`] and [`is_file`] only take an `O_PATH` descriptor, which never opens the file
//! itself (no FIFO wait, no device open): cheap enough for the request path.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::sys;

/// Largest `conf/trac.ini` the index page reads.
pub const TRAC_INI_CAP: u64 = 64 * 1024;
/// Largest htpasswd file read (about 10,000 bcrypt entries).
pub const HTPASSWD_CAP: u64 = 1024 * 1024;

/// Where trust in a path ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Inside a tenant directory: `base` is opened normally, `rel` with no symlinks.
    Beneath { base: PathBuf, rel: PathBuf },
    /// Outside every tenant directory: the operator's.
    Operator(PathBuf),
}

impl Place {
    /// Classify `path` (lexically, `..` folded): below `tenant_dir`, or below an entry of
    /// `sites` (any tenant's directory), or the operator's.
    pub fn of(path: &Path, tenant_dir: Option<&Path>, sites: Option<&Path>) -> Place {
        let Some(norm) = paddock_rules::path::lexical_normalise(path) else {
            return Place::Operator(path.to_path_buf());
        };
        let norm_dir = tenant_dir.and_then(paddock_rules::path::lexical_normalise);
        if let Some(dir) = norm_dir.filter(|d| norm.starts_with(d)) {
            let rel = norm.strip_prefix(&dir).unwrap_or(Path::new("")).to_path_buf();
            return Place::Beneath { base: dir, rel };
        }
        if let Some(sites) = sites.and_then(paddock_rules::path::lexical_normalise) {
            if let Ok(inside) = norm.strip_prefix(&sites) {
                let mut parts = inside.components();
                if let Some(Component::Normal(name)) = parts.next() {
                    let rel = parts.as_path().to_path_buf();
                    return Place::Beneath { base: sites.join(name), rel };
                }
            }
        }
        Place::Operator(norm)
    }

    /// A path below a trusted directory, e.g. a tenant's `conf/trac.ini`.
    pub fn beneath(base: &Path, rel: impl AsRef<Path>) -> Place {
        Place::Beneath { base: base.to_path_buf(), rel: rel.as_ref().to_path_buf() }
    }

    /// The whole path, for messages.
    pub fn path(&self) -> PathBuf {
        match self {
            Place::Beneath { base, rel } => base.join(rel),
            Place::Operator(p) => p.clone(),
        }
    }
}

/// Set once openat2 answered ENOSYS: use the component walk from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Open `place` with `flags` (plus `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`). A symlink as last
/// component is refused (ELOOP), except with `O_PATH`, which returns the link itself.
pub fn open(place: &Place, flags: OFlag) -> io::Result<OwnedFd> {
    let flags = safe_flags(flags);
    let r = match place {
        Place::Operator(p) => sys::openat(None, p, flags, Mode::empty()),
        Place::Beneath { base, rel } => open_beneath(base, rel, flags),
    };
    r.map_err(|e| explain(e, place))
}

fn open_beneath(base: &Path, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return sys::openat(None, base, flags & !OFlag::O_NOFOLLOW, Mode::empty());
    }
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if plain && !NO_OPENAT2.load(Ordering::Relaxed) {
        // One syscall when no symlink is on the whole path (the usual case); a symlink
        // anywhere (perhaps the operator's, above the base) takes the two-step way.
        let whole = base.join(rel);
        match sys::openat2(None, &whole, how(flags, ResolveFlag::empty())) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed)
            }
            r => return r,
        }
    }
    let dir = sys::openat(
        None,
        base,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    below(&dir, rel, flags)
}

/// Open `rel` beneath the directory `dir`: no symlink, no `..` out of it (flags as
/// [`open`]).
pub fn below(dir: &OwnedFd, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let flags = safe_flags(flags);
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match sys::openat2(Some(dir.as_fd()), rel, how(flags, ResolveFlag::RESOLVE_BENEATH)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed)
            }
            r => return r,
        }
    }
    walk(dir, rel, flags)
}

/// `O_NOFOLLOW | O_CLOEXEC`, and `O_NONBLOCK` unless `O_PATH` (which opens nothing, and
/// with which openat2 refuses any other flag).
fn safe_flags(flags: OFlag) -> OFlag {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    if flags.contains(OFlag::O_PATH) {
        flags
    } else {
        flags | OFlag::O_NONBLOCK
    }
}

fn how(flags: OFlag, extra: ResolveFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags)
        .resolve(extra | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The openat2 fallback: one `openat(O_NOFOLLOW)` per component, `..` refused outright.
pub(crate) fn walk(dir: &OwnedFd, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let names: Vec<&OsStr> = rel
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::from_raw_os_error(libc::EXDEV)),
        })
        .collect::<io::Result<_>>()?;
    let Some((last, middle)) = names.split_last() else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let step = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut at: Option<OwnedFd> = None;
    for name in middle {
        let parent = at.as_ref().unwrap_or(dir).as_fd();
        let fd = sys::openat(Some(parent), Path::new(name), step, Mode::empty())?;
        match nix::sys::stat::fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {}
            libc::S_IFLNK => return Err(io::Error::from_raw_os_error(libc::ELOOP)),
            _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
        at = Some(fd);
    }
    sys::openat(Some(at.as_ref().unwrap_or(dir).as_fd()), Path::new(last), flags, Mode::empty())
}

/// Name the file and say why in plain words, keeping the error kind.
fn explain(e: io::Error, place: &Place) -> io::Error {
    let why = match e.raw_os_error() {
        Some(libc::ELOOP) => "a symbolic link is on the way (not followed)".to_string(),
        Some(libc::EXDEV) => "the path leaves its directory".to_string(),
        Some(libc::ENXIO) => "not a regular file (a socket or device)".to_string(),
        _ => return e,
    };
    io::Error::new(e.kind(), format!("{}: {why}", place.path().display()))
}

/// Metadata of `place` itself (a symlink at the end is described, not followed). Never opens
/// the file: an `O_PATH` descriptor, then `fstat` (3 syscalls with the close, when no symlink
/// is on the way).
pub fn stat(place: &Place) -> io::Result<Metadata> {
    File::from(open(place, OFlag::O_PATH)?).metadata()
}

/// `place` exists and is a regular file (not a symlink to one).
pub fn is_file(place: &Place) -> bool {
    stat(place).is_ok_and(|m| m.is_file())
}

/// Open `place` for reading, only if it is a regular file. Blocking: off the async threads.
pub fn open_file(place: &Place) -> io::Result<(File, Metadata)> {
    let file = File::from(open(place, OFlag::O_RDONLY)?);
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = kind_name(&meta);
        let msg = format!("{}: not a regular file ({what})", place.path().display());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    }
    Ok((file, meta))
}

/// The contents of the regular file at `place`, at most `cap` bytes (else an error saying
/// "larger than N bytes"), with the metadata of the descriptor read. Blocking.
pub fn read(place: &Place, cap: u64) -> io::Result<(Vec<u8>, Metadata)> {
    let (file, meta) = open_file(place)?;
    let too_big =
        || io::Error::other(format!("{}: larger than {cap} bytes", place.path().display()));
    if meta.len() > cap {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte past the cap tells a file that grew since the fstat.
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    Ok((bytes, meta))
}

fn kind_name(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_dir() => "a directory",
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_socket() => "a socket",
        _ if t.is_block_device() || t.is_char_device() => "a device",
        _ if t.is_symlink() => "a symbolic link",
        _ => "not a file",
    }
}

#[cfg(test)]
mod tests;
