//! The `Host` header, read strictly (as Apache's `HttpProtocolOptions Strict` does): exactly
//! one in an HTTP/1.1 request, at most one in HTTP/1.0, and a value that is `host[:port]`.
//! Anything else would become `SERVER_NAME`, and with it the absolute URLs and redirects an
//! application builds (host-header poisoning).

use http::{header, HeaderMap, Version};

/// Why a request's `Host` is refused (the text of its 400 page).
pub type Invalid = &'static str;

/// The request's host: its `Host` header in HTTP/1 ([`host_header`]); in HTTP/2 its
/// `:authority`, which hyper keeps in the URI, written into `Host` as well, for the app's
/// `HTTP_HOST` and the rules' `%{HTTP_HOST}`. An HTTP/2 request that carries both must carry
/// the same (RFC 9113, 8.3.1).
pub fn request_host<B>(req: &mut http::Request<B>) -> Result<String, Invalid> {
    if req.version() != Version::HTTP_2 {
        return host_header(req.headers(), req.version());
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let Some(authority) = authority else {
        return host_header(req.headers(), Version::HTTP_11)
            .map_err(|_| "An HTTP/2 request needs :authority or a Host header.");
    };
    if !valid_host(&authority) || authority.contains('@') {
        return Err("The :authority is not a valid host[:port].");
    }
    if let Some(h) = req.headers().get(header::HOST) {
        if h.as_bytes() != authority.as_bytes()
            || req.headers().get_all(header::HOST).iter().count() > 1
        {
            return Err("The Host header differs from :authority.");
        }
    }
    let value = http::HeaderValue::from_str(&authority)
        .map_err(|_| "The :authority is not a valid host[:port].")?;
    req.headers_mut().insert(header::HOST, value);
    Ok(authority)
}

/// The request's `Host` value ("" when an HTTP/1.0 request has none).
pub fn host_header(h: &HeaderMap, version: Version) -> Result<String, Invalid> {
    let mut all = h.get_all(header::HOST).iter();
    let Some(value) = all.next() else {
        return match version {
            Version::HTTP_09 | Version::HTTP_10 => Ok(String::new()),
            _ => Err("An HTTP/1.1 request needs a Host header."),
        };
    };
    if all.next().is_some() {
        return Err("A request may carry only one Host header.");
    }
    match value.to_str() {
        Ok(v) if valid_host(v) => Ok(v.to_string()),
        _ => Err("The Host header is not a valid host[:port]."),
    }
}

/// RFC 3986 `host [ ":" port ]`: a reg-name or IPv4 address, or an IP literal in brackets;
/// the port all digits. Empty is allowed (RFC 9112: a target without authority).
pub fn valid_host(v: &str) -> bool {
    let (host, port) = match v.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((lit, after)) => {
                if lit.is_empty()
                    || !lit.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return false;
                }
                (None, after)
            }
            None => return false,
        },
        None => match v.split_once(':') {
            Some((h, _)) => (Some(h), &v[h.len()..]),
            None => (Some(v), ""),
        },
    };
    if let Some(h) = host {
        if !h.bytes().all(reg_name_byte) {
            return false;
        }
    }
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// unreserved, sub-delims and `%` of pct-encoded.
fn reg_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in ["", "x", "a.example", "a.example:8080", "127.0.0.1:1", "[::1]", "[::1]:80", "x:"]
        {
            assert!(valid_host(ok), "{ok:?}");
        }
        for bad in [
            "a.example/trac/x",
            "a b",
            "a@b",
            "a.example:80:80",
            "a.example:http",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:8o",
            "h\u{e9}",
            "a?b",
            "a#b",
            "a:123456",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn counts_and_versions() {
        let mut h = HeaderMap::new();
        assert!(host_header(&h, Version::HTTP_11).is_err(), "1.1 without Host");
        assert_eq!(host_header(&h, Version::HTTP_10), Ok(String::new()));
        h.append(header::HOST, "a.example".parse().unwrap());
        assert_eq!(host_header(&h, Version::HTTP_11), Ok("a.example".to_string()));
        h.append(header::HOST, "a.example".parse().unwrap());
        assert!(host_header(&h, Version::HTTP_11).is_err(), "two Host headers");
        assert!(host_header(&h, Version::HTTP_10).is_err(), "two Host headers");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a.example/trac/x".parse().unwrap());
        assert!(host_header(&h, Version::HTTP_11).is_err());
    }
}
