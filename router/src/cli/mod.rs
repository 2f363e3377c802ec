//! The administration command line: `paddock tenants ...` and `paddock reload` talk to a
//! running server's admin API (the same endpoints as `curl` would, see `docs/admin.md`), and
//! print tables, or the API's JSON with `--json`.
//!
//! Where the API is: `--admin ADDR`, else `PADDOCK_ADMIN`, else the `[admin] listen` of
//! `--config FILE`, else `127.0.0.1:9180`. The token: `--token-file FILE` (its first line that
//! is neither blank nor a `#` comment, as in the server's `tokens_file`), else `PADDOCK_TOKEN`.
//! A token is never taken from the command line, where other users could read it in `ps`.

mod client;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Method;
use serde_json::{json, Value};

pub use client::{Client, ClientError};

/// The default admin address (the server's default `[admin] listen`).
const DEFAULT_ADMIN: &str = "127.0.0.1:9180";

/// How to reach the admin API; shared by every administration command.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Admin listener address [default: PADDOCK_ADMIN, or the config's [admin] listen, or
    /// 127.0.0.1:9180].
    #[arg(long, global = true)]
    pub admin: Option<String>,
    /// Configuration file to read the admin address from.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// File holding the API token (first non-comment line) [default: PADDOCK_TOKEN].
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `paddock tenants ...`.
#[derive(clap::Subcommand, Debug)]
pub enum TenantsCmd {
    /// Every tenant, with its pool.
    List,
    /// One tenant in detail, including why its pool cannot start.
    Show { name: String },
    /// Create a site (signup as the API does it: provisioning, its first admin).
    Create {
        name: String,
        /// The site's first admin user.
        #[arg(long)]
        admin_user: String,
        /// File holding the admin's password (`-`: standard input) [default: PADDOCK_PASSWORD].
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Switch a tenant off (503 "disabled by its host") until enabled.
    Disable { name: String },
    /// Switch a disabled tenant on again.
    Enable { name: String },
    /// Archive a tenant's directory and stop it (nothing is destroyed; see docs/admin.md).
    Delete {
        name: String,
        /// Needed: deleting takes the site off line at once.
        #[arg(long)]
        yes: bool,
    },
    /// Replace every process of the tenant's pool, with no failed request.
    Restart { name: String },
}

/// `paddock cluster ...`.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// This node's health and state, the live nodes, and the tenants this node owns.
    Status,
    /// Which node owns a tenant now.
    Owner { name: String },
    /// Give a tenant this node owns to another node (its pool stops here first).
    Move {
        name: String,
        /// The node to take it.
        #[arg(long)]
        to: String,
    },
    /// Stop taking tenants and move this node's tenants away one by one, with no failed
    /// request; returns when none is left.
    Drain,
    /// Take tenants again after a drain.
    Activate,
}

/// Run `paddock cluster CMD`; the text to print on success.
pub async fn cluster(target: &Target, cmd: &ClusterCmd) -> Result<String, CliError> {
    let client = connect(target)?;
    let (v, render): (Value, fn(&Value) -> String) = match cmd {
        ClusterCmd::Status => (client.call(Method::GET, "/api/v1/cluster", None).await?, status),
        ClusterCmd::Owner { name } => {
            let path = format!("/api/v1/cluster/tenants/{}", encode(name));
            (client.call(Method::GET, &path, None).await?, owner)
        }
        ClusterCmd::Move { name, to } => {
            let path = format!("/api/v1/cluster/tenants/{}/move", encode(name));
            let body = json!({ "to": to });
            (client.call(Method::POST, &path, Some(&body)).await?, owner)
        }
        ClusterCmd::Drain => {
            (client.call(Method::POST, "/api/v1/cluster/drain", None).await?, |v| {
                format!("drained: {} tenants moved away\n", text(v, "released"))
            })
        }
        ClusterCmd::Activate => {
            (client.call(Method::POST, "/api/v1/cluster/activate", None).await?, |_| {
                "active: this node takes tenants again\n".to_string()
            })
        }
    };
    Ok(if target.json { pretty(&v) } else { render(&v) })
}

