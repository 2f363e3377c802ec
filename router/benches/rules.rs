//! Rules evaluation on a 50-rule set of the kind a shared Trac host carries: abuse filters,
//! canonical host and scheme redirects, retired projects, custom domains mapped to tenants,
//! file tests on each tenant's `conf/trac.ini`, and the `E=` variables that pick the pool.
//!
//! `cargo bench -p paddock-router --bench rules` (add `-- --test` for a one-pass smoke run).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use paddock_router::probe::FsProbe;
use paddock_rules::{parse_apache, Action, FileProbe, FileTest, Outcome, RequestInfo, RuleSet};

/// Custom domains of customers, each mapped to its tenant (rules 24 to 43).
const DOMAINS: [(&str, &str); 20] = [
    ("acme-widgets\\.com", "acme"),
    ("blueriver\\.io", "blueriver"),
    ("coldharbour\\.net", "coldharbour"),
    ("dunmore-labs\\.org", "dunmore"),
    ("eastgate\\.dev", "eastgate"),
    ("fernhill\\.co\\.uk", "fernhill"),
    ("greywater\\.de", "greywater"),
    ("hollowpine\\.com", "hollowpine"),
    ("ironbridge\\.eu", "ironbridge"),
    ("juniper-sys\\.com", "juniper"),
    ("kestrel-soft\\.fr", "kestrel"),
    ("larkspur\\.io", "larkspur"),
    ("millbrook\\.net", "millbrook"),
    ("northwind-tools\\.com", "northwind"),
    ("oakridge\\.dev", "oakridge"),
    ("pinecrest\\.org", "pinecrest"),
    ("quarrylane\\.com", "quarry"),
    ("redfern\\.co", "redfern"),
    ("stonegate\\.io", "stonegate"),
    ("thornbury\\.net", "thornbury"),
];

/// The rules file; `root` is the sites directory.
fn rules_text(root: &Path) -> String {
    let root = root.display();
    let mut text = String::from(
        r#"RewriteEngine On

# Abuse and hygiene (rules 1-6).
RewriteCond %{HTTP_USER_AGENT} (MJ12bot|AhrefsBot|SemrushBot|DotBot|PetalBot|Bytespider) [NC]
RewriteRule ^ - [F]
RewriteCond %{REQUEST_METHOD} !^(GET|HEAD|POST|OPTIONS)$
RewriteRule ^ - [F]
RewriteRule ^/(wp-admin|wp-login\.php|xmlrpc\.php|phpmyadmin|\.git|\.env|cgi-bin) - [F,NC]
RewriteRule \.(ini|db|sqlite|bak|swp|orig|pyc)$ - [F,NC]
RewriteCond %{QUERY_STRING} (\.\./|<script|union.+select|base64_encode|/etc/passwd) [NC]
RewriteRule ^ - [F]
RewriteCond %{HTTP_HOST} ^$
RewriteRule ^ - [F]

# Canonical host and scheme (7-10).
RewriteCond %{HTTP_HOST} ^www\.(trac\.example\.org)$ [NC]
RewriteRule ^/(.*)$ https://%1/$1 [R=301,L]
RewriteCond %{HTTP_HOST} ^(?:projects|dev)\.example\.org$ [NC]
RewriteRule ^/(.*)$ https://trac.example.org/$1 [R=301,L]
RewriteCond %{HTTPS} off
RewriteCond %{HTTP_HOST} ^([^:]+)
RewriteRule ^/trac/([^/]+)/login https://%1/trac/$1/login [R=301,L]
RewriteCond %{HTTPS} !=on
RewriteCond %{HTTP_HOST} ^([^:]+)
RewriteRule ^/trac/([^/]+)/(register|prefs|admin) https://%1/trac/$1/$2 [R=301,L]

# Retired projects and old URLs (11-18).
RewriteRule ^/trac/(oldproj|legacy|archive2009|sandbox-old)(/.*)?$ - [G]
RewriteRule ^/projects/([^/]+)/?(.*)$ /trac/$1/$2 [R=301,L]
RewriteRule ^/svn/([^/]+)/?(.*)$ /trac/$1/browser/$2 [R=301,L]
RewriteRule ^/tickets?/([0-9]+)$ /trac/main/ticket/$1 [R=301,L]
RewriteRule ^/wiki/(.*)$ /trac/main/wiki/$1 [R=301,L]
RewriteRule ^/trac/widgets-ng(/.*)?$ /trac/widgets$1 [R=301,L]
RewriteRule ^/trac/docs(/.*)?$ /trac/manual$1 [R=301,L]
RewriteRule ^/trac/([a-z0-9-]+)$ /trac/$1/ [R=301,L]

# Admin and private areas (19-23).
RewriteCond %{REMOTE_ADDR} !^10\.
RewriteCond %{REMOTE_ADDR} !^192\.168\.
RewriteRule ^/trac/[^/]+/admin - [F]
RewriteCond %{HTTP_COOKIE} !trac_auth=
RewriteRule ^/trac/(internal|finance)/(wiki|ticket|browser|timeline) - [F]
RewriteCond %{QUERY_STRING} format=(csv|tab|rss) [NC]
RewriteCond %{HTTP_USER_AGENT} (bot|crawl|spider) [NC]
RewriteRule ^/trac/ - [F]
RewriteCond %{QUERY_STRING} format=zip
RewriteCond %{HTTP_COOKIE} !trac_auth=
RewriteRule ^/trac/[^/]+/changeset - [F]
RewriteCond %{HTTP:X-Api-Key} ^$
RewriteRule ^/trac/[^/]+/(jsonrpc|xmlrpc|rpc) - [F]

# Custom domains (24-43).
"#,
    );
    for (domain, tenant) in DOMAINS {
        text.push_str(&format!(
            "RewriteCond %{{HTTP_HOST}} ^(?:www\\.)?{domain}$ [NC]\n\
             RewriteRule ^/(.*)$ /trac/{tenant}/$1 [E=trac.base_url:https://%{{HTTP_HOST}}]\n"
        ));
    }
    text.push_str(&format!(
        r#"
# Site checks, environment and pool (44-50).
RewriteCond {root}/$1/maintenance -f
RewriteRule ^/trac/([^/]+)/ - [F]
RewriteCond {root}/$1/conf/trac.ini !-f
RewriteRule ^/trac/([^/]+) - [F]
RewriteCond %{{HTTP:Accept-Language}} ^(de|fr|ja|es)
RewriteRule ^/trac/ - [E=trac.locale:%1]
RewriteCond %{{HTTPS}} =on
RewriteCond %{{HTTP_HOST}} ^(trac\.example\.org)$
RewriteRule ^/trac/([^/]+) - [E=trac.base_url:https://%1/trac/$1]
RewriteRule ^/(robots\.txt|favicon\.ico)$ /static/$1 [L]
RewriteCond %{{HTTP:X-Request-Id}} ^([A-Za-z0-9-]{{8,64}})$
RewriteRule ^/trac/ - [E=paddock.request_id:%1]
RewriteRule ^/trac/([^/]+) - [E=paddock.tenant:$1,E=trac.env_path:{root}/$1,L]
"#
    ));
    text
}

/// A sites directory with a few Trac environments (each holding `conf/trac.ini`).
fn sites() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["alpha", "beta", "main", "acme"] {
        let conf = dir.path().join(name).join("conf");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(conf.join("trac.ini"), b"[trac]\n").expect("write trac.ini");
    }
    dir
}

