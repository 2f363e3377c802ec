//! `paddock backup`: a Trac site copied with `trac-admin hotcopy` as its user into a dated
//! directory, restored by moving the copy back and served again; a site with its own backup
//! command; a site without one reported, the others still backed up.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{nix_is_root, trac_env, venv, write, Server};

fn trac_admin(env: &Path, args: &[&str]) -> String {
    let out = Command::new(venv().join("bin/trac-admin"))
        .arg(env)
        .args(args)
        .output()
        .expect("trac-admin");
    assert!(out.status.success(), "trac-admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn backup(cfg: &Path, dest: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(&common::bins().0)
        .arg("backup")
        .arg("--config")
        .arg(cfg)
        .arg("--dest")
        .arg(dest)
        .args(extra)
        .output()
        .expect("run paddock backup");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_trac_site_is_backed_up_as_its_user_and_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sites = dir.path().join("sites");
    let alpha = sites.join("alpha");
    std::fs::create_dir_all(&sites).expect("mkdir");
    trac_env(&alpha, "Alpha");
    let page = dir.path().join("page.txt");
    write(&page, "The backup keeps this sentence.\n");
    trac_admin(&alpha, &["wiki", "import", "BackupProof", page.to_str().expect("utf-8")]);
    let uid = if nix_is_root() {
        let (uid, _) = common::ensure_user("paddock-e2e");
        common::chown(&alpha, "paddock-e2e");
        uid
    } else {
        std::fs::metadata(&alpha).expect("stat").uid()
    };
    // Its own command: a copy of its directory (any app can say how it is backed up).
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    common::private(&plain);
    write(&plain.join("data.txt"), "plain data\n");
    if nix_is_root() {
        common::chown(&plain, "paddock-e2e");
    }
    // And one that cannot be: not Trac, no `backup`.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).expect("mkdir");
    common::private(&bare);
    if nix_is_root() {
        common::chown(&bare, "paddock-e2e");
    }
    let cfg = dir.path().join("paddock.toml");
    write(
        &cfg,
        &format!(
            "sites = \"{sites}\"\n[defaults]\nvirtualenv = \"{venv}\"\nprocesses = 1\n\
             [tenants.plain]\ndir = \"{plain}\"\napp = \"x:application\"\nbackup = [\"/bin/cp\", \"-r\", \"{{tenant_dir}}\", \"{{dest}}\"]\n\
             [tenants.bare]\ndir = \"{bare}\"\napp = \"x:application\"\n",
            sites = sites.display(),
            venv = venv().display(),
            plain = plain.display(),
            bare = bare.display(),
        ),
    );
    let dest = dir.path().join("backups");

    let (code, out, err) = backup(&cfg, &dest, &["--tenant", "alpha", "--tenant", "plain"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("alpha: backed up to ") && out.contains("2 of 2 sites backed up"),
        "{out}"
    );
    let days: Vec<_> =
        std::fs::read_dir(&dest).expect("dest").flatten().map(|e| e.path()).collect();
    assert_eq!(days.len(), 1, "{days:?}");
    let day = &days[0];
    let name = day.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    assert!(name.len() == 16 && name.ends_with('Z') && name.as_bytes()[8] == b'T', "{name}");
    let mine = day.join("alpha");
    let meta = std::fs::metadata(&mine).expect("alpha's backup");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700), "made for the site's user alone");
    let copy = mine.join("env");
    assert!(trac_admin(&copy, &["wiki", "export", "BackupProof"])
        .contains("The backup keeps this sentence."));
    assert_eq!(
        std::fs::read_to_string(day.join("plain/env/data.txt")).expect("plain's copy"),
        "plain data\n"
    );

    // Every tenant: `bare` cannot be backed up and says why; the others still are.
    let (code, out, err) = backup(&cfg, &dest, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("bare: backup failed: no backup command"), "{err}");
    assert!(
        out.contains("alpha: backed up to ") && out.contains("2 of 3 sites backed up"),
        "{out}"
    );

    // Restore (docs/operations.md): the site lost, its copy moved back in place, served again.
    std::fs::remove_dir_all(&alpha).expect("lose the site");
    let st = Command::new("cp").arg("-a").arg(&copy).arg(&alpha).status().expect("cp");
    assert!(st.success());
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8")]);
    let r = server.get("/trac/alpha/wiki/BackupProof");
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert!(r.text().contains("The backup keeps this sentence."));
}