fn status(v: &Value) -> String {
    let empty = Vec::new();
    let owned = v.get("owned").and_then(Value::as_array).unwrap_or(&empty);
    let names: Vec<&str> = owned.iter().filter_map(Value::as_str).collect();
    let mut out = table::fields(&[
        ("node", text(v, "node")),
        ("health", text(v, "health")),
        ("state", text(v, "state")),
        ("owns", format!("{} ({})", names.len(), names.join(", "))),
    ]);
    out.push('\n');
    let nodes = v.get("nodes").and_then(Value::as_array).unwrap_or(&empty);
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                text(n, "id"),
                text(n, "addr"),
                text(n, "state"),
                format!("{}/{}", text(n, "owned"), text(n, "capacity")),
            ]
        })
        .collect();
    out.push_str(&table::render(&["NODE", "ADDRESS", "STATE", "OWNED/CAPACITY"], &rows));
    out
}

fn owner(v: &Value) -> String {
    let name = text(v, "tenant");
    match v.get("owner") {
        Some(Value::Object(o)) => {
            let node = o.get("node").and_then(Value::as_str).unwrap_or("-");
            match o.get("addr").and_then(Value::as_str) {
                Some(addr) => format!("{name}: owned by {node} ({addr})\n"),
                None => format!("{name}: owned by {node}\n"),
            }
        }
        Some(Value::String(node)) => format!("{name}: moved to {node}\n"),
        _ => format!("{name}: owned by no node (its next request starts it)\n"),
    }
}

/// Why an administration command failed, for the user.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    /// Exit status: 2 for usage (as clap), 1 for a failed call.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Client(_) => 1,
        }
    }
}

/// Run `paddock tenants CMD`; the text to print on success.
pub async fn tenants(target: &Target, cmd: &TenantsCmd) -> Result<String, CliError> {
    let client = connect(target)?;
    let name_path = |n: &str, tail: &str| format!("/api/v1/tenants/{}{tail}", encode(n));
    let (v, render): (Value, fn(&Value) -> String) = match cmd {
        TenantsCmd::List => (client.call(Method::GET, "/api/v1/tenants", None).await?, list),
        TenantsCmd::Show { name } => {
            (client.call(Method::GET, &name_path(name, ""), None).await?, show)
        }
        TenantsCmd::Create { name, admin_user, password_file } => {
            let password = password(password_file.as_deref())?;
            let body = json!({ "name": name, "admin_user": admin_user, "password": password });
            (client.call(Method::POST, "/api/v1/tenants", Some(&body)).await?, show)
        }
        TenantsCmd::Disable { name } => {
            (client.call(Method::POST, &name_path(name, "/disable"), None).await?, done)
        }
        TenantsCmd::Enable { name } => {
            (client.call(Method::POST, &name_path(name, "/enable"), None).await?, done)
        }
        TenantsCmd::Delete { name, yes } => {
            if !yes {
                return Err(CliError::Usage(format!(
                    "deleting `{name}` takes it off line and archives its directory: add --yes"
                )));
            }
            (client.call(Method::DELETE, &name_path(name, ""), None).await?, done)
        }
        TenantsCmd::Restart { name } => {
            (client.call(Method::POST, &name_path(name, "/restart"), None).await?, done)
        }
    };
    Ok(if target.json { pretty(&v) } else { render(&v) })
}

/// Run `paddock upgrade`: returns once the new process serves (the old one then drains).
pub async fn upgrade(target: &Target) -> Result<String, CliError> {
    let v = connect(target)?.call(Method::POST, "/api/v1/upgrade", None).await?;
    Ok(match (target.json, v.get("pid").and_then(|p| p.as_u64())) {
        (false, Some(pid)) => format!("upgraded: pid {pid} serves, the old process drains\n"),
        _ => pretty(&v),
    })
}

/// Run `paddock reload`.
pub async fn reload(target: &Target) -> Result<String, CliError> {
    let v = connect(target)?.call(Method::POST, "/api/v1/reload", None).await?;
    Ok(if target.json { pretty(&v) } else { "configuration reloaded\n".to_string() })
}

fn connect(target: &Target) -> Result<Client, CliError> {
    let addr = admin_addr(target)?;
    let token = token(target.token_file.as_deref())?;
    Ok(Client { addr, token })
}

