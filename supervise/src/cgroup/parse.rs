//! Pure parsing for the cgroup module: where cgroup2 is mounted and which cgroup we are in.

use std::path::PathBuf;

/// The mount point of the cgroup2 file system in a `/proc/self/mountinfo` text: the unified
/// hierarchy (`/sys/fs/cgroup` on a pure-v2 host, `/sys/fs/cgroup/unified` on a hybrid one).
/// Only a mount of the hierarchy's root (`/`) will do: a bind mount of a sub-cgroup would not
/// match the path in `/proc/self/cgroup`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // `id parent major:minor root mount-point options [optional...] - fstype source ...`
        let (pre, post) = line.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        let mut f = pre.split_whitespace();
        let root = f.nth(3)?;
        let point = f.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape(point)))
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |a, c| a.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 path of this process from `/proc/self/cgroup` (the `0::/path` line). A path
/// with `..` or one marked `(deleted)` is refused.
pub fn own_cgroup(text: &str) -> Option<String> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let ok = path.starts_with('/') && !path.split('/').any(|p| p == "..") && !path.ends_with(')');
    ok.then(|| path.to_string())
}

/// The cgroup a router's tree goes under, given its own: a router started by an upgrade is
/// born in its predecessor's `.../paddock-<pid>/router` (the predecessor moved itself there
/// to delegate controllers); its tree goes beside the predecessor's, not inside it, so each
/// is removed on its own.
pub fn tree_parent(own: &str) -> &str {
    let Some((rest, "router")) = own.rsplit_once('/') else { return own };
    match rest.rsplit_once('/') {
        Some((parent, dir))
            if dir.strip_prefix("paddock-").is_some_and(|p| p.parse::<u32>().is_ok()) =>
        {
            if parent.is_empty() {
                "/"
            } else {
                parent
            }
        }
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_puts_its_tree_beside_its_predecessors() {
        let svc = "/system.slice/paddock.service";
        assert_eq!(tree_parent(svc), svc);
        assert_eq!(tree_parent("/system.slice/paddock.service/paddock-41/router"), svc);
        assert_eq!(tree_parent("/paddock-41/router"), "/");
        // Only the router's own layout is recognised.
        assert_eq!(tree_parent("/x/paddock-abc/router"), "/x/paddock-abc/router");
        assert_eq!(tree_parent("/x/router"), "/x/router");
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_unified_hierarchy() {
        assert_eq!(cgroup2_mount(HYBRID), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(cgroup2_mount(v2), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount(&HYBRID.replace("cgroup2", "tmpfs")), None);
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn skips_bind_mounts_of_sub_cgroups_and_unescapes() {
        let text = "\
50 23 0:38 /docker/abc /mnt/cg rw - cgroup2 cgroup2 rw
51 23 0:38 / /srv/my\\040cgroups rw shared:9 - cgroup2 none rw
";
        assert_eq!(cgroup2_mount(text), Some(PathBuf::from("/srv/my cgroups")));
    }

    #[test]
    fn own_cgroup_is_the_v2_line() {
        let text = "9:name=systemd:/\n4:memory:/process_api/9b95\n0::/\n";
        assert_eq!(own_cgroup(text).as_deref(), Some("/"));
        let unit = "0::/system.slice/paddock.service\n";
        assert_eq!(own_cgroup(unit).as_deref(), Some("/system.slice/paddock.service"));
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
        assert_eq!(own_cgroup("0::/../etc\n"), None);
        assert_eq!(own_cgroup("0::/gone (deleted)\n"), None);
        assert_eq!(own_cgroup("0::relative\n"), None);
    }
}
