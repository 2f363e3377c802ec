//! Forwarding one request to the node that owns its tenant: a pooled HTTP/1.1 client to the
//! peer's internal listener, the body streamed both ways, hop-by-hop headers dropped, the
//! [`Hop`] marker added.

use std::net::SocketAddr;
use std::time::Duration;

use http::{header, HeaderMap, HeaderName, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::hop::{self, Hop};
use crate::respond::Body;

/// Time to connect to a peer; a peer that does not answer is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Relay {
    client: Client<HttpConnector, Incoming>,
}

/// Why a forward failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot forward to {addr}: {source}")]
    Failed { addr: SocketAddr, source: hyper_util::client::legacy::Error },
    #[error("{addr} sent no response head within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("bad request target for forwarding: {0}")]
    Target(String),
    #[error("{node} left the cluster before it answered (its lease expired)")]
    OwnerGone { node: String },
}

impl RelayError {
    /// Whether the peer cannot have seen the request (refused or timed-out connect): it may
    /// be routed again.
    pub fn not_delivered(&self) -> bool {
        matches!(self, RelayError::Failed { source, .. } if source.is_connect())
    }
}

impl Default for Relay {
    fn default() -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Relay { client }
    }
}

/// Headers that belong to one connection (RFC 9110 §7.6.1) or that the relay sets itself.
fn hop_by_hop(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names = vec![
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::EXPECT,
        hop::HEADER,
    ];
    for v in headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()) {
        names.extend(v.split(',').filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()));
    }
    names
}

fn strip(headers: &mut HeaderMap) {
    for name in hop_by_hop(headers) {
        headers.remove(name);
    }
}

impl Relay {
    /// Send `parts` + `body` to `addr` with `hop`, and stream the answer back. `path` is the
    /// request target (origin form). Waits at most `head_timeout` for the response head.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        mut parts: http::request::Parts,
        path: &str,
        body: Incoming,
        hop: &Hop,
        head_timeout: Duration,
    ) -> Result<Response<Body>, RelayError> {
        let uri: Uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| RelayError::Target(e.to_string()))?;
        strip(&mut parts.headers);
        parts.headers.insert(hop::HEADER, hop.value());
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        let req = Request::from_parts(parts, body);
        let resp = match tokio::time::timeout(head_timeout, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(source)) => return Err(RelayError::Failed { addr, source }),
            Err(_) => return Err(RelayError::Timeout { addr, after: head_timeout }),
        };
        let (mut parts, body) = resp.into_parts();
        strip(&mut parts.headers);
        let body = body.map_err(std::io::Error::other).boxed();
        Ok(Response::from_parts(parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_scoped_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Private".parse().expect("value"));
        h.insert("x-private", "1".parse().expect("value"));
        h.insert("keep-alive", "timeout=5".parse().expect("value"));
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("value"));
        h.insert(hop::HEADER, "node=evil".parse().expect("value"));
        h.insert(header::EXPECT, "100-continue".parse().expect("value"));
        h.insert(header::HOST, "example.org".parse().expect("value"));
        h.insert(header::CONTENT_LENGTH, "3".parse().expect("value"));
        strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host"]);
    }
}
