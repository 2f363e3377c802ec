//! What a pool's workers are started from (the one thing spawning needs of a pool).

use std::sync::Arc;

use crate::cgroup::PoolGroup;
use crate::counters::Counters;
use crate::identity::Identity;
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
    /// `--retire-lead` for this start (with `max_requests`; 0: none): how many requests ahead
    /// of its limit the worker asks for its successor ([`crate::pool`]'s slot estimates it).
    pub retire_lead: u64,
}
