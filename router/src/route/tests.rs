use std::path::Path;

use super::*;
use crate::probe::FsProbe;
use paddock_config::{Config, Overrides};

fn sites(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for n in names {
        let conf = dir.path().join(n).join("conf");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(conf.join("trac.ini"), "[project]\nname = x\n").expect("write");
    }
    dir
}

fn discover(dir: &Path) -> Config {
    Config::from_overrides(&Overrides { sites: Some(dir.to_path_buf()), ..Overrides::default() })
        .expect("valid")
}

fn route(cfg: &Config, raw: &[u8]) -> Decision {
    let target = match Target::parse(raw) {
        Ok(t) => t,
        Err(_) => return Decision::BadRequest("parse"),
    };
    let headers = http::HeaderMap::new();
    let info = RequestInfo {
        path: &target.normalised,
        query: &target.query,
        method: b"GET",
        host: b"example.org",
        headers: &headers,
        remote_addr: b"127.0.0.1",
        https: false,
        server_name: b"example.org",
        server_port: 80,
    };
    decide(cfg, &target, &info, &FsProbe::new(cfg.file_roots.clone()))
}

fn tenant(d: Decision) -> (String, String, String) {
    match d {
        Decision::Tenant(r) => (
            r.spec.name,
            String::from_utf8_lossy(&r.script_name).into_owned(),
            String::from_utf8_lossy(&r.path_info).into_owned(),
        ),
        other => panic!("expected a tenant, got {other:?}"),
    }
}

#[test]
fn discovered_tenants_at_mount() {
    let d = sites(&["demo-1", "demo-2"]);
    let c = discover(d.path());
    assert_eq!(
        tenant(route(&c, b"/trac/demo-1/wiki/WikiStart")),
        ("demo-1".into(), "/trac/demo-1".into(), "/wiki/WikiStart".into())
    );
    assert_eq!(
        tenant(route(&c, b"/trac/demo-2")),
        ("demo-2".into(), "/trac/demo-2".into(), "".into())
    );
    assert!(matches!(route(&c, b"/trac/"), Decision::Index));
    assert!(matches!(route(&c, b"/trac"), Decision::Index));
    assert!(matches!(route(&c, b"/trac/nope/x"), Decision::NotFound));
    assert!(matches!(route(&c, b"/elsewhere"), Decision::NotFound));
}

#[test]
fn a_directory_without_marker_is_not_a_tenant() {
    let d = sites(&["demo-1"]);
    std::fs::create_dir_all(d.path().join("empty/conf")).expect("mkdir");
    let c = discover(d.path());
    assert!(matches!(route(&c, b"/trac/empty/"), Decision::NotFound));
}

#[test]
fn traversal_across_tenants_is_refused() {
    let d = sites(&["demo-1", "demo-2"]);
    let c = discover(d.path());
    assert!(matches!(route(&c, b"/trac/demo-2/../demo-1/x"), Decision::BadRequest(_)));
    assert!(matches!(route(&c, b"/trac/demo-2/%2e%2e/demo-1/x"), Decision::BadRequest(_)));
    assert!(matches!(route(&c, b"/trac/demo-1%2fx"), Decision::BadRequest(_)));
    assert!(matches!(route(&c, b"/trac/../etc/passwd"), Decision::NotFound));
    assert!(matches!(route(&c, b"/trac/%2e%2e/etc"), Decision::NotFound));
    assert_eq!(
        tenant(route(&c, b"//trac//demo-1//x")),
        ("demo-1".into(), "/trac/demo-1".into(), "/x".into())
    );
    assert_eq!(
        tenant(route(&c, b"/trac/demo-1/a//b")).2,
        "/a//b",
        "inside the app's path, as sent"
    );
}

#[test]
fn app_sees_its_path_as_sent() {
    let d = sites(&["demo-1"]);
    let c = discover(d.path());
    assert_eq!(tenant(route(&c, b"/trac/demo-1/wiki/WikiStart/..")).2, "/wiki/WikiStart/..");
    for raw in [&b"/trac/demo-1/wiki/%E9t%E9"[..], b"/trac/demo-1/wiki/\xe9t\xe9"] {
        match route(&c, raw) {
            Decision::Tenant(r) => assert_eq!(r.path_info, b"/wiki/\xe9t\xe9"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn explicit_mounts_single_site_and_root() {
    let d = sites(&["mysite"]);
    let text = format!(
        "index = false\n[tenants.one]\ndir = \"{0}/mysite\"\nmount = \"/trac\"\n[tenants.top]\ndir = \"{0}/mysite\"\nmount = \"/\"\n",
        d.path().display()
    );
    let f = d.path().join("p.toml");
    std::fs::write(&f, text).expect("write");
    let c = Config::load(&f, &Overrides::default()).expect("valid");
    assert_eq!(
        tenant(route(&c, b"/trac/wiki/X")),
        ("one".into(), "/trac".into(), "/wiki/X".into())
    );
    assert_eq!(tenant(route(&c, b"/trac")), ("one".into(), "/trac".into(), "".into()));
    assert_eq!(tenant(route(&c, b"/timeline")), ("top".into(), "".into(), "/timeline".into()));
    assert_eq!(tenant(route(&c, b"/")), ("top".into(), "".into(), "/".into()));
    // At the root, the app gets dot segments as sent.
    assert_eq!(tenant(route(&c, b"/../x")).2, "/../x");
}

#[test]
fn rules_choose_pool_forbid_and_set_environ() {
    let d = sites(&["demo-1"]);
    std::fs::create_dir_all(d.path().join("bare")).expect("mkdir");
    let rules = format!(
        "RewriteEngine On\nRewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)\nRewriteCond {0}/%1/conf/trac.ini !-f\nRewriteRule . - [F]\nRewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)\nRewriteRule . - [E=paddock.tenant:%1,E=trac.env_path:{0}/%1]\n",
        d.path().display()
    );
    std::fs::write(d.path().join("r.rules"), rules).expect("write");
    let f = d.path().join("p.toml");
    std::fs::write(&f, format!("sites = \"{}\"\nrules_file = \"r.rules\"\n", d.path().display()))
        .expect("write");
    let c = Config::load(&f, &Overrides::default()).expect("valid");
    assert!(matches!(route(&c, b"/trac/bare/wiki"), Decision::Forbidden));
    assert!(matches!(route(&c, b"/trac/nothing/wiki"), Decision::Forbidden));
    match route(&c, b"/trac/demo-1/wiki") {
        Decision::Tenant(r) => {
            assert_eq!(r.spec.name, "demo-1");
            assert_eq!(r.script_name, b"/trac/demo-1");
            let env_path = format!("{}/demo-1", d.path().display());
            assert!(r
                .rule_environ
                .iter()
                .any(|(k, v)| k == "trac.env_path" && v == env_path.as_bytes()));
            assert!(!r.rule_environ.iter().any(|(k, _)| k.starts_with("paddock.")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule_redirect() {
    let d = sites(&["demo-1"]);
    let f = d.path().join("p.toml");
    std::fs::write(
        &f,
        format!("sites = \"{}\"\n[[rules]]\nrule = \"^/$ /trac/ [R=301,L]\"\n", d.path().display()),
    )
    .expect("write");
    let c = Config::load(&f, &Overrides::default()).expect("valid");
    match route(&c, b"/") {
        Decision::Redirect { status, location } => {
            assert_eq!(status, 301);
            assert!(location.ends_with(b"/trac/"), "{}", String::from_utf8_lossy(&location));
        }
        other => panic!("{other:?}"),
    }
}
