//! Apache htpasswd files: `user:hash` lines, `#` comments, blank lines. Supported hashes:
//! bcrypt (`$2y$`, `$2a$`, `$2b$`), `$apr1$` MD5 and `{SHA}` (base64 SHA-1). Other formats
//! (crypt(3) DES, plain text, SHA-crypt) are kept as refused entries so their users cannot
//! log in, and reported once by the caller; hashes are never logged.

use std::collections::HashMap;

use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::apr1;
use super::basic::decode_text;

/// One user's stored credential.
#[derive(Clone, PartialEq, Eq)]
pub enum Stored {
    Bcrypt(String),
    Apr1(String),
    Sha([u8; 20]),
    /// A format Paddock refuses; the text says which, for the log.
    Unsupported(&'static str),
}

impl std::fmt::Debug for Stored {
    /// Never shows the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::Bcrypt(_) => f.write_str("Bcrypt(..)"),
            Stored::Apr1(_) => f.write_str("Apr1(..)"),
            Stored::Sha(_) => f.write_str("Sha(..)"),
            Stored::Unsupported(k) => write!(f, "Unsupported({k})"),
        }
    }
}

/// A parsed file: users (the first entry of a name wins, as in Apache) and problems to log.
#[derive(Debug, Default)]
pub struct Parsed {
    pub users: HashMap<String, Stored>,
    /// `line N: ...` messages, free of hashes and of user names (a file that is not an
    /// htpasswd file, e.g. a copy of /etc/shadow, must not leak its accounts to the log).
    pub problems: Vec<String>,
}

/// Parse the bytes of an htpasswd file. User names are UTF-8, or latin-1 when not.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let n = i + 1;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            out.problems.push(format!("line {n}: no `user:hash` separator; line ignored"));
            continue;
        };
        let user = decode_text(&line[..colon]);
        if user.is_empty() {
            out.problems.push(format!("line {n}: empty user name; line ignored"));
            continue;
        }
        let rest = &line[colon + 1..];
        let hash = rest.split(|&b| b == b':').next().unwrap_or_default();
        let stored = std::str::from_utf8(hash).map(classify).unwrap_or(Stored::Unsupported("?"));
        if let Stored::Unsupported(kind) = stored {
            out.problems.push(format!(
                "line {n}: a password in an unsupported format ({kind}); \
                 this line's user cannot log in (use htpasswd -B, -m or -s)"
            ));
        }
        out.users.entry(user).or_insert(stored);
    }
    out
}

/// Which format `hash` is in.
pub fn classify(hash: &str) -> Stored {
    if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
        return Stored::Bcrypt(hash.to_string());
    }
    if hash.starts_with("$apr1$") {
        return match apr1::salt_of(hash) {
            Some(_) => Stored::Apr1(hash.to_string()),
            None => Stored::Unsupported("malformed $apr1$"),
        };
    }
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64);
        return match decoded.ok().and_then(|d| <[u8; 20]>::try_from(d.as_slice()).ok()) {
            Some(d) => Stored::Sha(d),
            None => Stored::Unsupported("malformed {SHA}"),
        };
    }
    if hash.starts_with("$5$") || hash.starts_with("$6$") {
        return Stored::Unsupported("SHA-crypt");
    }
    if hash.starts_with('$') {
        return Stored::Unsupported("unknown $-scheme");
    }
    let crypt_chars = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'/';
    if hash.len() == 13 && hash.bytes().all(crypt_chars) {
        return Stored::Unsupported("crypt(3) DES");
    }
    Stored::Unsupported("plain text")
}

impl Stored {
    /// Expensive to check (bcrypt: tens of ms; apr1: 1000 MD5 rounds, a few hundred µs):
    /// run it off the async threads.
    pub fn is_slow(&self) -> bool {
        matches!(self, Stored::Bcrypt(_) | Stored::Apr1(_))
    }

