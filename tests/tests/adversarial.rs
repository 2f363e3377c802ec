//! The adversarial suite: raw bytes over loopback TCP against the real `paddock`, one case at a
//! time. For each case it checks (a) the exact status the router answers, (b) that the
//! connection stays framed (a follow-up request on it gets its own answer) or that the answer
//! said `Connection: close` and the connection then ended cleanly (EOF, no reset, nothing
//! extra), and (c) that another tenant, of its own pool, kept being served meanwhile.

mod advkit;
mod common;

use advkit::{closes, expect, Bystander, Client};

/// `(what, bytes, status)` cases, each sent sequentially and pipelined (see [`expect`]).
fn run(addr: std::net::SocketAddr, cases: &[(&str, Vec<u8>, u16)]) {
    for (what, bytes, status) in cases {
        for pipelined in [false, true] {
            expect(addr, &format!("{what} (pipelined {pipelined})"), bytes, *status, pipelined);
        }
    }
}

fn post_chunked(path: &str, te: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n{body}").into_bytes()
}

#[test]
fn smuggling_variants_are_refused_and_framing_holds() {
    let suite = advkit::start();
    let addr = suite.addr();
    let pid = suite.pid_of("a");
    let watch = Bystander::start(addr, "/b/pid");
    let te = "Transfer-Encoding: chunked";
    let big_trailer = format!("0\r\nX-Big: {}\r\n\r\n", "t".repeat(64 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "CL+TE",
            post_chunked("/a/echo", "Content-Length: 5\r\nTransfer-Encoding: chunked", "0\r\n\r\n"),
            400,
        ),
        (
            "TE+CL",
            post_chunked("/a/echo", "Transfer-Encoding: chunked\r\nContent-Length: 3", "0\r\n\r\n"),
            400,
        ),
        (
            "two differing Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                .to_vec(),
            400,
        ),
        (
            "a list in Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(),
            400,
        ),
        (
            "a signed Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc".to_vec(),
            400,
        ),
        ("TE chunked, identity", post_chunked("/a/echo", "Transfer-Encoding: chunked, identity", "0\r\n\r\n"), 400),
        ("TE xchunked", post_chunked("/a/echo", "Transfer-Encoding: xchunked", "0\r\n\r\n"), 400),
        ("TE identity", post_chunked("/a/echo", "Transfer-Encoding: identity", "0\r\n\r\n"), 400),
        ("TE with a space before the colon", post_chunked("/a/echo", "Transfer-Encoding : chunked", "0\r\n\r\n"), 400),
        ("TE obs-fold", post_chunked("/a/echo", "Transfer-Encoding:\r\n chunked", "0\r\n\r\n"), 400),
        ("TE obs-fold after a header", post_chunked("/a/echo", "X-A: 1\r\n Transfer-Encoding: chunked", "0\r\n\r\n"), 400),
        ("chunk size overflow", post_chunked("/a/echo", te, "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400),
        ("invalid hex", post_chunked("/a/echo", te, "zz\r\nabc\r\n0\r\n\r\n"), 400),
        ("a negative chunk size", post_chunked("/a/echo", te, "-3\r\nabc\r\n0\r\n\r\n"), 400),
        ("bare LF in chunk lines", post_chunked("/a/echo", te, "3\nabc\n0\n\n"), 400),
        ("chunk data longer than its size", post_chunked("/a/echo", te, "3\r\nabcdef\r\n0\r\n\r\n"), 400),
        ("oversized trailers", post_chunked("/a/echo", te, &format!("3\r\nabc\r\n{big_trailer}")), 400),
        // Accepted spellings: the body is the chunks' data, the follow-up its own request.
        ("TE with a tab", post_chunked("/a/echo", "Transfer-Encoding:\tchunked", "3\r\nabc\r\n0\r\n\r\n"), 200),
        ("TE in capitals", post_chunked("/a/echo", "Transfer-Encoding: CHUNKED", "3\r\nabc\r\n0\r\n\r\n"), 200),
        ("chunk extensions", post_chunked("/a/echo", te, "3;name=value;x=\"q\"\r\nabc\r\n0;end\r\n\r\n"), 200),
        ("a small trailer", post_chunked("/a/echo", te, "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"), 200),
        (
            "two equal Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            200,
        ),
        (
            "Upgrade with CL+TE",
            post_chunked(
                "/a/echo",
                "Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "Upgrade websocket with TE+CL",
            post_chunked(
                "/a/echo",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\nUpgrade: websocket\r\nConnection: Upgrade",
                "0\r\n\r\n",
            ),
            400,
        ),
    ];
    run(addr, &cases);
    // The accepted spellings really were framed as chunked: the body echoed is the data.
    let mut c = Client::connect(addr);
    c.send(post_chunked("/a/echo", "Transfer-Encoding:\tchunked", "3;x=y\r\nabc\r\n0\r\n\r\n"));
    let r = c.response().expect("echo");
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    // A valid request pipelined before a smuggling one gets its 200, the bad one a 400.
    let mut c = Client::connect(addr);
    let mut raw = b"GET /a/pid HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    raw.extend(post_chunked(
        "/b/echo",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "0\r\n\r\nGET /b/secret HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    c.send(raw);
    let first = c.response().expect("the valid request's answer");
    assert_eq!((first.status, first.text()), (200, pid.clone()));
    let second = c.response().expect("the smuggling request's answer");
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(closes(&second), "{second:?}");
    c.clean_end().expect("clean end after the 400");
    // None of this was the worker's failure: the same process serves on.
    assert_eq!(suite.pid_of("a"), pid, "tenant a's worker was replaced");
    watch.finish(1);
}
