//! The TOML file as written by the operator, before validation. Every field is documented in
//! the README's configuration reference. Unknown keys are errors, all reported at once with a
//! suggestion (`unknown.rs`), so typos never pass silently.

use std::collections::BTreeMap;

use super::auth;

use serde::Deserialize;
use toml::Spanned;

/// Top level of `paddock.toml`.
#[derive(Debug, Default, Deserialize)]
pub struct FileConfig {
    /// Address of the HTTP front door, e.g. `127.0.0.1:8080`.
    pub listen: Option<Spanned<String>>,
    /// Discovery root: every directory under it holding `marker` is a tenant.
    pub sites: Option<Spanned<String>>,
    /// URL prefix of discovered tenants (`/trac` → `/trac/<name>`); `/` puts them at the root.
    pub mount: Option<Spanned<String>>,
    /// File, relative to a tenant directory, that makes the directory a tenant.
    pub marker: Option<Spanned<String>>,
    /// Serve an index of tenants at the mount point.
    pub index: Option<bool>,
    /// Title of the index page.
    pub index_title: Option<String>,
    /// HTML file with `{{title}}` and `{{tenants}}` placeholders used for the index page.
    pub index_template: Option<Spanned<String>>,
    /// Apache-syntax rules file (`RewriteCond`/`RewriteRule`), relative to this file.
    pub rules_file: Option<Spanned<String>>,
    /// Rules written in TOML; evaluated after those of `rules_file`.
    #[serde(default)]
    pub rules: Vec<Spanned<RuleEntry>>,
    /// Extra directories that rule file tests (`-f`, `-d`, `-s`) may look into.
    #[serde(default)]
    pub file_test_roots: Vec<Spanned<String>>,
    /// Directory for the tenants' Unix sockets (a private subdirectory is made in it).
    pub runtime_dir: Option<Spanned<String>>,
    /// The router's own durable state (disabled tenants); default `<sites>/.paddock`.
    pub state_dir: Option<Spanned<String>>,
    /// Path of the `paddock-worker` binary; default: next to `paddock`.
    pub worker_bin: Option<Spanned<String>>,
    /// Allow tenant code to run as uid 0 (never the default).
    pub allow_root: Option<bool>,
    /// Most worker processes across all tenants (0: no limit); idle pools are stopped, least
    /// recently used first, to make room.
    pub max_workers_total: Option<Spanned<i64>>,
    /// Proxies (addresses or networks) whose `X-Forwarded-*`/`Forwarded` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Database servers (`"127.0.0.1:5432"`) whose connections from each tenant's workers
    /// are counted in `/metrics`.
    #[serde(default)]
    pub database_servers: Vec<Spanned<String>>,
    /// Time a client may take to send its request head (slow clients are cut off).
    pub header_read_timeout: Option<Spanned<String>>,
    /// Largest request head accepted (larger: 431), e.g. `"64K"`.
    pub max_header_bytes: Option<Spanned<String>>,
    /// Largest response head accepted from a worker (larger: 502), e.g. `"64K"`.
    pub max_response_head_bytes: Option<Spanned<String>>,
    /// Most client connections open at once; more wait before `accept`. Default from the
    /// soft `RLIMIT_NOFILE`.
    pub max_connections: Option<Spanned<i64>>,
    /// Time a write to a client may make no progress before the connection is closed.
    pub send_timeout: Option<Spanned<String>>,
    /// Time open client connections get to finish after SIGTERM before they are closed.
    pub drain_timeout: Option<Spanned<String>>,
    /// Time a pool runs before it may be stopped to make room under `max_workers_total`.
    pub min_residency: Option<Spanned<String>>,
    /// The admin listener (API, signup page, `/metrics`); absent: no admin listener.
    pub admin: Option<AdminSection>,
    /// Several nodes on one tenant registry (etcd); absent: this node alone, as always.
    pub cluster: Option<crate::cluster::ClusterSection>,
    /// The HTTPS listener and its certificates; absent: plain HTTP only.
    pub tls: Option<crate::tls::TlsSection>,
    /// Most HTTP/2 requests in flight at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// default 100.
    pub http2_max_concurrent_streams: Option<Spanned<i64>>,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener; default true.
    pub h2c: Option<bool>,
    /// Pool settings for every tenant.
    pub defaults: Option<TenantSection>,
    /// Per-tenant settings, keyed by tenant name. (Not `Spanned`: toml cannot span tables that
    /// are only defined implicitly, such as `tenants.x` in `[tenants.x.environ]`.)
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSection>,
}

