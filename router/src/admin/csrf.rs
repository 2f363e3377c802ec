//! Cross-site form posts to the public signup page are refused.
//!
//! Two checks, both on every `POST /signup`:
//! - **Origin**: a browser names the page a form was posted from. An `Origin` (or, without
//!   one, a `Referer`) whose host is not the request's `Host` is a post from another site: 403.
//!   A request without either (old browsers, scripts) relies on the token alone.
//! - **Form token**: the form the router serves carries a hidden token, an HMAC-SHA256 of the
//!   current hour under a key drawn when the admin listener starts ([`Key`], one per
//!   server); a post must bring one from this hour or the
//!   last. A page on another site cannot read the form, so it cannot forge the field.
//!
//! Behind a reverse proxy, the proxy must pass the client's `Host` through (nginx
//! `proxy_set_header Host $host`, Apache `ProxyPreserveHost On`).

use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Seconds of one token window; a token is accepted in its window and the next.
const WINDOW_SECS: u64 = 3600;
const BLOCK: usize = 64;

/// The key form tokens are made with, from the kernel's random source.
pub struct Key([u8; 32]);

impl Key {
    pub fn random() -> Key {
        let mut k = [0u8; 32];
        let read = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut k));
        if let Err(e) = read {
            // Never reached on Linux; a guessable key only weakens the token, not Origin.
            tracing::error!("signup: cannot read /dev/urandom ({e}); form tokens are weak");
            let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
            k = Sha256::digest(seed.as_bytes()).into();
        }
        Key(k)
    }

    /// A fresh token for the signup form.
    pub fn form_token(&self) -> String {
        token_at(&self.0, window(SystemTime::now()))
    }

    /// Whether a signup post may proceed: `Err` says why it is refused (403).
    pub fn check(&self, headers: &HeaderMap, token: &str) -> Result<(), &'static str> {
        same_origin(headers)?;
        token_valid(&self.0, token, window(SystemTime::now()))
    }
}

/// `Origin`, else `Referer`, must name the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let from = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER));
    let Some(from) = from else { return Ok(()) };
    let from_host = from.to_str().ok().and_then(url_host);
    match from_host {
        Some(h) if !host.is_empty() && h.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err("the form was posted from another site"),
    }
}

/// The `host[:port]` of an absolute `http(s)` URL or origin.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    // `user@host` would let `https://good.example@evil.example` pass as the former.
    (!host.is_empty() && !host.contains('@')).then_some(host)
}

fn window(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() / WINDOW_SECS).unwrap_or(0)
}

fn token_at(key: &[u8; 32], window: u64) -> String {
    let mac = hmac(key, format!("paddock-signup:{window}").as_bytes());
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("{window}.{hex}")
}

fn token_valid(key: &[u8; 32], token: &str, now: u64) -> Result<(), &'static str> {
    let stale = "the form has expired or was not served here; reload the page and try again";
    let (w, _) = token.split_once('.').ok_or(stale)?;
    let w: u64 = w.parse().map_err(|_| stale)?;
    if w != now && w.checked_add(1) != Some(now) {
        return Err(stale);
    }
    let want = token_at(key, w);
    match bool::from(want.as_bytes().ct_eq(token.as_bytes())) {
        true => Ok(()),
        false => Err(stale),
    }
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut pad = [0u8; BLOCK];
    pad[..key.len()].copy_from_slice(key);
    let xor = |b: u8| pad.map(|p| p ^ b);
    let inner = Sha256::new().chain_update(xor(0x36)).chain_update(msg).finalize();
    let outer = Sha256::new().chain_update(xor(0x5c)).chain_update(inner).finalize();
    outer.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hmac_matches_rfc_4231_style_vector() {
        // HMAC-SHA256 of "" under 32 zero bytes (checked with Python's hmac module).
        let mac = hmac(&[0; 32], b"");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    }

    #[test]
    fn tokens_last_two_windows_and_cannot_be_forged() {
        let k = [7; 32];
        let t = token_at(&k, 100);
        assert!(token_valid(&k, &t, 100).is_ok());
        assert!(token_valid(&k, &t, 101).is_ok(), "the next window still accepts it");
        assert!(token_valid(&k, &t, 102).is_err(), "expired");
        assert!(token_valid(&k, &t, 99).is_err(), "from the future");
        assert!(token_valid(&[8; 32], &t, 100).is_err(), "another key");
        let forged = format!("101{}", &t[3..]);
        assert!(token_valid(&k, &forged, 101).is_err(), "window changed");
        for junk in ["", ".", "x.y", "100.", "18446744073709551615.00"] {
            assert!(token_valid(&k, junk, 100).is_err(), "{junk}");
        }
        let key = Key::random();
        assert!(key.check(&HeaderMap::new(), &key.form_token()).is_ok());
        // Each server draws its own key: another's token does not pass.
        assert!(Key::random().check(&HeaderMap::new(), &key.form_token()).is_err());
    }

    #[test]
    fn origin_or_referer_must_name_the_host() {
        let ok = [
            headers(&[("host", "a.example:9180"), ("origin", "http://a.example:9180")]),
            headers(&[("host", "A.example"), ("origin", "https://a.example")]),
            headers(&[("host", "a.example"), ("referer", "http://a.example/signup?x")]),
            headers(&[("host", "a.example")]),
        ];
        for h in ok {
            assert!(same_origin(&h).is_ok(), "{h:?}");
        }
        let bad = [
            headers(&[("host", "a.example"), ("origin", "http://evil.example")]),
            headers(&[("host", "a.example"), ("origin", "null")]),
            headers(&[("host", "a.example"), ("origin", "http://a.example:81")]),
            headers(&[("host", "a.example"), ("referer", "http://evil.example/a.example")]),
            headers(&[("host", "a.example"), ("referer", "http://a.example@evil.example/")]),
            headers(&[("origin", "http://a.example")]),
        ];
        for h in bad {
            assert!(same_origin(&h).is_err(), "{h:?}");
        }
    }
}
