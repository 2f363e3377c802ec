use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn load_str(text: &str) -> Result<Config, Diagnostics> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paddock.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(&path, &Overrides::default())
}

fn messages(r: Result<Config, Diagnostics>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.0.iter().map(|d| format!("{}: {}", d.line, d.message)).collect(),
    }
}

#[test]
fn flags_alone_give_trac_defaults() {
    let ov = Overrides { sites: Some(PathBuf::from("/srv/sites")), ..Overrides::default() };
    let c = Config::from_overrides(&ov).expect("valid");
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.mount, "/trac");
    assert_eq!(c.marker, Path::new("conf/trac.ini"));
    assert_eq!(c.defaults.process.app, "trac.web.main:dispatch_request");
    assert_eq!(c.defaults.process.processes, 2);
    assert_eq!(
        c.defaults.request.environ.get("trac.env_path").map(String::as_str),
        Some("{tenant_dir}")
    );
    assert!(c.rules.is_empty());
}

#[test]
fn nothing_to_serve_is_an_error() {
    let e = Config::from_overrides(&Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("nothing to serve"), "{e}");
}

#[test]
fn syntax_error_names_the_line() {
    let m = messages(load_str("sites = \"/x\"\n\nlisten = \n"));
    assert_eq!(m.len(), 1);
    assert!(m[0].starts_with("3: "), "{m:?}");
}

#[test]
fn unknown_key_names_the_line() {
    let m = messages(load_str("sites = \"/x\"\n[defaults]\nthreds = 4\n"));
    assert!(m[0].starts_with("3: ") && m[0].contains("threds"), "{m:?}");
}

#[test]
fn every_bad_value_is_reported_with_its_line() {
    let text = "sites = \"/x\"\nlisten = \"nowhere\"\n[defaults]\nprocesses = 0\nidle_timeout = \"soon\"\numask = \"999\"\n\n[tenants.\"bad name\"]\ndir = \"/y\"\n";
    let m = messages(load_str(text));
    let want = [
        ("2: ", "nowhere"),
        ("4: ", "processes"),
        ("5: ", "idle_timeout"),
        ("6: ", "umask"),
        ("8: ", "bad name"),
    ];
    for (line, word) in want {
        assert!(
            m.iter().any(|x| x.starts_with(line) && x.contains(word)),
            "missing {line}{word} in {m:?}"
        );
    }
}

#[test]
fn bad_rule_in_toml_names_its_line() {
    let text = "sites = \"/x\"\n\n[[rules]]\nrule = \"^/(x - [F]\"\n";
    let m = messages(load_str(text));
    assert!(m.iter().any(|x| x.starts_with("3: ")), "{m:?}");
}

#[test]
fn tenant_settings_merge_over_defaults() {
    let text = r#"
sites = "/srv/sites"
[defaults]
threads = 8
[defaults.environ]
"trac.locale" = "en_US"
[tenants.big]
threads = 25
user = "trac"
[tenants.big.environ]
"trac.env_path" = ""
"#;
    let c = load_str(text).expect("valid");
    let big = &c.tenants["big"].settings;
    assert_eq!(big.process.threads, 25);
    assert_eq!(c.defaults.process.threads, 8);
    assert_eq!(big.process.user.as_deref(), Some("trac"));
    assert_eq!(big.request.environ.get("trac.locale").map(String::as_str), Some("en_US"));
    let spec = c.tenant("big").expect("configured tenant");
    assert_eq!(spec.dir, Path::new("/srv/sites/big"));
    assert!(
        !spec.settings.request.environ.contains_key("trac.env_path"),
        "empty value removes the default"
    );
    assert_eq!(spec.settings.admission.queue_timeout, Duration::from_secs(30));
}

#[test]
fn placeholders_expand_per_tenant() {
    let text = "sites = \"/srv/sites\"\n[defaults]\napp = \"{tenant_dir}/apache/trac.wsgi\"\n[defaults.env]\nSITE = \"{tenant}\"\n";
    let c = load_str(text).expect("valid");
    let s = c.defaults.expand("a", Path::new("/srv/sites/a"), c.sites.as_deref());
    assert_eq!(s.process.app, "/srv/sites/a/apache/trac.wsgi");
    assert_eq!(s.process.env["SITE"], "a");
    assert_eq!(s.request.environ["trac.env_path"], "/srv/sites/a");
}

#[test]
fn mounts_are_normalised() {
    assert_eq!(normalise_mount("/trac/"), Ok("/trac".to_string()));
    assert_eq!(normalise_mount("/"), Ok(String::new()));
    assert!(normalise_mount("trac").is_err());
    assert!(normalise_mount("/a/../b").is_err());
    assert!(normalise_mount("/a//b").is_err());
}