/// `[admin]`: the operator's listener.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AdminSection {
    /// Address of the admin listener; default `127.0.0.1:9180` (loopback only).
    pub listen: Option<Spanned<String>>,
    /// File of bearer tokens, one per line (`#` comments); required for the API.
    pub tokens_file: Option<Spanned<String>>,
    /// Require a token for `/metrics` too (default: scrapeable without one).
    pub metrics_token: Option<bool>,
    /// Tenants with their own `tenant` label in `/metrics` (first come); the rest are
    /// aggregated as `tenant="_other"`. Default 100.
    pub metrics_max_tenants: Option<Spanned<i64>>,
    /// Most connections open at once on the admin listener (signup faces the public);
    /// default 256.
    pub max_connections: Option<Spanned<i64>>,
    /// Public base URL of the front door, for links to new sites; default `http://<listen>`.
    pub public_url: Option<Spanned<String>>,
    /// Public address of the signup page, linked from the tenant index; default
    /// `http://<listen>/signup`.
    pub signup_url: Option<Spanned<String>>,
    /// Serve the public signup page (`/signup`, no token, rate-limited); default true.
    pub signup: Option<bool>,
    /// Where deleted tenants' directories are moved; default `<sites>/.archive`.
    pub archive_dir: Option<Spanned<String>>,
    /// Commands that provision a new tenant, each an argv list with placeholders.
    pub provision: Option<Spanned<Vec<Vec<String>>>>,
    /// Time the provisioning commands may take, all together.
    pub provision_timeout: Option<Spanned<String>>,
    /// As root: one shared Unix user for every new tenant instead of one user per site.
    pub signup_user: Option<Spanned<String>>,
    /// Unix group of new tenants (default: `signup_user`'s primary group).
    pub signup_group: Option<Spanned<String>>,
    /// As root: the name of each new site's own user, with `{name}`; default `site-{name}`.
    pub site_user: Option<Spanned<String>>,
    /// As root: the range of uids (and gids) given to new sites' users.
    pub site_uid_min: Option<Spanned<i64>>,
    pub site_uid_max: Option<Spanned<i64>>,
    /// Leave Trac's plugin upload panel on in new sites (default false).
    pub signup_plugin_upload: Option<bool>,
    /// Public signups per client address per `signup_window` (0: no limit).
    pub signup_limit: Option<Spanned<i64>>,
    /// Window of `signup_limit`, e.g. `"10m"`.
    pub signup_window: Option<Spanned<String>>,
    /// Names no one may sign up for, besides the built-in ones.
    pub reserved_names: Option<Vec<String>>,
}

/// One `[[rules]]` entry: the argument parts of Apache `RewriteCond` lines and a `RewriteRule`.
#[derive(Debug, Deserialize)]
pub struct RuleEntry {
    #[serde(default)]
    pub conditions: Vec<String>,
    pub rule: String,
}

