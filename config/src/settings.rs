//! Pool settings: built-in defaults, validation, and placeholder expansion per tenant.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::auth;
use super::file::TenantSection;
use super::units::{parse_duration, parse_size};
use super::Validator;
use crate::units::CpuMax;

/// Validated settings of one pool, split by what a change of them means for a running pool.
/// String values may hold `{tenant}`, `{tenant_dir}` and `{sites}` placeholders until
/// [`PoolSettings::expand`] fills them for a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// What the workers are started from: a change replaces them (gracefully).
    pub process: ProcessSettings,
    /// How the pool takes requests and when it idles: a change applies to the running pool.
    pub admission: AdmissionSettings,
    /// What each request is checked against and carries: read per request from the
    /// configuration in force, so a change never restarts a worker.
    pub request: RequestSettings,
    /// What the operator's commands do with the tenant (`paddock backup`): read when they
    /// run, never by a pool.
    pub ops: OpsSettings,
}

/// Operator commands' settings (see [`PoolSettings::ops`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpsSettings {
    /// The backup command (`{dest}`, `{env_path}`, `{python}` filled when it runs); `None`:
    /// Trac's `hotcopy` for a Trac app, none otherwise.
    pub backup: Option<Vec<String>>,
}

/// Settings the worker processes are started from (see [`PoolSettings::process`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSettings {
    pub processes: usize,
    pub threads: usize,
    pub app: String,
    pub python_path: Vec<String>,
    pub virtualenv: Option<String>,
    /// Modules the pool's zygote preloads; `None`: the default for the app (see `zygote.rs`).
    pub preload: Option<Vec<String>>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub lang: String,
    pub umask: u32,
    /// As root, serve the tenant even if other users can reach its directory.
    pub allow_world_readable: bool,
    pub startup_timeout: Duration,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// `gc.freeze()` in the workers after loading the app and after the first request.
    pub gc_freeze: bool,
    pub min_processes: usize,
    pub graceful_timeout: Duration,
    /// Bytes; 0: no limit.
    pub memory_limit: u64,
    /// Limits of every process running the tenant's code.
    pub limits: Limits,
    /// Files whose change restarts the pool; `None`: the default list.
    pub watch_files: Option<Vec<String>>,
    /// The workers' process environment.
    pub env: BTreeMap<String, String>,
}

/// Admission and idling of a running pool (see [`PoolSettings::admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    pub queue_limit: usize,
    pub queue_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Per-request settings (see [`PoolSettings::request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSettings {
    pub request_timeout: Duration,
    pub max_body: u64,
    /// Time to receive the request body (mod_reqtimeout's `body=`): then 408.
    pub body_read_timeout: Duration,
    /// Each this many bytes received extend `body_read_timeout` by one second; 0: never.
    pub body_min_rate: u64,
    /// WSGI environ entries; an entry with an empty value is removed (to drop a default).
    pub environ: BTreeMap<String, String>,
    /// HTTP Basic authentication; `None` when off.
    pub auth: Option<auth::AuthSettings>,
}

/// Per-process rlimits and per-pool cgroup limits (0: not set; see `cgroup.rs`, `sys.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub nofile: u64,
    pub nproc: u64,
    pub address_space: u64,
    pub core: u64,
    pub memory_max: u64,
    pub cpu_max: CpuMax,
    pub pids_max: u64,
}

impl Default for Limits {
    /// The built-in defaults (also what signup's provisioning commands get).
    fn default() -> Self {
        Limits {
            nofile: 4096,
            nproc: 512,
            address_space: 4 << 30,
            core: 0,
            memory_max: 0,
            cpu_max: CpuMax::Max,
            pids_max: 512,
        }
    }
}

/// The defaults every section is merged over: Trac's entry point with `trac.env_path`.
pub(super) fn builtin_section() -> TenantSection {
    let s = |v: &str| Some(Spanned::new(0..0, v.to_string()));
    TenantSection {
        processes: Some(Spanned::new(0..0, 2)),
        threads: Some(Spanned::new(0..0, 4)),
        app: s("trac.web.main:dispatch_request"),
        lang: Some("C.UTF-8".to_string()),
        umask: s("027"),
        startup_timeout: s("60s"),
        max_requests: Some(Spanned::new(0..0, 0)),
        max_requests_jitter: Some(Spanned::new(0..0, 0)),
        gc_freeze: Some(true),
        min_processes: Some(Spanned::new(0..0, 0)),
        queue_limit: Some(Spanned::new(0..0, 100)),
        graceful_timeout: s("30s"),
        memory_limit: s("0"),
        rlimit_nofile: Some(Spanned::new(0..0, 4096)),
        rlimit_nproc: Some(Spanned::new(0..0, 512)),
        rlimit_as: s("4G"),
        rlimit_core: s("0"),
        memory_max: s("0"),
        cpu_max: s("max"),
        pids_max: Some(Spanned::new(0..0, 512)),
        idle_timeout: s("10m"),
        queue_timeout: s("30s"),
        request_timeout: s("60s"),
        max_body: s("100M"),
        body_read_timeout: s("20s"),
        body_min_rate: Some(Spanned::new(0..0, 500)),
        environ: Some(BTreeMap::from([("trac.env_path".to_string(), "{tenant_dir}".to_string())])),
        ..TenantSection::default()
    }
}

fn count(v: &mut Validator<'_>, field: &Option<Spanned<i64>>, name: &str, max: i64) -> usize {
    match field {
        Some(n) if (1..=max).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            v.err(
                Some(n.span()),
                format!("`{name}` must be between 1 and {max}, not {}", n.get_ref()),
            );
            1
        }
        None => 1,
    }
}

