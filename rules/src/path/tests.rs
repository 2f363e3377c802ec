#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use proptest::prelude::*;

fn split(raw: &[u8], mount: &[u8]) -> Result<(Vec<u8>, Vec<u8>), PathError> {
    let target = Target::parse(raw)?;
    split_mount(&target, mount).map(|s| (s.script_name, s.path_info))
}

fn ok(script: &[u8], info: &[u8]) -> Result<(Vec<u8>, Vec<u8>), PathError> {
    Ok((script.to_vec(), info.to_vec()))
}

#[test]
fn parse_splits_query_and_decodes() {
    let t = Target::parse(b"/trac/a%20b/../c?x=%41&y").unwrap();
    assert_eq!(t.raw_path, b"/trac/a%20b/../c");
    assert_eq!(t.query, b"x=%41&y");
    assert_eq!(t.decoded, b"/trac/a b/../c");
    assert_eq!(t.normalised, b"/trac/c");
}

#[test]
fn parse_keeps_invalid_escapes_literally() {
    assert_eq!(Target::parse(b"/a%zz%4").unwrap().decoded, b"/a%zz%4");
    assert_eq!(Target::parse(b"/a%").unwrap().decoded, b"/a%");
    assert_eq!(Target::parse(b"/%e9").unwrap().decoded, b"/\xe9");
}

#[test]
fn parse_refuses_nul_asterisk_and_relative() {
    assert_eq!(Target::parse(b"/a%00b"), Err(PathError::Nul));
    assert_eq!(Target::parse(b"/a\0b"), Err(PathError::Nul));
    assert_eq!(Target::parse(b"*"), Err(PathError::Asterisk));
    assert_eq!(Target::parse(b""), Err(PathError::Empty));
    assert_eq!(Target::parse(b"trac/x"), Err(PathError::NotAbsolutePath));
    assert_eq!(Target::parse(b"ftp://h/x"), Err(PathError::NotAbsolutePath));
}

#[test]
fn parse_absolute_form_takes_the_path() {
    let t = Target::parse(b"http://example.org:8080/trac/x?q").unwrap();
    assert_eq!((t.raw_path.as_slice(), t.query.as_slice()), (&b"/trac/x"[..], &b"q"[..]));
    let t = Target::parse(b"HTTPS://example.org?q").unwrap();
    assert_eq!((t.raw_path.as_slice(), t.query.as_slice()), (&b"/"[..], &b"q"[..]));
}

#[test]
fn normalise_resolves_dots_and_slashes() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"/trac/../etc", b"/etc"),
        (b"/../../x", b"/x"),
        (b"//trac//x/wiki", b"/trac/x/wiki"),
        (b"/a/./b/.", b"/a/b/"),
        (b"/a/b/..", b"/a/"),
        (b"/a/", b"/a/"),
        (b"/", b"/"),
        (b"/..", b"/"),
        (b"/a/.../b", b"/a/.../b"),
    ];
    for (input, expected) in cases {
        assert_eq!(normalise(input), *expected, "{}", String::from_utf8_lossy(input));
    }
    let t = Target::parse(b"/trac/%2e%2e/x").unwrap();
    assert_eq!(t.normalised, b"/x");
    assert_eq!(Target::parse(b"/trac/a%2fb").unwrap().normalised, b"/trac/a/b");
}

#[test]
fn split_mount_examples() {
    // Routing on `/etc` picks no tenant under /trac; the raw check refuses it anyway.
    assert_eq!(split(b"/trac/../etc", b"/trac/etc"), Err(PathError::CrossesMount));
    assert_eq!(split(b"/trac/../etc", b""), ok(b"", b"/trac/../etc"));
    assert_eq!(split(b"/trac/%2e%2e/x", b"/x"), Err(PathError::CrossesMount));
    assert_eq!(split(b"/trac/a%2fb", b"/trac/a"), Err(PathError::CrossesMount));
    assert_eq!(split(b"//trac//x/wiki", b"/trac/x"), ok(b"/trac/x", b"/wiki"));
    assert_eq!(
        split(b"/trac/demo-1/wiki/WikiStart/..", b"/trac/demo-1"),
        ok(b"/trac/demo-1", b"/wiki/WikiStart/..")
    );
    assert_eq!(
        split(b"/trac/demo-1/wiki/\xe9t\xe9", b"/trac/demo-1"),
        ok(b"/trac/demo-1", b"/wiki/\xe9t\xe9")
    );
    assert_eq!(
        split(b"/trac/demo-1/wiki/%E9t%E9", b"/trac/demo-1"),
        ok(b"/trac/demo-1", b"/wiki/\xe9t\xe9")
    );
    assert_eq!(split(b"/trac/./demo-1/x", b"/trac/demo-1"), Err(PathError::CrossesMount));
    assert_eq!(split(b"/../x", b""), ok(b"", b"/../x"));
    assert_eq!(split(b"/../x", b"/"), ok(b"", b"/../x"));
    assert_eq!(split(b"/trac/demo-1", b"/trac/demo-1"), ok(b"/trac/demo-1", b""));
    assert_eq!(split(b"/trac/demo-1/", b"/trac/demo-1"), ok(b"/trac/demo-1", b"/"));
    assert_eq!(split(b"/trac/demo-1?x", b"/trac/demo-1"), ok(b"/trac/demo-1", b""));
}

