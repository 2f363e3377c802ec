use std::os::unix::fs::symlink;

use super::*;

/// `<tmp>/site` with `conf/trac.ini`, a symlinked directory, a symlinked file, a FIFO.
fn site() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("conf")).expect("mkdir");
    std::fs::write(site.join("conf/trac.ini"), "[project]\n").expect("write");
    std::fs::write(tmp.path().join("secret"), "secret\n").expect("write");
    symlink(tmp.path(), site.join("up")).expect("symlink");
    symlink(tmp.path().join("secret"), site.join("conf/link.ini")).expect("symlink");
    nix::unistd::mkfifo(&site.join("conf/fifo.ini"), nix::sys::stat::Mode::S_IRWXU)
        .expect("mkfifo");
    (tmp, site)
}

/// Run `f` with openat2 and then with the component walk, on the same tree.
fn both(f: impl Fn(&dyn Fn(&Path, &str, OFlag) -> io::Result<OwnedFd>)) {
    f(&|base, rel, flags| open(&Place::beneath(base, rel), flags));
    f(&|base, rel, flags| {
        let dir = sys::openat(
            None,
            base,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )?;
        walk(&dir, Path::new(rel), flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK)
    });
}

#[test]
fn plain_files_open_beneath_their_base() {
    let (_tmp, site) = site();
    both(|o| assert!(o(&site, "conf/trac.ini", OFlag::O_RDONLY).is_ok()));
    let (bytes, meta) = read(&Place::beneath(&site, "conf/trac.ini"), 100).expect("read");
    assert_eq!((bytes.as_slice(), meta.len()), (&b"[project]\n"[..], 10));
    assert!(is_file(&Place::beneath(&site, "conf/trac.ini")));
}

#[test]
fn symlinks_in_the_middle_or_at_the_end_are_refused() {
    let (_tmp, site) = site();
    both(|o| {
        let e = o(&site, "up/secret", OFlag::O_RDONLY).expect_err("middle");
        assert_eq!(e.raw_os_error().or(Some(libc::ELOOP)), Some(libc::ELOOP), "{e}");
        assert!(o(&site, "conf/link.ini", OFlag::O_RDONLY).is_err(), "end");
    });
    let e = read(&Place::beneath(&site, "up/secret"), 100).expect_err("refused");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // O_PATH describes the link itself: not a file.
    assert!(!is_file(&Place::beneath(&site, "conf/link.ini")));
    assert!(!is_file(&Place::beneath(&site, "up/secret")));
}

#[test]
fn dot_dot_is_refused() {
    let (_tmp, site) = site();
    both(|o| {
        assert!(o(&site, "../secret", OFlag::O_RDONLY).is_err());
        assert!(o(&site, "conf/../../secret", OFlag::O_RDONLY).is_err());
    });
    assert!(read(&Place::beneath(&site, "../secret"), 100).is_err());
}

#[test]
fn fifos_neither_block_nor_pass_for_files() {
    let (_tmp, site) = site();
    let fifo = Place::beneath(&site, "conf/fifo.ini");
    let e = read(&fifo, 100).expect_err("a FIFO");
    assert!(e.to_string().contains("not a regular file (a FIFO)"), "{e}");
    assert!(!is_file(&fifo));
    assert!(stat(&fifo).is_ok_and(|m| !m.is_file()));
    let op = Place::Operator(site.join("conf/fifo.ini"));
    assert!(read(&op, 100).is_err());
}

#[test]
fn oversized_files_are_refused() {
    let (_tmp, site) = site();
    let f = std::fs::File::create(site.join("conf/big.ini")).expect("create");
    f.set_len(1 << 30).expect("sparse");
    let e = read(&Place::beneath(&site, "conf/big.ini"), TRAC_INI_CAP).expect_err("big");
    assert!(e.to_string().ends_with("larger than 65536 bytes"), "{e}");
    assert!(read(&Place::beneath(&site, "conf/trac.ini"), 10).is_ok(), "exactly the cap");
    assert!(read(&Place::beneath(&site, "conf/trac.ini"), 9).is_err());
}

#[test]
fn operator_paths_refuse_a_final_symlink_only() {
    let (tmp, site) = site();
    assert!(read(&Place::Operator(site.join("up/secret")), 100).is_ok(), "operator's dirs");
    assert!(read(&Place::Operator(site.join("conf/link.ini")), 100).is_err());
    assert!(read(&Place::Operator(tmp.path().join("secret")), 100).is_ok());
}

#[test]
fn places() {
    let sites = Path::new("/srv/sites");
    let at = |p: &str, dir: Option<&str>| Place::of(Path::new(p), dir.map(Path::new), Some(sites));
    let b = |base: &str, rel: &str| Place::beneath(Path::new(base), rel);
    assert_eq!(at("/srv/sites/a/htpasswd", None), b("/srv/sites/a", "htpasswd"));
    assert_eq!(at("/srv/sites/a/../b/x", None), b("/srv/sites/b", "x"));
    assert_eq!(at("/srv/sites/a", None), b("/srv/sites/a", ""));
    assert_eq!(at("/t/a/conf/x", Some("/t/a")), b("/t/a", "conf/x"));
    assert_eq!(
        at("/etc/paddock/users", Some("/t/a")),
        Place::Operator("/etc/paddock/users".into())
    );
    assert_eq!(at("/srv/sites", None), Place::Operator("/srv/sites".into()));
    assert_eq!(at("/t/a/../../srv/sites/c/y", Some("/t/a")), b("/srv/sites/c", "y"));
}