#[test]
fn shipped_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("deploy/examples") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            Config::load(&p, &Overrides::default()).unwrap_or_else(|d| panic!("{d}"));
            n += 1;
        }
    }
    assert!(n >= 5, "expected the example configs, found {n}");
}

#[test]
fn preload_is_checked_and_inherited() {
    let text = "sites = \"/srv/sites\"\n[defaults]\npreload = [\"trac.web.main\"]\n[tenants.off]\npreload = []\n";
    let c = load_str(text).expect("valid");
    assert_eq!(c.defaults.process.preload, Some(vec!["trac.web.main".to_string()]));
    assert_eq!(c.tenants["off"].settings.process.preload, Some(vec![]));
    let m =
        messages(load_str("sites = \"/s\"\n[defaults]\n\npreload = [\"ok\", \"not a module\"]\n"));
    assert!(m.iter().any(|m| m.starts_with("4: ") && m.contains("not a module")), "{m:?}");
}

#[test]
fn send_timeout_defaults_and_bad_values_name_their_line() {
    let c = load_str("sites = \"/x\"\n").expect("valid");
    assert_eq!(c.send_timeout, Duration::from_secs(60));
    let c = load_str("sites = \"/x\"\nsend_timeout = \"2s\"\n").expect("valid");
    assert_eq!(c.send_timeout, Duration::from_secs(2));
    for bad in ["\"soon\"", "\"0\""] {
        let m = messages(load_str(&format!("sites = \"/x\"\nsend_timeout = {bad}\n")));
        assert!(m.iter().any(|x| x.starts_with("2: ") && x.contains("send_timeout")), "{m:?}");
    }
}

#[test]
fn min_residency_defaults_and_bad_values_name_their_line() {
    let c = load_str("sites = \"/x\"\n").expect("valid");
    assert_eq!(c.min_residency, Duration::from_secs(30));
    let c = load_str("sites = \"/x\"\nmin_residency = \"2s\"\n").expect("valid");
    assert_eq!(c.min_residency, Duration::from_secs(2));
    let m = messages(load_str("sites = \"/x\"\nmin_residency = \"a while\"\n"));
    assert!(m.iter().any(|x| x.starts_with("2: ") && x.contains("min_residency")), "{m:?}");
}

#[test]
fn drain_timeout_defaults_and_bad_values_name_their_line() {
    let c = load_str("sites = \"/x\"\n").expect("valid");
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    let c = load_str("sites = \"/x\"\ndrain_timeout = \"1500ms\"\n").expect("valid");
    assert_eq!(c.drain_timeout, Duration::from_millis(1500));
    let c = load_str("sites = \"/x\"\ndrain_timeout = \"0\"\n").expect("valid");
    assert_eq!(c.drain_timeout, Duration::ZERO);
    for bad in ["\"soon\"", "\"-1s\"", "\"10 parsecs\""] {
        let m = messages(load_str(&format!("sites = \"/x\"\ndrain_timeout = {bad}\n")));
        assert!(
            m.iter().any(|x| x.starts_with("2: ") && x.contains("drain_timeout")),
            "{bad}: {m:?}"
        );
    }
}

#[test]
fn machine_derived_limits_and_explicit_values() {
    let c = load_str("sites = \"/x\"\n").expect("valid");
    assert!(c.max_connections >= 32 && c.max_workers_total >= 8, "{c:?}");
    let c = load_str("sites = \"/x\"\nmax_connections = 4\nmax_workers_total = 0\n").expect("ok");
    assert_eq!((c.max_connections, c.max_workers_total), (4, 0), "0 stays unlimited");
    let m = messages(load_str("sites = \"/x\"\n\nmax_connections = 0\n"));
    assert!(m.iter().any(|x| x.starts_with("3: ") && x.contains("max_connections")), "{m:?}");
}

#[test]
fn one_catalog_lists_configured_and_discovered_tenants_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sites = dir.path().join("sites");
    for name in ["b", "a", "both"] {
        std::fs::create_dir_all(sites.join(name).join("conf")).expect("mkdir");
        std::fs::write(sites.join(name).join("conf/trac.ini"), "").expect("write");
    }
    // No marker: not a tenant. An invalid name: never listed.
    std::fs::create_dir_all(sites.join("bare")).expect("mkdir");
    std::fs::create_dir_all(sites.join(".hidden/conf")).expect("mkdir");
    std::fs::write(sites.join(".hidden/conf/trac.ini"), "").expect("write");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let text = format!(
        "sites = \"{}\"\n[tenants.both]\n[tenants.c]\ndir = \"{}\"\nmount = \"/other\"\n",
        sites.display(),
        elsewhere.display()
    );
    let path = dir.path().join("paddock.toml");
    std::fs::write(&path, text).expect("write");
    let cfg = Config::load(&path, &Overrides::default()).expect("config");
    assert_eq!(cfg.tenant_names(), ["a", "b", "both", "c"]);
    assert_eq!(cfg.count_tenants(), 4);
    let all: Vec<String> = cfg.all_tenants().into_iter().map(|t| t.name).collect();
    assert_eq!(all, ["a", "b", "both", "c"]);
    // The index lists only tenants under its own mount point.
    let listed: Vec<String> = cfg.list_tenants().into_iter().map(|t| t.name).collect();
    assert_eq!(listed, ["a", "b", "both"]);
}

