//! HTTPS and HTTP/2 end to end: a throwaway CA and certificates made with the `openssl` CLI,
//! requests made with `curl` (HTTP/1.1, HTTP/2 by ALPN, h2c with prior knowledge) and, for the
//! limits, raw HTTP/2 frames over loopback TCP, so that the client can break the rules a real
//! one keeps (more streams than allowed, a flood of resets).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, free_port, Server};

mod h2raw;

/// A server with a test-app tenant `app` at `/app`, and `[tls]` with certificates for
/// `a.test` (the default) and `b.test`, all signed by `ca.crt` in `dir`.
struct Setup {
    server: Server,
    tls: SocketAddr,
    dir: tempfile::TempDir,
}

fn start(top: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(
        d,
        &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &[
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=paddock-test-ca",
        ],
    );
    issue(d, "a.test", "a.test", "a.test");
    issue(d, "b.test", "b.test", "b.test");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let section = format!(
        "{top}\n[tls]\nlisten = \"{tls}\"\n\
         [[tls.certificates]]\nnames = [\"a.test\"]\ncert = \"a.test.crt\"\nkey = \"a.test.key\"\n\
         [[tls.certificates]]\nnames = [\"b.test\"]\ncert = \"b.test.crt\"\nkey = \"b.test.key\"\n"
    );
    let cfg = common::apps_config(d, &section, &[("app", "processes = 1")]);
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8")]);
    eventually("the TLS listener", Duration::from_secs(10), || TcpStream::connect(tls).is_ok());
    Setup { server, tls, dir }
}

