//! What a worker logs reaches the router's log at the worker's own level, with the router's
//! tenant, pid and slot, and without a second timestamp inside the message; what the app
//! writes to stderr by itself is relayed as it came, at INFO.

mod common;

use std::time::Duration;

use common::{eventually, private, write, Server};
use serde_json::Value;

#[test]
fn worker_lines_keep_their_level_and_the_apps_own_output_is_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let appdir = dir.path().join("app");
    write(
        &appdir.join("noisy.py"),
        "import sys\nprint('hello from the import', file=sys.stderr, flush=True)\nraise ImportError('not today')\n",
    );
    let tdir = dir.path().join("n");
    std::fs::create_dir_all(&tdir).expect("mkdir");
    private(&tdir);
    let cfg = dir.path().join("paddock.toml");
    write(
        &cfg,
        &format!(
            "index = false\n[tenants.n]\ndir = \"{}\"\nmount = \"/n\"\napp = \"noisy:application\"\npython_path = [\"{}\"]\nprocesses = 1\n",
            tdir.display(),
            appdir.display()
        ),
    );
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8"), "--log-format", "json"]);
    assert_eq!(server.get("/n/").status, 503);
    let worker_lines = || -> Vec<Value> {
        server
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "paddock::worker")
            .collect()
    };
    eventually("the worker's failure is relayed", Duration::from_secs(30), || {
        worker_lines()
            .iter()
            .any(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains("ImportError")))
    });
    let lines = worker_lines();
    let traceback: Vec<&Value> = lines
        .iter()
        .filter(|v| v["fields"]["message"].as_str().is_some_and(|m| m.contains("ImportError")))
        .collect();
    for v in &traceback {
        assert_eq!(v["level"], "ERROR", "{v}");
        assert_eq!(v["fields"]["tenant"], "n", "{v}");
        assert!(v["fields"]["pid"].as_u64().is_some_and(|p| p > 0), "{v}");
        assert!(
            v["fields"]["worker_target"].as_str().is_some_and(|t| t.starts_with("paddock_worker")),
            "{v}"
        );
        let m = v["fields"]["message"].as_str().unwrap_or_default();
        assert!(!m.contains("timestamp") && !m.starts_with('{'), "relayed whole: {m}");
    }
    let hello = lines
        .iter()
        .find(|v| v["fields"]["message"] == "hello from the import")
        .unwrap_or_else(|| panic!("the app's own stderr line is relayed:\n{}", server.log_text()));
    assert_eq!(hello["level"], "INFO", "{hello}");
}
