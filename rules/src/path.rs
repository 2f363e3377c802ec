//! Request-target normalisation and the SCRIPT_NAME / PATH_INFO split.
//!
//! Routing decisions are made on the *normalised* path (percent-decoded, dot segments resolved,
//! duplicate slashes collapsed) so that `/trac/x/../y` cannot reach tenant `y` by accident, while
//! the application still receives the path *as sent* (PEP 3333). Because the two views can
//! disagree, [`split_mount`] re-checks the raw bytes: a request whose raw path does not literally
//! name the mount that routing chose is refused, so `/trac/a%2fb` or `/trac/./demo/x` can never
//! smuggle a request into a tenant through encoding tricks.

use std::path::{Component, Path, PathBuf};

/// Why a request target was refused. Every variant is a client error (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty request target")]
    Empty,
    #[error("asterisk-form request target `*` is not routable")]
    Asterisk,
    #[error("request target must start with `/` or be an absolute http(s) URL")]
    NotAbsolutePath,
    #[error("request target contains a NUL byte")]
    Nul,
    #[error("request path does not literally name its mount point")]
    CrossesMount,
}

/// A parsed request target; all fields are raw bytes because paths need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The path exactly as sent, before `?`, still percent-encoded.
    pub raw_path: Vec<u8>,
    /// The query string as sent, without the `?` (empty when absent).
    pub query: Vec<u8>,
    /// `raw_path` percent-decoded; invalid escapes are kept literally, as Apache does.
    pub decoded: Vec<u8>,
    /// `decoded` with dot segments resolved and `//` collapsed; always starts with `/`.
    pub normalised: Vec<u8>,
}

/// SCRIPT_NAME and PATH_INFO for a request whose raw path names its mount point literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSplit {
    /// The mount point, e.g. `/trac/demo-1`, or empty for a site mounted at the root.
    pub script_name: Vec<u8>,
    /// The decoded rest of the path as sent (no dot-segment rewriting), possibly empty.
    pub path_info: Vec<u8>,
}

impl Target {
    /// Parses an origin-form (`/path?query`) or absolute-form (`http://host/path`) target.
    pub fn parse(raw: &[u8]) -> Result<Target, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw == b"*" {
            return Err(PathError::Asterisk);
        }
        let origin = strip_scheme_and_authority(raw)?;
        let (raw_path, query) = match origin.iter().position(|&b| b == b'?') {
            Some(q) => (&origin[..q], &origin[q + 1..]),
            None => (origin, &b""[..]),
        };
        // Absolute-form with an empty path means "/" (RFC 9112, 3.2.2).
        let raw_path = if raw_path.is_empty() { &b"/"[..] } else { raw_path };
        if raw_path.contains(&0) {
            return Err(PathError::Nul);
        }
        let decoded = percent_decode(raw_path);
        if decoded.contains(&0) {
            return Err(PathError::Nul);
        }
        let normalised = normalise(&decoded);
        Ok(Target { raw_path: raw_path.to_vec(), query: query.to_vec(), decoded, normalised })
    }
}

