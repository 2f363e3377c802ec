//! Paddock's pool supervisor: the tenant pool table and the global worker budget
//! ([`registry`]), a tenant's pool and its admission ([`pool`]), each worker slot's life
//! (`pool/slot`), what a worker is started from ([`launch`]) and how ([`spawn`], [`zygote`]),
//! whose uid it runs as ([`identity`]), its cgroup ([`cgroup`]), its log lines ([`logrelay`]),
//! idle and memory checks ([`monitor`]), the router's connection to it ([`conn`],
//! [`frames`]), and the trial start of `paddock check` ([`appcheck`]). No HTTP here: the
//! router crate speaks HTTP and calls in.

pub mod appcheck;
pub mod bucket;
pub mod cgroup;
pub mod command;
pub mod conn;
pub mod control;
pub mod counters;
pub mod frames;
pub mod identity;
pub mod launch;
pub mod logrelay;
pub mod monitor;
pub mod pool;
pub mod registry;
pub mod spawn;
#[cfg(test)]
mod testkit;
pub mod zygote;
