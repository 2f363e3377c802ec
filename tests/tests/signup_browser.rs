//! The signup page in a real headless Chromium (Debian's `chromium`, driven through Debian's
//! `chromedriver` with the W3C WebDriver protocol): fill the form, submit, follow the link to
//! the new site, and see a freshly provisioned Trac 1.6 site's WikiStart.

mod adminkit;
mod browserkit;
mod common;

use std::time::Duration;

use adminkit::{within, Admin, Setup};
use browserkit::Browser;
use common::{nix_is_root, venv};
use serde_json::json;

#[test]
fn signup_in_a_real_browser_then_visit_the_new_trac_site() {
    let venv = venv().to_str().expect("utf-8").to_string();
    let admin = if nix_is_root() {
        adminkit::ensure_user();
        "signup_user = \"paddock-e2e\""
    } else {
        ""
    };
    let defaults = format!(
        "app = \"trac.web.main:dispatch_request\"\nvirtualenv = \"{venv}\"\n[defaults.auth]\nhtpasswd = \"{{tenant_dir}}/htpasswd\"\n"
    );
    let a = Admin::start(Setup { admin, defaults: &defaults, args: &[] });
    let profile = a.dir.path().join("chromium-profile");
    let b = Browser::start(&profile);

    b.goto(&format!("http://{}/signup", a.admin));
    b.type_into("#name", "browser-site");
    b.type_into("#admin_user", "carol");
    b.type_into("#password", "open sesame");
    let submit = b.wait_for("#submit", Duration::from_secs(10));
    b.click(&submit);
    // Provisioning a real Trac environment takes a few seconds.
    let link = b.wait_for("#site-link", Duration::from_secs(120));
    let href = b.cmd("GET", &format!("/element/{link}/property/href"), None);
    assert_eq!(href, json!(format!("http://{}/trac/browser-site/", a.server.addr)));
    b.screenshot(&a.dir.path().join("signed-up.png"));
    b.click(&link);
    let shown = within(Duration::from_secs(120), || b.source().contains("Welcome to Trac"));
    let shot = std::env::var_os("PADDOCK_SCREENSHOT").map(std::path::PathBuf::from);
    if let Some(to) = &shot {
        b.screenshot(to);
    }
    assert!(shown.is_some(), "WikiStart not shown:\n{}\n{}", b.source(), a.server.log_text());
    let title = b.cmd("GET", "/title", None);
    assert!(title.as_str().is_some_and(|t| t.contains("browser-site")), "{title}");
    let url = b.cmd("GET", "/url", None);
    assert_eq!(url, json!(format!("http://{}/trac/browser-site/", a.server.addr)));
    assert!(a.sites().join("browser-site/htpasswd").is_file());
}
