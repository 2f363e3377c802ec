//! Paddock's router: the HTTP front door, rules engine, tenant registry and pool supervisor.
//!
//! The `paddock` binary is a thin wrapper around [`run`]. This crate never links Python: the
//! worker processes it supervises do.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod check;
pub mod cli;
pub mod clientio;
pub mod cluster;
pub mod discovery;
pub mod eightbit;
pub mod filestamp;
pub mod forward;
pub mod forwarded;
pub mod front;
pub mod index;
pub mod metrics;
pub mod notify;
pub mod outcome;
pub mod phase;
pub mod probe;
pub mod refusal;
pub mod respond;
pub mod route;
pub mod statics;
pub mod tls;
pub mod upgrade;

use std::path::PathBuf;
use std::sync::Arc;

use paddock_config::{self as config, Config};
use paddock_supervise::{cgroup, monitor, registry};
use phase::{Phase, Phases};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot create the runtime directory under {dir}: {source}")]
    RuntimeDir { dir: PathBuf, source: std::io::Error },
    #[error("worker binary {0} not found; build it (cargo build) or set `worker_bin`")]
    WorkerMissing(PathBuf),
    #[error("cannot join the cluster: {0}")]
    Cluster(paddock_cluster::ClusterError),
    #[error("{0}")]
    Tls(#[from] tls::CertError),
    #[error("tls: {0}")]
    TlsConfig(rustls::Error),
}

