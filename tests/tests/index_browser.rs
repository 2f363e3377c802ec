//! The tenant index (`/trac/`), the one Paddock page every visitor sees, in a real headless
//! Chromium: 300 projects as cards with their names and descriptions from `trac.ini`, a
//! filter that works under the page's Content-Security-Policy (its script is allowed by hash,
//! nothing else is), the signup link, hostile project names shown as text; and a screenshot.

mod browserkit;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use browserkit::Browser;
use common::{free_port, private, repo_root, write, Server};
use serde_json::json;

const SITES: usize = 300;

/// `sites/site-NNN` with a `conf/trac.ini` naming the project; every tenth one a "Gamma"
/// project, one with markup in its name.
fn sites(dir: &Path) -> PathBuf {
    let sites = dir.join("sites");
    for i in 0..SITES {
        let site = sites.join(format!("site-{i:03}"));
        let (name, descr) = match i {
            7 => {
                ("<script>document.title='owned'</script>".to_string(), "Markup & more".to_string())
            }
            i if i % 10 == 3 => (format!("Gamma project {i}"), format!("Team gamma, number {i}")),
            i => (format!("Project {i}"), format!("The tracker of team {i}")),
        };
        write(&site.join("conf/trac.ini"), &format!("[project]\nname = {name}\ndescr = {descr}\n"));
        private(&site);
    }
    sites
}

/// Where the screenshot is kept for people to look at: `target/screenshots/`.
fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir.join(name)
}

#[test]
fn the_index_lists_filters_and_links_to_signup_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sites = sites(dir.path());
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            "sites = \"{}\"\nindex_title = \"Example hosting\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n\
             signup = true\nsignup_url = \"https://signup.example.org/new\"\n",
            sites.display(),
            free_port()
        ),
    );
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    let index = server.get("/trac/");
    assert_eq!(index.status, 200, "{}", server.log_text());
    let csp = index.header("content-security-policy").unwrap_or_default().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"), "{csp}");

    let profile = tempfile::tempdir().expect("profile");
    let b = Browser::start(profile.path());
    b.goto(&format!("http://{}/trac/", server.addr));
    b.wait_for("#projects", Duration::from_secs(20));
    let shown = "return document.querySelectorAll('#projects > li:not([hidden])').length";
    assert_eq!(b.eval(shown), json!(SITES));
    assert_eq!(
        b.eval("return document.querySelector('.count').textContent"),
        json!("300 projects")
    );
    let signup = b.eval("return document.querySelector('a.signup').getAttribute('href')");
    assert_eq!(signup, json!("https://signup.example.org/new"));
    // A card: the name from trac.ini, its description, its address.
    let card = b.eval("return document.querySelector('a[href=\"/trac/site-013/\"]').innerText");
    let card = card.as_str().unwrap_or_default().to_string();
    assert!(card.contains("Gamma project 13") && card.contains("Team gamma, number 13"), "{card}");
    assert!(card.contains("/trac/site-013/"), "{card}");
    // Markup in a project name is text: the only script is the page's own.
    assert_eq!(b.eval("return document.title"), json!("Example hosting"));
    assert_eq!(b.eval("return document.scripts.length"), json!(1));

    let png = b.screenshot(&screenshot_path("tenant-index.png"));
    // The filter is shown only when its script ran, i.e. the policy allowed it.
    let filter = b.wait_for("#filter", Duration::from_secs(10));
    assert!(b.displayed(&filter), "the filter box is hidden: the script did not run");
    b.type_into("#filter", "gamma");
    assert_eq!(b.eval(shown), json!(SITES / 10));
    assert_eq!(
        b.eval("return document.getElementById('shown').textContent"),
        json!("30 of 300 shown")
    );
    b.type_into("#filter", " 213");
    assert_eq!(b.eval(shown), json!(1));
    b.screenshot(&screenshot_path("tenant-index-filtered.png"));
    b.type_into("#filter", "nothing-like-this");
    assert_eq!(b.eval(shown), json!(0));
    let none = b.wait_for("#no-match", Duration::from_secs(5));
    assert!(b.displayed(&none), "no message when nothing matches");

    // The screenshot is a real picture of the page (the 1024x768 window less the browser's
    // own bars, see browserkit).
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000, "{} bytes", png.len());
    let width = u32::from_be_bytes(png[16..20].try_into().expect("IHDR"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("IHDR"));
    assert!(width == 1024 && (400..=768).contains(&height), "{width}x{height}");
    assert!(server.worker_pids().is_empty(), "the index must not start workers");
}
