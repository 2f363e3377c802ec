use std::time::Duration;

use super::*;

/// The status and counted reason of each error, and what its answer carries.
#[test]
fn every_error_maps_to_one_status_and_reason() {
    let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let t = || "t".to_string();
    let cases: Vec<(Refusal, u16, Option<Reject>)> = vec![
        (
            Refusal::from(&PoolError::QueueFull { tenant: t(), limit: 1 }),
            503,
            Some(Reject::QueueFull),
        ),
        (
            Refusal::from(&PoolError::QueueTimeout { tenant: t(), waited: Duration::ZERO }),
            503,
            Some(Reject::QueueTimeout),
        ),
        (
            Refusal::from(&PoolError::StartTimeout { tenant: t(), waited: Duration::ZERO }),
            503,
            Some(Reject::Unavailable),
        ),
        (
            Refusal::from(&PoolError::Unavailable { tenant: t(), reason: "x".into() }),
            503,
            Some(Reject::Unavailable),
        ),
        (Refusal::from(&PoolError::Stopped { tenant: t() }), 503, Some(Reject::Unavailable)),
        // No pool at all, whatever the cause: a plain 503, counted as unavailable.
        (Refusal::from(&StartError::Budget { limit: 1 }), 503, Some(Reject::Unavailable)),
        (
            Refusal::from(&StartError::TooBig { tenant: t(), need: 2, limit: 1 }),
            503,
            Some(Reject::Unavailable),
        ),
        (
            Refusal::from(&StartError::Identity(
                paddock_supervise::identity::IdentityError::NoUser(t()),
            )),
            503,
            Some(Reject::Unavailable),
        ),
        (
            Refusal::from(&StartError::Socket { tenant: t(), source: io() }),
            503,
            Some(Reject::Unavailable),
        ),
        // A worker that refuses connections: the site is unavailable, and counted so.
        (Refusal::from(&ForwardError::Connect(io())), 503, Some(Reject::Unavailable)),
        (Refusal::from(&ForwardError::WorkerGone), 502, None),
        (Refusal::from(&ForwardError::Protocol("x".into())), 502, None),
        (Refusal::from(&ForwardError::HeadTooLarge { size: 2, limit: 1, pid: 1 }), 502, None),
        (Refusal::from(&ForwardError::AppError("x".into())), 500, None),
        (Refusal::from(&ForwardError::Timeout(Duration::ZERO)), 504, None),
        // The chunked body found over max_body while streaming: as a declared one.
        (Refusal::from(&ForwardError::BodyTooLarge(1)), 413, Some(Reject::BodyTooLarge)),
        (Refusal::from(&ForwardError::BadBody), 400, Some(Reject::BadRequest)),
        (Refusal::from(&ForwardError::BodyTimeout(Duration::ZERO)), 408, Some(Reject::BodyTimeout)),
        (Refusal::from(paddock_rules::path::PathError::Nul), 400, Some(Reject::BadRequest)),
        (Refusal::head_too_large(), 431, Some(Reject::HeadTooLarge)),
        (Refusal::conflicting_framing(), 400, Some(Reject::BadRequest)),
        (Refusal::connect_not_supported(), 405, Some(Reject::MethodNotAllowed)),
        (Refusal::body_too_large(), 413, Some(Reject::BodyTooLarge)),
        (Refusal::disabled(), 503, Some(Reject::Disabled)),
        (Refusal::unavailable(), 503, Some(Reject::Unavailable)),
        (Refusal::not_found(), 404, None),
        (Refusal::forbidden(), 403, None),
        (Refusal::gone(), 410, None),
    ];
    for (refusal, status, reason) in cases {
        let shown = format!("{refusal:?}");
        let mut meta = RequestMeta::default();
        let r = refusal.answer(&mut meta);
        assert_eq!((r.status().as_u16(), meta.rejected), (status, reason), "{shown}");
        // Every 503 says when to come back.
        assert_eq!(r.headers().contains_key(header::RETRY_AFTER), status == 503, "{shown}");
    }
}

#[test]
fn answers_carry_their_headers() {
    let challenge = HeaderValue::from_static("Basic realm=\"x\"");
    let mut meta = RequestMeta::default();
    let r = Refusal::unauthorized(challenge.clone()).answer(&mut meta);
    assert_eq!((r.status(), meta.rejected), (StatusCode::UNAUTHORIZED, Some(Reject::Unauthorized)));
    assert_eq!(r.headers()[header::WWW_AUTHENTICATE], challenge);
    for closing in [
        Refusal::head_too_large(),
        Refusal::conflicting_framing(),
        Refusal::from(&ForwardError::BodyTimeout(Duration::ZERO)),
        Refusal::not_found().closing(),
    ] {
        assert_eq!(closing.into_response().headers()[header::CONNECTION], "close");
    }
    assert!(!Refusal::not_found().into_response().headers().contains_key(header::CONNECTION));
}

#[test]
fn every_reason_has_its_own_label() {
    let labels: std::collections::BTreeSet<&str> = Reject::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), Reject::ALL.len());
}
