//! Reading a whole Apache configuration: the files given, `Include`/`IncludeOptional` (globs,
//! directories, relative to `ServerRoot`), `Define`/`UnDefine` with `${NAME}` in later
//! arguments, `<IfDefine>` evaluated, `<IfModule>`/`<IfVersion>` taken as true (the
//! configuration being migrated ran with its modules). The result is one flat-in-order tree, as
//! httpd sees it after reading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::conf::{self, Directive};
use crate::report::Note;

/// Nesting of `Include`s (httpd stops at 128; a loop is caught sooner by the stack check).
const INCLUDE_DEPTH: usize = 32;
/// Files read in all, so a glob cannot make the import read a whole disk.
const MAX_FILES: usize = 4096;

/// Why the configuration could not be read: a file that cannot be read or does not parse.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// What reading produced.
#[derive(Debug, Default)]
pub struct Loaded {
    pub directives: Vec<Directive>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Things read but not understood (an undefined `${VAR}`, ...).
    pub notes: Vec<Note>,
}

struct Loader {
    /// Read the files `Include` names (false: note them instead; the fuzz target).
    follow: bool,
    server_root: PathBuf,
    defines: HashMap<String, String>,
    stack: Vec<PathBuf>,
    out: Loaded,
}

/// Read `files` in order (as httpd reads its main file), with `ServerRoot` initially the
/// directory of the first file.
pub fn load(files: &[PathBuf]) -> Result<Loaded, LoadError> {
    let root = files
        .first()
        .and_then(|f| f.parent())
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut l = Loader {
        follow: true,
        server_root: root,
        defines: HashMap::new(),
        stack: Vec::new(),
        out: Loaded::default(),
    };
    let mut all = Vec::new();
    for f in files {
        let mut d = l.file(f, None)?;
        all.append(&mut d);
    }
    l.out.directives = all;
    Ok(l.out)
}

/// Parse `text` as if it were file `file`; `Include`s are noted, not read (the fuzz target
/// reads no file it is told to).
pub fn load_text(text: &str, file: &Path, server_root: &Path) -> Result<Loaded, LoadError> {
    let mut l = Loader {
        follow: false,
        server_root: server_root.to_path_buf(),
        defines: HashMap::new(),
        stack: vec![file.to_path_buf()],
        out: Loaded::default(),
    };
    let parsed = conf::parse(text, file).map_err(|e| LoadError(e.to_string()))?;
    let d = l.expand(parsed)?;
    l.out.directives = d;
    Ok(l.out)
}

impl Loader {
    fn file(&mut self, path: &Path, from: Option<&Directive>) -> Result<Vec<Directive>, LoadError> {
        let at = from.map(|d| format!("{}: {}: ", d.at(), d.name)).unwrap_or_default();
        if self.stack.len() >= INCLUDE_DEPTH {
            return Err(LoadError(format!("{at}includes nested more than {INCLUDE_DEPTH} deep")));
        }
        if self.stack.iter().any(|p| p == path) {
            return Err(LoadError(format!("{at}{} includes itself", path.display())));
        }
        if self.out.files.len() >= MAX_FILES {
            return Err(LoadError(format!("{at}more than {MAX_FILES} files included")));
        }
        let text = std::fs::read(path)
            .map_err(|e| LoadError(format!("{at}cannot read {}: {e}", path.display())))?;
        // httpd reads bytes; a file that is not UTF-8 is read as latin-1 (one char per byte).
        let text = match String::from_utf8(text) {
            Ok(t) => t,
            Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
        };
        self.out.files.push(path.to_path_buf());
        let parsed = conf::parse(&text, path).map_err(|e| LoadError(e.to_string()))?;
        self.stack.push(path.to_path_buf());
        let r = self.expand(parsed);
        self.stack.pop();
        r
    }

    fn expand(&mut self, parsed: Vec<Directive>) -> Result<Vec<Directive>, LoadError> {
        let mut out = Vec::new();
        for mut d in parsed {
            d.args = d.args.iter().map(|a| self.substitute(a, &d)).collect();
            if d.is("Define") {
                match d.args.as_slice() {
                    [name] => {
                        self.defines.insert(name.clone(), String::new());
                    }
                    [name, value, ..] => {
                        self.defines.insert(name.clone(), value.clone());
                    }
                    [] => self.note(&d, "Define without a name"),
                }
                continue;
            }
            if d.is("UnDefine") {
                if let Some(n) = d.arg(0) {
                    self.defines.remove(n);
                }
                continue;
            }
            if d.is("ServerRoot") {
                if let Some(r) = d.arg(0) {
                    self.server_root = PathBuf::from(r);
                }
                out.push(d);
                continue;
            }
            if d.is("Include") || d.is("IncludeOptional") {
                let optional = d.is("IncludeOptional");
                let Some(pattern) = d.arg(0).map(str::to_string) else {
                    self.note(&d, "without a file name");
                    continue;
                };
                if !self.follow {
                    self.note(&d, "not followed (reading text only)");
                    continue;
                }
                for f in self.resolve(&pattern, optional, &d)? {
                    let mut inc = self.file(&f, Some(&d))?;
                    out.append(&mut inc);
                }
                continue;
            }
            if let Some(children) = d.children.take() {
                if d.is("IfDefine") {
                    let arg = d.arg(0).unwrap_or("");
                    let (neg, name) = match arg.strip_prefix('!') {
                        Some(n) => (true, n),
                        None => (false, arg),
                    };
                    if self.defines.contains_key(name) != neg {
                        out.append(&mut self.expand(children)?);
                    }
                    continue;
                }
                if d.is("IfModule") || d.is("IfVersion") || d.is("IfFile") || d.is("IfDirective") {
                    // Taken as true: the host being migrated had these modules.
                    out.append(&mut self.expand(children)?);
                    continue;
                }
                d.children = Some(self.expand(children)?);
            }
            out.push(d);
        }
        Ok(out)
    }

