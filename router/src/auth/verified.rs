//! Recently verified credentials, so a client repeating the same login does not pay bcrypt
//! again. Keys are salted SHA-1 digests of (file, user, stored hash, password): no password is
//! kept, and a changed or removed entry can never hit (its stored hash is part of the key, and
//! a removed user is refused before the cache is asked). At most [`CAPACITY`] entries, least
//! recently used first out, each valid for [`TTL`] after its verification.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

pub const CAPACITY: usize = 256;
pub const TTL: Duration = Duration::from_secs(300);

pub type Key = [u8; 20];

pub struct Verified {
    secret: [u8; 16],
    /// key → (verified at, last used)
    entries: Mutex<HashMap<Key, (Instant, Instant)>>,
}

impl Default for Verified {
    fn default() -> Self {
        // Per-process random bytes from the standard library's hash seed.
        let mut secret = [0u8; 16];
        for half in secret.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(0);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        Verified { secret, entries: Mutex::new(HashMap::new()) }
    }
}

impl Verified {
    pub fn key(&self, file: &Path, user: &str, stored: &[u8], password: &[u8]) -> Key {
        let mut d = Sha1::new();
        d.update(self.secret);
        for part in [file.as_os_str().as_encoded_bytes(), user.as_bytes(), stored, password] {
            d.update((part.len() as u64).to_le_bytes());
            d.update(part);
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(&d.finalize());
        out
    }

    pub fn hit(&self, key: &Key) -> bool {
        let now = Instant::now();
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(key) {
            Some((at, _)) if now.duration_since(*at) >= TTL => {
                m.remove(key);
                false
            }
            Some((_, used)) => {
                *used = now;
                true
            }
            None => false,
        }
    }

    pub fn insert(&self, key: Key) {
        let now = Instant::now();
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= CAPACITY && !m.contains_key(&key) {
            m.retain(|_, (at, _)| now.duration_since(*at) < TTL);
            if m.len() >= CAPACITY {
                if let Some(oldest) = m.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k) {
                    m.remove(&oldest);
                }
            }
        }
        m.insert(key, (now, now));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_every_part() {
        let v = Verified::default();
        let base = v.key(Path::new("/f"), "u", b"h", b"p");
        assert_eq!(base, v.key(Path::new("/f"), "u", b"h", b"p"));
        for other in [
            v.key(Path::new("/g"), "u", b"h", b"p"),
            v.key(Path::new("/f"), "v", b"h", b"p"),
            v.key(Path::new("/f"), "u", b"i", b"p"),
            v.key(Path::new("/f"), "u", b"h", b"q"),
            v.key(Path::new("/f"), "uh", b"", b"p"),
        ] {
            assert_ne!(base, other);
        }
        assert_ne!(base, Verified::default().key(Path::new("/f"), "u", b"h", b"p"), "salted");
    }

    #[test]
    fn bounded_lru() {
        let v = Verified::default();
        let k = |i: u32| v.key(Path::new("/f"), &i.to_string(), b"h", b"p");
        assert!(!v.hit(&k(0)));
        for i in 0..CAPACITY as u32 {
            v.insert(k(i));
        }
        assert!(v.hit(&k(0)), "0 is now the most recently used");
        v.insert(k(9999));
        assert_eq!(v.len(), CAPACITY);
        assert!(v.hit(&k(0)) && v.hit(&k(9999)));
        assert!(!v.hit(&k(1)), "the least recently used entry went out");
    }
}
