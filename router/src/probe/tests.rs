#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use http::HeaderMap;
use paddock_rules::{parse_apache, Action, RequestInfo, RuleSet};

use super::*;

fn rules(text: &str) -> RuleSet {
    match parse_apache(text, Path::new("rules.conf")) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

/// A GET of `path` with no headers.
fn get<'a>(path: &'a [u8], headers: &'a HeaderMap) -> RequestInfo<'a> {
    RequestInfo {
        path,
        query: b"",
        method: b"GET",
        host: b"paddock.local",
        headers,
        remote_addr: b"192.0.2.7",
        https: false,
        server_name: b"paddock.local",
        server_port: 8080,
    }
}

/// Lays out a sites directory with `good` (has conf/trac.ini) and `bare` (has not).
fn sites() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sites");
    std::fs::create_dir_all(root.join("good/conf")).unwrap();
    std::fs::write(root.join("good/conf/trac.ini"), b"[trac]\n").unwrap();
    std::fs::create_dir_all(root.join("bare")).unwrap();
    (dir, root)
}

#[test]
fn apache_example_against_a_sites_directory() {
    let (_dir, root) = sites();
    let text = format!(
        "RewriteEngine On\n\
         RewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)\n\
         RewriteCond {root}/%1/conf/trac.ini !-f\n\
         RewriteRule . - [F]\n\
         RewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)\n\
         RewriteRule . - [E=trac.env_path:{root}/%1,E=paddock.tenant:%1]\n",
        root = root.display()
    );
    let set = rules(&text);
    let h = HeaderMap::new();
    let probe = FsProbe::new(vec![root.clone()]);

    let good = set.evaluate(&get(b"/trac/good/wiki", &h), &probe);
    assert_eq!(good.action, Action::Continue);
    let env_path = format!("{}/good", root.display());
    assert_eq!(good.var("trac.env_path"), Some(env_path.as_bytes()));
    assert_eq!(good.var("paddock.tenant"), Some(&b"good"[..]));
    assert_eq!(good.path, b"/trac/good/wiki");

    let bare = set.evaluate(&get(b"/trac/bare/wiki", &h), &probe);
    assert_eq!(bare.action, Action::Forbidden);
    let missing = set.evaluate(&get(b"/trac/nowhere", &h), &probe);
    assert_eq!(missing.action, Action::Forbidden);

    let other = set.evaluate(&get(b"/robots.txt", &h), &probe);
    assert_eq!(other.action, Action::Continue);
    assert!(other.vars.is_empty());

    // Knowing `root` holds tenant directories, a symlink below one is not followed, even to
    // another tenant's file.
    symlink(root.join("good/conf"), root.join("bare/conf")).expect("symlink");
    assert!(probe.test(format!("{}/bare/conf/trac.ini", root.display()).as_bytes(), FileTest::File));
    let strict = FsProbe { sites: Some(root.clone()), ..FsProbe::new(vec![root.clone()]) };
    let linked = format!("{}/bare/conf/trac.ini", root.display());
    assert!(!strict.test(linked.as_bytes(), FileTest::File));
    let real = format!("{}/good/conf/trac.ini", root.display());
    assert!(strict.test(real.as_bytes(), FileTest::File));
    assert!(strict.test(format!("{}/good", root.display()).as_bytes(), FileTest::Dir));
}

#[test]
fn fs_probe_is_confined_to_its_roots() {
    let (dir, root) = sites();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), root.join("good/link")).unwrap();
    std::fs::write(root.join("good/empty"), b"").unwrap();
    let probe = FsProbe::new(vec![root.clone()]);
    let test = |p: &Path, kind| probe.test(p.as_os_str().as_bytes(), kind);

    assert!(Path::new("/etc/passwd").exists());
    assert!(!probe.test(b"/etc/passwd", FileTest::File));
    assert!(!test(&root.join("../outside/secret"), FileTest::File));
    assert!(!test(&root.join("escape/secret"), FileTest::File));
    assert!(!test(&root.join("escape"), FileTest::Dir));
    assert!(!test(&root.join("good/link"), FileTest::File));
    assert!(!probe.test(b"sites/good/conf/trac.ini", FileTest::File));
    assert!(test(&root.join("good/conf/trac.ini"), FileTest::File));
    assert!(test(&root.join("good/conf/trac.ini"), FileTest::NonEmptyFile));
    assert!(test(&root.join("bare/../good/conf/trac.ini"), FileTest::File));
    assert!(!test(&root.join("good/empty"), FileTest::NonEmptyFile));
    assert!(test(&root.join("good"), FileTest::Dir));
    assert!(!test(&root.join("good"), FileTest::File));
    assert!(!test(&root.join("bare/conf/trac.ini"), FileTest::File));
}
