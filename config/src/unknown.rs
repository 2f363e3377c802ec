//! Unknown keys: the file is deserialized without `deny_unknown_fields` while `serde_ignored`
//! collects the path of every key no section knows; each is then reported at its line (found
//! in a span-keeping parse by `toml_edit`) with the closest known key as a suggestion, so a
//! file with three typos shows three errors, together with the other problems.

use std::ops::Range;
use std::path::Path;

use serde::de::{self, Deserialize, Visitor};
use toml_edit::{ImDocument, Item, TableLike, Value};

use paddock_rules::diag::{line_of, Diagnostic};

use crate::auth::AuthSection;
use crate::file::{AdminSection, FileConfig, RuleEntry, TenantSection};

/// One step of the path to an ignored key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Deserialize `text`, and report each unknown key as a diagnostic of `file`. When the file
/// does not deserialize (a value of the wrong type: serde stops there), the error comes with
/// the unknown keys met before it.
pub(crate) fn parse(
    text: &str,
    file: &Path,
) -> Result<(FileConfig, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut ignored: Vec<Vec<Seg>> = Vec::new();
    let parsed: Result<FileConfig, _> =
        serde_ignored::deserialize(toml::Deserializer::new(text), |p| ignored.push(segments(&p)));
    let doc = ImDocument::parse(text).ok();
    let mut diags: Vec<Diagnostic> = ignored
        .iter()
        .filter_map(|path| {
            let (key, table) = path.split_last()?;
            let Seg::Key(key) = key else { return None };
            let line = doc
                .as_ref()
                .and_then(|d| key_span(d.as_item(), path))
                .map(|s| line_of(text, s.start))
                .unwrap_or(0);
            Some(Diagnostic::new(file, line, message(key, table)))
        })
        .collect();
    match parsed {
        Ok(parsed) => Ok((parsed, diags)),
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            diags.push(Diagnostic::new(file, line, e.message().to_string()));
            diags.sort_by_key(|d| (d.line == 0, d.line));
            Err(diags)
        }
    }
}

/// The path as keys and indices, without the private fields of `Spanned` (`$__...`) and the
/// `Option`/newtype steps.
fn segments(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut at = p;
    loop {
        match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Seg::Index(*index));
                at = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                if !key.starts_with("$__") {
                    out.push(Seg::Key(key.clone()));
                }
                at = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
        }
    }
    out.reverse();
    out
}

/// Span of the last key of `path` in the document (`None` if it cannot be found, which only
/// happens if toml and toml_edit disagree).
fn key_span(root: &Item, path: &[Seg]) -> Option<Range<usize>> {
    let (last, parents) = path.split_last()?;
    let mut table: &dyn TableLike = root.as_table_like()?;
    let mut rest = parents;
    while let [Seg::Key(k), tail @ ..] = rest {
        let item = table.get(k)?;
        (table, rest) = match (item, tail) {
            (Item::ArrayOfTables(a), [Seg::Index(n), more @ ..]) => (a.get(*n)? as _, more),
            (Item::Value(Value::Array(a)), [Seg::Index(n), more @ ..]) => {
                (a.get(*n)?.as_inline_table()? as _, more)
            }
            _ => (item.as_table_like()?, tail),
        };
    }
    let (Seg::Key(k), []) = (last, rest) else { return None };
    table.key(k)?.span()
}

/// `unknown key `theads` in [defaults]; did you mean `threads`?`
fn message(key: &str, table: &[Seg]) -> String {
    let place = match table {
        [] => "at the top level".to_string(),
        [Seg::Key(r), Seg::Index(_)] => format!("in a [[{r}]] entry"),
        [Seg::Key(a), Seg::Key(b), Seg::Index(_)] => format!("in a [[{a}.{b}]] entry"),
        _ => {
            let names: Vec<String> = table
                .iter()
                .map(|s| match s {
                    Seg::Key(k) if bare(k) => k.clone(),
                    Seg::Key(k) => format!("\"{k}\""),
                    Seg::Index(i) => i.to_string(),
                })
                .collect();
            format!("in [{}]", names.join("."))
        }
    };
    match suggest(key, known_keys(table)) {
        Some(s) => format!("unknown key `{key}` {place}; did you mean `{s}`?"),
        None => format!("unknown key `{key}` {place}"),
    }
}

/// A key TOML accepts without quotes.
fn bare(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The keys the table at `table` accepts.
fn known_keys(table: &[Seg]) -> &'static [&'static str] {
    let key = |s: &Seg, want: &str| matches!(s, Seg::Key(k) if k == want);
    match table {
        [] => fields_of::<FileConfig>(),
        [a] if key(a, "admin") => fields_of::<AdminSection>(),
        [a] if key(a, "cluster") => fields_of::<crate::cluster::ClusterSection>(),
        [a] if key(a, "defaults") => fields_of::<TenantSection>(),
        [a] if key(a, "tls") => fields_of::<crate::tls::TlsSection>(),
        [a, b, Seg::Index(_)] if key(a, "tls") && key(b, "certificates") => {
            fields_of::<crate::tls::CertificateEntry>()
        }
        [a, _] if key(a, "tenants") => fields_of::<TenantSection>(),
        [a, Seg::Index(_)] if key(a, "rules") => fields_of::<RuleEntry>(),
        [a, b] if key(a, "defaults") && key(b, "auth") => fields_of::<AuthSection>(),
        [a, _, c] if key(a, "tenants") && key(c, "auth") => fields_of::<AuthSection>(),
        _ => &[],
    }
}

/// The closest known key, if at most about a third of it differs.
fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, k)| d * 3 <= key.len().max(k.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The field names serde's derive gives `T` (as renamed), read by asking `T` to deserialize
/// itself from a deserializer that only records them; so the list never drifts from the
/// structs.
fn fields_of<T: Deserialize<'static>>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Grab<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only structs"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_the_structs() {
        assert!(fields_of::<TenantSection>().contains(&"threads"));
        assert!(fields_of::<TenantSection>().contains(&"static"), "renamed field");
        assert!(fields_of::<AdminSection>().contains(&"tokens_file"));
        assert_eq!(fields_of::<AuthSection>(), ["htpasswd", "realm", "paths"]);
    }

    #[test]
    fn suggestions_only_when_close() {
        let known = fields_of::<TenantSection>();
        assert_eq!(suggest("theads", known), Some("threads"));
        assert_eq!(suggest("virtualen", known), Some("virtualenv"));
        assert_eq!(suggest("colour", known), None);
    }
}