/// Returns the origin-form part (`/path?query`) of a target, rejecting anything else.
fn strip_scheme_and_authority(raw: &[u8]) -> Result<&[u8], PathError> {
    if raw.first() == Some(&b'/') {
        return Ok(raw);
    }
    for scheme in [&b"http://"[..], &b"https://"[..]] {
        if raw.len() >= scheme.len() && raw[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &raw[scheme.len()..];
            let end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
            return Ok(&rest[end..]);
        }
    }
    Err(PathError::NotAbsolutePath)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits is kept as is (Apache's way).
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let hi = input.get(i + 1).and_then(|&h| hex_value(h));
        let lo = input.get(i + 2).and_then(|&l| hex_value(l));
        match (b, hi, lo) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// RFC 3986 `remove_dot_segments` plus collapsing of empty segments; `..` stops at `/`.
///
/// The result always starts with `/` and never contains `//`, `/./` or `/../`, nor ends in
/// `/.` or `/..`. A trailing slash is kept when the input ended with `/`, `/.` or `/..`, as
/// RFC 3986 does, because `/wiki/` and `/wiki` may mean different things to an application.
pub fn normalise(path: &[u8]) -> Vec<u8> {
    let mut stack: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split(|&b| b == b'/') {
        trailing_slash = matches!(segment, b"" | b"." | b"..");
        match segment {
            b"" | b"." => {}
            b".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for segment in &stack {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    out
}

/// Splits `target` at `mount` (`/trac/demo-1`, or empty / `/` for the root) after checking that
/// the raw path names every mount segment literally and that the normalised path agrees.
///
/// Each of the first k non-empty raw segments, once decoded, must equal the k-th mount segment
/// and must be neither `.` nor `..` nor contain `/`; otherwise routing (done on the normalised
/// path) and the application (which sees the raw path) could disagree on the tenant.
pub fn split_mount(target: &Target, mount: &[u8]) -> Result<MountSplit, PathError> {
    let mount_segments: Vec<&[u8]> =
        mount.split(|&b| b == b'/').filter(|s| !s.is_empty()).collect();
    if !normalised_starts_with(&target.normalised, &mount_segments) {
        return Err(PathError::CrossesMount);
    }
    let raw = &target.raw_path;
    let mut pos = 0;
    for expected in &mount_segments {
        while raw.get(pos) == Some(&b'/') {
            pos += 1;
        }
        let end = raw[pos..].iter().position(|&b| b == b'/').map_or(raw.len(), |e| pos + e);
        let segment = percent_decode(&raw[pos..end]);
        if segment.is_empty()
            || segment == b"."
            || segment == b".."
            || segment.contains(&b'/')
            || segment != *expected
        {
            return Err(PathError::CrossesMount);
        }
        pos = end;
    }
    // Slashes that only separate the mount from the rest are routing, not the app's path:
    // `//trac//demo-1//wiki` gives PATH_INFO `/wiki`, as Apache's MergeSlashes would. Within
    // the rest, and for an app at the root, the path stays exactly as sent.
    if !mount_segments.is_empty() {
        while raw.get(pos..pos + 2) == Some(b"//") {
            pos += 1;
        }
    }
    let mut script_name = Vec::with_capacity(mount.len());
    for segment in &mount_segments {
        script_name.push(b'/');
        script_name.extend_from_slice(segment);
    }
    Ok(MountSplit { script_name, path_info: percent_decode(&raw[pos..]) })
}

fn normalised_starts_with(normalised: &[u8], mount_segments: &[&[u8]]) -> bool {
    let mut segments = normalised.split(|&b| b == b'/').filter(|s| !s.is_empty());
    mount_segments.iter().all(|m| segments.next() == Some(*m))
}

/// Resolves `.` and `..` without touching the filesystem; `None` for a relative path.
pub fn lexical_normalise(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// True when `path`, with `.` and `..` resolved lexically, lies inside one of `roots`.
///
/// Relative paths (and relative roots) are never inside: a rule must not depend on the current
/// directory. No filesystem access happens here.
pub fn lexically_within(path: &Path, roots: &[PathBuf]) -> bool {
    let Some(path) = lexical_normalise(path) else { return false };
    roots.iter().filter_map(|root| lexical_normalise(root)).any(|root| path.starts_with(&root))
}

/// Canonical forms of the roots that exist; a missing root contains nothing.
fn canonical_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots.iter().filter_map(|root| std::fs::canonicalize(root).ok()).collect()
}

/// Like [`lexically_within`], and also requires the canonical form of `path` (symlinks
/// resolved) to lie inside the canonical form of a root. Returns that canonical path, or `None`
/// when the path is outside the roots or does not exist.
///
/// Callers should act on the returned path, not on `path`, so that a symlink swapped in later
/// affects at most the final component (which they can check with `symlink_metadata`).
pub fn resolve_within(path: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    resolve_within_canonical(path, roots, &canonical_roots(roots))
}

/// [`resolve_within`] with the canonical forms of `roots` computed beforehand (they cost a
/// `realpath` each; a prober that runs per request keeps them).
pub fn resolve_within_canonical(
    path: &Path,
    roots: &[PathBuf],
    canonical_roots: &[PathBuf],
) -> Option<PathBuf> {
    if !lexically_within(path, roots) {
        return None;
    }
    let canonical = std::fs::canonicalize(path).ok()?;
    canonical_roots.iter().any(|root| canonical.starts_with(root)).then_some(canonical)
}

/// True when `path` is lexically inside `roots` and its nearest existing ancestor (the path
/// itself when it exists) is still inside once symlinks are resolved.
///
/// Checking the ancestor matters for paths that do not exist yet: `root/link/new` must be
/// refused when `root/link` points outside, since creating `new` would create it out there.
pub fn checked_within(path: &Path, roots: &[PathBuf]) -> bool {
    if !lexically_within(path, roots) {
        return false;
    }
    let roots = canonical_roots(roots);
    let mut probe = Some(path);
    while let Some(candidate) = probe {
        if std::fs::symlink_metadata(candidate).is_ok() {
            // A dangling symlink fails to canonicalize and so is refused.
            return std::fs::canonicalize(candidate)
                .is_ok_and(|c| roots.iter().any(|root| c.starts_with(root)));
        }
        probe = candidate.parent();
    }
    false
}

#[cfg(test)]
mod tests;
