//! Nothing one tenant sends reaches another tenant's memory (issue 9, section 2): two tenants
//! share one zygote; tenant A's secret (an `env` value) must be in the memory of A's worker
//! and nowhere else: not in the zygote, not in B's worker forked from it after A's.
//!
//! As root only: the workers run as other users and the scan reads `/proc/PID/mem`.

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{apps_config, chown, ensure_user, nix_is_root, Server};

const USERS: [&str; 2] = ["paddock-e2e", "paddock-e2e2"];
/// Most bytes read from one process: far above a test worker's readable mappings.
const MAX_SCAN: u64 = 4 << 30;
const CHUNK: usize = 1 << 20;

/// The readable mappings of `pid`: (start, end) from `/proc/PID/maps`.
fn readable_ranges(pid: u32) -> Vec<(u64, u64)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            // [vvar] and the like fault on read; they hold no process data anyway.
            if !perms.starts_with('r') || l.ends_with("[vvar]") || l.ends_with("[vvar_vclock]") {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .collect()
}

/// Whether `needle` occurs in the readable memory of `pid`, and how many bytes were read.
fn memory_contains(pid: u32, needle: &[u8]) -> (bool, u64) {
    let mut mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0u8; CHUNK + needle.len()];
    let mut total = 0u64;
    for (start, end) in readable_ranges(pid) {
        // Keeps the last bytes of the previous chunk so a match across chunks is found.
        let mut keep = 0usize;
        let mut at = start;
        while at < end && total < MAX_SCAN {
            let want = ((end - at) as usize).min(CHUNK);
            if mem.seek(SeekFrom::Start(at)).is_err() {
                break;
            }
            let n = match mem.read(&mut buf[keep..keep + want]) {
                Ok(n) if n > 0 => n,
                _ => break, // unreadable range (guard pages, device mappings): skip the rest
            };
            total += n as u64;
            if buf[..keep + n].windows(needle.len()).any(|w| w == needle) {
                return (true, total);
            }
            let have = keep + n;
            keep = (needle.len() - 1).min(have);
            buf.copy_within(have - keep..have, 0);
            at += n as u64;
        }
    }
    (false, total)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn pid_of(server: &Server, name: &str) -> u32 {
    let r = server.get(&format!("/{name}/pid"));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    r.text().trim().parse().expect("pid")
}

#[test]
fn a_tenants_secret_is_in_no_other_tenants_worker_nor_in_the_zygote() {
    if !nix_is_root() {
        eprintln!("skipped: reading other users' process memory needs root");
        return;
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let marker = format!("pdk-secret-{nanos:x}-{:x}-end", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let same = "processes = 1\npreload = [\"testapps\"]\n";
    // A has more environment before its secret than B has in all (variables are sent in name
    // order): B's shorter spawn request then leaves the secret where A's was received.
    let banner = "A tenant-specific value that is longer than anything tenant b sends. ".repeat(8);
    let a = format!(
        "{same}[tenants.a.env]\nBANNER = \"{banner}\"\nPADDOCK_SECRET_A = \"postgres://a:{marker}@db/a\"\n"
    );
    let cfg = apps_config(dir.path(), "", &[("a", &a), ("b", same)]);
    for (u, t) in USERS.iter().zip(["a", "b"]) {
        ensure_user(u);
        chown(&dir.path().join(t), u);
    }
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8")], false, &[]);
    let pid_a = pid_of(&server, "a");
    let pid_b = pid_of(&server, "b");
    let zygotes = server.zygote_pids();
    assert_eq!(zygotes.len(), 1, "both tenants share one zygote:\n{}", server.log_text());
    for pid in [pid_a, pid_b] {
        assert_eq!(parent_of(pid), Some(zygotes[0]), "worker {pid} was forked by the zygote");
    }
    let needle = marker.as_bytes();
    let (found, bytes) = memory_contains(pid_a, needle);
    eprintln!("worker of a (pid {pid_a}): {bytes} bytes scanned, marker found: {found}");
    assert!(found, "positive control: A's own worker holds its secret");
    let workers = server.worker_pids();
    assert!(workers.contains(&pid_b), "{workers:?} lacks b's worker {pid_b}");
    let others = workers.iter().filter(|&&p| p != pid_a).map(|&p| ("a worker of tenant b", p));
    let mut leaks = Vec::new();
    for (what, pid) in others.chain([("the zygote", zygotes[0])]) {
        let (found, bytes) = memory_contains(pid, needle);
        eprintln!("{what} (pid {pid}): {bytes} bytes scanned, marker found: {found}");
        if found {
            leaks.push(format!("{what} (pid {pid})"));
        }
    }
    assert!(leaks.is_empty(), "tenant a's secret is in the memory of {}", leaks.join(", "));
}
