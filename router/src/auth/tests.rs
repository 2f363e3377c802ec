use std::path::Path;
use std::time::Instant;

use base64::Engine;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::*;
use paddock_config::auth::PathRule;

const SHA_PASSWORD: &str = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="; // "password"

fn settings(file: &Path) -> AuthSettings {
    AuthSettings {
        htpasswd: file.display().to_string(),
        realm: "R\"x".into(),
        paths: vec![PathRule::Prefix("/login".into())],
        tenant_dir: None,
        sites: None,
    }
}

fn auth_header(raw: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).expect("value"));
    h
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn protected_paths_need_valid_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    let bcrypt_joe = bcrypt::hash("s\u{e9}same", 4).expect("hash");
    std::fs::write(&file, format!("alice:{SHA_PASSWORD}\njo\u{e9}:{bcrypt_joe}\n")).expect("w");
    let s = settings(&file);
    let a = Authenticator::default();
    rt().block_on(async {
        let open = a.check(Some(&s), b"/wiki", &HeaderMap::new()).await.expect("open");
        assert_eq!(open, Access { managed: true, user: None });
        let none = a.check(None, b"/login", &HeaderMap::new()).await.expect("no auth");
        assert_eq!(none, Access { managed: false, user: None });

        let denied = a.check(Some(&s), b"/login", &HeaderMap::new()).await.expect_err("401");
        let denied = denied.into_response();
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(denied.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"R\\\"x\"");

        let ok = a.check(Some(&s), b"/login", &auth_header(b"alice:password")).await;
        assert_eq!(ok.expect("alice").user(), Some("alice"));
        assert!(a.check(Some(&s), b"/login", &auth_header(b"alice:Password")).await.is_err());
        assert!(a.check(Some(&s), b"/login", &auth_header(b"bob:password")).await.is_err());

        let utf8 = auth_header("jo\u{e9}:s\u{e9}same".as_bytes());
        let joe = a.check(Some(&s), b"/login/x", &utf8).await;
        assert_eq!(joe.expect("joé").user(), Some("jo\u{e9}"));
        // A browser sending latin-1 gets the same user, checked against the UTF-8 password.
        let latin1 = a.check(Some(&s), b"/login", &auth_header(b"jo\xe9:s\xe9same")).await;
        assert_eq!(latin1.expect("latin-1").user(), Some("jo\u{e9}"));
        assert!(a.check(Some(&s), b"/login", &auth_header(b"jo\xe9:wrong")).await.is_err());

        std::fs::remove_file(&file).expect("rm");
        let gone = a.check(Some(&s), b"/login", &auth_header(b"alice:password")).await;
        assert_eq!(gone.expect_err("missing file").status(), StatusCode::UNAUTHORIZED);
        let still_open = a.check(Some(&s), b"/", &HeaderMap::new()).await;
        assert!(still_open.is_ok(), "unprotected paths keep working");
    });
}

#[test]
fn environ_is_owned_by_the_router() {
    let mut env = vec![
        (b"trac.env_path".to_vec(), b"/x".to_vec()),
        (b"REMOTE_USER".to_vec(), b"from-a-rule".to_vec()),
        (b"auth_type".to_vec(), b"x".to_vec()),
    ];
    let mut unmanaged = env.clone();
    Access { managed: false, user: None }.apply(&mut unmanaged);
    assert_eq!(unmanaged, env, "tenants without auth keep what they configured");
    let mut anonymous = env.clone();
    Access { managed: true, user: None }.apply(&mut anonymous);
    assert_eq!(anonymous, vec![(b"trac.env_path".to_vec(), b"/x".to_vec())]);
    Access { managed: true, user: Some("jo\u{e9}".into()) }.apply(&mut env);
    assert_eq!(
        env[1..],
        [
            (b"REMOTE_USER".to_vec(), "jo\u{e9}".as_bytes().to_vec()),
            (b"AUTH_TYPE".to_vec(), b"Basic".to_vec())
        ]
    );
}

#[test]
fn successful_bcrypt_checks_are_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, format!("u:{}\n", bcrypt::hash("pw", 8).expect("hash"))).expect("w");
    let s = settings(&file);
    let a = Authenticator::default();
    rt().block_on(async {
        let t = Instant::now();
        assert!(a.check(Some(&s), b"/login", &auth_header(b"u:pw")).await.is_ok());
        let first = t.elapsed();
        let t = Instant::now();
        assert!(a.check(Some(&s), b"/login", &auth_header(b"u:pw")).await.is_ok());
        assert!(t.elapsed() * 4 < first, "second check is a cache hit: {:?}", t.elapsed());
        assert!(a.check(Some(&s), b"/login", &auth_header(b"u:px")).await.is_err());
    });
    // A new password for the same user: the remembered check no longer applies.
    std::fs::write(&file, format!("u:{}\n", bcrypt::hash("new", 4).expect("hash"))).expect("w");
    rt().block_on(async {
        assert!(a.check(Some(&s), b"/login", &auth_header(b"u:pw")).await.is_err());
        assert!(a.check(Some(&s), b"/login", &auth_header(b"u:new")).await.is_ok());
    });
}