/// Serve until `phases` is asked to stop ([`Phases::request`]), then drain or close the
/// connections and stop every pool ([`phase`] has the sequence); `phases` ends at
/// [`Phase::Stopped`]. SIGHUP re-reads the configuration (with `overrides` applied again).
pub async fn run(
    config: Config,
    overrides: config::Overrides,
    phases: Arc<Phases>,
    mut inherited: upgrade::Inherited,
) -> Result<(), StartError> {
    let worker_bin = match &config.worker_bin {
        Some(p) => p.clone(),
        None => default_worker_bin(),
    };
    if !worker_bin.is_file() {
        return Err(StartError::WorkerMissing(worker_bin));
    }
    let base = config.runtime_dir.clone().unwrap_or_else(default_runtime_base);
    // A private (0700) directory per server instance: only the router reaches the sockets.
    let runtime = tempfile::Builder::new()
        .prefix("paddock-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(|source| StartError::RuntimeDir { dir: base.clone(), source })?;
    let listener = inherited
        .listener("front", config.listen)
        .await
        .map_err(|source| StartError::Listen { addr: config.listen, source })?;
    cgroup::init();
    let addr = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(%addr, sites = ?config.sites, mount = %config.mount, "paddock listening");
    let registry = Arc::new(
        registry::Registry::new(
            runtime.path().to_path_buf(),
            worker_bin,
            config.allow_root,
            config.max_workers_total,
        )
        .with_min_residency(config.min_residency),
    );
    // Certificates before anything starts: a bad file refuses the start, naming it.
    let certs = config.tls.as_ref().map(tls::Certs::load).transpose()?;
    let state = Arc::new(front::State::new(config, overrides, registry.clone(), phases.clone()));
    state.warm_zygotes();
    let closing = || phase::reached(phases.subscribe(), Phase::closing);
    let internal = match state.config().cluster.clone() {
        Some(settings) => Some(join_cluster(&state, settings, &mut inherited).await?),
        None => None,
    };
    let internal_fd = internal.as_ref().and_then(dup);
    let monitor = monitor::spawn(registry, state.served(), closing());
    let reloader = tokio::spawn(reload_on_sighup(state.clone()));
    let mut admin_fd = None;
    let admin = match state.config().admin.clone() {
        Some(a) => {
            let l = inherited
                .listener("admin", a.listen)
                .await
                .map_err(|source| StartError::Listen { addr: a.listen, source })?;
            tracing::info!(addr = %l.local_addr().unwrap_or(a.listen), "admin listening");
            admin_fd = dup(&l);
            let admin = Arc::new(admin::Admin::new(state.clone()));
            Some(tokio::spawn(admin::serve(l, admin)))
        }
        None => None,
    };
    let mut tls_fd = None;
    let https = match (certs, state.config().tls.clone()) {
        (Some(certs), Some(t)) => {
            let l = inherited
                .listener("tls", t.listen)
                .await
                .map_err(|source| StartError::Listen { addr: t.listen, source })?;
            tracing::info!(addr = %l.local_addr().unwrap_or(t.listen), "tls listening");
            tls_fd = dup(&l);
            let config = certs.server_config().map_err(StartError::TlsConfig)?;
            tokio::spawn(tls::watch(certs, state.clone()));
            Some((l, tokio_rustls::TlsAcceptor::from(Arc::new(config))))
        }
        _ => None,
    };
    // The upgrade task holds its own copies of the listeners, to hand them over.
    let upgrader = dup(&listener).map(|front| {
        let sockets = upgrade::Sockets {
            front,
            admin: admin_fd,
            internal: internal_fd,
            tls: tls_fd,
            cluster: state.cluster().cloned(),
        };
        let st = state.clone();
        tokio::spawn(
            async move { upgrade::run(sockets, &st.upgrade_requests, st.phases.clone()).await },
        )
    });
    // Both listeners are bound: connections wait in their backlogs from here on.
    if upgrade::is_successor(&inherited) {
        // The process this one replaces tells the manager, naming this one its main PID.
        inherited.announce_ready();
        tokio::spawn(upgrade::after_predecessor());
    } else {
        notify::ready(&format!("serving on {addr}"));
    }
    let internal =
        internal.map(|l| tokio::spawn(front::serve_side(l, state.clone(), front::Side::Internal)));
    front::serve_with_tls(listener, https, state.clone()).await;
    // `serve` returns in `Stopping`; the tasks above end on seeing it.
    if let Some(i) = internal {
        let _ = i.await;
    }
    if let Some(a) = admin {
        let _ = a.await;
    }
    let _ = reloader.await;
    if let Some(u) = upgrader {
        let _ = u.await;
    }
    let _ = monitor.await;
    let fast = matches!(phases.get(), Phase::Stopping { fast: true });
    tracing::info!(fast, "stopping worker pools");
    state.registry.stop_all(fast).await;
    if let Some(c) = state.cluster() {
        // The workers are stopped: the claims may go, all at once.
        c.leave().await;
    }
    cgroup::shutdown();
    phases.advance(Phase::Stopped);
    Ok(())
}

/// Join the cluster, start the tasks that follow its health and release idle claims, and
/// bind the node-to-node listener.
async fn join_cluster(
    state: &Arc<front::State>,
    settings: config::cluster::ClusterSettings,
    inherited: &mut upgrade::Inherited,
) -> Result<tokio::net::TcpListener, StartError> {
    let at = settings.internal_listen;
    let l = inherited
        .listener("internal", at)
        .await
        .map_err(|source| StartError::Listen { addr: at, source })?;
    tracing::info!(node = %settings.node_id, etcd = ?settings.endpoints, "cluster: joining");
    // A successor takes over the lease; the claims count as in use while the process it
    // replaces drains.
    let adopt = inherited.cluster_lease.map(|l| (l, state.config().drain_timeout));
    let c = cluster::Cluster::join(settings, state.metrics.cluster(), adopt)
        .await
        .map_err(StartError::Cluster)?;
    let c = Arc::new(c);
    state.set_cluster(c.clone());
    let closing = || phase::reached(state.phases.subscribe(), Phase::closing);
    tokio::spawn(c.clone().follow_health(state.registry.clone(), closing()));
    let st = state.clone();
    let idle = move |name: &str| {
        let cfg = st.config();
        cfg.tenants
            .get(name)
            .map_or(cfg.defaults.admission.idle_timeout, |t| t.settings.admission.idle_timeout)
    };
    tokio::spawn(c.clone().reap(state.registry.clone(), idle, closing()));
    // SIGTERM moves the tenants to other nodes before the connections drain.
    state.phases.leave_first(true);
    tokio::spawn(leave_on_stop(c.clone(), state.clone()));
    tracing::info!(addr = %l.local_addr().unwrap_or(at), "cluster: internal listener");
    Ok(l)
}

/// In [`Phase::Leaving`]: move every tenant to other nodes (at most `drain_timeout`), still
/// serving, then start the connection drain.
async fn leave_on_stop(c: Arc<cluster::Cluster>, state: Arc<front::State>) {
    phase::reached(state.phases.subscribe(), |p| p != Phase::Running).await;
    if state.phases.get() != Phase::Leaving {
        return;
    }
    let limit = state.config().drain_timeout;
    let drained = tokio::select! {
        r = tokio::time::timeout(limit, c.drain(&state.registry)) => r,
        // A second signal: on to the drain (or a fast stop) at once.
        _ = phase::reached(state.phases.subscribe(), |p| p != Phase::Leaving) => return,
    };
    match drained {
        Ok(Ok(n)) => tracing::info!(moved = n, "cluster: tenants handed to other nodes"),
        Ok(Err(e)) => tracing::warn!("cluster: cannot hand the tenants over: {e}"),
        Err(_) => tracing::warn!("cluster: tenants still here after {limit:?} (drain_timeout)"),
    }
    state.phases.advance(Phase::Draining);
}

/// A duplicate of a listener's descriptor, for the upgrade hand-over; `None` (logged) if the
/// process is out of descriptors, which only disables upgrades.
fn dup(l: &tokio::net::TcpListener) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    match l.as_fd().try_clone_to_owned() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!("cannot keep a copy of the listener for upgrades: {e}");
            None
        }
    }
}

async fn reload_on_sighup(state: Arc<front::State>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload is unavailable");
        return;
    };
    let closing = phase::reached(state.phases.subscribe(), Phase::closing);
    tokio::pin!(closing);
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { return },
            _ = &mut closing => return,
        }
        match state.reload() {
            Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
            Err(d) => tracing::error!(
                "SIGHUP: configuration refused, the running one stays in force:\n{d}"
            ),
        }
    }
}

/// `paddock-worker` next to the running `paddock` binary.
pub(crate) fn default_worker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("paddock-worker")))
        .unwrap_or_else(|| PathBuf::from("paddock-worker"))
}

fn default_runtime_base() -> PathBuf {
    let run = PathBuf::from("/run");
    if nix::unistd::Uid::effective().is_root() && run.is_dir() {
        run
    } else {
        std::env::temp_dir()
    }
}
