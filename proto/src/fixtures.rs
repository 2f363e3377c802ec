//! A realistic request head for benchmarks (and tests) of both sides of the protocol: a
//! browser's GET of a Trac wiki page as the router hands it over. Not part of the API.

use crate::{BodyKind, RequestHead};

/// `(name, value)` text pairs as protocol byte pairs.
pub fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

/// What the router sends for a browser's GET of a Trac wiki page: 12 headers, 3 extras.
pub fn browser_get() -> RequestHead {
    RequestHead {
        method: b"GET".to_vec(),
        script_name: b"/trac/alpha".to_vec(),
        path_info: b"/wiki/WikiStart".to_vec(),
        query_string: b"version=3&action=diff".to_vec(),
        request_uri: b"/trac/alpha/wiki/WikiStart?version=3&action=diff".to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        scheme: b"https".to_vec(),
        server_name: b"trac.example.org".to_vec(),
        server_port: 443,
        remote_addr: b"203.0.113.42".to_vec(),
        remote_port: 51234,
        body: BodyKind::Empty,
        headers: pairs(&[
            ("Host", "trac.example.org"),
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            (
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                 image/webp,*/*;q=0.8",
            ),
            ("Accept-Language", "en-GB,en;q=0.7,de;q=0.3"),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Referer", "https://trac.example.org/trac/alpha/timeline"),
            ("Cookie", "trac_form_token=5f2c1e0a9b8d7c6e4f3a2b1c; trac_session=0123456789abcdef"),
            ("Connection", "keep-alive"),
            ("Upgrade-Insecure-Requests", "1"),
            ("Sec-Fetch-Dest", "document"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Site", "same-origin"),
        ]),
        environ: pairs(&[
            ("trac.env_path", "/srv/trac/sites/alpha"),
            ("trac.locale", "en_GB"),
            ("trac.base_url", "https://trac.example.org/trac/alpha"),
        ]),
    }
}