fn duration(v: &mut Validator<'_>, field: &Option<Spanned<String>>, name: &str) -> Duration {
    match field {
        Some(d) => parse_duration(d.get_ref()).unwrap_or_else(|e| {
            v.err(Some(d.span()), format!("`{name}`: {e}"));
            Duration::from_secs(1)
        }),
        None => Duration::from_secs(1),
    }
}

fn size(v: &mut Validator<'_>, field: &Option<Spanned<String>>, name: &str) -> u64 {
    match field {
        Some(m) => parse_size(m.get_ref()).unwrap_or_else(|e| {
            v.err(Some(m.span()), format!("`{name}`: {e}"));
            0
        }),
        None => 0,
    }
}

fn limits(v: &mut Validator<'_>, s: &TenantSection) -> Limits {
    let cpu_max = match &s.cpu_max {
        Some(c) => CpuMax::parse(c.get_ref()).unwrap_or_else(|e| {
            v.err(Some(c.span()), format!("`cpu_max`: {e}"));
            CpuMax::Max
        }),
        None => CpuMax::Max,
    };
    Limits {
        nofile: non_negative(v, &s.rlimit_nofile, "rlimit_nofile"),
        nproc: non_negative(v, &s.rlimit_nproc, "rlimit_nproc"),
        address_space: size(v, &s.rlimit_as, "rlimit_as"),
        core: size(v, &s.rlimit_core, "rlimit_core"),
        memory_max: size(v, &s.memory_max, "memory_max"),
        cpu_max,
        pids_max: non_negative(v, &s.pids_max, "pids_max"),
    }
}

fn non_negative(v: &mut Validator<'_>, field: &Option<Spanned<i64>>, name: &str) -> u64 {
    match field {
        Some(n) if *n.get_ref() >= 0 => *n.get_ref() as u64,
        Some(n) => {
            v.err(Some(n.span()), format!("`{name}` must be 0 or more, not {}", n.get_ref()));
            0
        }
        None => 0,
    }
}