#[test]
fn every_unknown_key_is_reported_with_a_suggestion_in_line_order() {
    let text = "\
sites = \"/x\"
listn = \"127.0.0.1:1\"
[defaults]
theads = 4
idle_timeout = \"soon\"
[defaults.auth]
htpaswd = \"/h\"
htpasswd = \"/h\"
[admin]
tokens = \"/t\"
tokens_fil = \"/t\"
[tenants.a]
dir = \"/y\"
colour = \"blue\"
[tenants.b.auth]
realms = \"x\"
[[rules]]
rule = \"^/x - [F]\"
conditon = []
";
    let m = messages(load_str(text));
    let want = [
        "2: unknown key `listn` at the top level; did you mean `listen`?",
        "4: unknown key `theads` in [defaults]; did you mean `threads`?",
        "5: `idle_timeout`",
        "7: unknown key `htpaswd` in [defaults.auth]; did you mean `htpasswd`?",
        "10: unknown key `tokens` in [admin]",
        "11: unknown key `tokens_fil` in [admin]; did you mean `tokens_file`?",
        "14: unknown key `colour` in [tenants.a]",
        "16: unknown key `realms` in [tenants.b.auth]; did you mean `realm`?",
        "19: unknown key `conditon` in a [[rules]] entry; did you mean `conditions`?",
    ];
    assert_eq!(m.len(), want.len(), "{m:#?}");
    for (got, want) in m.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?} in {m:#?}");
    }
    assert!(!m.iter().any(|x| x.contains("tokens`") && x.contains("did you mean")), "{m:?}");
}

#[test]
fn an_error_in_defaults_is_reported_once_not_per_tenant() {
    let text = "sites = \"/x\"\n[defaults]\nidle_timeout = \"soon\"\n[tenants.a]\ndir = \"/a\"\n[tenants.b]\ndir = \"/b\"\n";
    let m = messages(load_str(text));
    assert_eq!(m.iter().filter(|x| x.contains("idle_timeout")).count(), 1, "{m:?}");
}

#[test]
fn unknown_keys_in_inline_and_dotted_tables_name_their_line() {
    let text =
        "sites = \"/x\"\n\n[tenants.a]\ndir = \"/a\"\nauth = { htpasswd = \"/h\", pahts = [] }\n";
    let m = messages(load_str(text));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("5: unknown key `pahts` in [tenants.a.auth]; did you mean `paths`?"),
        "{m:?}"
    );
}

#[test]
fn human_durations_and_binary_sizes_in_the_file() {
    let text = "sites = \"/x\"\n[defaults]\nidle_timeout = \"1h30m\"\nrequest_timeout = \"30 seconds\"\nmax_body = \"100MiB\"\nmemory_limit = \"512MB\"\n";
    let c = load_str(text).expect("valid");
    assert_eq!(c.defaults.admission.idle_timeout, Duration::from_secs(5400));
    assert_eq!(c.defaults.request.request_timeout, Duration::from_secs(30));
    assert_eq!(c.defaults.request.max_body, 100 << 20);
    assert_eq!(c.defaults.process.memory_limit, 512 << 20);
    let m = messages(load_str(
        "sites = \"/x\"\n[defaults]\n\nmax_body = \"5 MHz\"\nqueue_timeout = \"1 fortnight\"\n",
    ));
    assert!(
        m.len() == 2 && m[0].starts_with("4: `max_body`") && m[1].starts_with("5: `queue_timeout`"),
        "{m:?}"
    );
}

#[test]
fn a_value_of_the_wrong_type_comes_with_the_unknown_keys_before_it() {
    let m = messages(load_str("sites = \"/x\"\n[defaults]\ntheads = 4\nthreads = \"four\"\n"));
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m[0].starts_with("3: unknown key `theads`"), "{m:?}");
    assert!(m[1].starts_with("4: "), "{m:?}");
}

