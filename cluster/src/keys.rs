//! The key layout under the prefix, and the records stored there (JSON).
//!
//! ```text
//! <prefix>nodes/<id>        {"addr","state","capacity"}   on the node's lease
//! <prefix>owners/<tenant>   {"node","addr"}               on the owner's lease
//! <prefix>tenants/<name>    the caller's bytes            persistent
//! ```

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Takes new tenants.
    Active,
    /// Takes none; releases its tenants one by one.
    Draining,
}

/// What `nodes/<id>` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    pub addr: String,
    pub state: NodeState,
    pub capacity: u32,
}

/// A live node as `Node::nodes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// Its internal address (`host:port`), where requests for its tenants are forwarded.
    pub addr: String,
    pub state: NodeState,
    pub capacity: u32,
    /// How many tenants it owns now.
    pub owned: u32,
}

/// What `owners/<tenant>` holds: the owner's id and, so that a forward needs no second
/// look-up, its internal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub node: String,
    pub addr: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_string() }
    }
    pub fn node(&self, id: &str) -> String {
        format!("{}nodes/{id}", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }
    pub fn owner(&self, tenant: &str) -> String {
        format!("{}owners/{tenant}", self.prefix)
    }
    pub fn owners(&self) -> String {
        format!("{}owners/", self.prefix)
    }
    pub fn tenant(&self, name: &str) -> String {
        format!("{}tenants/{name}", self.prefix)
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serialising them cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    value: &[u8],
) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|e| ClusterError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

/// The last path component of a key under `dir` (e.g. the id in `…/nodes/<id>`).
pub(crate) fn name_under<'a>(dir: &str, key: &'a [u8]) -> Result<&'a str, ClusterError> {
    let corrupt = |detail: &str| ClusterError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: detail.to_string(),
    };
    let key = std::str::from_utf8(key).map_err(|_| corrupt("not UTF-8"))?;
    key.strip_prefix(dir)
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| corrupt("not a flat name under its directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_records() {
        let k = Keys::new("/p/");
        assert_eq!(k.node("n1"), "/p/nodes/n1");
        assert_eq!(k.owner("trac"), "/p/owners/trac");
        assert_eq!(k.tenant("trac"), "/p/tenants/trac");
        assert_eq!(name_under(&k.nodes(), b"/p/nodes/n1").unwrap(), "n1");
        assert!(name_under(&k.nodes(), b"/p/nodes/").is_err());
        assert!(name_under(&k.nodes(), b"/p/nodes/a/b").is_err());
        let r = NodeRecord { addr: "h:1".into(), state: NodeState::Draining, capacity: 3 };
        let bytes = encode(&r);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"addr":"h:1","state":"draining","capacity":3}"#
        );
        assert_eq!(decode::<NodeRecord>(b"k", &bytes).unwrap(), r);
        let e = decode::<Owner>(b"/p/owners/x", b"garbage").unwrap_err().to_string();
        assert!(e.contains("/p/owners/x"), "{e}");
    }
}
