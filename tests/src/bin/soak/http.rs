//! A strict HTTP/1.1 client: every response is read to its declared end (Content-Length,
//! the last chunk, or EOF when neither is given), so a reset, an empty reply or a truncated
//! response is told apart from a complete one.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Why an exchange did not give a complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fail {
    Connect,
    Reset,
    /// EOF before any byte of the response.
    Empty,
    /// EOF inside the head or the body.
    Truncated,
    Timeout,
    /// Bytes that are not an HTTP/1.1 response.
    Garbled,
}

impl Fail {
    pub fn name(self) -> &'static str {
        match self {
            Fail::Connect => "connect_error",
            Fail::Reset => "connection_reset",
            Fail::Empty => "empty_reply",
            Fail::Truncated => "truncated",
            Fail::Timeout => "client_timeout",
            Fail::Garbled => "garbled",
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The router's own error page (`respond::page`), not one an application wrote.
    pub fn is_router_page(&self) -> bool {
        self.header("content-type") == Some("text/html; charset=utf-8")
            && self.body.windows(26).any(|w| w == b"<address>Paddock</address>")
    }

    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    /// Bytes of the current response received so far (0: nothing yet).
    got: usize,
}

fn classify(e: &std::io::Error) -> Fail {
    match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            Fail::Reset
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Fail::Timeout,
        _ => Fail::Reset,
    }
}

impl Conn {
    pub fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, (Fail, String)> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| (Fail::Connect, e.to_string()))?;
        let set = s.set_read_timeout(Some(timeout)).and(s.set_write_timeout(Some(timeout)));
        set.map_err(|e| (Fail::Connect, e.to_string()))?;
        Ok(Conn { s, buf: Vec::new(), got: 0 })
    }

    pub fn send(&mut self, raw: &[u8]) -> Result<(), (Fail, String)> {
        self.s.write_all(raw).map_err(|e| (classify(&e), format!("write: {e}")))
    }

    /// More bytes into `buf`; Ok(false) at EOF.
    fn fill(&mut self) -> Result<bool, (Fail, String)> {
        let mut chunk = [0u8; 65536];
        match self.s.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.got += n;
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) => Err((classify(&e), format!("read after {} bytes: {e}", self.got))),
        }
    }

    fn eof(&self, what: &str) -> (Fail, String) {
        match self.got {
            0 => (Fail::Empty, format!("EOF before any byte ({what})")),
            n => (Fail::Truncated, format!("EOF in the {what} after {n} bytes")),
        }
    }

    fn line(&mut self) -> Result<Vec<u8>, (Fail, String)> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > 65536 {
                return Err((Fail::Garbled, "line over 64 KiB".into()));
            }
            if !self.fill()? {
                return Err(self.eof("body"));
            }
        }
    }

    fn exact(&mut self, n: usize) -> Result<Vec<u8>, (Fail, String)> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(self.eof("body"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Read until a response head is in `buf`: the offset of its blank line.
    fn head_end(&mut self) -> Result<usize, (Fail, String)> {
        self.got = self.buf.len();
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i);
            }
            if self.buf.len() > 256 * 1024 {
                return Err((Fail::Garbled, "head over 256 KiB".into()));
            }
            if !self.fill()? {
                return Err(self.eof("head"));
            }
        }
    }

    /// Read one complete response (`head`: the request was a HEAD).
    pub fn read_response(&mut self, head: bool) -> Result<Resp, (Fail, String)> {
        let end = self.head_end()?;
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 =
            match status_line.strip_prefix("HTTP/1.1 ").or(status_line.strip_prefix("HTTP/1.0 ")) {
                Some(rest) => rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0),
                None => 0,
            };
        if status == 0 {
            return Err((Fail::Garbled, format!("status line {status_line:?}")));
        }
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().into(), v.trim().into())))
            .collect();
        let mut r = Resp { status, headers, body: Vec::new() };
        if head || status / 100 == 1 || status == 204 || status == 304 {
            return Ok(r);
        }
        let chunked =
            r.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        if chunked {
            loop {
                let line = self.line()?;
                let text = String::from_utf8_lossy(&line);
                let size_text = text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| (Fail::Garbled, format!("chunk size {text:?}")))?;
                if size == 0 {
                    // Trailers up to the empty line.
                    while !self.line()?.is_empty() {}
                    return Ok(r);
                }
                let data = self.exact(size)?;
                r.body.extend_from_slice(&data);
                if !self.line()?.is_empty() {
                    return Err((Fail::Garbled, "no CRLF after a chunk".into()));
                }
            }
        }
        if let Some(cl) = r.header("content-length") {
            let n: usize =
                cl.parse().map_err(|_| (Fail::Garbled, format!("Content-Length {cl:?}")))?;
            r.body = self.exact(n)?;
            return Ok(r);
        }
        // Delimited by EOF: nothing tells a truncation here.
        while self.fill()? {}
        r.body = std::mem::take(&mut self.buf);
        Ok(r)
    }

    /// Read a response's head only (the body's first bytes may be buffered): its status.
    pub fn read_head(&mut self) -> Result<u16, (Fail, String)> {
        let end = self.head_end()?;
        let line =
            String::from_utf8_lossy(&self.buf[..end]).lines().next().unwrap_or("").to_owned();
        self.buf.drain(..end + 4);
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| (Fail::Garbled, format!("status line {line:?}")))
    }

    /// Body bytes read along with the head and not taken yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Read until EOF or an error, for at most `limit`: how it ended.
    pub fn drain(&mut self) -> Result<usize, (Fail, String)> {
        let mut total = 0usize;
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) => return Err((classify(&e), format!("after {total} bytes: {e}"))),
            }
        }
    }
}

/// One request on a new connection.
pub fn once(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Result<Resp, (Fail, String)> {
    let mut c = Conn::open(addr, timeout)?;
    c.send(raw)?;
    c.read_response(false)
}

pub fn get_req(path: &str, keep_alive: bool) -> Vec<u8> {
    let conn = if keep_alive { "keep-alive" } else { "close" };
    format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: {conn}\r\n\r\n").into_bytes()
}

pub fn post_req(path: &str, ctype: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}