/// Settings of `[defaults]` and `[tenants.NAME]`. `dir` and `mount` only make sense per tenant.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct TenantSection {
    /// Tenant directory; default `<sites>/<name>`.
    pub dir: Option<Spanned<String>>,
    /// Explicit URL prefix for this tenant (`/` for a site at the root, `/trac` for one site).
    pub mount: Option<Spanned<String>>,
    /// Worker processes in the pool.
    pub processes: Option<Spanned<i64>>,
    /// Threads per worker process.
    pub threads: Option<Spanned<i64>>,
    /// WSGI entry point: `module:callable`, or a script file defining `application`.
    pub app: Option<Spanned<String>>,
    /// Directories prepended to `sys.path`.
    pub python_path: Option<Vec<String>>,
    /// Virtualenv whose site-packages the worker adds.
    pub virtualenv: Option<Spanned<String>>,
    /// Modules a zygote imports once and forks the workers from; `[]`: no zygote. Default:
    /// Trac's modules for Trac's app, none otherwise.
    pub preload: Option<Spanned<Vec<String>>>,
    /// Unix user the pool runs as (default: owner of the tenant directory when root).
    pub user: Option<Spanned<String>>,
    /// Unix group (default: the user's primary group).
    pub group: Option<Spanned<String>>,
    /// `LANG` of the worker processes.
    pub lang: Option<String>,
    /// umask of the worker processes, octal string such as `"027"`.
    pub umask: Option<Spanned<String>>,
    /// As root: serve a tenant directory that other users can reach (default false).
    pub allow_world_readable: Option<bool>,
    /// Time a worker may take to import its app.
    pub startup_timeout: Option<Spanned<String>>,
    /// Recycle a process after this many requests (0: never), with no pause: the replacement
    /// starts first.
    pub max_requests: Option<Spanned<i64>>,
    /// Up to this many extra requests, chosen per process, so processes do not recycle together.
    pub max_requests_jitter: Option<Spanned<i64>>,
    /// Move the objects the app keeps for good out of the cyclic garbage collector's reach
    /// (`gc.freeze()` after the app is loaded and after the first request).
    pub gc_freeze: Option<bool>,
    /// Processes kept running when the pool is idle (0: an idle pool is stopped entirely).
    pub min_processes: Option<Spanned<i64>>,
    /// Requests that may wait for a free slot; more get 503 at once.
    pub queue_limit: Option<Spanned<i64>>,
    /// Time a retiring process gets to finish its requests before SIGKILL.
    pub graceful_timeout: Option<Spanned<String>>,
    /// Recycle a process whose resident memory stays above this (e.g. `"512M"`; 0: off).
    pub memory_limit: Option<Spanned<String>>,
    /// `RLIMIT_NOFILE` of the pool's processes (0: the router's).
    pub rlimit_nofile: Option<Spanned<i64>>,
    /// `RLIMIT_NPROC`: processes and threads of the tenant's uid (0: leave it; never applied
    /// to uid 0).
    pub rlimit_nproc: Option<Spanned<i64>>,
    /// `RLIMIT_AS`: address space of each process, e.g. `"4G"` (`"0"`: no limit).
    pub rlimit_as: Option<Spanned<String>>,
    /// `RLIMIT_CORE`: largest core file, e.g. `"0"` (none).
    pub rlimit_core: Option<Spanned<String>>,
    /// cgroup `memory.max` of the whole pool, e.g. `"1G"` (`"0"`: none; needs delegation).
    pub memory_max: Option<Spanned<String>>,
    /// cgroup `cpu.max` of the whole pool: `"50%"` of one CPU, `"200%"`, or `"max"`.
    pub cpu_max: Option<Spanned<String>>,
    /// cgroup `pids.max` of the whole pool (0: none; needs delegation).
    pub pids_max: Option<Spanned<i64>>,
    /// Files whose change restarts the pool gracefully (default: the app script, if the app is
    /// a file).
    pub watch_files: Option<Vec<String>>,
    /// The command `paddock backup` runs for the tenant, as its user (default for Trac:
    /// `trac-admin ENV hotcopy DEST`).
    pub backup: Option<Vec<String>>,
    /// Stop a pool after this long without requests.
    pub idle_timeout: Option<Spanned<String>>,
    /// Longest time a request waits for a free slot.
    pub queue_timeout: Option<Spanned<String>>,
    /// Longest time a request may run.
    pub request_timeout: Option<Spanned<String>>,
    /// Largest request body accepted, e.g. `"100M"`.
    pub max_body: Option<Spanned<String>>,
    /// Time allowed to receive a request body, extended by `body_min_rate`.
    pub body_read_timeout: Option<Spanned<String>>,
    /// Bytes per second that extend `body_read_timeout` by one second each (0: no extension).
    pub body_min_rate: Option<Spanned<i64>>,
    /// Process environment variables for the workers.
    pub env: Option<BTreeMap<String, String>>,
    /// WSGI environ entries added to every request (`trac.env_path`, ...).
    pub environ: Option<BTreeMap<String, String>>,
    /// HTTP Basic authentication of some paths (`[defaults.auth]`, `[tenants.NAME.auth]`).
    pub auth: Option<auth::AuthSection>,
    /// Static files served by the router: URL prefix below the mount → directory (an empty
    /// value removes a default mapping).
    #[serde(rename = "static")]
    pub statics: Option<BTreeMap<String, Spanned<String>>>,
    /// `Cache-Control: max-age` of static files, e.g. `"1h"`; `"0"` sends `no-cache`.
    pub static_max_age: Option<Spanned<String>>,
}

