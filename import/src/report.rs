//! The import report: one line per directive (or option) that was not translated, or was
//! translated with a change of behaviour, each with `file:line` and why.

use std::fmt;
use std::path::PathBuf;

use crate::conf::Directive;

/// How much a note matters to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Not translated: Paddock behaves differently until the operator acts.
    NotTranslated,
    /// Translated, but Paddock's behaviour differs in a way worth knowing.
    Changed,
    /// Not translated because Paddock needs no equivalent (access control it does itself,
    /// logging, modules, ...).
    Ignored,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::NotTranslated => "not translated",
            Kind::Changed => "translated with a difference",
            Kind::Ignored => "ignored",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: PathBuf,
    pub line: usize,
    /// The directive's name (with the option, for `WSGIDaemonProcess name option=`).
    pub directive: String,
    pub kind: Kind,
    pub why: String,
}

impl Note {
    pub fn new(d: &Directive, kind: Kind, why: impl Into<String>) -> Note {
        Note {
            file: d.file.clone(),
            line: d.line,
            directive: d.name.clone(),
            kind,
            why: why.into(),
        }
    }

    pub fn skipped(d: &Directive, why: impl Into<String>) -> Note {
        Note::new(d, Kind::NotTranslated, why)
    }

    pub fn changed(d: &Directive, why: impl Into<String>) -> Note {
        Note::new(d, Kind::Changed, why)
    }

    pub fn ignored(d: &Directive, why: impl Into<String>) -> Note {
        Note::new(d, Kind::Ignored, why)
    }

    /// The same note about one option of the directive.
    pub fn option(mut self, option: &str) -> Note {
        self.directive = format!("{} {option}", self.directive);
        self
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}: {}",
            self.file.display(),
            self.line,
            self.directive,
            self.kind.label(),
            self.why
        )
    }
}

/// The report's text: a header, then the notes by kind (what needs action first), each kind in
/// file order.
pub fn render(notes: &[Note], inputs: &[PathBuf]) -> String {
    let mut sorted: Vec<&Note> = notes.iter().collect();
    sorted.sort_by(|a, b| (a.kind, &a.file, a.line).cmp(&(b.kind, &b.file, b.line)));
    sorted.dedup_by(|a, b| a == b);
    let mut out = String::from("# paddock import-apache report\n# read:");
    for i in inputs {
        out.push(' ');
        out.push_str(&i.display().to_string());
    }
    out.push('\n');
    out.push_str(&format!("# {}\n", summary(notes)));
    for n in sorted {
        out.push_str(&n.to_string());
        out.push('\n');
    }
    out
}

/// `N not translated, N translated with a difference, N ignored`.
pub fn summary(notes: &[Note]) -> String {
    let count = |k: Kind| notes.iter().filter(|n| n.kind == k).count();
    format!(
        "{} not translated, {} translated with a difference, {} ignored",
        count(Kind::NotTranslated),
        count(Kind::Changed),
        count(Kind::Ignored)
    )
}