    /// Whether `password` matches. Constant-time comparison for SHA and apr1; bcrypt's own
    /// check compares in constant time too (and truncates at 72 bytes, as Apache does).
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Stored::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Stored::Apr1(h) => match apr1::salt_of(h) {
                Some(salt) => apr1::hash(password, salt).as_bytes().ct_eq(h.as_bytes()).into(),
                None => false,
            },
            Stored::Sha(d) => Sha1::digest(password).as_slice().ct_eq(d).into(),
            Stored::Unsupported(_) => false,
        }
    }

    /// Text identifying this credential, for keys of the verification cache.
    pub fn fingerprint(&self) -> Vec<u8> {
        match self {
            Stored::Bcrypt(h) | Stored::Apr1(h) => h.as_bytes().to_vec(),
            Stored::Sha(d) => d.to_vec(),
            Stored::Unsupported(k) => k.as_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries made with Apache 2.4.71's `htpasswd -nb{B,m,s,d,p}` for password `password`
    /// (bcrypt `joé` for the user `joé`, cost 5).
    const FILE: &str = "\
# comment line
   # indented comment

bcrypt:$2y$04$BG6f0ZqOUzr9Bu2FNmNmw.dCiM7Cjkvxf4r7C3MJlFRGMfW7BvmUe
jo\u{e9}:$2y$05$fJg065D7gAQ8NJwu1lRoy.LRfHL90.D29MmOhOtV9k5jOKVayAd/6
md5:$apr1$LUcn0QRl$b0OC5kImTJBU6RxOay2Av1\r
sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
des:51CbcBM13fOMo
plain:password
sha512:$6$salt$abc
md5:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
nocolon
extra:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=:ignored:fields
";

    #[test]
    fn parses_every_format() {
        let p = parse(FILE.as_bytes());
        let kind = |u: &str| p.users.get(u).cloned();
        assert!(matches!(kind("bcrypt"), Some(Stored::Bcrypt(_))));
        assert!(matches!(kind("joé"), Some(Stored::Bcrypt(_))));
        assert!(matches!(kind("md5"), Some(Stored::Apr1(_))), "first entry wins");
        assert!(matches!(kind("sha"), Some(Stored::Sha(_))));
        assert!(matches!(kind("extra"), Some(Stored::Sha(_))));
        assert_eq!(kind("des"), Some(Stored::Unsupported("crypt(3) DES")));
        assert_eq!(kind("plain"), Some(Stored::Unsupported("plain text")));
        assert_eq!(kind("sha512"), Some(Stored::Unsupported("SHA-crypt")));
        assert_eq!(p.users.len(), 8);
        assert_eq!(p.problems.len(), 4, "{:?}", p.problems);
        assert!(p.problems.iter().any(|m| m.starts_with("line 12:") && m.contains("separator")));
        for m in &p.problems {
            assert!(!m.contains("51CbcBM13fOMo") && !m.contains("password\""), "{m}");
        }
    }

    #[test]
    fn problems_never_name_the_user() {
        // What a copy of /etc/shadow would give: every line a problem, no name in any.
        let shadow = "root:$y$j9T$abc$def:19000:0:99999:7:::\nsecretacct:!:19000::::::\nnocolon\n";
        let p = parse(shadow.as_bytes());
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        for m in &p.problems {
            assert!(!m.contains("root") && !m.contains("secretacct"), "{m}");
            assert!(!m.contains("nocolon") && !m.contains("$y$"), "{m}");
        }
    }

    #[test]
    fn verifies_good_and_bad_passwords() {
        let p = parse(FILE.as_bytes());
        for (user, good) in
            [("bcrypt", "password"), ("joé", "joé"), ("md5", "password"), ("sha", "password")]
        {
            let s = &p.users[user];
            assert!(s.verify(good.as_bytes()), "{user}");
            assert!(!s.verify(b"wrong"), "{user}");
            assert!(!s.verify(b""), "{user}");
        }
        for refused in ["des", "plain"] {
            assert!(!p.users[refused].verify(b"password"), "{refused}");
        }
    }

    #[test]
    fn latin1_user_names_and_malformed_hashes() {
        let p = parse(b"jo\xe9:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nx:{SHA}abc\ny:$apr1$nosalt\n");
        assert!(matches!(p.users.get("joé"), Some(Stored::Sha(_))));
        assert_eq!(p.users["x"], Stored::Unsupported("malformed {SHA}"));
        assert_eq!(p.users["y"], Stored::Unsupported("malformed $apr1$"));
        assert!(!Stored::Bcrypt("$2y$garbage".into()).verify(b"x"));
        assert_eq!(format!("{:?}", p.users["joé"]), "Sha(..)");
    }
}
