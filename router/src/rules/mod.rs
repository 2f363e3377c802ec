//! An Apache mod_rewrite-compatible rules engine.
//!
//! Operators move existing Apache configurations over by pasting their `RewriteCond` and
//! `RewriteRule` lines, so the semantics follow mod_rewrite in per-server context: the rule
//! pattern is tried first, then its conditions; `$N` and `%N` back-references; `[OR]`, `[NC]`, `!`;
//! the flags that make sense without a filesystem mapping. Everything is compiled once at load
//! time; evaluating a request is one bounded forward pass over the rules (no `[N]`, no `[C]`, no
//! recursion). See `docs/rules.md` for the user-facing description and the differences.
//!
//! File tests (`-f`, `-d`, `-s`) go through [`FileProbe`] so that rules can never look outside
//! the configured directories ([`FsProbe`]) and tests can substitute a fake.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

mod eval;
mod flags;
mod parse;
mod template;

pub use parse::{parse_apache, parse_rule};

use regex::bytes::Regex;
use template::Template;

use crate::safefs::Place;

/// An ordered list of compiled rules, evaluated top to bottom.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// One `RewriteRule` with the `RewriteCond`s that preceded it.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Where the rule was written, for `paddock check` and logs.
    file: PathBuf,
    line: usize,
    pattern: Regex,
    /// `!pattern`: the rule applies when the pattern does *not* match (and sets no `$N`).
    negate: bool,
    conds: Vec<Cond>,
    /// `None` for the `-` substitution (leave the path alone).
    substitution: Option<Template>,
    flags: RuleFlags,
    /// Whether any of the rule's strings reads `$N` / `%N`; when not, a plain match test
    /// replaces the (several times costlier) capture search. Worked out at first use.
    refs: std::sync::OnceLock<(bool, bool)>,
}

impl Rule {
    fn refs(&self) -> (bool, bool) {
        *self.refs.get_or_init(|| {
            let templates = self
                .conds
                .iter()
                .map(|c| &c.test)
                .chain(self.substitution.as_ref())
                .chain(&self.flags.env);
            templates.fold((false, false), |(r, c), t| {
                let (tr, tc) = t.refs();
                (r || tr, c || tc)
            })
        })
    }
}

#[derive(Debug, Clone, Default)]
struct RuleFlags {
    /// `L`, `END` and `PT` all end the pass: there is only one round in Paddock.
    last: bool,
    /// `F` (403) or `G` (410): answer directly, ignoring the substitution.
    status: Option<Action>,
    /// `R=code`; a substitution that is an absolute URL redirects with 302 even without it.
    redirect: Option<u16>,
    /// `E=...` items, each expanded whole and then split at the first `:`, as Apache does.
    env: Vec<Template>,
    qs_append: bool,
    qs_discard: bool,
    /// `QSL`: split the substitution's query at the last `?` instead of the first.
    qs_last: bool,
    no_escape: bool,
}

/// One `RewriteCond`.
#[derive(Debug, Clone)]
struct Cond {
    test: Template,
    pattern: CondPattern,
    negate: bool,
    or_next: bool,
}

