//! Responses the router makes itself: short HTML pages, and the one mapping from internal
//! errors to HTTP statuses.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::forward::{Body, ForwardError};
use crate::pool::PoolError;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER: &str = "5";

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

fn unavailable(detail: &str) -> Response<Body> {
    let mut r = page(StatusCode::SERVICE_UNAVAILABLE, detail);
    r.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER.parse().expect("static"));
    r
}

pub fn pool_error(e: &PoolError) -> Response<Body> {
    match e {
        PoolError::QueueTimeout { .. } | PoolError::QueueFull { .. } => {
            unavailable("The site is busy. Please try again shortly.")
        }
        PoolError::StartTimeout { .. }
        | PoolError::Unavailable { .. }
        | PoolError::Stopped { .. } => {
            unavailable("The site is temporarily unavailable. Please try again shortly.")
        }
    }
}

pub fn forward_error(e: &ForwardError) -> Response<Body> {
    match e {
        ForwardError::Connect(_) => unavailable("The site is temporarily unavailable."),
        ForwardError::WorkerGone
        | ForwardError::Protocol(_)
        | ForwardError::HeadTooLarge { .. } => {
            page(StatusCode::BAD_GATEWAY, "The site's worker failed while handling this request.")
        }
        ForwardError::AppError(_) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The application failed; the details are in the server log.",
        ),
        ForwardError::Timeout(_) => {
            page(StatusCode::GATEWAY_TIMEOUT, "The site took too long to answer.")
        }
        ForwardError::BodyTooLarge(_) => {
            page(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large.")
        }
        ForwardError::BadBody => page(StatusCode::BAD_REQUEST, "Invalid request body."),
        ForwardError::BodyTimeout(_) => {
            // The rest of the body may still be on its way: this connection cannot go on.
            let mut r = page(StatusCode::REQUEST_TIMEOUT, "The request body came too slowly.");
            r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn unavailable_has_retry_after() {
        let r = pool_error(&PoolError::QueueTimeout {
            tenant: "t".into(),
            waited: std::time::Duration::from_secs(1),
        });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], RETRY_AFTER);
    }
}
