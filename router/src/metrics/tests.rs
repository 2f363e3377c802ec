use std::path::PathBuf;

use std::collections::HashSet;

use super::*;
use paddock_config::Overrides;

fn empty_registry() -> Registry {
    Registry::new(std::env::temp_dir(), PathBuf::from("/nonexistent/paddock-worker"), false, 0)
}

/// A config discovering tenants under a temporary sites directory.
fn sites_config(sites: &std::path::Path) -> Config {
    let ov = Overrides { sites: Some(sites.to_path_buf()), ..Overrides::default() };
    Config::from_overrides(&ov).expect("valid config")
}

fn make_site(sites: &std::path::Path, name: &str, marker: bool) {
    let dir = sites.join(name).join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    if marker {
        std::fs::write(dir.join("trac.ini"), "").expect("write marker");
    }
}

/// The value of the sample line `series` (name and labels exactly as encoded).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn first_tenants_get_labels_the_rest_are_other() {
    let m = Metrics::new(2);
    assert_eq!(m.tenant("a").label(), "a");
    assert_eq!(m.tenant("b").label(), "b");
    assert_eq!(m.tenant("c").label(), OTHER);
    assert_eq!(m.tenant("d").label(), OTHER);
    // Stable: a labelled tenant keeps its label, a late one stays aggregated.
    assert_eq!(m.tenant("a").label(), "a");
    assert_eq!(m.tenant("c").label(), OTHER);
    assert!(Arc::ptr_eq(&m.tenant("a"), &m.tenant("a")));
    assert!(Arc::ptr_eq(&m.tenant("c"), &m.tenant("d")));
    assert_eq!(m.for_request(None).label(), NONE);
    assert_eq!(m.tenants_labelled.get(), 2);
}

#[test]
fn zero_bound_aggregates_everything() {
    let m = Metrics::new(0);
    assert_eq!(m.tenant("a").label(), OTHER);
    assert_eq!(m.tenants_labelled.get(), 0);
}

#[test]
fn the_bound_holds_under_concurrent_first_requests() {
    let m = Metrics::new(10);
    std::thread::scope(|s| {
        for t in 0..8 {
            let m = &m;
            s.spawn(move || {
                for i in 0..50 {
                    // Every thread sees the same names, in a different order.
                    m.tenant(&format!("t{}", (i * 7 + t * 13) % 50));
                }
            });
        }
    });
    let own: HashSet<String> = (0..50)
        .map(|i| m.tenant(&format!("t{i}")).label().to_string())
        .filter(|l| l != OTHER)
        .collect();
    assert_eq!(own.len(), 10);
    assert_eq!(m.tenants_labelled.get(), 10);
    // They exist (a scrape releases the labels of tenants that do not).
    let sites = tempfile::tempdir().expect("tempdir");
    for i in 0..50 {
        make_site(sites.path(), &format!("t{i}"), true);
    }
    let text = m.render(&empty_registry(), &sites_config(sites.path()));
    let labels: HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("paddock_requests_total{"))
        .filter_map(|l| l.split("tenant=\"").nth(1)?.split('"').next())
        .collect();
    // Ten tenants, `_other` and `_none`: never more series than the bound allows.
    assert_eq!(labels.len(), 12, "{labels:?}");
}

#[test]
fn status_classes() {
    let m = Metrics::new(5);
    let t = m.tenant("a");
    for s in [101, 200, 204, 301, 404, 401, 500, 503, 999] {
        t.observe(s, Duration::from_millis(1));
    }
    let got: Vec<u64> = t.requests.iter().map(IntCounter::get).collect();
    assert_eq!(got, [1, 2, 1, 2, 3]);
}

