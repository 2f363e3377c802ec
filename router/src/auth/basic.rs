//! The `Basic` scheme on the wire (RFC 7617): reading `Authorization`, and the 401 challenge.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use http::{header, HeaderMap, HeaderValue};

/// Standard alphabet; padding optional (some clients leave it out).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the client sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    /// Passwords to try, in order: the bytes as sent, then (when they were not UTF-8 and were
    /// read as latin-1) their UTF-8 form, since htpasswd files are usually written in UTF-8.
    pub passwords: Vec<Vec<u8>>,
}

/// Why there are no usable credentials; every case gets the 401 challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Missing,
    /// More than one `Authorization` header: ambiguous, refused.
    Several,
    NotBasic,
    BadBase64,
    NoColon,
}

/// Read `Authorization: Basic base64(user:password)`.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials, Unusable> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Unusable::Missing)?;
    if values.next().is_some() {
        return Err(Unusable::Several);
    }
    let text = value.as_bytes().trim_ascii();
    let (scheme, token) = match text.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(i) => (&text[..i], text[i..].trim_ascii()),
        None => (text, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(Unusable::NotBasic);
    }
    let decoded = B64.decode(token).map_err(|_| Unusable::BadBase64)?;
    let colon = decoded.iter().position(|&b| b == b':').ok_or(Unusable::NoColon)?;
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    let mut passwords = vec![pass.to_vec()];
    let user = if std::str::from_utf8(&decoded).is_ok() {
        decode_text(user)
    } else {
        let as_utf8 = latin1(pass).into_bytes();
        if as_utf8 != pass {
            passwords.push(as_utf8);
        }
        latin1(user)
    };
    Ok(Credentials { user, passwords })
}

/// UTF-8 text, or latin-1 (one character per byte) when the bytes are not UTF-8.
pub fn decode_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => latin1(b),
    }
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// `Basic realm="..."` with `"` and `\` escaped (quoted-string).
pub fn challenge_value(realm: &str) -> String {
    let mut out = String::with_capacity(realm.len() + 14);
    out.push_str("Basic realm=\"");
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The `WWW-Authenticate` value of the 401 answer.
pub fn challenge(realm: &str) -> HeaderValue {
    // Validation refused control characters in realms; fall back to no realm text otherwise.
    HeaderValue::from_str(&challenge_value(realm))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_bytes(v).expect("value"));
        }
        h
    }

    fn basic(raw: &[u8]) -> Vec<u8> {
        let mut v = b"Basic ".to_vec();
        v.extend_from_slice(B64.encode(raw).as_bytes());
        v
    }

    #[test]
    fn utf8_credentials() {
        let c = credentials(&with(&[&basic("jo\u{e9}:p\u{e4}ss:word".as_bytes())])).expect("ok");
        assert_eq!(c.user, "jo\u{e9}");
        assert_eq!(c.passwords, vec!["p\u{e4}ss:word".as_bytes().to_vec()]);
    }

    #[test]
    fn latin1_fallback_tries_both_encodings() {
        let c = credentials(&with(&[&basic(b"jo\xe9:p\xe4ss")])).expect("ok");
        assert_eq!(c.user, "jo\u{e9}");
        assert_eq!(c.passwords, vec![b"p\xe4ss".to_vec(), "p\u{e4}ss".as_bytes().to_vec()]);
    }

    #[test]
    fn scheme_spacing_and_padding() {
        let c = credentials(&with(&[b"bAsIc   dXNlcjpwYXNz  "])).expect("ok");
        assert_eq!((c.user.as_str(), c.passwords[0].as_slice()), ("user", &b"pass"[..]));
        let unpadded = credentials(&with(&[b"Basic dTpw"])).expect("ok");
        assert_eq!(unpadded.user, "u");
        let empty = credentials(&with(&[&basic(b":")])).expect("ok");
        assert_eq!((empty.user.as_str(), empty.passwords[0].len()), ("", 0));
    }

    #[test]
    fn refusals() {
        assert_eq!(credentials(&HeaderMap::new()), Err(Unusable::Missing));
        assert_eq!(credentials(&with(&[b"Bearer abc"])), Err(Unusable::NotBasic));
        assert_eq!(credentials(&with(&[b"Basic"])), Err(Unusable::NoColon));
        assert_eq!(credentials(&with(&[b"Basic !!!"])), Err(Unusable::BadBase64));
        assert_eq!(credentials(&with(&[b"Basic dXNlcg=="])), Err(Unusable::NoColon));
        let two = with(&[&basic(b"a:b"), &basic(b"c:d")]);
        assert_eq!(credentials(&two), Err(Unusable::Several));
    }

    #[test]
    fn realm_is_quoted_and_escaped() {
        assert_eq!(challenge_value(""), "Basic realm=\"\"");
        assert_eq!(challenge_value("Trac"), "Basic realm=\"Trac\"");
        assert_eq!(challenge_value(r#"a "b" \c"#), r#"Basic realm="a \"b\" \\c""#);
        assert_eq!(challenge("Pr\u{e9}").as_bytes(), "Basic realm=\"Pr\u{e9}\"".as_bytes());
    }
}