fn admin_addr(target: &Target) -> Result<SocketAddr, CliError> {
    let from_config = || -> Result<Option<String>, CliError> {
        let Some(path) = &target.config else { return Ok(None) };
        let cfg = paddock_config::Config::load(path, &paddock_config::Overrides::default())
            .map_err(|d| CliError::Usage(format!("{d}")))?;
        Ok(cfg.admin.map(|a| a.listen.to_string()))
    };
    let text = match (&target.admin, std::env::var("PADDOCK_ADMIN").ok()) {
        (Some(a), _) => a.clone(),
        (None, Some(a)) if !a.is_empty() => a,
        _ => from_config()?.unwrap_or_else(|| DEFAULT_ADMIN.to_string()),
    };
    text.parse()
        .map_err(|_| CliError::Usage(format!("`{text}` is not an address such as 127.0.0.1:9180")))
}

fn token(file: Option<&Path>) -> Result<String, CliError> {
    let Some(file) = file else {
        return match std::env::var("PADDOCK_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            _ => Err(CliError::Usage(
                "no API token: pass --token-file FILE or set PADDOCK_TOKEN".to_string(),
            )),
        };
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::Usage(format!("cannot read the token file {}: {e}", file.display()))
    })?;
    first_token(&text).ok_or_else(|| CliError::Usage(format!("{} holds no token", file.display())))
}

/// The first line that is neither blank nor a `#` comment.
fn first_token(text: &str) -> Option<String> {
    text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).map(String::from)
}

fn password(file: Option<&Path>) -> Result<String, CliError> {
    let text = match file {
        Some(p) if p == Path::new("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?;
            s
        }
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", p.display())))?,
        None => std::env::var("PADDOCK_PASSWORD").map_err(|_| {
            CliError::Usage(
                "no password: pass --password-file FILE (or -) or set PADDOCK_PASSWORD".into(),
            )
        })?,
    };
    // One line: the trailing newline of a file or of `echo` is not part of it.
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_string())
}

/// A tenant name as a URL path segment (names are `[A-Za-z0-9._-]`; anything else is escaped
/// so a typo cannot reach another endpoint).
fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

/// One word for a tenant's state: disabled, its pool's status, or idle (no pool).
fn state(t: &Value) -> String {
    if t.get("disabled").and_then(Value::as_bool) == Some(true) {
        return "disabled".to_string();
    }
    match t.get("pool") {
        Some(p) if !p.is_null() => {
            let parked = p.get("parked").and_then(Value::as_bool) == Some(true);
            let status = text(p, "status");
            if parked {
                format!("{status} (parked)")
            } else {
                status
            }
        }
        _ if t.get("start_error").is_some_and(|e| !e.is_null()) => "cannot start".to_string(),
        _ => "idle".to_string(),
    }
}

fn list(v: &Value) -> String {
    let empty = Vec::new();
    let tenants = v.get("tenants").and_then(Value::as_array).unwrap_or(&empty);
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            let p = t.get("pool").filter(|p| !p.is_null());
            let procs = p.map_or("-".to_string(), |p| {
                let ready = p.get("ready_pids").and_then(Value::as_array).map_or(0, Vec::len);
                format!("{ready}/{}", text(p, "processes"))
            });
            vec![
                text(t, "name"),
                state(t),
                procs,
                p.map_or("-".to_string(), |p| text(p, "in_flight")),
                p.map_or("-".to_string(), |p| text(p, "queued")),
                p.map_or("-".to_string(), |p| text(p, "user")),
                text(t, "mount"),
            ]
        })
        .collect();
    table::render(&["NAME", "STATE", "PROCS", "IN-FLIGHT", "QUEUED", "USER", "MOUNT"], &rows)
}

