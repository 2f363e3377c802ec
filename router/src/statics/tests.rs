use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use super::*;
use paddock_config::{Config, Overrides};

/// A tenant `t` in `dir/t` with `static = { "/s" = "{tenant_dir}/htdocs" }` and files in it.
struct Site {
    dir: tempfile::TempDir,
    cfg: Config,
}

impl Site {
    fn new() -> Site {
        Site::with("app = \"x:app\"\nstatic = { \"/s\" = \"{tenant_dir}/htdocs\" }\n")
    }

    fn with(tenant_lines: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let htdocs = dir.path().join("t/htdocs");
        std::fs::create_dir_all(htdocs.join("css")).expect("mkdir");
        std::fs::write(htdocs.join("css/site.css"), "body { color: red }\n").expect("write");
        std::fs::write(htdocs.join("app.js"), "var x = 1;\n").expect("write");
        std::fs::write(htdocs.join("logo.png"), b"\x89PNG....").expect("write");
        std::fs::write(htdocs.join("data.xyzzy"), "?").expect("write");
        std::fs::write(htdocs.join(".htaccess"), "secret").expect("write");
        std::fs::write(dir.path().join("outside.txt"), "outside the root").expect("write");
        let cfg = load(dir.path(), tenant_lines);
        Site { dir, cfg }
    }

    fn htdocs(&self) -> std::path::PathBuf {
        self.dir.path().join("t/htdocs")
    }

    fn hit(&self, path_info: &str) -> Option<Hit> {
        let spec = self.cfg.tenant("t").expect("tenant");
        find(self.cfg.static_files("t"), &spec, None, path_info.as_bytes())
    }

    async fn get(
        &self,
        path_info: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.request(Method::GET, path_info, headers).await
    }

    async fn request(
        &self,
        method: Method,
        path_info: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let hit = self.hit(path_info).expect("a static path");
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let r = serve(hit, &method, &h).await;
        let (parts, body) = r.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }
}

