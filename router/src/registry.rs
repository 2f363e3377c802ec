//! Running pools by tenant name. A pool is created by the first request for its tenant and
//! replaced when the tenant's resolved settings change.

use std::path::PathBuf;
use std::sync::Arc;

use dashmap::DashMap;

use crate::identity;
use crate::pool::Pool;
use crate::tenant::TenantSpec;

pub struct Registry {
    pools: DashMap<String, Arc<Pool>>,
    runtime_dir: PathBuf,
    worker_bin: PathBuf,
    allow_root: bool,
}

impl Registry {
    pub fn new(runtime_dir: PathBuf, worker_bin: PathBuf, allow_root: bool) -> Self {
        Registry { pools: DashMap::new(), runtime_dir, worker_bin, allow_root }
    }

    /// The running pool for `spec`, started now if there is none (or its settings changed).
    /// The error is for the log; the client gets a plain 503.
    pub fn get_or_start(&self, spec: TenantSpec) -> Result<Arc<Pool>, String> {
        if let Some(p) = self.pools.get(&spec.name) {
            if p.spec == spec && !p.is_stopping() {
                return Ok(p.clone());
            }
        }
        let identity = identity::resolve(&spec, self.allow_root)?;
        let name = spec.name.clone();
        // The entry lock makes two first requests for one tenant start one pool, not two.
        let mut entry = self.pools.entry(name.clone()).or_try_insert_with(|| {
            tracing::info!(tenant = %name, user = %identity.user_name, "starting pool");
            Pool::start(spec.clone(), identity.clone(), &self.runtime_dir, self.worker_bin.clone())
                .map_err(|e| format!("tenant `{name}`: cannot create its socket: {e}"))
        })?;
        if entry.spec != spec || entry.is_stopping() {
            tracing::info!(tenant = %name, "settings changed; replacing pool");
            entry.stop();
            let fresh = Pool::start(spec, identity, &self.runtime_dir, self.worker_bin.clone())
                .map_err(|e| format!("tenant `{name}`: cannot create its socket: {e}"))?;
            *entry = fresh;
        }
        Ok(entry.clone())
    }

    /// Stop every pool and wait for its workers to exit.
    pub async fn stop_all(&self) {
        let pools: Vec<Arc<Pool>> = self.pools.iter().map(|p| p.clone()).collect();
        self.pools.clear();
        for p in &pools {
            p.stop();
        }
        for p in pools {
            p.wait_stopped().await;
        }
    }

    /// Pools that exist right now.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.iter().map(|p| p.clone()).collect()
    }
}