fn openssl(dir: &Path, a: &[&str], b: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(a)
        .args(b)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {a:?} {b:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `FILE.crt` and `FILE.key` in `dir`: a new key and a certificate for `name` with subject
/// `cn`, signed by the CA.
fn issue(dir: &Path, file: &str, name: &str, cn: &str) {
    let (key, csr, crt) = (format!("{file}.key"), format!("{file}.csr"), format!("{file}.crt"));
    let subj = format!("/CN={cn}");
    let ext = format!("{file}.ext");
    std::fs::write(dir.join(&ext), format!("subjectAltName=DNS:{name}\n")).expect("ext file");
    openssl(
        dir,
        &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
        &["-keyout", &key, "-out", &csr, "-subj", &subj],
    );
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key"],
        &["-CAcreateserial", "-days", "2", "-out", &crt, "-extfile", &ext],
    );
}

/// The subject of the certificate the server sends for `sni` (none: no SNI at all).
fn subject(s: &Setup, sni: Option<&str>) -> String {
    let connect = s.tls.to_string();
    let mut args = vec!["s_client", "-connect", &connect];
    if let Some(n) = sni {
        args.extend(["-servername", n]);
    } else {
        args.push("-noservername");
    }
    let out = openssl(s.dir.path(), &args, &[]);
    let pem =
        out.split_inclusive('\n').skip_while(|l| !l.starts_with("-----BEGIN")).collect::<String>();
    let path = s.dir.path().join("peer.pem");
    std::fs::write(&path, pem).expect("write peer.pem");
    openssl(s.dir.path(), &["x509", "-noout", "-subject", "-in", "peer.pem"], &[])
        .trim()
        .to_string()
}

/// A `curl` request: (HTTP version, status, body). `args` come before the URL.
fn curl(dir: &Path, args: &[&str], url: &str) -> (String, u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            "ca.crt",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .arg(url)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (version, status) = tail.split_once(' ').unwrap_or(("", ""));
    assert!(out.status.success(), "curl {args:?} {url}: {}", String::from_utf8_lossy(&out.stderr));
    (version.to_string(), status.parse().unwrap_or(0), body.to_string())
}

/// `curl` to `https://NAME:PORT/PATH`, the name resolving to the TLS listener.
fn https(s: &Setup, name: &str, extra: &[&str], path: &str) -> (String, u16, String) {
    let resolve = format!("{name}:{}:127.0.0.1", s.tls.port());
    let mut args = vec!["--resolve", &resolve];
    args.extend(extra);
    curl(s.dir.path(), &args, &format!("https://{name}:{}{path}", s.tls.port()))
}

fn environ(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the app's environ ({e}): {body}"))
}

#[test]
fn sni_picks_the_certificate_and_the_app_sees_https() {
    let s = start("");
    assert_eq!(subject(&s, Some("a.test")), "subject=CN = a.test");
    assert_eq!(subject(&s, Some("B.Test")), "subject=CN = b.test");
    assert_eq!(subject(&s, Some("unknown.test")), "subject=CN = a.test", "the default");
    assert_eq!(subject(&s, None), "subject=CN = a.test", "no SNI: the default");
    for name in ["a.test", "b.test"] {
        // curl checks the certificate against the CA and the name.
        for (flag, want, protocol) in
            [("--http2", "2", "HTTP/2.0"), ("--http1.1", "1.1", "HTTP/1.1")]
        {
            let (version, status, body) = https(&s, name, &[flag], "/app/env?x=1");
            assert_eq!((version.as_str(), status), (want, 200), "{name} {flag}: {body}");
            let env = environ(&body);
            assert_eq!(env["wsgi.url_scheme"], "https", "{env}");
            assert_eq!(env["HTTPS"], "on", "{env}");
            assert_eq!(env["SERVER_PROTOCOL"], protocol, "{env}");
            assert_eq!(env["HTTP_HOST"], format!("{name}:{}", s.tls.port()), "{env}");
            assert_eq!(env["SERVER_NAME"], name, "{env}");
            assert_eq!(env["REQUEST_URI"], "/app/env?x=1", "{env}");
        }
    }
}

#[test]
fn h2c_and_http1_on_the_plain_listener() {
    let s = start("");
    let d = s.dir.path();
    let base = format!("http://{}", s.server.addr);
    let (version, status, body) = curl(d, &["--http2-prior-knowledge"], &format!("{base}/app/env"));
    assert_eq!((version.as_str(), status), ("2", 200), "{body}");
    let env = environ(&body);
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert!(env.get("HTTPS").is_none(), "{env}");
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/2.0");
    // HTTP/1.1 as before: same app, same answer, 8-bit targets still reach it.
    let (version, status, body) = curl(d, &[], &format!("{base}/app/env"));
    assert_eq!((version.as_str(), status), ("1.1", 200), "{body}");
    assert_eq!(environ(&body)["SERVER_PROTOCOL"], "HTTP/1.1");
    let r = s
        .server
        .request(b"GET /app/env/\xe9t\xe9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    // A body without content-length (stdin upload) streams to the app whole.
    let body: String = (0..20_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let file = d.join("upload");
    std::fs::write(&file, &body).expect("write upload");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat upload | curl -sS --max-time 30 --http2-prior-knowledge -X POST -T - -o echoed {base}/app/echo -w '%{{http_version}} %{{http_code}}'"
        ))
        .current_dir(d)
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(d.join("echoed")).expect("echoed"), body);
}

