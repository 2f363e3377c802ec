//! Defaults derived from the machine: the connection cap from the file-descriptor limit,
//! the process budget from the memory.

/// Descriptors kept for everything but client connections (listeners, logs, pool sockets).
const RESERVED_FDS: u64 = 256;
/// Descriptors per client connection: its socket, a worker connection, one to spare.
const FDS_PER_CONNECTION: u64 = 3;
/// Fewest connections the default allows, however low the limit.
const MIN_CONNECTIONS: u64 = 32;

/// `max_connections` when unset: (soft `RLIMIT_NOFILE` − 256) / 3, at least 32.
pub fn default_max_connections() -> usize {
    connections_for(soft_nofile().unwrap_or(1024))
}

fn connections_for(nofile: u64) -> usize {
    let n = nofile.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    usize::try_from(n.max(MIN_CONNECTIONS)).unwrap_or(usize::MAX)
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
}
