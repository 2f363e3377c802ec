//! The Paddock configuration being built, and its TOML text (with `toml_edit`, so keys and
//! strings are quoted as TOML wants and each value can carry a comment).

use toml_edit::{DocumentMut, Item, Table as TomlTable, Value};

/// Keys in the order they were set, each with an optional comment written after it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub comment: Option<String>,
}

impl Table {
    /// Set `key` (replacing an earlier value, keeping its place).
    pub fn set(&mut self, key: &str, value: impl Into<Value>, comment: Option<String>) {
        let value = value.into();
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.value = value;
                e.comment = comment;
            }
            None => self.entries.push(Entry { key: key.to_string(), value, comment }),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `[defaults]` or one `[tenants.NAME]`.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// Comment lines written above the table.
    pub comments: Vec<String>,
    pub keys: Table,
    pub environ: Table,
    pub env: Table,
    pub statics: Table,
    pub auth: Table,
}

/// The whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub header: Vec<String>,
    pub top: Table,
    pub defaults: Pool,
    pub tenants: Vec<(String, Pool)>,
}

impl Model {
    pub fn tenant(&self, name: &str) -> Option<&Pool> {
        self.tenants.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    pub fn tenant_mut(&mut self, name: &str) -> &mut Pool {
        if let Some(i) = self.tenants.iter().position(|(n, _)| n == name) {
            return &mut self.tenants[i].1;
        }
        self.tenants.push((name.to_string(), Pool::default()));
        let last = self.tenants.len() - 1;
        &mut self.tenants[last].1
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut doc = DocumentMut::new();
        fill(doc.as_table_mut(), &self.top);
        let mut first = true;
        let mut add = |doc: &mut DocumentMut, path: &[&str], pool: &Pool| {
            let mut t = TomlTable::new();
            fill(&mut t, &pool.keys);
            let mut prefix = String::from("\n");
            for c in &pool.comments {
                prefix.push_str(&comment_line(c));
            }
            t.decor_mut().set_prefix(prefix);
            for (name, sub) in [
                ("environ", &pool.environ),
                ("env", &pool.env),
                ("static", &pool.statics),
                ("auth", &pool.auth),
            ] {
                if !sub.is_empty() {
                    let mut s = TomlTable::new();
                    fill(&mut s, sub);
                    t.insert(name, Item::Table(s));
                }
            }
            let root = doc.as_table_mut();
            match path {
                [one] => {
                    root.insert(one, Item::Table(t));
                }
                [parent, child] => {
                    let entry = root.entry(parent).or_insert_with(|| {
                        let mut p = TomlTable::new();
                        p.set_implicit(true);
                        Item::Table(p)
                    });
                    if let Some(p) = entry.as_table_mut() {
                        p.insert(child, Item::Table(t));
                    }
                }
                _ => {}
            }
            first = false;
        };
        let d = &self.defaults;
        if !(d.keys.is_empty()
            && d.environ.is_empty()
            && d.env.is_empty()
            && d.statics.is_empty()
            && d.auth.is_empty())
        {
            add(&mut doc, &["defaults"], d);
        }
        for (name, pool) in &self.tenants {
            add(&mut doc, &["tenants", name], pool);
        }
        let _ = first;
        let mut out = String::new();
        for h in &self.header {
            out.push_str(&comment_line(h));
        }
        out.push_str(&doc.to_string());
        out
    }
}

fn comment_line(c: &str) -> String {
    if c.is_empty() {
        "#\n".to_string()
    } else {
        format!("# {}\n", comment_text(c))
    }
}

/// `c` as the text of a TOML comment: on one line, and with the control characters TOML
/// forbids in comments (all but tab; an Apache file may hold any byte) written as `\u{..}`.
fn comment_text(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for ch in c.chars() {
        match ch {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push('\t'),
            ch if ch.is_control() => out.push_str(&format!("\\u{{{:x}}}", ch as u32)),
            ch => out.push(ch),
        }
    }
    out
}

fn fill(t: &mut TomlTable, src: &Table) {
    for e in &src.entries {
        let mut v = e.value.clone();
        v.decor_mut().set_prefix(" ");
        match &e.comment {
            Some(c) => v.decor_mut().set_suffix(format!("  # {}", comment_text(c))),
            None => v.decor_mut().set_suffix(""),
        }
        t.insert(&e.key, Item::Value(v));
    }
}

/// A TOML array of strings.
pub fn strings(items: &[String]) -> Value {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_str());
    }
    Value::Array(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_hold_no_control_characters() {
        assert_eq!(comment_text("a\u{18}b\nc\td\u{7f}"), "a\\u{18}b c\td\\u{7f}");
    }

    #[test]
    fn comments_quoting_and_tables() {
        let mut m = Model { header: vec!["made by a test".into()], ..Default::default() };
        m.top.set("listen", "127.0.0.1:8080", None);
        m.defaults.keys.set("processes", 1, Some("mod_wsgi's default (Paddock's is 2)".into()));
        m.defaults.keys.set("processes", 3, Some("WSGIDaemonProcess processes=3".into()));
        let t = m.tenant_mut("site-1");
        t.comments.push("WSGIScriptAlias /trac/site-1 ...".into());
        t.keys.set("mount", "/trac/site-1", None);
        t.environ.set("trac.env_path", "/srv/x \"y\"", None);
        t.auth.set("paths", strings(&["^/login".to_string()]), None);
        let text = m.to_toml();
        assert!(text.starts_with("# made by a test\nlisten = \"127.0.0.1:8080\"\n"), "{text}");
        assert!(text.contains("processes = 3  # WSGIDaemonProcess processes=3\n"), "{text}");
        assert!(text.contains("# WSGIScriptAlias /trac/site-1 ...\n[tenants.site-1]\n"), "{text}");
        assert!(
            text.contains("[tenants.site-1.environ]\n\"trac.env_path\" = '/srv/x \"y\"'\n"),
            "{text}"
        );
        assert!(text.contains("[tenants.site-1.auth]\npaths = [\"^/login\"]\n"), "{text}");
        let parsed: toml_edit::DocumentMut = text.parse().expect("valid TOML");
        assert_eq!(parsed["defaults"]["processes"].as_integer(), Some(3));
    }
}
