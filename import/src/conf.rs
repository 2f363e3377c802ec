//! Apache configuration syntax: one file's text to a tree of directives and sections.
//!
//! What `httpd` itself accepts: one directive per line, a line ending in `\` continued on the
//! next one, `#` starting a comment only at the start of a line, arguments separated by
//! whitespace and quoted with `"..."` or `'...'` (a backslash before the quote keeps it in the
//! argument), sections `<Name args>` ... `</Name>` nested to any depth, names compared without
//! case. Every directive keeps the file and line it starts on. `Include`, `Define` and
//! `<IfDefine>` are resolved by [`crate::load`], not here.

use std::fmt;
use std::path::{Path, PathBuf};

/// Sections nested deeper than this are refused (Apache's own bound is far above real files).
pub const NEST_LIMIT: usize = 64;

/// One directive, or a section with the directives inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The name as written (compare with [`Directive::is`]).
    pub name: String,
    pub args: Vec<String>,
    pub file: PathBuf,
    /// 1-based line the directive (or the section's opening tag) starts on.
    pub line: usize,
    /// `Some` for a section (`<VirtualHost ...>`), holding what is inside it.
    pub children: Option<Vec<Directive>>,
}

impl Directive {
    /// Whether this is directive `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// `file:line`.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The directive as it could be written back: name and arguments, each quoted when it
    /// holds whitespace or is empty.
    pub fn render(&self) -> String {
        let mut out = self.name.clone();
        for a in &self.args {
            out.push(' ');
            out.push_str(&quote(a));
        }
        out
    }

    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }
}

/// `a` quoted for an Apache-syntax line if it needs it.
pub fn quote(a: &str) -> String {
    if a.is_empty() || a.chars().any(|c| c.is_whitespace() || c == '"') {
        format!("\"{}\"", a.replace('"', "\\\""))
    } else {
        a.to_string()
    }
}

/// A syntax error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// One logical line: its first physical line and its text with continuations joined.
struct Logical {
    line: usize,
    text: String,
}

/// Join continued lines; drop blank lines and comments.
fn logical_lines(text: &str) -> Vec<Logical> {
    let mut out = Vec::new();
    let mut pending: Option<Logical> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (body, continued) = match raw.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (raw, false),
        };
        match pending.as_mut() {
            Some(p) => p.text.push_str(body),
            None => {
                let t = body.trim_start();
                if !continued && (t.is_empty() || t.starts_with('#')) {
                    continue;
                }
                if t.starts_with('#') {
                    // A comment ending in `\` swallows the next line, as in httpd.
                    pending = Some(Logical { line: i + 1, text: String::from("#") });
                    continue;
                }
                pending = Some(Logical { line: i + 1, text: body.to_string() });
            }
        }
        if !continued {
            if let Some(p) = pending.take() {
                if !p.text.trim_start().starts_with('#') && !p.text.trim().is_empty() {
                    out.push(p);
                }
            }
        }
    }
    if let Some(p) = pending.take() {
        if !p.text.trim_start().starts_with('#') && !p.text.trim().is_empty() {
            out.push(p);
        }
    }
    out
}

