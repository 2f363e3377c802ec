//! Logging: `tracing` to stderr with `tenant=NAME pid=PID` on every line, so the router (and
//! journald behind it) can attribute any line of a mixed log; Python tracebacks line by line.

use std::fmt;
use std::sync::Mutex;

use pyo3::prelude::*;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The `tenant=NAME pid=PID ` prefix of every line; replaced in a worker forked by a zygote.
static PREFIX: Mutex<String> = Mutex::new(String::new());

/// Set the prefix for `tenant` and the current pid.
pub fn set_tenant(tenant: &str) {
    let prefix = format!("tenant={tenant} pid={} ", std::process::id());
    *PREFIX.lock().unwrap_or_else(|e| e.into_inner()) = prefix;
}

/// Install the global subscriber. The filter comes from `PADDOCK_LOG` (default `info`).
pub fn init(tenant: &str) {
    set_tenant(tenant);
    let filter = EnvFilter::try_from_env("PADDOCK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let inner = format().with_ansi(false).with_target(false);
    // A second init (tests in one process) keeps the first subscriber; nothing to report.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .event_format(Prefixed { inner })
        .try_init();
}

fn format() -> format::Format {
    format::Format::default()
}

/// Writes [`PREFIX`] before each event, then the default format.
struct Prefixed<F> {
    inner: F,
}

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str(&PREFIX.lock().unwrap_or_else(|e| e.into_inner()))?;
        self.inner.format_event(ctx, writer, event)
    }
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
