//! The admin API client of the command line: one HTTP/1.1 exchange per command, over TCP to
//! the admin listener, with the bearer token.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// How long one command may take (a signup runs the provisioning commands: they have their
/// own bound on the server side, 2 minutes by default).
const TIMEOUT: Duration = Duration::from_secs(180);

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin listener at {addr}: {source} (is `[admin]` configured and the server running?)")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("the admin listener at {addr} did not answer within {TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
    #[error("HTTP error talking to {addr}: {source}")]
    Http { addr: SocketAddr, source: hyper::Error },
    #[error("the admin API answered {status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("the admin API answered {status} with a body that is not JSON")]
    NotJson { status: StatusCode },
}

/// Where the admin API is and the token to present.
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    /// `method path` with an optional JSON body; the JSON answer of a 2xx status.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        match tokio::time::timeout(TIMEOUT, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { addr: self.addr }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let addr = self.addr;
        let http = |source| ClientError::Http { addr, source };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(http)?;
        let driver = tokio::spawn(conn);
        let bytes = body.map(|v| Bytes::from(v.to_string())).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(bytes)).map_err(|e| ClientError::Api {
            status: StatusCode::BAD_REQUEST,
            message: format!("cannot build the request: {e}"),
        })?;
        let resp = send.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(http)?.to_bytes();
        driver.abort();
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if status.is_success() => return Err(ClientError::NotJson { status }),
            Err(_) => {
                let text = String::from_utf8_lossy(&body).trim().to_string();
                return Err(ClientError::Api { status, message: text });
            }
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = match value.get("error").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => value.to_string(),
        };
        Err(ClientError::Api { status, message })
    }
}