#[test]
fn a_replaced_certificate_is_used_without_a_restart_and_a_bad_one_keeps_the_old() {
    let s = start("");
    let d = s.dir.path();
    assert_eq!(subject(&s, Some("b.test")), "subject=CN = b.test");
    // Renewed: written aside, then renamed over both files, as certbot-like tools do.
    issue(d, "new", "b.test", "b.test renewed");
    std::fs::rename(d.join("new.key"), d.join("b.test.key")).expect("rename key");
    std::fs::rename(d.join("new.crt"), d.join("b.test.crt")).expect("rename cert");
    eventually("the renewed certificate", Duration::from_secs(10), || {
        subject(&s, Some("b.test")) == "subject=CN = b.test renewed"
    });
    assert_eq!(https(&s, "b.test", &[], "/app/env").1, 200);
    // A broken certificate file: logged with its path, the renewed one stays.
    let crt = d.join("b.test.crt");
    std::fs::write(&crt, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("break cert");
    let logged = format!("tls: {}:", crt.display());
    eventually("the error naming the file", Duration::from_secs(10), || {
        s.server.log_text().contains(&logged)
    });
    assert_eq!(subject(&s, Some("b.test")), "subject=CN = b.test renewed");
    // A key of another certificate: refused as well, naming the key file.
    issue(d, "other", "b.test", "b.test other");
    std::fs::rename(d.join("other.crt"), &crt).expect("rename cert");
    let key = d.join("b.test.key");
    let logged = format!("tls: {}: this key does not belong", key.display());
    eventually("the key mismatch", Duration::from_secs(10), || {
        s.server.log_text().contains(&logged)
    });
    assert_eq!(subject(&s, Some("b.test")), "subject=CN = b.test renewed");
    assert_eq!(https(&s, "b.test", &[], "/app/env").1, 200);
    // Its own key again: in force.
    std::fs::rename(d.join("other.key"), &key).expect("rename key");
    eventually("the fixed certificate", Duration::from_secs(10), || {
        subject(&s, Some("b.test")) == "subject=CN = b.test other"
    });
}

#[test]
fn the_stream_limit_refuses_the_101st_concurrent_stream() {
    let s = start("");
    let mut c = h2raw::Conn::open(s.server.addr);
    // 101 POSTs whose bodies never come: each stream stays open (the router waits for the
    // body it must drain) while the next ones arrive.
    let ids: Vec<u32> = (0..101).map(|i| 1 + 2 * i).collect();
    let mut out = Vec::new();
    for &id in &ids {
        out.extend(h2raw::headers(id, "POST", "/nothing-here", false));
    }
    c.send(&out);
    let refused = c.until(Duration::from_secs(10), |f| f.kind == h2raw::RST_STREAM);
    let rst = refused.iter().find(|f| f.kind == h2raw::RST_STREAM).expect("a RST_STREAM");
    assert_eq!(rst.stream, 201, "the 101st stream is the one refused: {refused:?}");
    assert_eq!(rst.code(), h2raw::REFUSED_STREAM, "{refused:?}");
    // The connection goes on: the first 100 are all answered, in whatever order they finish
    // (under load some answers come before the refusal, with the frames read above).
    let answered_in = |frames: &[h2raw::Frame], seen: &mut std::collections::BTreeSet<u32>| {
        for f in frames.iter().filter(|f| f.kind == h2raw::HEADERS) {
            seen.insert(f.stream);
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    answered_in(&refused, &mut seen);
    let first_100: std::collections::BTreeSet<u32> = ids[..100].iter().copied().collect();
    let mut later = Vec::new();
    if !first_100.is_subset(&seen) {
        later = c.until(Duration::from_secs(60), |f| {
            if f.kind == h2raw::HEADERS {
                seen.insert(f.stream);
            }
            first_100.is_subset(&seen)
        });
        answered_in(&later, &mut seen);
    }
    assert_eq!(
        first_100.difference(&seen).count(),
        0,
        "unanswered: {:?}",
        first_100.difference(&seen).collect::<Vec<_>>()
    );
    assert!(!seen.contains(&201), "the refused stream got no answer");
    assert!(!later.iter().any(|f| f.kind == h2raw::GOAWAY), "{later:?}");
}

#[test]
fn rapid_reset_gets_goaway_and_the_server_serves_on() {
    let s = start("");
    let mut c = h2raw::Conn::open(s.server.addr);
    let mut out = Vec::new();
    for i in 0..500 {
        let id = 1 + 2 * i;
        out.extend(h2raw::headers(id, "GET", "/app/env", true));
        out.extend(h2raw::rst(id, h2raw::CANCEL));
    }
    c.send(&out);
    let frames = c.until(Duration::from_secs(10), |f| f.kind == h2raw::GOAWAY);
    let goaway = frames.iter().find(|f| f.kind == h2raw::GOAWAY).expect("GOAWAY");
    assert_eq!(goaway.goaway_code(), h2raw::ENHANCE_YOUR_CALM, "{goaway:?}");
    assert!(c.closed_within(Duration::from_secs(10)), "the connection is closed after GOAWAY");
    assert!(s.server.log_text().lines().count() > 0);
    // Others are served as before, on both protocols.
    let base = format!("http://{}", s.server.addr);
    let d = s.dir.path();
    assert_eq!(curl(d, &["--http2-prior-knowledge"], &format!("{base}/app/env")).1, 200);
    assert_eq!(curl(d, &[], &format!("{base}/app/env")).1, 200);
    assert_eq!(https(&s, "a.test", &[], "/app/env").1, 200);
}
