//! `[tls]`: the optional HTTPS listener, with a certificate and key per group of host names
//! (chosen by SNI) and one default for clients that send no name or an unknown one. Only the
//! shape is checked here; the router reads the files at start and whenever they change, and
//! reports a bad file with its path.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// `[tls]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct TlsSection {
    /// Address of the HTTPS listener, e.g. `0.0.0.0:443`.
    pub listen: Option<Spanned<String>>,
    /// The certificates, one `[[tls.certificates]]` table each.
    #[serde(default)]
    pub certificates: Vec<Spanned<CertificateEntry>>,
}

/// One `[[tls.certificates]]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CertificateEntry {
    /// Host names this certificate is sent for (`*.example.org` matches one label); may be
    /// left out only on the default.
    pub names: Option<Spanned<Vec<String>>>,
    /// PEM file: the certificate, then its intermediates.
    pub cert: Option<Spanned<String>>,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<Spanned<String>>,
    /// Sent when the client names no host or one no entry lists; default: the first entry.
    pub default: Option<bool>,
}

/// `[tls]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    /// In the file's order; exactly one is the default.
    pub certificates: Vec<CertSpec>,
}

/// One certificate after validation; paths are absolute (relative ones are resolved from the
/// configuration file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Lowercase, without a trailing dot.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub default: bool,
}

impl TlsSettings {
    /// The certificate for clients that name no known host.
    pub fn default_cert(&self) -> Option<&CertSpec> {
        self.certificates.iter().find(|c| c.default)
    }
}

/// `name` as a certificate's host name: a DNS name of letters, digits, `-` and `.`, or one
/// with `*.` in front (a wildcard for exactly one label). Returns it lowercase.
pub fn host_name(name: &str) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if rest.is_empty() || lower.len() > 253 || !rest.split('.').all(label_ok) {
        return Err(format!(
            "`{name}` is not a host name (letters, digits, `-` and `.`, or `*.` and such a name)"
        ));
    }
    Ok(lower)
}