fn show(t: &Value) -> String {
    let p = t.get("pool").filter(|p| !p.is_null());
    let mut pairs = vec![
        ("name", text(t, "name")),
        ("state", state(t)),
        ("url", text(t, "url")),
        ("mount", text(t, "mount")),
        ("dir", text(t, "dir")),
        ("configured", text(t, "configured")),
    ];
    if let Some(p) = p {
        let pids = p.get("ready_pids").map_or("-".to_string(), |v| v.to_string());
        pairs.extend([
            ("user", text(p, "user")),
            ("processes", format!("{} x {} threads", text(p, "processes"), text(p, "threads"))),
            ("ready pids", pids),
            ("in flight", text(p, "in_flight")),
            ("queued", text(p, "queued")),
        ]);
        if p.get("error").is_some_and(|e| !e.is_null()) {
            pairs.push(("pool error", text(p, "error")));
        }
    }
    if let Some(e) = t.get("start_error").filter(|e| !e.is_null()) {
        pairs.push(("cannot start", format!("{} ({})", text(e, "error"), text(e, "at"))));
    }
    if let Some(to) = t.get("archived_to") {
        pairs.push(("archived to", to.as_str().unwrap_or_default().to_string()));
    }
    table::fields(&pairs)
}

/// The answer of a command that changes one tenant, as one line.
fn done(v: &Value) -> String {
    let name = text(v, "name");
    if let Some(to) = v.get("archived_to").and_then(Value::as_str) {
        return format!("{name}: deleted, archived to {to}\n");
    }
    if let Some(d) = v.get("disabled").and_then(Value::as_bool) {
        return format!("{name}: {}\n", if d { "disabled" } else { "enabled" });
    }
    if let Some(r) = v.get("restarted").and_then(Value::as_bool) {
        return match r {
            true => format!("{name}: restarting its pool (no request fails)\n"),
            false => format!("{name}: no pool was running; nothing to restart\n"),
        };
    }
    pretty(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_first_line_that_is_not_a_comment() {
        assert_eq!(first_token("# ops\n\n  abc  \ndef\n").as_deref(), Some("abc"));
        assert_eq!(first_token("# only\n\n"), None);
    }

    #[test]
    fn a_list_shows_each_tenant_state() {
        let v = json!({"tenants": [
            {"name": "a", "mount": "/trac/a", "disabled": false, "pool": {"status": "ready",
             "processes": 2, "ready_pids": [1, 2], "in_flight": 1, "queued": 0, "user": "trac",
             "parked": false}},
            {"name": "b", "mount": "/trac/b", "disabled": true, "pool": null},
            {"name": "c", "mount": "/trac/c", "disabled": false, "pool": null,
             "start_error": {"error": "no user `x`", "at": "2026-12-03T10:00:00Z"}},
            {"name": "d", "mount": "/trac/d", "disabled": false, "pool": null}
        ]});
        let out = list(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME  STATE"), "{out}");
        assert!(lines[1].starts_with("a     ready") && lines[1].contains("2/2"), "{out}");
        assert!(lines[2].starts_with("b     disabled"), "{out}");
        assert!(lines[3].starts_with("c     cannot start"), "{out}");
        assert!(lines[4].starts_with("d     idle"), "{out}");
        let c = show(&v["tenants"][2]);
        assert!(c.contains("cannot start:  no user `x` (2026-12-03T10:00:00Z)"), "{c}");
    }

    #[test]
    fn cluster_status_and_owners_read_as_text() {
        let v = json!({"node": "n1", "health": "live", "state": "active", "owned": ["a", "b"],
            "nodes": [{"id": "n1", "addr": "10.0.0.1:8081", "state": "active", "capacity": 100, "owned": 2},
                      {"id": "n2", "addr": "10.0.0.2:8081", "state": "draining", "capacity": 100, "owned": 0}]});
        let out = status(&v);
        assert!(out.contains("owns:    2 (a, b)"), "{out}");
        assert!(out.contains("n2    10.0.0.2:8081  draining  0/100"), "{out}");
        let o = owner(&json!({"tenant": "a", "owner": {"node": "n2", "addr": "10.0.0.2:8081"}}));
        assert_eq!(o, "a: owned by n2 (10.0.0.2:8081)\n");
        assert!(owner(&json!({"tenant": "a", "owner": null})).contains("no node"));
        assert_eq!(owner(&json!({"tenant": "a", "owner": "n3"})), "a: moved to n3\n");
    }

    #[test]
    fn names_cannot_leave_their_path_segment() {
        assert_eq!(encode("acme"), "acme");
        assert_eq!(encode("../reload"), "%2E%2E%2Freload");
    }
}