#[derive(Debug, Clone)]
enum CondPattern {
    Regex(Regex),
    File(FileTest),
    /// `=`, `<`, `>`, `<=`, `>=`: Apache's lexical comparisons.
    Str {
        op: CmpOp,
        value: Vec<u8>,
        nocase: bool,
    },
    /// `-eq`, `-lt`, `-le`, `-gt`, `-ge` (and `-ne` as a negated `-eq`): integer comparisons.
    Int {
        op: CmpOp,
        value: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The file tests a `RewriteCond` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTest {
    /// `-f`: a regular file exists.
    File,
    /// `-d`: a directory exists.
    Dir,
    /// `-s`: a regular file of non-zero size exists.
    NonEmptyFile,
}

/// Answers file tests; the engine never touches the filesystem itself.
pub trait FileProbe {
    /// `path` is the expanded test string, raw bytes.
    fn test(&self, path: &[u8], kind: FileTest) -> bool;
}

/// The real [`FileProbe`], confined to `roots`.
///
/// A path answers `false` unless it is absolute and lexically inside a root (checked before
/// any system call). Below a tenant directory (an entry of `sites`, or a configured `dir`),
/// the tenant's, no symlink is followed ([`crate::safefs::stat`]: an `O_PATH` open, which
/// never blocks, and `fstat`). Elsewhere the path must still be inside once symlinks are
/// resolved; the final test then runs on the resolved path without following a last-moment
/// symlink.
#[derive(Debug, Clone, Default)]
pub struct FsProbe {
    pub roots: Vec<PathBuf>,
    /// `roots` with symlinks resolved, once: a root that did not exist then is resolved at
    /// each test instead, until the next reload.
    canonical: Vec<PathBuf>,
    sites: Option<PathBuf>,
    tenant_dirs: Vec<PathBuf>,
}

/// What the router knows about a request, borrowed for one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The normalised, percent-decoded path (no query): `%{REQUEST_URI}` and the rule subject.
    pub path: &'a [u8],
    /// The raw query string without `?`: `%{QUERY_STRING}`.
    pub query: &'a [u8],
    pub method: &'a [u8],
    /// `%{HTTP_HOST}`: the Host header (or the authority of an absolute-form target).
    pub host: &'a [u8],
    pub headers: &'a http::HeaderMap,
    pub remote_addr: &'a [u8],
    pub https: bool,
    pub server_name: &'a [u8],
    pub server_port: u16,
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Route the (possibly rewritten) path.
    Continue,
    /// `[F]`: answer 403.
    Forbidden,
    /// `[G]`: answer 410.
    Gone,
    /// `[R]` or an absolute-URL substitution; `location` is ready for the header.
    Redirect { status: u16, location: Vec<u8> },
}

/// The result of [`RuleSet::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    /// The path after internal rewrites, dot segments resolved; the request path if none.
    pub path: Vec<u8>,
    /// The query string after rewrites (`?` in a substitution, `QSA`, `QSD`).
    pub query: Vec<u8>,
    /// Variables set with `E=`, in the order first set; setting a name again (names compare
    /// case-insensitively, as Apache's environment does) replaces its value in place.
    pub vars: Vec<(String, Vec<u8>)>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Self {
        RuleSet { rules }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules on a request; at most one step per rule, never recursive.
    pub fn evaluate(&self, req: &RequestInfo<'_>, probe: &dyn FileProbe) -> Outcome {
        eval::evaluate(&self.rules, req, probe)
    }
}

impl Extend<Rule> for RuleSet {
    fn extend<I: IntoIterator<Item = Rule>>(&mut self, iter: I) {
        self.rules.extend(iter);
    }
}

impl IntoIterator for RuleSet {
    type Item = Rule;
    type IntoIter = std::vec::IntoIter<Rule>;

    fn into_iter(self) -> Self::IntoIter {
        self.rules.into_iter()
    }
}

impl Rule {
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line of the `RewriteRule` (or of the `[[rules]]` table in TOML).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The pattern as written, without a leading `!`.
    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }
}

impl Outcome {
    /// The value of a variable set with `E=`; names compare case-insensitively.
    pub fn var(&self, name: &str) -> Option<&[u8]> {
        self.vars.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

impl FsProbe {
    /// Confined to `roots`, none of them known as tenant directories.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        let canonical = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect();
        FsProbe { roots, canonical, sites: None, tenant_dirs: Vec::new() }
    }

    /// Confined to the configuration's roots, knowing which directories are tenants'.
    pub fn for_config(cfg: &crate::config::Config) -> Self {
        let dirs = cfg.tenants.values().filter_map(|t| t.dir.as_deref());
        let tenant_dirs = dirs.filter_map(crate::path::lexical_normalise).collect();
        FsProbe { sites: cfg.sites.clone(), tenant_dirs, ..FsProbe::new(cfg.file_roots.clone()) }
    }

    /// Where trust ends for `path`, if it lies in a tenant directory.
    fn tenant_place(&self, path: &Path) -> Option<Place> {
        let norm = crate::path::lexical_normalise(path)?;
        let dir = self.tenant_dirs.iter().find(|d| norm.starts_with(d));
        match Place::of(&norm, dir.map(PathBuf::as_path), self.sites.as_deref()) {
            Place::Operator(_) => None,
            place => Some(place),
        }
    }
}

fn kind_matches(meta: &std::fs::Metadata, kind: FileTest) -> bool {
    match kind {
        FileTest::File => meta.is_file(),
        FileTest::Dir => meta.is_dir(),
        FileTest::NonEmptyFile => meta.is_file() && meta.len() > 0,
    }
}

impl FileProbe for FsProbe {
    fn test(&self, path: &[u8], kind: FileTest) -> bool {
        let path = Path::new(OsStr::from_bytes(path));
        if !crate::path::lexically_within(path, &self.roots) {
            return false;
        }
        if let Some(place) = self.tenant_place(path) {
            return crate::safefs::stat(&place).is_ok_and(|m| kind_matches(&m, kind));
        }
        let resolved = if self.canonical.len() == self.roots.len() {
            crate::path::resolve_within_canonical(path, &self.roots, &self.canonical)
        } else {
            crate::path::resolve_within(path, &self.roots)
        };
        let Some(resolved) = resolved else { return false };
        // `resolved` has no symlinks left; symlink_metadata refuses one swapped in since.
        std::fs::symlink_metadata(&resolved).is_ok_and(|m| kind_matches(&m, kind))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_parse;
