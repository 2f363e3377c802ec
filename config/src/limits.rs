//! Defaults derived from the machine: the connection cap from the file-descriptor limit,
//! the process budget from the memory.

/// Descriptors kept for everything but client connections (listeners, logs, pool sockets).
const RESERVED_FDS: u64 = 256;
/// Descriptors per client connection: its socket, a worker connection, one to spare.
const FDS_PER_CONNECTION: u64 = 3;
/// Fewest connections the default allows, however low the limit.
const MIN_CONNECTIONS: u64 = 32;
/// Memory budgeted per worker process for the default `max_workers_total` (a Trac worker
/// with its caches; a fresh one is about 50 MB).
const BYTES_PER_WORKER: u64 = 64 << 20;
/// Fewest worker processes the default allows, however small the machine.
const MIN_WORKERS: u64 = 8;

/// `max_connections` when unset: (soft `RLIMIT_NOFILE` − 256) / 3, at least 32.
pub fn default_max_connections() -> usize {
    connections_for(soft_nofile().unwrap_or(1024))
}

fn connections_for(nofile: u64) -> usize {
    let n = nofile.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    usize::try_from(n.max(MIN_CONNECTIONS)).unwrap_or(usize::MAX)
}

/// `max_workers_total` when unset: half of `MemTotal` at 64 MiB per worker, at least 8.
pub fn default_max_workers() -> usize {
    let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| parse_mem_total(&t));
    workers_for(mem.unwrap_or(0))
}

fn workers_for(mem_total: u64) -> usize {
    let n = (mem_total / 2) / BYTES_PER_WORKER;
    usize::try_from(n.max(MIN_WORKERS)).unwrap_or(usize::MAX)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.trim_start_matches("MemTotal:").split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The soft limit on open files, from `/proc/self/limits` (`unlimited` counts as 2^20).
fn soft_nofile() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_soft_nofile(&text)
}

fn parse_soft_nofile(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    match soft {
        "unlimited" => Some(1 << 20),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_follow_the_descriptor_limit() {
        assert_eq!(connections_for(1024), 256);
        assert_eq!(connections_for(65536), 21760);
        assert_eq!(connections_for(100), 32);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax processes             63459                63459                processes\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_soft_nofile(limits), Some(1024));
        assert!(soft_nofile().is_some(), "readable here");
    }

    #[test]
    fn workers_follow_the_memory() {
        assert_eq!(workers_for(16 << 30), 128);
        assert_eq!(workers_for(256 << 20), 8);
        assert_eq!(workers_for(0), 8);
        let meminfo = "MemTotal:        8000000 kB\nMemFree:  100 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(8_000_000 * 1024));
        assert!(default_max_workers() >= 8);
    }
}
