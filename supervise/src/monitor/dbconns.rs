//! Connections from worker processes to the database servers (`database_servers`), for
//! `paddock_tenant_database_connections`: the sockets a process holds (`/proc/PID/fd`) that
//! are established TCP connections whose peer is one of the servers (`/proc/PID/net/tcp` and
//! `tcp6` of the process's network namespace), read with the `procfs` crate.
//!
//! TCP only: a Unix-socket client's peer is not in `/proc` (it needs `sock_diag`), so sites
//! that reach their database by a socket path are not counted (`docs/operations.md`,
//! "Databases"). Each socket counts once however many descriptors or processes hold it, as
//! the server sees one connection (`pg_stat_activity`). Blocking: called at scrape time on a
//! blocking thread.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;

use procfs::net::{TcpNetEntry, TcpState};
use procfs::process::{FDTarget, Process};

/// Counts sockets to a fixed set of servers; the socket tables are read once per network
/// namespace and reused for every process counted with the same sampler (one scrape).
pub struct DbSampler<'a> {
    servers: &'a [SocketAddr],
    /// Inodes of the established connections to a server, by network namespace (dev, inode
    /// of `/proc/PID/ns/net`).
    tables: HashMap<(u64, u64), HashSet<u64>>,
}

impl<'a> DbSampler<'a> {
    pub fn new(servers: &'a [SocketAddr]) -> Self {
        DbSampler { servers, tables: HashMap::new() }
    }

    /// Distinct sockets held by `pids` that are established connections to a server.
    /// Processes that are gone or whose descriptors cannot be read count 0.
    pub fn count(&mut self, pids: &[u32]) -> u64 {
        if self.servers.is_empty() {
            return 0;
        }
        let mut seen = HashSet::new();
        for &pid in pids {
            let Ok(id) = i32::try_from(pid) else { continue };
            let Ok(proc) = Process::new(id) else { continue };
            let Some(conns) = self.table(pid, &proc) else { continue };
            if conns.is_empty() {
                continue;
            }
            let Ok(fds) = proc.fd() else { continue };
            for fd in fds.flatten() {
                if let FDTarget::Socket(inode) = fd.target {
                    if conns.contains(&inode) {
                        seen.insert(inode);
                    }
                }
            }
        }
        seen.len() as u64
    }

    /// The connections to a server in `pid`'s network namespace (read once per namespace).
    fn table(&mut self, pid: u32, proc: &Process) -> Option<&HashSet<u64>> {
        let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
        let key = (ns.dev(), ns.ino());
        if !self.tables.contains_key(&key) {
            let mut entries: Vec<TcpNetEntry> = proc.tcp().unwrap_or_default();
            entries.extend(proc.tcp6().unwrap_or_default());
            let servers = self.servers;
            let conns = entries
                .into_iter()
                .filter(|e| e.state == TcpState::Established)
                .filter(|e| servers.iter().any(|s| same_peer(*s, e.remote_address)))
                .map(|e| e.inode)
                .collect();
            self.tables.insert(key, conns);
        }
        self.tables.get(&key)
    }
}

/// Whether `peer` is `server`, an IPv4 server also when reached as an IPv4-mapped IPv6
/// address (`::ffff:127.0.0.1` from an `AF_INET6` socket).
fn same_peer(server: SocketAddr, peer: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    server.port() == peer.port() && canon(server.ip()) == canon(peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        (l, a)
    }

    #[test]
    fn sockets_to_a_server_are_counted_others_not() {
        let (db, db_addr) = listener();
        let (other, other_addr) = listener();
        let me = [std::process::id()];
        let servers = [db_addr];
        assert_eq!(DbSampler::new(&servers).count(&me), 0, "no connection yet");

        let c1 = TcpStream::connect(db_addr).expect("connect");
        let c2 = TcpStream::connect(db_addr).expect("connect");
        let _o = TcpStream::connect(other_addr).expect("connect");
        // The accepted ends (peer: our ephemeral ports) and the listeners are not counted.
        let (_a1, _) = db.accept().expect("accept");
        let (_a2, _) = db.accept().expect("accept");
        let (_a3, _) = other.accept().expect("accept");
        assert_eq!(DbSampler::new(&servers).count(&me), 2);

        // A duplicated descriptor is still one connection; so is a pid given twice.
        let dup = c1.try_clone().expect("dup");
        assert_eq!(DbSampler::new(&servers).count(&[me[0], me[0]]), 2);
        drop((c1, dup));
        assert_eq!(DbSampler::new(&servers).count(&me), 1);
        drop(c2);
        assert_eq!(DbSampler::new(&servers).count(&me), 0);
        // No servers configured: nothing is read, nothing counted.
        assert_eq!(DbSampler::new(&[]).count(&me), 0);
    }

    #[test]
    fn a_process_that_is_gone_counts_nothing() {
        let (_db, addr) = listener();
        let servers = [addr];
        // Pids above the kernel's pid_max (at most 2^22) never exist.
        assert_eq!(DbSampler::new(&servers).count(&[(1 << 22) + 1]), 0);
    }

    #[test]
    fn ipv4_servers_match_mapped_peers() {
        let s: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5432".parse().expect("addr");
        let other_port: SocketAddr = "127.0.0.1:5433".parse().expect("addr");
        let v6: SocketAddr = "[::1]:5432".parse().expect("addr");
        assert!(same_peer(s, s));
        assert!(same_peer(s, mapped));
        assert!(!same_peer(s, other_port));
        assert!(!same_peer(s, v6));
        assert!(same_peer(v6, v6));
    }
}