/// A configuration with tenant `t` in `dir/t` and `tenant_lines` in its table.
fn load(dir: &Path, tenant_lines: &str) -> Config {
    let text = format!(
        "[tenants.t]\ndir = \"{}\"\nmount = \"/t\"\n{tenant_lines}",
        dir.join("t").display()
    );
    let path = dir.join("paddock.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(&path, &Overrides::default()).expect("valid config")
}

fn hv(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn serves_a_file_with_validators_and_type() {
    let site = Site::new();
    let (status, h, body) = site.get("/s/css/site.css", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"body { color: red }\n");
    assert_eq!(hv(&h, header::CONTENT_TYPE), "text/css");
    assert_eq!(hv(&h, header::CONTENT_LENGTH), "20");
    assert_eq!(hv(&h, header::CACHE_CONTROL), "max-age=3600");
    assert_eq!(hv(&h, header::ACCEPT_RANGES), "bytes");
    assert!(hv(&h, header::ETAG).starts_with('"'), "{h:?}");
    assert!(hv(&h, header::LAST_MODIFIED).ends_with(" GMT"), "{h:?}");
}

#[tokio::test]
async fn content_types_by_extension() {
    let site = Site::new();
    for (path, want) in [
        ("/s/app.js", "text/javascript"),
        ("/s/logo.png", "image/png"),
        ("/s/data.xyzzy", "application/octet-stream"),
    ] {
        let (status, h, _) = site.get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let ct = hv(&h, header::CONTENT_TYPE);
        assert!(
            ct == want || (want == "text/javascript" && ct == "application/javascript"),
            "{path}: {ct}"
        );
        assert_eq!(hv(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
}

#[tokio::test]
async fn not_modified_by_etag_and_by_date() {
    let site = Site::new();
    let (_, h, _) = site.get("/s/css/site.css", &[]).await;
    let etag = hv(&h, header::ETAG).to_string();
    let date = hv(&h, header::LAST_MODIFIED).to_string();

    let (status, h304, body) = site.get("/s/css/site.css", &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(hv(&h304, header::ETAG), etag);
    let list = format!("\"nope\", W/{etag}");
    assert_eq!(
        site.get("/s/css/site.css", &[("if-none-match", &list)]).await.0,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        site.get("/s/css/site.css", &[("if-none-match", "*")]).await.0,
        StatusCode::NOT_MODIFIED
    );

    assert_eq!(
        site.get("/s/css/site.css", &[("if-modified-since", &date)]).await.0,
        StatusCode::NOT_MODIFIED
    );
    let old = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(site.get("/s/css/site.css", &[("if-modified-since", old)]).await.0, StatusCode::OK);
    // If-None-Match wins over If-Modified-Since.
    let both = [("if-none-match", "\"other\""), ("if-modified-since", date.as_str())];
    assert_eq!(site.get("/s/css/site.css", &both).await.0, StatusCode::OK);
    // A garbled date is ignored.
    assert_eq!(
        site.get("/s/css/site.css", &[("if-modified-since", "yesterday")]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn ranges_give_206_and_416() {
    let site = Site::new();
    let (status, h, body) = site.get("/s/css/site.css", &[("range", "bytes=0-3")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, b"body");
    assert_eq!(hv(&h, header::CONTENT_RANGE), "bytes 0-3/20");
    assert_eq!(hv(&h, header::CONTENT_LENGTH), "4");
    let (status, _, body) = site.get("/s/css/site.css", &[("range", "bytes=-2")]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &b"}\n"[..]));
    let (status, h, body) = site.get("/s/css/site.css", &[("range", "bytes=20-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(hv(&h, header::CONTENT_RANGE), "bytes */20");
    assert!(body.is_empty());
    // Several ranges: the whole file.
    let (status, _, body) = site.get("/s/css/site.css", &[("range", "bytes=0-1,4-5")]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 20));
    // If-Range with another version: the whole file; with this one: the range.
    let stale = [("range", "bytes=0-3"), ("if-range", "\"old\"")];
    assert_eq!(site.get("/s/css/site.css", &stale).await.0, StatusCode::OK);
    let (_, h, _) = site.get("/s/css/site.css", &[]).await;
    let etag = hv(&h, header::ETAG).to_string();
    let current = [("range", "bytes=0-3"), ("if-range", etag.as_str())];
    assert_eq!(site.get("/s/css/site.css", &current).await.0, StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let site = Site::new();
    let (status, h, body) = site.request(Method::HEAD, "/s/css/site.css", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hv(&h, header::CONTENT_LENGTH), "20");
    assert_eq!(hv(&h, header::CONTENT_TYPE), "text/css");
    assert!(body.is_empty());
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let site = Site::new();
    let (status, h, _) = site.request(Method::POST, "/s/css/site.css", &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(hv(&h, header::ALLOW), "GET, HEAD");
}

#[tokio::test]
async fn traversal_is_refused_and_never_reaches_the_app() {
    let site = Site::new();
    for path in [
        "/s/../outside.txt",
        "/s/css/../../../outside.txt",
        "/s/./css/site.css",
        "/x/../s/css/site.css",
    ] {
        let hit = site.hit(path).expect("below a static prefix, as sent or normalised");
        assert!(hit.refused, "{path}");
        assert_eq!(site.get(path, &[]).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    // Leaving the prefix entirely goes to the app, which sees its own path.
    assert!(site.hit("/wiki/../other").is_none());
    assert!(site.hit("/sx/file").is_none());
    assert!(site.hit("/").is_none());
}

#[tokio::test]
async fn symlinks_out_of_the_root_are_refused() {
    let site = Site::new();
    let root = site.htdocs();
    symlink("/etc/passwd", root.join("passwd.css")).expect("symlink");
    symlink(site.dir.path().join("outside.txt"), root.join("out.txt")).expect("symlink");
    symlink(site.dir.path(), root.join("up")).expect("symlink");
    symlink(root.join("css/site.css"), root.join("alias.css")).expect("symlink");
    symlink(root.join(".htaccess"), root.join("hidden.txt")).expect("symlink");
    for path in ["/s/passwd.css", "/s/out.txt", "/s/up/outside.txt", "/s/hidden.txt"] {
        let (status, _, body) = site.get(path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    // The root is in the tenant directory: no symlink is followed, not even one inside it.
    assert_eq!(site.get("/s/alias.css", &[]).await.0, StatusCode::NOT_FOUND);
    let (status, _, body) = site.get("/s/css/site.css", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"body { color: red }\n"[..]));
}

#[tokio::test]
async fn a_tenant_root_that_is_a_symlink_publishes_nothing() {
    let site = Site::new();
    std::fs::remove_dir_all(site.htdocs()).expect("rm");
    symlink("/etc", site.htdocs()).expect("symlink");
    for path in ["/s/passwd", "/s/hostname"] {
        assert_eq!(site.get(path, &[]).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn an_operator_root_follows_symlinks_that_stay_inside() {
    let theme = tempfile::tempdir().expect("tempdir");
    std::fs::write(theme.path().join("blue.css"), "blue\n").expect("write");
    std::fs::set_permissions(theme.path().join("blue.css"), PermissionsExt::from_mode(0o644))
        .expect("chmod");
    symlink(theme.path().join("blue.css"), theme.path().join("alias.css")).expect("symlink");
    symlink("/etc/passwd", theme.path().join("passwd.css")).expect("symlink");
    let lines =
        format!("app = \"x:app\"\nstatic = {{ \"/s\" = \"{}\" }}\n", theme.path().display());
    let site = Site::with(&lines);
    let (status, _, body) = site.get("/s/alias.css", &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"blue\n"[..]));
    assert_eq!(site.get("/s/passwd.css", &[]).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dotfiles_directories_and_missing_files_are_404() {
    let site = Site::new();
    for path in
        ["/s/.htaccess", "/s/css", "/s/css/", "/s", "/s/", "/s/missing.css", "/s/css/site.css/"]
    {
        assert_eq!(site.get(path, &[]).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn only_world_readable_regular_files() {
    let site = Site::new();
    let private = site.htdocs().join("private.css");
    std::fs::write(&private, "x").expect("write");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(site.get("/s/private.css", &[]).await.0, StatusCode::NOT_FOUND);
    let fifo = site.htdocs().join("fifo.css");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    if made {
        let got =
            tokio::time::timeout(std::time::Duration::from_secs(5), site.get("/s/fifo.css", &[]))
                .await;
        assert_eq!(got.expect("a FIFO must not hang the open").0, StatusCode::NOT_FOUND);
    }
}

#[test]
fn trac_tenants_get_the_chrome_mappings_by_default() {
    let venv = tempfile::tempdir().expect("tempdir");
    let htdocs = venv.path().join("lib/python3.11/site-packages/trac/htdocs");
    std::fs::create_dir_all(&htdocs).expect("mkdir");
    let with_venv = format!("virtualenv = \"{}\"\n", venv.path().display());
    let site = Site::with(&with_venv);
    let s = site.cfg.static_files("t");
    let want = [
        (
            "/chrome/common".to_string(),
            "{virtualenv}/lib/python3.11/site-packages/trac/htdocs".to_string(),
        ),
        ("/chrome/site".to_string(), "{tenant_dir}/htdocs".to_string()),
    ];
    assert_eq!(s.mappings, want);
    let hit = site.hit("/chrome/common/css/trac.css").expect("hit");
    assert_eq!(hit.root.as_deref(), Some(htdocs.as_path()));
    assert_eq!(hit.rest, b"/css/trac.css");
    // Plugins' /chrome/<name>/ stay with the app.
    assert!(site.hit("/chrome/tracopt/x.css").is_none());

    // Without a virtualenv, only the site's own htdocs.
    let site = Site::with("");
    assert_eq!(site.cfg.static_files("t").mappings, want[1..]);
    // An empty value removes a default; another app gets none.
    let site = Site::with(&format!("{with_venv}static = {{ \"/chrome/common\" = \"\" }}\n"));
    assert_eq!(site.cfg.static_files("t").mappings, want[1..]);
    // Trac installed elsewhere (`pip install -e`): Trac serves its own chrome.
    let editable = tempfile::tempdir().expect("tempdir");
    let site = Site::with(&format!("virtualenv = \"{}\"\n", editable.path().display()));
    assert_eq!(site.cfg.static_files("t").mappings, want[1..]);
    assert!(Site::with("app = \"x:app\"\n").cfg.static_files("t").mappings.is_empty());
    // A parent-dir pool (no trac.env_path) has its chrome below each project.
    let parent = Site::with("[tenants.t.environ]\n\"trac.env_path\" = \"\"\n");
    assert!(parent.cfg.static_files("t").mappings.is_empty());
}

#[test]
fn static_max_age_and_no_cache() {
    let site = Site::with("static_max_age = \"0\"\n");
    assert_eq!(site.cfg.static_files("t").max_age, Duration::ZERO);
    let site = Site::with("static_max_age = \"1d\"\n");
    assert_eq!(site.cfg.static_files("t").max_age, Duration::from_secs(86400));
}

#[test]
fn bad_static_config_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paddock.toml");
    let text = "sites = \"/srv\"\n[defaults]\nstatic_max_age = \"soon\"\n[defaults.static]\n\"/\" = \"/x\"\n\"/a/\" = \"/x\"\n\"/b\" = \"{virtualenv}/x\"\n\"/c\" = \"{nope}/x\"\n";
    std::fs::write(&path, text).expect("write");
    let err = Config::load(&path, &Overrides::default()).expect_err("invalid");
    let msgs: Vec<String> = err.0.iter().map(|d| format!("{}: {}", d.line, d.message)).collect();
    let has = |line: usize, what: &str| {
        msgs.iter().any(|m| m.starts_with(&format!("{line}: ")) && m.contains(what))
    };
    assert!(has(3, "static_max_age"), "{msgs:?}");
    assert!(has(5, "whole app"), "{msgs:?}");
    assert!(has(6, "must be written `/a`"), "{msgs:?}");
    assert!(has(7, "no `virtualenv`"), "{msgs:?}");
    assert!(has(8, "unknown placeholder `{nope}`"), "{msgs:?}");
}

#[test]
fn static_changes_leave_the_pool_spec_alone() {
    // A reload replaces a pool only when its TenantSpec changed.
    let site = Site::with("virtualenv = \"/venv\"\n");
    let changed = load(
        site.dir.path(),
        "virtualenv = \"/venv\"\nstatic_max_age = \"0\"\nstatic = { \"/x\" = \"/srv/x\" }\n",
    );
    assert_eq!(site.cfg.tenant("t"), changed.tenant("t"));
    assert_ne!(site.cfg.static_files("t"), changed.static_files("t"));
}