/// Split arguments the way httpd's `ap_getword_conf` does.
pub fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(x) = chars.next() {
                if x == '\\' && chars.peek() == Some(&c) {
                    word.push(c);
                    chars.next();
                } else if x == c {
                    closed = true;
                    break;
                } else {
                    word.push(x);
                }
            }
            if !closed {
                return Err(format!("unterminated {c}quoted{c} argument"));
            }
        } else {
            while let Some(&x) = chars.peek() {
                if x.is_whitespace() {
                    break;
                }
                word.push(x);
                chars.next();
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// Parse one file's text.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Directive>, SyntaxError> {
    let err =
        |line: usize, message: String| SyntaxError { file: file.to_path_buf(), line, message };
    // Stack of open sections: (name, args, line, children so far).
    let mut stack: Vec<(String, Vec<String>, usize, Vec<Directive>)> = Vec::new();
    let mut top: Vec<Directive> = Vec::new();
    for l in logical_lines(text) {
        let t = l.text.trim();
        if let Some(rest) = t.strip_prefix("</") {
            let Some(name) = rest.strip_suffix('>') else {
                return Err(err(l.line, format!("`{t}`: a closing tag must end with `>`")));
            };
            let name = name.trim();
            let Some((open, args, line, children)) = stack.pop() else {
                return Err(err(l.line, format!("`</{name}>` without a matching `<{name}>`")));
            };
            if !open.eq_ignore_ascii_case(name) {
                return Err(err(
                    l.line,
                    format!("`</{name}>` closes `<{open}>` opened on line {line}"),
                ));
            }
            let d = Directive {
                name: open,
                args,
                file: file.to_path_buf(),
                line,
                children: Some(children),
            };
            match stack.last_mut() {
                Some(parent) => parent.3.push(d),
                None => top.push(d),
            }
        } else if let Some(rest) = t.strip_prefix('<') {
            let Some(inner) = rest.strip_suffix('>') else {
                return Err(err(l.line, format!("`{t}`: a section tag must end with `>`")));
            };
            let (name, argtext) = match inner.find(char::is_whitespace) {
                Some(i) => (&inner[..i], &inner[i..]),
                None => (inner, ""),
            };
            if name.is_empty() {
                return Err(err(l.line, "empty section name".to_string()));
            }
            if stack.len() >= NEST_LIMIT {
                return Err(err(l.line, format!("sections nested more than {NEST_LIMIT} deep")));
            }
            let args = split_args(argtext).map_err(|m| err(l.line, m))?;
            stack.push((name.to_string(), args, l.line, Vec::new()));
        } else {
            let (name, argtext) = match t.find(char::is_whitespace) {
                Some(i) => (&t[..i], &t[i..]),
                None => (t, ""),
            };
            let args = split_args(argtext).map_err(|m| err(l.line, format!("{name}: {m}")))?;
            let d = Directive {
                name: name.to_string(),
                args,
                file: file.to_path_buf(),
                line: l.line,
                children: None,
            };
            match stack.last_mut() {
                Some(parent) => parent.3.push(d),
                None => top.push(d),
            }
        }
    }
    if let Some((name, _, line, _)) = stack.pop() {
        return Err(err(line, format!("`<{name}>` is never closed (no `</{name}>`)")));
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<Directive> {
        parse(text, Path::new("t.conf")).expect("parses")
    }

    #[test]
    fn directives_sections_comments_and_lines() {
        let d = p("# c\n\nServerRoot /etc/x\n<VirtualHost *:80>\n  ServerName a\n  <Location /trac/login>\n    AuthType Basic\n  </location>\n</VIRTUALHOST>\n  # indented comment\nlisten 80\n");
        assert_eq!(d.len(), 3);
        assert!(d[0].is("serverroot") && d[0].args == ["/etc/x"] && d[0].line == 3);
        let vh = &d[1];
        assert!(vh.is("VirtualHost") && vh.line == 4 && vh.args == ["*:80"]);
        let kids = vh.children.as_ref().expect("section");
        assert_eq!(kids[0].line, 5);
        let loc = &kids[1];
        assert_eq!(loc.children.as_ref().expect("section")[0].line, 7);
        assert!(d[2].is("Listen") && d[2].line == 11);
    }

    #[test]
    fn continuations_and_quotes() {
        let d = p("WSGIDaemonProcess site-1 \\\n    user=u threads=25 \\\n  \"display-name=%{GROUP} x\"\nSetEnv A 'b c'\nSetEnv Q \"say \\\"hi\\\"\"\n");
        assert_eq!(d[0].args, ["site-1", "user=u", "threads=25", "display-name=%{GROUP} x"]);
        assert_eq!(d[0].line, 1);
        assert_eq!(d[1].line, 4);
        assert_eq!(d[1].args, ["A", "b c"]);
        assert_eq!(d[2].args, ["Q", "say \"hi\""]);
        assert_eq!(d[2].render(), "SetEnv Q \"say \\\"hi\\\"\"");
    }

    #[test]
    fn errors_name_the_line() {
        let e = |t: &str| parse(t, Path::new("f")).expect_err("refused").to_string();
        assert_eq!(
            e("A\n<Location /x>\nB\n"),
            "f:2: `<Location>` is never closed (no `</Location>`)"
        );
        assert!(e("<A>\n</B>\n").starts_with("f:2: `</B>` closes `<A>` opened on line 1"));
        assert!(e("x\n</A>\n").starts_with("f:2: `</A>` without"));
        assert!(e("SetEnv a \"b\n").starts_with("f:1: SetEnv: unterminated"));
        assert!(e("<Location /x\n").starts_with("f:1:"));
    }

    #[test]
    fn crlf_and_a_continued_comment() {
        let d = p("A 1\r\n# comment \\\nB 2\r\nC 3\n");
        assert_eq!(d.len(), 2);
        assert!(d[0].is("A") && d[1].is("C") && d[1].line == 4);
    }
}
