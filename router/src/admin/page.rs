//! The public signup page at `/signup`: a form (site name, admin user, password) that posts
//! back to `/signup` and runs the same code as the API's create, without a token but behind
//! the per-address rate limit. Operators who expose the admin listener should expose only
//! this path (see docs/admin.md).

use std::net::SocketAddr;
use std::time::Instant;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::api;
use super::signup::{self, SignupError, SignupRequest};
use super::Admin;
use crate::front::State;
use crate::respond::Body;
use crate::respond::{self, escape};

pub async fn handle(ad: &Admin, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let st = &ad.state;
    let cfg = st.config();
    let token = ad.csrf.form_token();
    let Some(sc) = cfg.admin.as_ref().map(|a| a.signup.clone()).filter(|s| s.enabled) else {
        return respond::page(StatusCode::NOT_FOUND, "Signup is not offered here.");
    };
    match *req.method() {
        Method::GET | Method::HEAD => html(StatusCode::OK, &form(&token, "", "", None)),
        Method::POST => {
            let client =
                crate::forwarded::resolve(&cfg.trusted_proxies, peer.ip(), false, req.headers());
            let headers = req.headers().clone();
            let body = match api::read_body(req).await {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let field = |k: &str| form_value(&body, k).unwrap_or_default();
            // Before the rate limit: a cross-site post must not use up the victim's signups.
            if let Err(why) = ad.csrf.check(&headers, &field("token")) {
                return forbidden(st, &token, client.addr, why);
            }
            if let Err(wait) = ad.page_limit.hit(client.addr, sc.limit, sc.window, Instant::now()) {
                let secs = wait.as_secs().max(1);
                tracing::warn!(target: "paddock::admin", client = %client.addr, "signup rate limit reached");
                st.metrics.signup(crate::metrics::Signup::RateLimited);
                return failed(&token, &SignupError::RateLimited(secs), "", "");
            }
            let r = SignupRequest {
                name: field("name").trim().to_string(),
                admin_user: field("admin_user").trim().to_string(),
                password: field("password"),
            };
            let outcome = signup::create(ad, &r).await;
            tracing::info!(target: "paddock::admin", client = %client.addr, tenant = %r.name, ok = outcome.is_ok(), "public signup");
            match outcome {
                Ok(spec) => {
                    let url = format!("{}{}/", super::json::public_url(&st.config()), spec.mount);
                    html(StatusCode::CREATED, &done(&spec.name, &url, &r.admin_user))
                }
                Err(e) => failed(&token, &e, &r.name, &r.admin_user),
            }
        }
        _ => {
            let mut r = respond::page(StatusCode::METHOD_NOT_ALLOWED, "Use GET or POST.");
            r.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static("GET, POST"));
            r
        }
    }
}

fn forbidden(
    st: &State,
    token: &str,
    client: std::net::IpAddr,
    why: &'static str,
) -> Response<Body> {
    tracing::warn!(target: "paddock::admin", client = %client, "signup refused: {why}");
    st.metrics.signup(crate::metrics::Signup::Forbidden);
    failed(token, &SignupError::Forbidden(why), "", "")
}

fn failed(token: &str, e: &SignupError, name: &str, user: &str) -> Response<Body> {
    let mut r = html(e.status(), &form(token, name, user, Some(&e.to_string())));
    if let SignupError::RateLimited(secs) = e {
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// The value of `key` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (decode(k) == key).then(|| decode(v))
    })
}

fn decode(s: &[u8]) -> String {
    let plus: Vec<u8> = s.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_encoding::percent_decode(&plus).decode_utf8_lossy().into_owned()
}

const STYLE: &str = "body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}\
label{display:block;margin-top:1em}input{width:100%;padding:.4em;box-sizing:border-box}\
button{margin-top:1.5em;padding:.5em 1.5em}.error{color:#a00;border:1px solid #a00;padding:.5em}\
small{color:#555}";

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>{body}\
         <hr><address>Paddock</address></body></html>\n",
        t = escape(title)
    )
}

/// The signup form, carrying `token` ([`super::csrf::Key::form_token`]).
fn form(token: &str, name: &str, user: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    shell(
        "Create your Trac site",
        &format!(
            "{err}<form method=\"post\" action=\"/signup\">\
             <input type=\"hidden\" name=\"token\" value=\"{t}\">\
             <label for=\"name\">Site name</label>\
             <input id=\"name\" name=\"name\" required maxlength=\"63\" pattern=\"[a-z0-9]([a-z0-9-]*[a-z0-9])?\" value=\"{n}\" autocomplete=\"off\">\
             <small>Lowercase letters, digits and hyphens; it becomes part of the address.</small>\
             <label for=\"admin_user\">Administrator user name</label>\
             <input id=\"admin_user\" name=\"admin_user\" required maxlength=\"64\" value=\"{u}\" autocomplete=\"username\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" required minlength=\"8\" maxlength=\"72\" autocomplete=\"new-password\">\
             <button id=\"submit\" type=\"submit\">Create site</button></form>",
            n = escape(name),
            u = escape(user),
            t = escape(token),
        ),
    )
}

fn done(name: &str, url: &str, user: &str) -> String {
    shell(
        "Your site is ready",
        &format!(
            "<p>The Trac site <strong>{n}</strong> is ready at \
             <a id=\"site-link\" href=\"{u}\">{u}</a>.</p>\
             <p>Log in as <strong>{user}</strong> with the password you chose to administer it.</p>",
            n = escape(name),
            u = escape(url),
            user = escape(user)
        ),
    )
}

fn html(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(respond::full(text.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, http::HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let body = b"name=my-site&admin_user=jo%C3%A9&password=a+b%26c%3D";
        assert_eq!(form_value(body, "name").as_deref(), Some("my-site"));
        assert_eq!(form_value(body, "admin_user").as_deref(), Some("jo\u{e9}"));
        assert_eq!(form_value(body, "password").as_deref(), Some("a b&c="));
        assert_eq!(form_value(body, "missing"), None);
    }

    #[test]
    fn pages_escape_what_they_echo() {
        let f = form("1.ab", "<x>", "\"u\"", Some("bad <b>"));
        assert!(f.contains("value=\"&lt;x&gt;\"") && f.contains("bad &lt;b&gt;"), "{f}");
        assert!(done("a", "http://h/trac/a/", "u")
            .contains("id=\"site-link\" href=\"http://h/trac/a/\""));
    }
}