/// An owned request; `info()` lends it to the engine.
struct Req {
    path: &'static [u8],
    query: &'static [u8],
    host: &'static [u8],
    headers: HeaderMap,
}

impl Req {
    /// A browser's GET over https, with the headers Firefox sends for a page.
    fn browser(host: &'static str, path: &'static [u8], query: &'static [u8]) -> Self {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", host),
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ("accept-language", "de-DE,de;q=0.8,en;q=0.5"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("referer", "https://trac.example.org/trac/alpha/timeline"),
            ("cookie", "trac_form_token=5f2c1e0a9b8d7c6e; trac_auth=0123456789abcdef"),
            ("x-request-id", "c0ffee00-1234-5678-9abc-def012345678"),
        ] {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        Req { path, query, host: host.as_bytes(), headers }
    }

    fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            path: self.path,
            query: self.query,
            method: b"GET",
            host: self.host,
            headers: &self.headers,
            remote_addr: b"203.0.113.42",
            https: true,
            server_name: b"trac.example.org",
            server_port: 443,
        }
    }
}

/// A probe answering from memory, to tell the engine's own cost from the file system's.
struct MemProbe(Vec<Vec<u8>>);

impl FileProbe for MemProbe {
    fn test(&self, path: &[u8], kind: FileTest) -> bool {
        kind == FileTest::File && self.0.iter().any(|p| p == path)
    }
}

fn check(set: &RuleSet, req: &Req, probe: &dyn FileProbe, want: impl Fn(&Outcome) -> bool) {
    let out = set.evaluate(&req.info(), probe);
    assert!(want(&out), "unexpected outcome {out:?}");
}

fn rules(c: &mut Criterion) {
    let dir = sites();
    let root = dir.path().canonicalize().expect("canonical sites dir");
    let set = parse_apache(&rules_text(&root), Path::new("bench.rules"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.len(), 50, "the set has 50 rules");
    let fs = FsProbe::new(vec![root.clone()]);
    let trac_ini = root.join("alpha/conf/trac.ini").into_os_string().into_encoded_bytes();
    let mem = MemProbe(vec![trac_ini]);

    // Rule 7 of 50 answers: a redirect from the www. host.
    let early = Req::browser("www.trac.example.org", b"/trac/alpha/wiki/WikiStart", b"");
    // Every rule is looked at; the last one picks the pool (two file tests on the way).
    let last = Req::browser("trac.example.org", b"/trac/alpha/wiki/WikiStart", b"version=3");
    // Every rule is looked at and none applies (the 20 custom-domain patterns match, their
    // host conditions do not).
    let none = Req::browser("trac.example.org", b"/chrome/common/css/trac.css", b"");

    check(&set, &early, &fs, |o| matches!(o.action, Action::Redirect { status: 301, .. }));
    let picked = |o: &Outcome| {
        o.action == Action::Continue && o.var("paddock.tenant") == Some(&b"alpha"[..])
    };
    check(&set, &last, &fs, picked);
    check(&set, &last, &mem, picked);
    check(&set, &none, &fs, |o| o.action == Action::Continue && o.vars.is_empty());

    let mut g = c.benchmark_group("rules_50");
    g.bench_function("early_rule_7", |b| b.iter(|| set.evaluate(black_box(&early.info()), &fs)));
    g.bench_function("last_rule_fs_probe", |b| {
        b.iter(|| set.evaluate(black_box(&last.info()), &fs))
    });
    g.bench_function("last_rule_mem_probe", |b| {
        b.iter(|| set.evaluate(black_box(&last.info()), &mem))
    });
    g.bench_function("no_rule", |b| b.iter(|| set.evaluate(black_box(&none.info()), &fs)));
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
