//! What a pool's workers are started from (the one thing spawning needs of a pool), and the
//! seam through which a slot gets its worker ([`Starter`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::cgroup::PoolGroup;
use crate::counters::Counters;
use crate::identity::Identity;
use crate::spawn::{Control, Proc};
use paddock_config::tenant::TenantSpec;

/// What a pool's worker is started from, borrowed from the pool for one start: the tenant, its
/// user, the listening socket the workers share, the worker binary, the tenant's counters and
/// the pool's cgroup. Spawning never needs the pool itself.
pub struct Launch<'a> {
    pub spec: &'a TenantSpec,
    pub identity: &'a Identity,
    pub listener: &'a std::os::unix::net::UnixListener,
    pub worker_bin: &'a std::path::Path,
    pub counters: &'a Arc<Counters>,
    pub cgroup: Option<&'a PoolGroup>,
}

/// A worker being started: the process and its control pipe, once it runs.
pub type Starting<'a> = Pin<Box<dyn Future<Output = std::io::Result<(Proc, Control)>> + Send + 'a>>;

/// How a slot gets its worker. [`Spawn`] starts a real process; unit tests start tasks that
/// stand in for one (`testkit.rs`), so the pool and its slots run unchanged on fakes.
pub trait Starter: Send + Sync {
    fn start<'a>(&'a self, launch: &'a Launch<'a>, slot: usize) -> Starting<'a>;
}

/// The real one: [`crate::spawn::spawn`] (direct, or forked by the pool's zygote).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spawn;

impl Starter for Spawn {
    fn start<'a>(&'a self, launch: &'a Launch<'a>, slot: usize) -> Starting<'a> {
        Box::pin(crate::spawn::spawn(launch, slot))
    }
}