#[test]
fn split_mount_checks_both_views() {
    // Encoded but literal segment names are fine: they decode to the mount segment.
    assert_eq!(split(b"/tr%61c/demo-1/x", b"/trac/demo-1"), ok(b"/trac/demo-1", b"/x"));
    // The raw path names demo-1, the normalised one demo-2: refused.
    assert_eq!(split(b"/trac/demo-1/../demo-2/x", b"/trac/demo-2"), Err(PathError::CrossesMount));
    assert_eq!(split(b"/trac/demo-1/../demo-2/x", b"/trac/demo-1"), Err(PathError::CrossesMount));
    // Climbing out of the mount in PATH_INFO is refused when the normalised path leaves it.
    assert_eq!(split(b"/trac/demo-1/../../etc", b"/trac/demo-1"), Err(PathError::CrossesMount));
    assert_eq!(split(b"/trac/demo", b"/trac/demo-1"), Err(PathError::CrossesMount));
    assert_eq!(split(b"/trac/demo-10/x", b"/trac/demo-1"), Err(PathError::CrossesMount));
}

#[test]
fn lexically_within_resolves_dots() {
    let roots = vec![PathBuf::from("/srv/sites")];
    assert!(lexically_within(Path::new("/srv/sites/a/conf/trac.ini"), &roots));
    assert!(lexically_within(Path::new("/srv/sites"), &roots));
    assert!(!lexically_within(Path::new("/srv/sites/../etc/passwd"), &roots));
    assert!(!lexically_within(Path::new("/srv/sitesX/a"), &roots));
    assert!(!lexically_within(Path::new("srv/sites/a"), &roots));
    assert!(!lexically_within(Path::new("/etc/passwd"), &roots));
    assert!(lexically_within(Path::new("/srv/sites/a/../b"), &roots));
}

#[test]
fn checked_within_follows_symlinks() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"x").unwrap();
    std::fs::create_dir(root.path().join("site")).unwrap();
    std::fs::write(root.path().join("site/file"), b"x").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
    let roots = vec![root.path().to_path_buf()];

    assert!(checked_within(&root.path().join("site/file"), &roots));
    assert!(checked_within(&root.path().join("site/missing"), &roots));
    assert!(!checked_within(&root.path().join("escape/secret"), &roots));
    assert!(!checked_within(&root.path().join("escape/new"), &roots));
    assert!(resolve_within(&root.path().join("site/file"), &roots).is_some());
    assert!(resolve_within(&root.path().join("escape/secret"), &roots).is_none());
    assert!(resolve_within(&root.path().join("site/missing"), &roots).is_none());
}

/// Raw paths built from pieces that exercise every decoding and dot-segment corner.
fn raw_path_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        &b"/"[..],
        b"//",
        b".",
        b"..",
        b"%2e",
        b"%2E%2e",
        b"%2f",
        b"%2F",
        b"%",
        b"%zz",
        b"trac",
        b"tr%61c",
        b"demo",
        b"x",
        b"\xe9",
        b"?",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|pieces| {
        let mut raw = b"/".to_vec();
        pieces.iter().for_each(|p| raw.extend_from_slice(p));
        raw
    })
}

/// An independent statement of the rule split_mount must obey, for the property below.
fn literally_names_mount(raw_path: &[u8], mount: &[&[u8]]) -> bool {
    let mut raw_segments = raw_path.split(|&b| b == b'/').filter(|s| !s.is_empty());
    mount.iter().all(|m| {
        raw_segments.next().is_some_and(|raw| {
            let decoded = percent_decode(raw);
            decoded == *m && !decoded.contains(&b'/')
        })
    })
}

proptest! {
    #[test]
    fn parse_never_panics(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Target::parse(&raw);
    }

    #[test]
    fn normalised_is_canonical(raw in prop_oneof![
        raw_path_strategy(),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|mut v| { v.insert(0, b'/'); v }),
    ]) {
        if let Ok(t) = Target::parse(&raw) {
            let n = &t.normalised;
            prop_assert!(n.starts_with(b"/"));
            for bad in [&b"//"[..], b"/./", b"/../"] {
                prop_assert!(!n.windows(bad.len()).any(|w| w == bad));
            }
            prop_assert!(!n.ends_with(b"/.") && !n.ends_with(b"/.."));
            prop_assert_eq!(&normalise(n), n);
        }
    }

    #[test]
    fn split_mount_only_for_literal_mounts(
        raw in raw_path_strategy(),
        mount in prop::sample::select(vec![&b""[..], b"/trac", b"/trac/demo", b"/x", b"/trac/x"]),
    ) {
        let Ok(target) = Target::parse(&raw) else { return Ok(()) };
        let segments: Vec<&[u8]> =
            mount.split(|&b| b == b'/').filter(|s| !s.is_empty()).collect();
        if let Ok(split) = split_mount(&target, mount) {
            prop_assert!(literally_names_mount(&target.raw_path, &segments));
            prop_assert!(normalised_starts_with(&target.normalised, &segments));
            prop_assert!(target.decoded.ends_with(&split.path_info));
            prop_assert_eq!(split.script_name.as_slice(), mount);
        }
    }
}
