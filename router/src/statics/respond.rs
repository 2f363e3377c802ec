//! The responses of the static-file server: 200/206 with the file, 304, 404, 405, 416.

use std::ffi::OsStr;
use std::io::SeekFrom;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncSeekExt;

use super::body::FileBody;
use super::conditional::{Ranged, Validators};
use super::resolve::Opened;
use super::Hit;
use crate::respond::Body;

pub fn not_found() -> Response<Body> {
    crate::respond::page(StatusCode::NOT_FOUND, "There is no such file.")
}

pub fn method_not_allowed() -> Response<Body> {
    let mut r = crate::respond::page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Static files can only be fetched with GET or HEAD.",
    );
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

/// The answer for an open file: 304 if the client's copy is current, else the file or the
/// requested range of it (headers only for HEAD).
pub async fn file(
    opened: Opened,
    hit: &Hit,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let Opened { file, meta } = opened;
    let v = Validators::of(&meta);
    let len = meta.len();
    let mut r = Response::new(crate::respond::full(bytes::Bytes::new()));
    set(&mut r, header::ETAG, &v.etag);
    set(&mut r, header::LAST_MODIFIED, &v.last_modified);
    set(&mut r, header::CACHE_CONTROL, &cache_control(hit));
    if v.not_modified(headers) {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    set(&mut r, header::CONTENT_TYPE, content_type(&hit.rest));
    // What the type says is what the browser gets: no sniffing files uploaded to htdocs into
    // HTML.
    set(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut r, header::ACCEPT_RANGES, "bytes");
    let ranged = if method == Method::GET { v.ranged(headers, len) } else { Ranged::Full };
    let Some((start, count)) = apply_range(&mut r, ranged, len) else { return r };
    set(&mut r, header::CONTENT_LENGTH, &count.to_string());
    if method == Method::HEAD || count == 0 {
        return r;
    }
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        if let Err(e) = file.seek(SeekFrom::Start(start)).await {
            tracing::warn!("cannot seek in a static file: {e}");
            return not_found();
        }
    }
    *r.body_mut() = FileBody::new(file, count).boxed();
    r
}

/// Status and `Content-Range` for `ranged`; the bytes to send, or `None` for a 416.
fn apply_range(r: &mut Response<Body>, ranged: Ranged, len: u64) -> Option<(u64, u64)> {
    match ranged {
        Ranged::Full => Some((0, len)),
        Ranged::Partial { start, end } => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(r, header::CONTENT_RANGE, &format!("bytes {start}-{end}/{len}"));
            Some((start, end - start + 1))
        }
        Ranged::Unsatisfiable => {
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(r, header::CONTENT_RANGE, &format!("bytes */{len}"));
            r.headers_mut().remove(header::CONTENT_TYPE);
            set(r, header::CONTENT_LENGTH, "0");
            None
        }
    }
}

fn cache_control(hit: &Hit) -> String {
    match hit.max_age.as_secs() {
        0 => "no-cache".to_string(),
        n => format!("max-age={n}"),
    }
}

/// By the extension of the name asked for; unknown: `application/octet-stream`.
pub fn content_type(rest: &[u8]) -> &'static str {
    let name = rest.rsplit(|&b| b == b'/').next().unwrap_or_default();
    mime_guess::from_path(Path::new(OsStr::from_bytes(name)))
        .first_raw()
        .unwrap_or("application/octet-stream")
}

fn set(r: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}