#[test]
fn text_output_has_every_family_and_the_recorded_values() {
    let sites = tempfile::tempdir().expect("tempdir");
    make_site(sites.path(), "one", true);
    make_site(sites.path(), "two", true);
    make_site(sites.path(), "nomarker", false);
    make_site(sites.path(), "_hidden", true);
    let cfg = sites_config(sites.path());
    let m = Metrics::new(1);
    let meta = RequestMeta { queue_wait: Some(Duration::from_millis(3)), rejected: None };
    m.tenant("one").record(200, Duration::from_millis(20), &meta);
    m.tenant("one").record(200, Duration::from_millis(40), &meta);
    m.tenant("two").record(404, Duration::from_millis(2), &meta);
    let full = RequestMeta { queue_wait: None, rejected: Some(Reject::BodyTooLarge) };
    m.tenant("two").record(413, Duration::from_millis(1), &full);
    let bad = RequestMeta { queue_wait: None, rejected: Some(Reject::BadRequest) };
    m.for_request(None).record(400, Duration::ZERO, &bad);
    m.signup(Signup::Created);
    let text = m.render(&empty_registry(), &cfg);

    for family in [
        "paddock_build_info",
        "paddock_requests_total",
        "paddock_request_duration_seconds",
        "paddock_queue_wait_seconds",
        "paddock_rejected_requests_total",
        "paddock_signups_total",
        "paddock_tenants_known",
        "paddock_tenants_active",
        "paddock_metrics_labelled_tenants",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
        assert!(text.contains(&format!("# HELP {family} ")), "{family} help missing");
    }
    assert!(text.contains("# TYPE paddock_requests_total counter"));
    assert!(text.contains("# TYPE paddock_request_duration_seconds histogram"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!("paddock_build_info{{revision=\"{REVISION}\",version=\"{version}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, r#"paddock_requests_total{class="2xx",tenant="one"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"paddock_requests_total{class="5xx",tenant="one"}"#), Some(0.0));
    assert_eq!(sample(&text, r#"paddock_requests_total{class="4xx",tenant="_other"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"paddock_requests_total{class="4xx",tenant="_none"}"#), Some(1.0));
    assert!(!text.contains("tenant=\"two\""), "`two` is beyond the bound:\n{text}");
    assert_eq!(sample(&text, r#"paddock_request_duration_seconds_count{tenant="one"}"#), Some(2.0));
    assert_eq!(
        sample(&text, r#"paddock_request_duration_seconds_bucket{tenant="one",le="0.025"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"paddock_request_duration_seconds_bucket{tenant="one",le="+Inf"}"#),
        Some(2.0)
    );
    assert_eq!(sample(&text, r#"paddock_queue_wait_seconds_count{tenant="_other"}"#), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"paddock_rejected_requests_total{reason="body_too_large",tenant="_other"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"paddock_rejected_requests_total{reason="bad_request",tenant="_none"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&text, r#"paddock_signups_total{outcome="created"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"paddock_signups_total{outcome="conflict"}"#), Some(0.0));
    assert_eq!(sample(&text, "paddock_tenants_known"), Some(2.0));
    assert_eq!(sample(&text, "paddock_tenants_active"), Some(0.0));
    assert_eq!(sample(&text, "paddock_metrics_labelled_tenants"), Some(1.0));
    // No pool runs: no stale per-pool series.
    assert!(!text.contains("paddock_in_flight_requests{"), "{text}");

    // The directory count is cached for a few seconds.
    make_site(sites.path(), "three", true);
    let again = m.render(&empty_registry(), &cfg);
    assert_eq!(sample(&again, "paddock_tenants_known"), Some(2.0));
}

#[test]
fn counters_are_summed_and_mirrored_monotonically() {
    let a = Counters::default();
    let b = Counters::default();
    a.spawned();
    a.spawned();
    b.spawned();
    a.crashed();
    b.exited(paddock_supervise::counters::Reason::Reload);
    b.exited(paddock_supervise::counters::Reason::Idle);
    a.connected();
    b.connected();
    let mut s = CounterSums::default();
    s.add(&a);
    s.add(&b);
    assert_eq!(s.spawns, 3);
    assert_eq!(s.exits, [1, 0, 0, 0, 1, 0, 1, 0, 0]);
    assert_eq!(s.connects, 2);

    let c = IntCounter::new("x", "x").expect("counter");
    raise(&c, 5);
    raise(&c, 3); // never backwards
    assert_eq!(c.get(), 5);
    raise(&c, 8);
    assert_eq!(c.get(), 8);
}

/// Names of the families of `kind` (`counter`, ...) declared in the text.
fn families<'a>(text: &'a str, kind: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(&format!(" {kind}")))
        .collect()
}

#[test]
fn every_counter_family_has_a_sample_from_the_start() {
    let m = Metrics::new(3);
    let text = m.render(&empty_registry(), &sites_config(&std::env::temp_dir()));
    let counters = families(&text, "counter");
    for family in [
        "paddock_requests_total",
        "paddock_rejected_requests_total",
        "paddock_worker_spawns_total",
        "paddock_worker_connections_total",
        "paddock_worker_exits_total",
        "paddock_worker_log_lines_dropped_total",
        "paddock_static_responses_total",
        "paddock_signups_total",
        "paddock_client_timeouts_total",
        "paddock_connections_capped_total",
        "paddock_admin_connections_capped_total",
        "process_cpu_seconds_total",
    ] {
        assert!(counters.contains(&family), "{family} is not a counter family:\n{text}");
    }
    for family in counters {
        let has_sample = text.lines().any(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        });
        assert!(has_sample, "{family} has no sample:\n{text}");
    }
    for status in STATIC_STATUSES {
        let series = format!("paddock_static_responses_total{{status=\"{status}\"}}");
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
    assert_eq!(
        sample(&text, r#"paddock_worker_exits_total{reason="crash",tenant="_other"}"#),
        Some(0.0)
    );
    // The router's own process figures.
    for g in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(families(&text, "gauge").contains(&g), "{g} missing:\n{text}");
        assert!(sample(&text, g).is_some_and(|v| v > 0.0), "{g}");
    }
}

#[test]
fn a_deleted_tenant_gives_its_label_slot_back() {
    let sites = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b", "c"] {
        make_site(sites.path(), name, true);
    }
    let cfg = sites_config(sites.path());
    let reg = empty_registry();
    let m = Metrics::new(1);
    m.tenant("a").observe(200, Duration::from_millis(1));
    // `b` comes while the slot is taken.
    assert_eq!(m.tenant("b").label(), OTHER);
    let text = m.render(&reg, &cfg);
    assert_eq!(sample(&text, r#"paddock_requests_total{class="2xx",tenant="a"}"#), Some(1.0));
    assert_eq!(m.tenant("a").label(), "a", "an existing tenant keeps its label");

    std::fs::remove_dir_all(sites.path().join("a")).expect("delete a");
    let text = m.render(&reg, &cfg);
    assert!(!text.contains("tenant=\"a\""), "a's series are gone:\n{text}");
    assert_eq!(sample(&text, "paddock_metrics_labelled_tenants"), Some(0.0));
    // The slot is free: `b`, aggregated before, is looked up afresh and takes it.
    assert_eq!(m.tenant("b").label(), "b");
    assert_eq!(m.tenant("c").label(), OTHER, "the bound still holds");
    m.tenant("b").observe(200, Duration::from_millis(1));
    let text = m.render(&reg, &cfg);
    assert_eq!(sample(&text, r#"paddock_requests_total{class="2xx",tenant="b"}"#), Some(1.0));
    assert_eq!(sample(&text, "paddock_metrics_labelled_tenants"), Some(1.0));
    // A tenant made again under the old name starts afresh (and here finds no slot).
    make_site(sites.path(), "a", true);
    assert_eq!(m.tenant("a").label(), OTHER);
}
