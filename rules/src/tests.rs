#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use http::{HeaderMap, HeaderValue};

use super::*;

/// An owned request; `info()` lends it out as the engine expects.
pub(super) struct Req {
    pub path: Vec<u8>,
    pub query: Vec<u8>,
    pub headers: HeaderMap,
    pub https: bool,
}

impl Req {
    pub fn new(path: &[u8]) -> Self {
        Req { path: path.to_vec(), query: Vec::new(), headers: HeaderMap::new(), https: false }
    }

    fn query(mut self, query: &[u8]) -> Self {
        self.query = query.to_vec();
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }

    pub fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            path: &self.path,
            query: &self.query,
            method: b"GET",
            host: b"example.org",
            headers: &self.headers,
            remote_addr: b"192.0.2.7",
            https: self.https,
            server_name: b"paddock.local",
            server_port: 8080,
        }
    }
}

/// A probe that knows a fixed set of paths, for tests that need no filesystem.
pub(super) struct Fake(pub(super) Vec<(&'static [u8], FileTest)>);

impl FileProbe for Fake {
    fn test(&self, path: &[u8], kind: FileTest) -> bool {
        self.0.iter().any(|(p, k)| *p == path && *k == kind)
    }
}

pub(super) fn rules(text: &str) -> RuleSet {
    match parse_apache(text, Path::new("rules.conf")) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

fn run(text: &str, req: &Req) -> Outcome {
    rules(text).evaluate(&req.info(), &Fake(Vec::new()))
}

fn redirect(status: u16, location: &[u8]) -> Action {
    Action::Redirect { status, location: location.to_vec() }
}

#[test]
fn forbidden_gone_and_last() {
    assert_eq!(run("RewriteRule ^/old - [G]", &Req::new(b"/old")).action, Action::Gone);
    assert_eq!(run("RewriteRule ^/x - [forbidden]", &Req::new(b"/x")).action, Action::Forbidden);
    let text = "RewriteRule ^/a - [L,E=first:1]\nRewriteRule ^/a - [F]";
    let out = run(text, &Req::new(b"/a"));
    assert_eq!((&out.action, out.var("first")), (&Action::Continue, Some(&b"1"[..])));
    // PT ends the pass like L.
    assert_eq!(
        run("RewriteRule ^ - [PT]\nRewriteRule ^ - [F]", &Req::new(b"/")).action,
        Action::Continue
    );
    // F applies and stops even when the rule also sets variables.
    let out = run("RewriteRule ^ - [E=a:1,F]\nRewriteRule ^ - [E=b:2]", &Req::new(b"/"));
    assert_eq!(
        (&out.action, out.var("a"), out.var("b")),
        (&Action::Forbidden, Some(&b"1"[..]), None)
    );
}

#[test]
fn redirects_build_location_as_apache() {
    let out = run("RewriteRule ^/old/(.*)$ /new/$1 [R=301,L]", &Req::new(b"/old/a").query(b"x=1"));
    assert_eq!(out.action, redirect(301, b"/new/a?x=1"));
    let out = run("RewriteRule ^/o$ /n [R]", &Req::new(b"/o"));
    assert_eq!(out.action, redirect(302, b"/n"));
    let out = run("RewriteRule ^/o$ /n [redirect=permanent]", &Req::new(b"/o"));
    assert_eq!(out.action, redirect(301, b"/n"));
    // Captures come from the decoded path, so the target is escaped again.
    let out = run("RewriteRule ^/o/(.*)$ /n/$1 [R=302]", &Req::new(b"/o/a b%\xe9#"));
    assert_eq!(out.action, redirect(302, b"/n/a%20b%25%E9%23"));
    // NE keeps `#` but line breaks can never reach the header.
    let out = run("RewriteRule ^/o/([^/]*) /n#$1 [R,NE]", &Req::new(b"/o/x\r\ny"));
    assert_eq!(out.action, redirect(302, b"/n#x%0D%0Ay"));
    // A query in the substitution replaces the original; QSA appends it; a bare `?` drops it.
    let req = Req::new(b"/o").query(b"a=%41");
    assert_eq!(run("RewriteRule ^/o$ /n?b=1 [R]", &req).action, redirect(302, b"/n?b=1"));
    assert_eq!(
        run("RewriteRule ^/o$ /n?b=1 [R,QSA]", &req).action,
        redirect(302, b"/n?b=1&a=%2541")
    );
    assert_eq!(run("RewriteRule ^/o$ /n? [R]", &req).action, redirect(302, b"/n"));
    assert_eq!(run("RewriteRule ^/o$ /n [R,QSD]", &req).action, redirect(302, b"/n"));
    // An absolute URL redirects even without R; only its path part is escaped.
    let out = run("RewriteRule ^/o/(.*) https://%{HTTP_HOST}/n/$1", &Req::new(b"/o/a b"));
    assert_eq!(out.action, redirect(302, b"https://example.org/n/a%20b"));
}

#[test]
fn internal_rewrite_feeds_later_rules_and_keeps_request_uri() {
    let text = "RewriteRule ^/wiki/(.*)$ /trac/main/wiki/$1?x=1 [QSA]\n\
                RewriteCond %{REQUEST_URI} ^/wiki/\n\
                RewriteRule ^/trac/([^/]+)/ - [E=paddock.tenant:$1,E=seen:%{REQUEST_URI}]";
    let out = run(text, &Req::new(b"/wiki/Start").query(b"y=2"));
    assert_eq!(out.action, Action::Continue);
    assert_eq!(out.path, b"/trac/main/wiki/Start");
    assert_eq!(out.query, b"x=1&y=2");
    assert_eq!(out.var("paddock.tenant"), Some(&b"main"[..]));
    assert_eq!(out.var("seen"), Some(&b"/wiki/Start"[..]));
    // Rewritten paths are normalised again so routing never sees dot segments.
    let out = run("RewriteRule ^/a/(.*)$ /b/../c/$1", &Req::new(b"/a/x"));
    assert_eq!(out.path, b"/c/x");
}

#[test]
fn env_flags_set_replace_and_unset() {
    let text = "RewriteRule ^ - [E=a:1,E=b:2]\n\
                RewriteRule ^ - [E=c:%{ENV:a}%{ENV:B}] [env=a:3]";
    assert!(parse_apache(text, Path::new("r")).is_err(), "two flag fields are refused");
    let text = "RewriteRule ^ - [E=a:1,E=b:2]\n\
                RewriteRule ^ - [E=c:%{ENV:a}%{ENV:B},env=A:3,E=d,E=!b,E=e:%{ENV:a}]";
    let out = run(text, &Req::new(b"/"));
    let vars: Vec<(&str, &[u8])> =
        out.vars.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    assert_eq!(vars, [("a", &b"3"[..]), ("c", b"12"), ("d", b""), ("e", b"3")]);
}

#[test]
fn nocase_on_rules_and_conditions() {
    assert_eq!(run("RewriteRule ^/ADMIN - [F]", &Req::new(b"/admin")).action, Action::Continue);
    assert_eq!(run("RewriteRule ^/ADMIN - [F,NC]", &Req::new(b"/admin")).action, Action::Forbidden);
    let req = Req::new(b"/").header("user-agent", "EvilBot/1.0");
    let text = "RewriteCond %{HTTP_USER_AGENT} ^evilbot [NC]\nRewriteRule ^ - [F]";
    assert_eq!(run(text, &req).action, Action::Forbidden);
    let text = "RewriteCond %{HTTP_USER_AGENT} ^evilbot\nRewriteRule ^ - [F]";
    assert_eq!(run(text, &req).action, Action::Continue);
}

#[test]
fn or_chains_and_negation() {
    let text = "RewriteCond %{HTTP_HOST} ^a\\. [OR]\n\
                RewriteCond %{HTTP:X-Foo} =yes [OR]\n\
                RewriteCond %{REQUEST_METHOD} =POST\n\
                RewriteCond %{HTTPS} !=on\n\
                RewriteRule ^ - [F]";
    assert_eq!(run(text, &Req::new(b"/")).action, Action::Continue);
    assert_eq!(run(text, &Req::new(b"/").header("x-foo", "yes")).action, Action::Forbidden);
    let mut secure = Req::new(b"/").header("x-foo", "yes");
    secure.https = true;
    assert_eq!(run(text, &secure).action, Action::Continue);
    assert_eq!(
        run("RewriteRule !^/public - [F]", &Req::new(b"/private")).action,
        Action::Forbidden
    );
    assert_eq!(
        run("RewriteRule !^/public - [F]", &Req::new(b"/public/x")).action,
        Action::Continue
    );
}

#[test]
fn back_references_from_rule_and_last_matched_condition() {
    let text = "RewriteCond %{HTTP_HOST} ^(\\w+)\\.(\\w+)$\n\
                RewriteCond %{QUERY_STRING} !(nomatch)\n\
                RewriteCond %{HTTP:X-Foo} ^(.*)$\n\
                RewriteRule ^/(\\w+)/(\\w+) - [E=r:$2-$1-$0-$9,E=c:%1]";
    let out = run(text, &Req::new(b"/one/two/three").header("x-foo", "foo"));
    assert_eq!(out.var("r"), Some(&b"two-one-/one/two-"[..]));
    // The negated condition set nothing; %1 is from the X-Foo condition, the last regex match.
    assert_eq!(out.var("c"), Some(&b"foo"[..]));
    // Condition test strings see %N of earlier conditions in the same rule.
    let text =
        "RewriteCond %{HTTP_HOST} ^(\\w+)\\.\nRewriteCond x%1 ^xexample$\nRewriteRule ^ - [F]";
    assert_eq!(run(text, &Req::new(b"/")).action, Action::Forbidden);
}

#[test]
fn conditions_bind_only_the_next_rule() {
    let text = "RewriteCond %{HTTP_HOST} ^nomatch$\n\
                RewriteRule ^ - [E=first:1]\n\
                RewriteRule ^ - [E=second:1]";
    let out = run(text, &Req::new(b"/"));
    assert_eq!((out.var("first"), out.var("second")), (None, Some(&b"1"[..])));
}

#[test]
fn server_variables() {
    let text = "RewriteRule ^ - [E=h:%{HTTP:X-Foo},E=m:%{HTTP:X-Missing},E=q:%{QUERY_STRING},\
                E=s:%{SERVER_NAME}:%{SERVER_PORT}:%{HTTPS}:%{REQUEST_SCHEME},E=a:%{REMOTE_ADDR},\
                E=x:%{REQUEST_METHOD}\\%{HTTP_HOST}]";
    let req = Req::new(b"/").query(b"k=v").header("x-foo", "1").header("x-foo", "2");
    let out = run(text, &req);
    assert_eq!(out.var("h"), Some(&b"1, 2"[..]));
    assert_eq!(out.var("m"), Some(&b""[..]));
    assert_eq!(out.var("q"), Some(&b"k=v"[..]));
    assert_eq!(out.var("s"), Some(&b"paddock.local:8080:off:http"[..]));
    assert_eq!(out.var("a"), Some(&b"192.0.2.7"[..]));
    assert_eq!(out.var("x"), Some(&b"GET%{HTTP_HOST}"[..]));
}

#[test]
fn string_and_integer_comparisons() {
    let cond = |pattern: &str, input: &str| {
        let text = format!("RewriteCond {input} {pattern}\nRewriteRule ^ - [F]");
        run(&text, &Req::new(b"/")).action == Action::Forbidden
    };
    assert!(cond("=abc", "abc"));
    assert!(!cond("=ABC", "abc"));
    assert!(cond("=ABC [NC]", "abc"));
    assert!(cond("=\"\"", "%{HTTP:X-None}"));
    // Apache orders by length first: "b" < "aa".
    assert!(cond("<aa", "b"));
    assert!(cond(">=b", "b"));
    assert!(cond("-gt10", "11"));
    assert!(cond("!-ne5", "5"));
    assert!(cond("-le0", "junk"));
    assert!(cond("=", "="), "a one-character pattern is a regex");
}

#[test]
fn file_tests_use_the_probe() {
    let probe = Fake(vec![(b"/srv/a/conf/trac.ini", FileTest::File), (b"/srv/a", FileTest::Dir)]);
    let set = rules(
        "RewriteCond %{REQUEST_URI} ^/([a-z]+)\n\
         RewriteCond /srv/%1 -d\n\
         RewriteCond /srv/%1/conf/trac.ini -f\n\
         RewriteCond /srv/%1/conf/trac.ini !-s\n\
         RewriteRule ^ - [E=ok:%1]",
    );
    assert_eq!(set.evaluate(&Req::new(b"/a/x").info(), &probe).var("ok"), Some(&b"a"[..]));
    assert_eq!(set.evaluate(&Req::new(b"/b/x").info(), &probe).var("ok"), None);
}

#[test]
fn byte_paths_match_and_engine_off_disables_rules() {
    let out = run("RewriteRule ^/wiki/(.*)$ - [E=page:$1]", &Req::new(b"/wiki/\xe9t\xe9"));
    assert_eq!(out.var("page"), Some(&b"\xe9t\xe9"[..]));
    let text =
        "RewriteEngine Off\nRewriteRule ^ - [E=a:1]\nRewriteEngine on\nRewriteRule ^ - [E=b:1]";
    let out = run(text, &Req::new(b"/"));
    assert_eq!((out.var("a"), out.var("b")), (None, Some(&b"1"[..])));
}

#[test]
fn evaluation_is_a_single_bounded_pass() {
    // A rule that rewrites to a path it matches again is applied once, not in a loop.
    let out = run("RewriteRule ^/(.*)$ /x/$1", &Req::new(b"/a"));
    assert_eq!(out.path, b"/x/a");
    let set = rules(&"RewriteRule ^/(.*)$ /$1/a\n".repeat(50));
    let out = set.evaluate(&Req::new(b"/").info(), &Fake(Vec::new()));
    assert_eq!(out.path, b"/a".repeat(50));
}
