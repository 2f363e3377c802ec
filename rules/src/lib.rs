//! An Apache mod_rewrite-compatible rules engine.
//!
//! Operators move existing Apache configurations over by pasting their `RewriteCond` and
//! `RewriteRule` lines, so the semantics follow mod_rewrite in per-server context: the rule
//! pattern is tried first, then its conditions; `$N` and `%N` back-references; `[OR]`, `[NC]`, `!`;
//! the flags that make sense without a filesystem mapping. Everything is compiled once at load
//! time; evaluating a request is one bounded forward pass over the rules (no `[N]`, no `[C]`, no
//! recursion). See `docs/rules.md` for the user-facing description and the differences.
//!
//! File tests (`-f`, `-d`, `-s`) go through [`FileProbe`]: the engine never touches the
//! filesystem itself, so the router decides where a test may look (its `FsProbe`, confined to
//! the configured directories) and tests substitute a fake.
//!
//! This crate has no runtime and no I/O but what a [`FileProbe`] or [`path::resolve_within`]
//! does: it is what the `rules` and `path` fuzz targets drive.

use std::path::{Path, PathBuf};

pub mod diag;
mod eval;
mod flags;
mod parse;
pub mod path;
mod template;

pub use parse::{parse_apache, parse_rule, NEST_LIMIT};

use regex::bytes::Regex;
use template::Template;

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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_parse;
