//! Every answer the router gives in place of the application's, as one value: its status, the
//! reason it is counted under (`paddock_rejected_requests_total{reason}`), the sentence the
//! client reads and the headers it needs. Errors become a [`Refusal`] through `From`, and
//! [`Refusal::answer`] alone turns one into a response and records its reason, so a status
//! and its metric can never disagree.
//!
//! Not every router answer is a refusal the metric counts: a routing outcome (404, 403 from a
//! rule, 410) answers the request as asked, and a site's failure (500, 502, 504) is the site's,
//! counted in `paddock_requests_total` and `paddock_worker_exits_total`. Those have no reason.

use std::borrow::Cow;

use http::{header, HeaderName, HeaderValue, Response, StatusCode};

use crate::forward::ForwardError;
use crate::outcome::{Reject, RequestMeta};
use crate::respond::{self, Body};
use paddock_rules::path::PathError;
use paddock_supervise::pool::PoolError;
use paddock_supervise::registry::StartError;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER: HeaderValue = HeaderValue::from_static("5");

/// An answer the router gives instead of the application's.
#[derive(Debug)]
#[must_use = "a refusal does nothing until it is answered"]
pub struct Refusal {
    status: StatusCode,
    reason: Option<Reject>,
    detail: Cow<'static, str>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    fn new(
        status: StatusCode,
        reason: Option<Reject>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut r = Refusal { status, reason, detail: detail.into(), headers: Vec::new() };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers.push((header::RETRY_AFTER, RETRY_AFTER));
        }
        r
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, Some(Reject::BadRequest), detail)
    }

    /// Both `Content-Length` and `Transfer-Encoding`: how requests are smuggled past proxies
    /// that disagree on which one wins. The connection cannot be trusted after it.
    pub fn conflicting_framing() -> Self {
        Refusal::bad_request("Content-Length and Transfer-Encoding together.").closing()
    }

    pub fn head_too_large() -> Self {
        let why = "The request head is larger than this server accepts.";
        Refusal::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Some(Reject::HeadTooLarge), why)
            .closing()
    }

    pub fn body_too_large() -> Self {
        let why = "The request body is too large.";
        Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, Some(Reject::BodyTooLarge), why)
    }

    pub fn connect_not_supported() -> Self {
        let why = "CONNECT is not supported.";
        Refusal::new(StatusCode::METHOD_NOT_ALLOWED, Some(Reject::MethodNotAllowed), why)
    }

    /// 401 with the `WWW-Authenticate` challenge.
    pub fn unauthorized(challenge: HeaderValue) -> Self {
        let why = "This page needs a user name and password, and none (or wrong ones) were given.";
        let mut r = Refusal::new(StatusCode::UNAUTHORIZED, Some(Reject::Unauthorized), why);
        r.headers.push((header::WWW_AUTHENTICATE, challenge));
        r
    }

    pub fn disabled() -> Self {
        let why = "This site is disabled by its host.";
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, Some(Reject::Disabled), why)
    }

    pub fn unavailable() -> Self {
        let why = "The site is not available.";
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, Some(Reject::Unavailable), why)
    }

    /// 503 in a cluster: no node may serve the site at the moment; `why` is for the client.
    pub fn cluster(why: &'static str) -> Self {
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, Some(Reject::Cluster), why)
    }

    pub fn not_found() -> Self {
        Refusal::new(StatusCode::NOT_FOUND, None, "There is no site at this address.")
    }

    pub fn forbidden() -> Self {
        Refusal::new(StatusCode::FORBIDDEN, None, "Access to this address is forbidden.")
    }

    pub fn gone() -> Self {
        Refusal::new(StatusCode::GONE, None, "This site is gone.")
    }

    /// A fault of the router itself (a state that should not happen).
    pub fn internal(detail: &'static str) -> Self {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, None, detail)
    }

    /// Announce that the connection ends after this answer (part of the request may still be
    /// unread, or the connection cannot be trusted).
    pub fn closing(mut self) -> Self {
        self.headers.push((header::CONNECTION, HeaderValue::from_static("close")));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response, with the reason recorded in `meta` for the metrics.
    pub fn answer(self, meta: &mut RequestMeta) -> Response<Body> {
        meta.rejected = self.reason;
        self.into_response()
    }

    /// The response alone, for callers that count nothing per request (the admin listener).
    pub fn into_response(self) -> Response<Body> {
        let mut r = respond::page(self.status, &self.detail);
        for (name, value) in self.headers {
            r.headers_mut().insert(name, value);
        }
        r
    }
}

impl From<PathError> for Refusal {
    fn from(e: PathError) -> Self {
        Refusal::bad_request(format!("Invalid request target: {e}."))
    }
}

impl From<&PoolError> for Refusal {
    fn from(e: &PoolError) -> Self {
        let (reason, why) = match e {
            PoolError::QueueFull { .. } => {
                (Reject::QueueFull, "The site is busy. Please try again shortly.")
            }
            PoolError::QueueTimeout { .. } => {
                (Reject::QueueTimeout, "The site is busy. Please try again shortly.")
            }
            PoolError::StartTimeout { .. }
            | PoolError::Unavailable { .. }
            | PoolError::Stopped { .. } => (
                Reject::Unavailable,
                "The site is temporarily unavailable. Please try again shortly.",
            ),
        };
        Refusal::new(StatusCode::SERVICE_UNAVAILABLE, Some(reason), why)
    }
}

/// No pool for the tenant: whatever the cause (the budget, the tenant's user, its socket),
/// the client gets the same 503; the cause goes to the log.
impl From<&StartError> for Refusal {
    fn from(e: &StartError) -> Self {
        match e {
            StartError::Budget { .. }
            | StartError::TooBig { .. }
            | StartError::Identity(_)
            | StartError::Socket { .. } => Refusal::unavailable(),
        }
    }
}

impl From<&ForwardError> for Refusal {
    fn from(e: &ForwardError) -> Self {
        let failed = "The site's worker failed while handling this request.";
        match e {
            ForwardError::Connect(_) => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Reject::Unavailable),
                "The site is temporarily unavailable.",
            ),
            ForwardError::WorkerGone
            | ForwardError::Protocol(_)
            | ForwardError::HeadTooLarge { .. } => {
                Refusal::new(StatusCode::BAD_GATEWAY, None, failed)
            }
            ForwardError::AppError(_) => Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "The application failed; the details are in the server log.",
            ),
            ForwardError::Timeout(_) => {
                Refusal::new(StatusCode::GATEWAY_TIMEOUT, None, "The site took too long to answer.")
            }
            ForwardError::BodyTooLarge(_) => Refusal::body_too_large(),
            ForwardError::BadBody => Refusal::bad_request("Invalid request body."),
            // The rest of the body may still be on its way: this connection cannot go on.
            ForwardError::BodyTimeout(_) => Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                Some(Reject::BodyTimeout),
                "The request body came too slowly.",
            )
            .closing(),
        }
    }
}

#[cfg(test)]
mod tests;
