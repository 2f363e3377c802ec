//! The hop marker on a request one node forwards to another: who forwarded it, and the facts
//! about the client connection the owner cannot see (the client's address and port, the
//! scheme, the public port), so that the app's environ is the same on whichever node the
//! client reached. It is believed only on the internal listener, from a configured peer; a
//! client's own `Paddock-Hop` header is removed on the public listener.
//!
//! Why not only RFC 7239 `Forwarded`: the app would then see the internal hop in its
//! environ, differently on each node; the owner consumes this header instead, and the app sees
//! what a single node would have shown it.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("paddock-hop");

/// What the forwarding node knew about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The forwarding node's id.
    pub node: String,
    /// The client (already resolved through the forwarding node's trusted proxies).
    pub client: IpAddr,
    pub client_port: u16,
    pub https: bool,
    /// The port the client connected to (`SERVER_PORT`).
    pub server_port: u16,
}

impl Hop {
    pub fn value(&self) -> HeaderValue {
        let v = format!(
            "node={};for={};port={};proto={};server-port={}",
            self.node,
            self.client,
            self.client_port,
            if self.https { "https" } else { "http" },
            self.server_port
        );
        // Node ids are DNS labels, the rest digits and address characters.
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("invalid"))
    }

    /// The one `Paddock-Hop` header of `headers`; `Err` for a missing, repeated or malformed
    /// one (a peer that is not a Paddock node of this version).
    pub fn parse(headers: &HeaderMap) -> Result<Hop, &'static str> {
        let mut all = headers.get_all(&HEADER).iter();
        let (Some(v), None) = (all.next(), all.next()) else {
            return Err("a forwarded request needs exactly one Paddock-Hop header");
        };
        let v = v.to_str().map_err(|_| "Paddock-Hop is not ASCII")?;
        let (mut node, mut client, mut port, mut https, mut server_port) =
            (None, None, None, None, None);
        for pair in v.split(';') {
            let (k, val) = pair.split_once('=').ok_or("Paddock-Hop: a field without `=`")?;
            let slot_taken = match k {
                "node" => node.replace(val.to_string()).is_some(),
                "for" => {
                    client.replace(val.parse().map_err(|_| "Paddock-Hop: bad `for`")?).is_some()
                }
                "port" => {
                    port.replace(val.parse().map_err(|_| "Paddock-Hop: bad `port`")?).is_some()
                }
                "proto" => https
                    .replace(match val {
                        "https" => true,
                        "http" => false,
                        _ => return Err("Paddock-Hop: bad `proto`"),
                    })
                    .is_some(),
                "server-port" => server_port
                    .replace(val.parse().map_err(|_| "Paddock-Hop: bad `server-port`")?)
                    .is_some(),
                _ => return Err("Paddock-Hop: unknown field"),
            };
            if slot_taken {
                return Err("Paddock-Hop: a field given twice");
            }
        }
        match (node, client, port, https, server_port) {
            (Some(node), Some(client), Some(client_port), Some(https), Some(server_port))
                if paddock_config::cluster::node_id_problem(&node).is_none() =>
            {
                Ok(Hop { node, client, client_port, https, server_port })
            }
            _ => Err("Paddock-Hop: a field is missing or the node id is not valid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(HEADER, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn round_trips_and_refuses_what_a_node_never_sends() {
        let hop = Hop {
            node: "n1".into(),
            client: "2001:db8::7".parse().expect("ip"),
            client_port: 51000,
            https: true,
            server_port: 443,
        };
        let mut h = HeaderMap::new();
        h.insert(HEADER, hop.value());
        assert_eq!(Hop::parse(&h), Ok(hop.clone()));
        let good = hop.value().to_str().expect("ascii").to_string();
        assert!(Hop::parse(&headers(&[&good, &good])).is_err(), "two headers");
        assert!(Hop::parse(&HeaderMap::new()).is_err(), "none");
        for bad in [
            "node=n1;for=1.2.3.4;port=1;proto=http",
            "node=N1;for=1.2.3.4;port=1;proto=http;server-port=80",
            "node=n1;for=1.2.3.4;port=1;proto=ftp;server-port=80",
            "node=n1;for=host;port=1;proto=http;server-port=80",
            "node=n1;node=n2;for=1.2.3.4;port=1;proto=http;server-port=80",
            "node=n1;for=1.2.3.4;port=99999;proto=http;server-port=80",
            "node=n1;for=1.2.3.4;port=1;proto=http;server-port=80;x=1",
            "",
        ] {
            assert!(Hop::parse(&headers(&[bad])).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_header_value_parses_or_is_refused(v in "[ -~]{0,120}") {
            if let Ok(hv) = HeaderValue::from_str(&v) {
                let mut h = HeaderMap::new();
                h.insert(HEADER, hv);
                if let Ok(hop) = Hop::parse(&h) {
                    let mut again = HeaderMap::new();
                    again.insert(HEADER, hop.value());
                    prop_assert_eq!(Hop::parse(&again), Ok(hop));
                }
            }
        }
    }
}