/// Validate a fully merged section (every field set by the built-in defaults).
pub(super) fn validate(v: &mut Validator<'_>, s: &TenantSection) -> PoolSettings {
    let app = s.app.as_ref().map(|a| a.get_ref().clone()).unwrap_or_default();
    if app.trim().is_empty() {
        v.err(
            s.app.as_ref().map(|a| a.span()),
            "`app` must name `module:callable` or a script file",
        );
    }
    let umask = match &s.umask {
        Some(u) => {
            u32::from_str_radix(u.get_ref(), 8).ok().filter(|m| *m <= 0o777).unwrap_or_else(|| {
                v.err(
                    Some(u.span()),
                    format!("`umask` must be octal such as \"027\", not `{}`", u.get_ref()),
                );
                0o027
            })
        }
        None => 0o027,
    };
    let max_requests = non_negative(v, &s.max_requests, "max_requests");
    let max_requests_jitter = non_negative(v, &s.max_requests_jitter, "max_requests_jitter");
    let min_processes = non_negative(v, &s.min_processes, "min_processes") as usize;
    let queue_limit = non_negative(v, &s.queue_limit, "queue_limit") as usize;
    let memory_limit = size(v, &s.memory_limit, "memory_limit");
    let max_body = match &s.max_body {
        Some(m) => parse_size(m.get_ref()).unwrap_or_else(|e| {
            v.err(Some(m.span()), format!("`max_body`: {e}"));
            0
        }),
        None => 100 << 20,
    };
    for name in [&s.user, &s.group].into_iter().flatten() {
        if !crate::tenant::valid_unix_name(name.get_ref()) {
            v.err(
                Some(name.span()),
                format!("`{}` is not a valid user or group name", name.get_ref()),
            );
        }
    }
    if let Some(p) = &s.preload {
        if let Some(bad) = p.get_ref().iter().find(|m| !valid_module(m)) {
            v.err(Some(p.span()), format!("`preload`: `{bad}` is not a Python module name"));
        }
    }
    let base = super::Config::base_dir(Some(v.file));
    let (auth, problems) = auth::validate(s.auth.as_ref(), &base);
    for (span, msg) in problems {
        v.err(span, msg);
    }
    let process = ProcessSettings {
        processes: count(v, &s.processes, "processes", 256),
        threads: count(v, &s.threads, "threads", 1024),
        app,
        python_path: s.python_path.clone().unwrap_or_default(),
        virtualenv: s.virtualenv.as_ref().map(|x| x.get_ref().clone()).filter(|x| !x.is_empty()),
        preload: s.preload.as_ref().map(|p| p.get_ref().clone()),
        user: s.user.as_ref().map(|x| x.get_ref().clone()),
        group: s.group.as_ref().map(|x| x.get_ref().clone()),
        lang: s.lang.clone().unwrap_or_else(|| "C.UTF-8".to_string()),
        umask,
        allow_world_readable: s.allow_world_readable.unwrap_or(false),
        startup_timeout: duration(v, &s.startup_timeout, "startup_timeout"),
        max_requests,
        max_requests_jitter,
        gc_freeze: s.gc_freeze.unwrap_or(true),
        min_processes,
        graceful_timeout: duration(v, &s.graceful_timeout, "graceful_timeout"),
        memory_limit,
        limits: limits(v, s),
        watch_files: s.watch_files.clone(),
        env: s.env.clone().unwrap_or_default(),
    };
    let admission = AdmissionSettings {
        queue_limit,
        queue_timeout: duration(v, &s.queue_timeout, "queue_timeout"),
        idle_timeout: duration(v, &s.idle_timeout, "idle_timeout"),
    };
    let request = RequestSettings {
        request_timeout: duration(v, &s.request_timeout, "request_timeout"),
        max_body,
        body_read_timeout: duration(v, &s.body_read_timeout, "body_read_timeout"),
        body_min_rate: non_negative(v, &s.body_min_rate, "body_min_rate"),
        environ: s.environ.clone().unwrap_or_default(),
        auth,
    };
    if s.backup.as_ref().is_some_and(|b| b.is_empty()) {
        v.err(
            None,
            "`backup` must name a command (a list of its program and arguments)".to_string(),
        );
    }
    let ops = OpsSettings { backup: s.backup.clone() };
    PoolSettings { process, admission, request, ops }
}

/// `package.module`: dot-separated Python identifiers (ASCII).
fn valid_module(m: &str) -> bool {
    !m.is_empty()
        && m.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl PoolSettings {
    /// Fill the placeholders for one tenant.
    pub fn expand(&self, tenant: &str, dir: &Path, sites: Option<&Path>) -> PoolSettings {
        let dir_s = dir.display().to_string();
        let sites_s = sites.map(|s| s.display().to_string()).unwrap_or_default();
        let x = |s: &str| {
            s.replace("{tenant_dir}", &dir_s)
                .replace("{tenant}", tenant)
                .replace("{sites}", &sites_s)
        };
        let map = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), x(v))).collect()
        };
        let p = &self.process;
        let r = &self.request;
        PoolSettings {
            process: ProcessSettings {
                app: x(&p.app),
                python_path: p.python_path.iter().map(|p| x(p)).collect(),
                watch_files: p.watch_files.as_ref().map(|w| w.iter().map(|p| x(p)).collect()),
                virtualenv: p.virtualenv.as_deref().map(x),
                env: map(&p.env),
                ..p.clone()
            },
            admission: self.admission,
            ops: OpsSettings {
                backup: self.ops.backup.as_ref().map(|b| b.iter().map(|a| x(a)).collect()),
            },
            request: RequestSettings {
                environ: map(&r.environ),
                auth: r.auth.as_ref().map(|a| a.expand(&x).within(dir, sites)),
                ..r.clone()
            },
        }
    }
}