impl TenantSection {
    /// `self` with every unset field taken from `base`; maps are merged key by key.
    pub fn over(&self, base: &TenantSection) -> TenantSection {
        fn merge<V: Clone>(
            a: &Option<BTreeMap<String, V>>,
            b: &Option<BTreeMap<String, V>>,
        ) -> Option<BTreeMap<String, V>> {
            match (a, b) {
                (None, None) => None,
                _ => {
                    let mut m = b.clone().unwrap_or_default();
                    m.extend(a.clone().unwrap_or_default());
                    Some(m)
                }
            }
        }
        TenantSection {
            dir: self.dir.clone(),
            mount: self.mount.clone(),
            processes: self.processes.clone().or_else(|| base.processes.clone()),
            threads: self.threads.clone().or_else(|| base.threads.clone()),
            app: self.app.clone().or_else(|| base.app.clone()),
            python_path: self.python_path.clone().or_else(|| base.python_path.clone()),
            virtualenv: self.virtualenv.clone().or_else(|| base.virtualenv.clone()),
            preload: self.preload.clone().or_else(|| base.preload.clone()),
            user: self.user.clone().or_else(|| base.user.clone()),
            group: self.group.clone().or_else(|| base.group.clone()),
            lang: self.lang.clone().or_else(|| base.lang.clone()),
            umask: self.umask.clone().or_else(|| base.umask.clone()),
            allow_world_readable: self.allow_world_readable.or(base.allow_world_readable),
            startup_timeout: self.startup_timeout.clone().or_else(|| base.startup_timeout.clone()),
            max_requests: self.max_requests.clone().or_else(|| base.max_requests.clone()),
            max_requests_jitter: self
                .max_requests_jitter
                .clone()
                .or_else(|| base.max_requests_jitter.clone()),
            gc_freeze: self.gc_freeze.or(base.gc_freeze),
            min_processes: self.min_processes.clone().or_else(|| base.min_processes.clone()),
            queue_limit: self.queue_limit.clone().or_else(|| base.queue_limit.clone()),
            graceful_timeout: self
                .graceful_timeout
                .clone()
                .or_else(|| base.graceful_timeout.clone()),
            memory_limit: self.memory_limit.clone().or_else(|| base.memory_limit.clone()),
            rlimit_nofile: self.rlimit_nofile.clone().or_else(|| base.rlimit_nofile.clone()),
            rlimit_nproc: self.rlimit_nproc.clone().or_else(|| base.rlimit_nproc.clone()),
            rlimit_as: self.rlimit_as.clone().or_else(|| base.rlimit_as.clone()),
            rlimit_core: self.rlimit_core.clone().or_else(|| base.rlimit_core.clone()),
            memory_max: self.memory_max.clone().or_else(|| base.memory_max.clone()),
            cpu_max: self.cpu_max.clone().or_else(|| base.cpu_max.clone()),
            pids_max: self.pids_max.clone().or_else(|| base.pids_max.clone()),
            watch_files: self.watch_files.clone().or_else(|| base.watch_files.clone()),
            backup: self.backup.clone().or_else(|| base.backup.clone()),
            idle_timeout: self.idle_timeout.clone().or_else(|| base.idle_timeout.clone()),
            queue_timeout: self.queue_timeout.clone().or_else(|| base.queue_timeout.clone()),
            request_timeout: self.request_timeout.clone().or_else(|| base.request_timeout.clone()),
            max_body: self.max_body.clone().or_else(|| base.max_body.clone()),
            body_read_timeout: self
                .body_read_timeout
                .clone()
                .or_else(|| base.body_read_timeout.clone()),
            body_min_rate: self.body_min_rate.clone().or_else(|| base.body_min_rate.clone()),
            env: merge(&self.env, &base.env),
            environ: merge(&self.environ, &base.environ),
            auth: auth::AuthSection::merge(&self.auth, &base.auth),
            statics: merge(&self.statics, &base.statics),
            static_max_age: self.static_max_age.clone().or_else(|| base.static_max_age.clone()),
        }
    }
}