    /// `${NAME}` replaced by its `Define`d value; an unknown one is left (as httpd does, which
    /// warns).
    fn substitute(&mut self, arg: &str, d: &Directive) -> String {
        if !arg.contains("${") {
            return arg.to_string();
        }
        let mut out = String::new();
        let mut rest = arg;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            match after.find('}') {
                Some(j) => {
                    let name = &after[..j];
                    match self.defines.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            let why = format!("${{{name}}} is not defined here (left as written)");
                            self.note(d, &why);
                            out.push_str(&rest[i..i + 2 + j + 1]);
                        }
                    }
                    rest = &after[j + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The files an `Include` names: a directory's files, a glob's matches (sorted), or the
    /// file itself; relative to `ServerRoot`.
    fn resolve(
        &self,
        pattern: &str,
        optional: bool,
        d: &Directive,
    ) -> Result<Vec<PathBuf>, LoadError> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.server_root.join(pattern)
        };
        let wild = pattern.contains(['*', '?', '[']);
        let fail = |why: String| LoadError(format!("{}: {}: {why}", d.at(), d.name));
        if !wild {
            if full.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(&full)
                    .map_err(|e| fail(format!("cannot list {}: {e}", full.display())))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                return Ok(files);
            }
            if !full.exists() && optional {
                return Ok(Vec::new());
            }
            return Ok(vec![full]);
        }
        let text = full.to_str().ok_or_else(|| fail("the path is not UTF-8".to_string()))?;
        let paths = glob::glob(text).map_err(|e| fail(format!("bad pattern `{pattern}`: {e}")))?;
        let mut files: Vec<PathBuf> =
            paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
        files.sort();
        if files.is_empty() && !optional {
            return Err(fail(format!(
                "`{pattern}` matches no file (httpd refuses to start; IncludeOptional would not)"
            )));
        }
        Ok(files)
    }

    fn note(&mut self, d: &Directive, why: &str) {
        self.out.notes.push(Note::skipped(d, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, t: &str) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, t).expect("write");
    }

    #[test]
    fn includes_globs_server_root_and_defines() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        write(&root.join("conf/main.conf"), &format!(
            "ServerRoot {}\nDefine VENV /srv/venv\nInclude sites/*.conf\nIncludeOptional none/*.conf\nIncludeOptional missing.conf\n<IfDefine VENV>\nWSGIPythonHome ${{VENV}}\n</IfDefine>\n<IfDefine !VENV>\nNever here\n</IfDefine>\n<IfModule mod_wsgi.c>\nInside yes\n</IfModule>\n",
            root.display()
        ));
        write(&root.join("sites/b.conf"), "B 2\n");
        write(&root.join("sites/a.conf"), "A 1\nInclude sites/inc/x.txt\n");
        write(&root.join("sites/inc/x.txt"), "X ${VENV}/x ${NOPE}\n");
        let l = load(&[root.join("conf/main.conf")]).expect("loads");
        let names: Vec<&str> = l.directives.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["ServerRoot", "A", "X", "B", "WSGIPythonHome", "Inside"]);
        let x = &l.directives[2];
        assert_eq!(x.args, ["/srv/venv/x", "${NOPE}"]);
        assert_eq!((x.file.clone(), x.line), (root.join("sites/inc/x.txt"), 1));
        assert_eq!(l.directives[4].args, ["/srv/venv"]);
        assert_eq!(l.notes.len(), 1, "{:?}", l.notes);
        assert!(l.notes[0].to_string().contains("${NOPE} is not defined"), "{}", l.notes[0]);
    }

    #[test]
    fn unreadable_and_looping_includes_are_errors_naming_the_line() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path();
        write(&root.join("a.conf"), "X 1\nInclude b.conf\n");
        write(&root.join("b.conf"), "Include a.conf\n");
        let e = load(&[root.join("a.conf")]).expect_err("a loop").to_string();
        assert!(e.contains("b.conf:1: Include:") && e.contains("includes itself"), "{e}");
        write(&root.join("c.conf"), "\nInclude nothere.conf\n");
        let e = load(&[root.join("c.conf")]).expect_err("missing").to_string();
        assert!(e.contains("c.conf:2: Include: cannot read") && e.contains("nothere.conf"), "{e}");
        write(&root.join("d.conf"), "Include x/*.conf\n");
        let e = load(&[root.join("d.conf")]).expect_err("no match").to_string();
        assert!(e.contains("d.conf:1: Include: `x/*.conf` matches no file"), "{e}");
        let e = load(&[root.join("none.conf")]).expect_err("missing").to_string();
        assert!(e.starts_with("cannot read") && e.contains("none.conf"), "{e}");
    }
}
