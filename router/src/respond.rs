//! The body type of every response, and the pages the router writes itself (which status an
//! error gets is [`crate::refusal`]'s to say).

use std::io;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// The body of every response: the app's streamed from its worker, a file, or a page.
pub type Body = BoxBody<Bytes, io::Error>;

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A small HTML page with `status`, a title and one sentence of detail (already plain text).
pub fn page(status: StatusCode, detail: &str) -> Response<Body> {
    let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p>{d}</p><hr><address>Paddock</address></body></html>\n",
        t = escape(&title),
        d = escape(detail)
    );
    let mut r = Response::new(full(html));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("static"));
    r.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    r
}

pub fn redirect(status: u16, location: &[u8]) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let mut r = page(status, "The document has moved.");
    match http::HeaderValue::from_bytes(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => page(StatusCode::INTERNAL_SERVER_ERROR, "A rule produced an invalid redirect."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
