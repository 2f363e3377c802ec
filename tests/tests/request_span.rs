//! Log lines written while a request is handled carry the request's span: its client, its
//! tenant and the worker pid that serves it, also for lines written while the response body
//! streams and for the access line.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{eventually, repo_root, write, Server};
use serde_json::Value;

/// Lines of paddock's JSON log.
fn json_lines(server: &Server) -> Vec<Value> {
    server.log_text().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

#[test]
fn a_truncated_response_is_logged_with_the_requests_tenant_client_and_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = dir.path().join("m");
    std::fs::create_dir_all(&tenant).expect("mkdir");
    common::private(&tenant);
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            "index = false\n[tenants.m]\ndir = \"{}\"\nmount = \"/m\"\napp = \"misbehave:application\"\npython_path = [\"{}\"]\nwatch_files = []\nprocesses = 1\nthreads = 2\n",
            tenant.display(),
            repo_root().join("tests/apps").display()
        ),
    );
    let server =
        Server::start(&["--log-format", "json", "--config", config.to_str().expect("utf-8")]);
    let pid: u64 = server.get("/m/pid").text().trim().parse().expect("a pid");
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let addr = server.addr;
    s.write_all(format!("GET /m/shortbig HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("send");
    let _ = s.read_to_end(&mut Vec::new());
    let truncated = |v: &Value| {
        v["fields"]["message"].as_str().is_some_and(|m| m.starts_with("response truncated"))
    };
    eventually("the truncation is logged", Duration::from_secs(30), || {
        json_lines(&server).iter().any(truncated)
    });
    let lines = json_lines(&server);
    let line = lines.iter().find(|v| truncated(v)).expect("the line");
    let span = &line["span"];
    assert_eq!(span["name"], "request", "{line}");
    assert_eq!(span["tenant"], "m", "{line}");
    assert_eq!(span["client"], "127.0.0.1", "{line}");
    assert_eq!(span["pid"].as_u64(), Some(pid), "{line}");
    assert!(line["fields"].get("tenant").is_none(), "tenant written by hand too: {line}");
    // The access line keeps its own fields, and is in the span as well.
    let access = lines
        .iter()
        .find(|v| v["target"] == "paddock::access" && v["fields"]["target"] == "/m/shortbig")
        .unwrap_or_else(|| panic!("no access line:\n{}", server.log_text()));
    assert_eq!(access["fields"]["tenant"], "m", "{access}");
    assert_eq!(access["fields"]["outcome"], "truncated", "{access}");
    assert_eq!(access["span"]["pid"].as_u64(), Some(pid), "{access}");
}