/// `cargo test -p paddock-router --release measure_auth_costs -- --ignored --nocapture`
#[test]
#[ignore = "measurement, not a check"]
fn measure_auth_costs() {
    for cost in [5, 10, 12] {
        let h = bcrypt::hash("password", cost).expect("hash");
        let stored = htpasswd::classify(&h);
        let n = if cost == 12 { 3 } else { 10 };
        let t = Instant::now();
        for _ in 0..n {
            assert!(stored.verify(b"password"));
        }
        println!("bcrypt cost {cost}: {:?} per check", t.elapsed() / n);
    }
    let apr1 = htpasswd::classify("$apr1$LUcn0QRl$b0OC5kImTJBU6RxOay2Av1");
    let t = Instant::now();
    for _ in 0..1000 {
        assert!(apr1.verify(b"password"));
    }
    println!("apr1: {:?} per check", t.elapsed() / 1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("htpasswd");
    let lines: String = (0..1000).map(|i| format!("user{i}:{SHA_PASSWORD}\n")).collect();
    std::fs::write(&file, lines).expect("w");
    let t = Instant::now();
    for _ in 0..100_000 {
        assert!(std::fs::metadata(&file).is_ok());
    }
    println!("stat: {:?} per call", t.elapsed() / 100_000);
    let files = files::Files::default();
    let t = Instant::now();
    for _ in 0..100 {
        std::fs::write(&file, format!("x:{SHA_PASSWORD}\n")).expect("w");
        std::fs::write(
            &file,
            (0..1000).map(|i| format!("u{i}:{SHA_PASSWORD}\n")).collect::<String>(),
        )
        .expect("w");
        assert!(files.get(&paddock_sys::safefs::Place::Operator(file.clone())).is_some());
    }
    println!("write + re-read + parse of 1000 users: {:?}", t.elapsed() / 100);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let f = std::fs::File::options().write(true).open(&file).expect("open");
    f.set_modified(old).expect("mtime");
    assert!(files.get(&paddock_sys::safefs::Place::Operator(file.clone())).is_some());
    let t = Instant::now();
    for _ in 0..100_000 {
        assert!(files.get(&paddock_sys::safefs::Place::Operator(file.clone())).is_some());
    }
    println!("lookup of an unchanged file (stat + cache): {:?}", t.elapsed() / 100_000);
}

fn load(text: &str) -> Result<paddock_config::Config, paddock_rules::diag::Diagnostics> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paddock.toml");
    std::fs::write(&path, text).expect("write");
    paddock_config::Config::load(&path, &paddock_config::Overrides::default())
}

#[test]
fn config_merges_tenant_over_defaults() {
    let c = load(
        r#"sites = "/srv/sites"
[defaults.auth]
htpasswd = "{tenant_dir}/htpasswd"
realm = ""
[tenants.a]
dir = "/srv/a"
[tenants.a.auth]
paths = ["/login", "^/admin"]
[tenants.b]
dir = "/srv/b"
auth = { paths = [] }
"#,
    )
    .expect("valid");
    let d = c.defaults.request.auth.as_ref().expect("defaults have auth");
    assert_eq!((d.realm.as_str(), d.paths.len()), ("", 1));
    let a = c.tenant("a").expect("a").settings.request.auth.expect("a has auth");
    assert_eq!(a.htpasswd, "/srv/a/htpasswd");
    assert_eq!(a.realm, "");
    assert_eq!(a.paths.len(), 2);
    assert!(c.tenant("b").expect("b").settings.request.auth.is_none(), "paths = [] turns it off");
}

#[test]
fn config_errors_name_their_lines() {
    let e = load(
        "sites = \"/srv\"\n[defaults.auth]\nhtpasswd = \"\"\nrealm = \"a\\nb\"\npaths = [\n  \"login\",\n  \"^(\",\n]\nrelm = \"x\"\n",
    )
    .expect_err("invalid");
    let text = e.to_string();
    assert!(text.contains(":9: ") && text.contains("relm"), "unknown key: {text}");
    let e = load(
        "sites = \"/srv\"\n[defaults.auth]\nhtpasswd = \"\"\nrealm = \"a\\nb\"\npaths = [\n  \"login\",\n  \"^(\",\n]\n",
    )
    .expect_err("invalid");
    let lines: Vec<String> = e.0.iter().map(|d| format!("{}: {}", d.line, d.message)).collect();
    for (line, what) in
        [(6, "must start with"), (7, "regular expression"), (4, "control"), (3, "name a file")]
    {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{line}: ")) && l.contains(what)),
            "{line} {what}: {lines:?}"
        );
    }
    let e = load("sites = \"/srv\"\n[defaults.auth]\nrealm = \"x\"\n").expect_err("no file");
    assert!(e.to_string().contains(":3: `auth` needs `htpasswd"), "{e}");
}