/// Validate `[tls]`; each problem goes to `err` with the span it concerns (`None`: the section
/// as a whole). `abs` resolves a path from the configuration file's directory.
pub(crate) fn validate(
    s: &TlsSection,
    abs: &dyn Fn(&str) -> PathBuf,
    mut err: impl FnMut(Option<std::ops::Range<usize>>, String),
) -> Option<TlsSettings> {
    let mut ok = true;
    let mut fail = |span: Option<std::ops::Range<usize>>, m: String| {
        ok = false;
        err(span, format!("[tls] {m}"));
    };
    let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listen = match &s.listen {
        Some(l) => l.get_ref().parse::<SocketAddr>().unwrap_or_else(|_| {
            let m = format!("`listen`: `{}` is not an address such as 0.0.0.0:443", l.get_ref());
            fail(Some(l.span()), m);
            fallback
        }),
        None => {
            fail(
                None,
                "needs `listen`, the address of the HTTPS listener (e.g. \"0.0.0.0:443\")".into(),
            );
            fallback
        }
    };
    if s.certificates.is_empty() {
        fail(None, "needs at least one [[tls.certificates]] with `cert` and `key`".into());
    }
    let defaults = s.certificates.iter().filter(|c| c.get_ref().default == Some(true)).count();
    let mut seen: Vec<String> = Vec::new();
    let mut certificates = Vec::new();
    for (i, entry) in s.certificates.iter().enumerate() {
        let span = Some(entry.span());
        let e = entry.get_ref();
        let default = e.default == Some(true) || (defaults == 0 && i == 0);
        if e.default == Some(true) && defaults > 1 {
            fail(span.clone(), "more than one certificate has `default = true`".into());
        }
        let mut path = |f: &Option<Spanned<String>>, what: &str| match f {
            Some(p) if !p.get_ref().trim().is_empty() => abs(p.get_ref()),
            Some(p) => {
                fail(Some(p.span()), format!("`{what}` is empty"));
                PathBuf::new()
            }
            None => {
                fail(
                    span.clone(),
                    format!("a certificate needs `{what}`, the path of its PEM file"),
                );
                PathBuf::new()
            }
        };
        let cert = path(&e.cert, "cert");
        let key = path(&e.key, "key");
        let mut names = Vec::new();
        for n in e.names.iter().flat_map(|n| n.get_ref().iter().map(move |v| (n.span(), v))) {
            match host_name(n.1) {
                Ok(name) if seen.contains(&name) => {
                    fail(Some(n.0), format!("`{name}` is listed by two certificates"))
                }
                Ok(name) => {
                    seen.push(name.clone());
                    names.push(name);
                }
                Err(m) => fail(Some(n.0), format!("`names`: {m}")),
            }
        }
        if !default && e.names.as_ref().is_none_or(|n| n.get_ref().is_empty()) {
            fail(span.clone(), "a certificate that is not the default needs `names`".into());
        }
        certificates.push(CertSpec { names, cert, key, default });
    }
    ok.then_some(TlsSettings { listen, certificates })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Overrides};

    /// The file's errors as `line: message`, or the `[tls]` it validated to.
    fn load(tls: &str) -> Result<Option<TlsSettings>, Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("paddock.toml");
        std::fs::write(&path, format!("sites = \"/srv/sites\"\n{tls}")).expect("write");
        match Config::load(&path, &Overrides::default()) {
            Ok(c) => Ok(c.tls),
            Err(d) => Err(d.0.iter().map(|d| format!("{}: {}", d.line, d.message)).collect()),
        }
    }

    #[test]
    fn a_tls_section_validates() {
        let t = load(
            "[tls]\nlisten = \"0.0.0.0:443\"\n\
             [[tls.certificates]]\nnames = [\"Trac.Example.org\", \"*.example.org\"]\n\
             cert = \"/etc/ssl/a.pem\"\nkey = \"a.key\"\n\
             [[tls.certificates]]\nnames = [\"other.test\"]\ncert = \"/b.pem\"\nkey = \"/b.key\"\n\
             default = true\n",
        )
        .expect("valid")
        .expect("tls");
        assert_eq!(t.listen.to_string(), "0.0.0.0:443");
        let [a, b] = &t.certificates[..] else { panic!("two certificates: {t:?}") };
        assert_eq!(a.names, ["trac.example.org", "*.example.org"]);
        assert_eq!(a.cert, PathBuf::from("/etc/ssl/a.pem"));
        assert!(a.key.is_absolute() && a.key.ends_with("a.key"), "relative to the file");
        assert!(!a.default && b.default);
        assert_eq!(t.default_cert(), Some(b));
        assert_eq!(load("").expect("valid"), None);
    }

    #[test]
    fn the_first_certificate_is_the_default_and_may_have_no_names() {
        let t = load(
            "[tls]\nlisten = \"127.0.0.1:8443\"\n[[tls.certificates]]\ncert = \"c\"\nkey = \"k\"\n",
        )
        .expect("valid")
        .expect("tls");
        assert!(t.certificates[0].default && t.certificates[0].names.is_empty());
    }

    #[test]
    fn tls_mistakes_name_their_line() {
        let m = load(
            "[tls]\nlisten = \"everywhere\"\n\
             [[tls.certificates]]\nnames = [\"a.test\", \"bad name\"]\ncert = \"c\"\nkey = \"k\"\ndefault = true\n\
             [[tls.certificates]]\nnames = [\"A.test\"]\ncert = \"c2\"\ndefault = true\n\
             [[tls.certificates]]\ncert = \"c3\"\nkey = \"k3\"\nkye = \"x\"\n",
        )
        .expect_err("invalid");
        let want = [
            ("3: ", "`listen`: `everywhere`"),
            ("5: ", "`bad name` is not a host name"),
            ("4: ", "more than one certificate has `default = true`"),
            ("10: ", "`a.test` is listed by two certificates"),
            ("9: ", "needs `key`"),
            ("13: ", "not the default needs `names`"),
            ("16: ", "unknown key `kye` in a [[tls.certificates]] entry; did you mean `key`?"),
        ];
        for (line, text) in want {
            assert!(
                m.iter().any(|x| x.starts_with(line) && x.contains(text)),
                "{line}{text}: {m:#?}"
            );
        }
    }

    #[test]
    fn an_empty_tls_section_says_what_it_needs() {
        let m = load("[tls]\n").expect_err("invalid");
        assert!(m.iter().any(|x| x.starts_with("2: ") && x.contains("needs `listen`")), "{m:?}");
        assert!(m.iter().any(|x| x.contains("at least one [[tls.certificates]]")), "{m:?}");
    }

    #[test]
    fn http2_streams_are_bounded() {
        let m = load("http2_max_concurrent_streams = 0\n").expect_err("invalid");
        assert!(m[0].starts_with("2: ") && m[0].contains("from 1 to 1000"), "{m:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "sites = \"/s\"\nhttp2_max_concurrent_streams = 7\nh2c = false\n")
            .expect("write");
        let c = Config::load(&path, &Overrides::default()).expect("valid");
        assert_eq!((c.http2_max_concurrent_streams, c.h2c), (7, false));
        let c =
            Config::from_overrides(&Overrides { sites: Some("/s".into()), ..Overrides::default() });
        let c = c.expect("valid");
        assert_eq!(
            (c.http2_max_concurrent_streams, c.h2c),
            (crate::DEFAULT_HTTP2_MAX_STREAMS, true)
        );
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("Trac.Example.org.").as_deref(), Ok("trac.example.org"));
        assert_eq!(host_name("*.example.org").as_deref(), Ok("*.example.org"));
        assert_eq!(host_name("localhost").as_deref(), Ok("localhost"));
        for bad in ["", "*", "*.", "a..b", "a b", "-a.org", "a*.org", "*.*.org", "é.org", "a:443"]
        {
            assert!(host_name(bad).is_err(), "{bad}");
        }
    }
}