#[test]
fn signup_into_a_site_htpasswd_that_auth_does_not_read_is_a_problem() {
    let with = |auth: &str| {
        load_str(&format!(
            "sites = \"/srv/sites\"\n[admin]\nlisten = \"127.0.0.1:9180\"\ntokens_file = \"/t\"\n[defaults.auth]\n{auth}\n"
        ))
        .expect("valid")
    };
    assert_eq!(with("htpasswd = \"{tenant_dir}/htpasswd\"").signup_auth_problem(), None);
    assert_eq!(with("htpasswd = \"{sites}/{tenant}/htpasswd\"").signup_auth_problem(), None);
    let shared = with("htpasswd = \"/etc/apache2/trac.htpasswd\"");
    let p = shared.signup_auth_problem().expect("a shared file is a problem");
    assert!(p.contains("/etc/apache2/trac.htpasswd") && p.contains("401"), "{p}");
    assert!(
        shared.warnings().iter().any(|w| w.contains("signup is refused until then")),
        "{:?}",
        shared.warnings()
    );
}

#[test]
fn database_servers_are_tcp_addresses() {
    let c = load_str("sites = \"/x\"\n").expect("valid");
    assert!(c.database_servers.is_empty());
    let c = load_str("sites = \"/x\"\ndatabase_servers = [\"127.0.0.1:5432\", \"[::1]:6432\"]\n")
        .expect("valid");
    let want: Vec<std::net::SocketAddr> =
        vec!["127.0.0.1:5432".parse().expect("addr"), "[::1]:6432".parse().expect("addr")];
    assert_eq!(c.database_servers, want);
    let m = messages(load_str(
        "sites = \"/x\"\ndatabase_servers = [\n  \"db.example:5432\",\n  \"/run/postgresql/.s.PGSQL.5432\",\n]\n",
    ));
    assert!(m.iter().any(|x| x.starts_with("3: ") && x.contains("`db.example:5432`")), "{m:?}");
    assert!(m.iter().any(|x| x.starts_with("4: ") && x.contains("only TCP")), "{m:?}");
}

#[test]
fn a_cluster_section_validates_with_defaults() {
    let c = load_str(
        "sites = \"/srv/sites\"\n[cluster]\netcd = [\"http://10.0.0.1:2379\"]\nnode_id = \"n1\"\n\
         internal_listen = \"10.0.0.5:8081\"\npeers = [\"10.0.0.0/24\"]\n",
    )
    .expect("valid");
    let k = c.cluster.expect("cluster");
    assert_eq!(k.prefix, cluster::DEFAULT_PREFIX);
    assert_eq!(k.internal_addr, k.internal_listen);
    assert_eq!(k.capacity, cluster::DEFAULT_CAPACITY);
    assert_eq!(k.ttl, cluster::DEFAULT_TTL);
    assert!(k.is_peer("10.0.0.9".parse().expect("ip")));
    assert!(k.is_peer("::ffff:10.0.0.9".parse().expect("ip")));
    assert!(!k.is_peer("10.0.1.9".parse().expect("ip")));
    assert!(load_str("sites = \"/srv/sites\"\n").expect("valid").cluster.is_none());
}

#[test]
fn cluster_mistakes_name_their_line() {
    let m = messages(load_str(
        "sites = \"/srv/sites\"\n[cluster]\nnode_id = \"Node_1\"\nprefix = \"paddock\"\n\
         internal_listen = \"0.0.0.0:8081\"\npeers = [\"10.0.0.0/24\", \"x\"]\nttl = \"2s\"\n\
         capacity = 0\ncapacty = 3\n",
    ));
    let has = |line: usize, what: &str| {
        m.iter().any(|x| x.starts_with(&format!("{line}: ")) && x.contains(what))
    };
    assert!(has(2, "needs `etcd`"), "{m:?}");
    assert!(has(3, "node id `Node_1`"), "{m:?}");
    assert!(has(4, "prefix `paddock`"), "{m:?}");
    assert!(has(5, "unspecified"), "{m:?}");
    assert!(has(6, "`x` is not an address"), "{m:?}");
    assert!(has(7, "at least 3 s"), "{m:?}");
    assert!(has(8, "`capacity` 0"), "{m:?}");
    assert!(has(9, "capacty"), "{m:?}");
    let m = messages(load_str(
        "sites = \"/srv/sites\"\n[cluster]\netcd = [\"http://e:2379\"]\nnode_id = \"n1\"\n\
         internal_listen = \"10.0.0.5:8081\"\npeers = [\"192.168.0.0/16\"]\n",
    ));
    assert!(m.iter().any(|x| x.starts_with("6: ") && x.contains("own `internal_addr`")), "{m:?}");
}
