//! Who the client really is. `X-Forwarded-For`/`X-Forwarded-Proto` and RFC 7239 `Forwarded`
//! are believed only when the peer is a configured proxy; otherwise `REMOTE_ADDR` is the peer
//! address and the scheme is the connection's own.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;
#[cfg(test)]
use paddock_config::units::parse_nets;

/// The client address and scheme to report to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub addr: IpAddr,
    pub https: bool,
}

fn trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// The client behind `peer`: walk the forwarding chain from the right, skipping trusted
/// proxies; the first untrusted hop is the client. Spoofed entries to the left of it are
/// ignored, so a client cannot choose its own address. `tls`: the connection itself is
/// HTTPS, the scheme unless a trusted proxy says otherwise.
pub fn resolve(nets: &[IpNet], peer: IpAddr, tls: bool, headers: &HeaderMap) -> Client {
    let direct = Client { addr: peer, https: tls };
    if nets.is_empty() || !trusted(nets, peer) {
        return direct;
    }
    let (chain, proto) = forwarded_chain(headers);
    let mut client = peer;
    for hop in chain.iter().rev() {
        client = *hop;
        if !trusted(nets, *hop) {
            break;
        }
    }
    let https = proto.map_or(tls, |p| p.eq_ignore_ascii_case("https"));
    Client { addr: client, https }
}

/// Addresses and the proto of the last hop, from `Forwarded` (preferred) or the `X-` headers.
fn forwarded_chain(headers: &HeaderMap) -> (Vec<IpAddr>, Option<String>) {
    let mut chain = Vec::new();
    let mut proto = None;
    let forwarded: Vec<&str> =
        headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            for pair in element.split(';') {
                let Some((k, v)) = pair.trim().split_once('=') else { continue };
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => chain.extend(parse_node(v)),
                    "proto" => proto = Some(v.to_string()),
                    _ => {}
                }
            }
        }
        return (chain, proto);
    }
    for v in headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()) {
        chain.extend(v.split(',').filter_map(|a| parse_node(a.trim())));
    }
    proto = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .map(|p| p.trim().to_string());
    (chain, proto)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80`, `::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(h, _)| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let nets = parse_nets(&["10.0.0.0/8".into()]).expect("nets");
        let hs = h(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            resolve(&nets, ip("192.0.2.9"), false, &hs),
            Client { addr: ip("192.0.2.9"), https: false }
        );
        assert_eq!(
            resolve(&[], ip("10.1.1.1"), false, &hs),
            Client { addr: ip("10.1.1.1"), https: false }
        );
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let nets = parse_nets(&["10.0.0.0/8".into(), "127.0.0.1".into()]).expect("nets");
        let hs = h(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            resolve(&nets, ip("127.0.0.1"), false, &hs),
            Client { addr: ip("198.51.100.7"), https: true }
        );
    }

    #[test]
    fn rfc7239_forwarded() {
        let nets = parse_nets(&["::1".into()]).expect("nets");
        let hs = h(&[("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8::1]:4711\"")]);
        assert_eq!(
            resolve(&nets, ip("::1"), false, &hs),
            Client { addr: ip("2001:db8::1"), https: true }
        );
    }

    /// A direct TLS connection is https; a trusted proxy in front of it still decides.
    #[test]
    fn a_tls_connection_is_https_unless_a_trusted_proxy_says_otherwise() {
        let nets = parse_nets(&["127.0.0.1".into()]).expect("nets");
        let none = h(&[]);
        assert!(resolve(&[], ip("192.0.2.9"), true, &none).https);
        assert!(resolve(&nets, ip("192.0.2.9"), true, &none).https, "untrusted peer");
        assert!(resolve(&nets, ip("127.0.0.1"), true, &none).https, "proxy said nothing");
        let http = h(&[("x-forwarded-for", "203.0.113.5"), ("x-forwarded-proto", "http")]);
        assert!(!resolve(&nets, ip("127.0.0.1"), true, &http).https);
    }

    #[test]
    fn ipv4_mapped_peer_matches_v4_networks() {
        let nets = parse_nets(&["127.0.0.0/8".into()]).expect("nets");
        let hs = h(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(resolve(&nets, ip("::ffff:127.0.0.1"), false, &hs).addr, ip("203.0.113.5"));
    }

    #[test]
    fn bad_entries_are_reported() {
        assert!(parse_nets(&["nonsense".into()]).unwrap_err().contains("nonsense"));
    }
}
