//! What the request path learns about one request, for the metrics: why the router refused it
//! (the `reason` label of `paddock_rejected_requests_total`) and how long it queued. A leaf:
//! the refusals set it, the metrics read it.

use std::time::Duration;

/// Why the router refused a request: the `reason` label of `paddock_rejected_requests_total`,
/// set only by [`crate::refusal::Refusal::answer`] (and the HTTP parser's own 431).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: malformed target, bad body framing, smuggling attempt, a bad `Host`, a path
    /// naming two tenants, a broken chunked body.
    BadRequest,
    /// 401: authentication required or failed.
    Unauthorized,
    /// 413: body over `max_body`.
    BodyTooLarge,
    /// 408: body slower than `body_read_timeout` and `body_min_rate` allow.
    BodyTimeout,
    /// 431: request head over `max_header_bytes`.
    HeadTooLarge,
    /// 405: `CONNECT`.
    MethodNotAllowed,
    /// 503: the pool cannot start, its workers refuse connections, or the global budget is
    /// exhausted.
    Unavailable,
    /// 503: `queue_limit` requests already waiting.
    QueueFull,
    /// 503: no slot within `queue_timeout`.
    QueueTimeout,
    /// 503: the site is disabled by its host.
    Disabled,
    /// 503: in a cluster, no node may serve the site now (this node has no live lease, etcd
    /// cannot be reached, or a forwarded request reached a node that does not own the site).
    Cluster,
}

impl Reject {
    pub const ALL: [Reject; 11] = [
        Reject::BadRequest,
        Reject::Unauthorized,
        Reject::BodyTooLarge,
        Reject::BodyTimeout,
        Reject::HeadTooLarge,
        Reject::MethodNotAllowed,
        Reject::Unavailable,
        Reject::QueueFull,
        Reject::QueueTimeout,
        Reject::Disabled,
        Reject::Cluster,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::BadRequest => "bad_request",
            Reject::Unauthorized => "unauthorized",
            Reject::BodyTooLarge => "body_too_large",
            Reject::BodyTimeout => "body_timeout",
            Reject::HeadTooLarge => "header_too_large",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::Unavailable => "unavailable",
            Reject::QueueFull => "queue_full",
            Reject::QueueTimeout => "queue_timeout",
            Reject::Disabled => "disabled",
            Reject::Cluster => "cluster",
        }
    }
}

/// What the request path learns about one request besides its tenant and status.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestMeta {
    /// Time spent getting a slot in the pool (`Pool::admit`), if the request reached one.
    pub queue_wait: Option<Duration>,
    /// Set when the router refused the request itself.
    pub rejected: Option<Reject>,
}
