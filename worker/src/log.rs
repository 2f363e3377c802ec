//! Logging: `tracing` to stderr as JSON lines, which the router relays at their own level with
//! their fields; Python tracebacks line by line.

use pyo3::prelude::*;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber: one JSON object per line (`level`, `message`, `target`, the
/// event's fields; no timestamp), which the router's relay reads to log each line at its own
/// level with its fields, next to its own timestamp and the tenant, pid and slot it knows
/// (`supervise/src/logrelay.rs`). Anything else on stderr is relayed as it came. The filter
/// comes from `PADDOCK_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_env("PADDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests in one process) keeps the first subscriber; nothing to report.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .without_time()
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// Log `what` and then the Python traceback of `err`, one log line per traceback line.
pub fn python_error(py: Python<'_>, err: &PyErr, what: &str) {
    tracing::error!("{what}");
    match traceback_lines(py, err) {
        Ok(lines) => {
            for line in lines {
                tracing::error!("  {line}");
            }
        }
        Err(_) => tracing::error!("  {err}"),
    }
}

/// The formatted traceback of `err`, split into lines.
pub fn traceback_lines(py: Python<'_>, err: &PyErr) -> PyResult<Vec<String>> {
    let parts: Vec<String> = py
        .import("traceback")?
        .call_method1("format_exception", (err.get_type(py), err.value(py), err.traceback(py)))?
        .extract()?;
    Ok(parts.iter().flat_map(|p| p.lines()).map(str::to_owned).collect())
}
