//! Apache's `$apr1$` password hash: Poul-Henning Kamp's MD5-crypt with the magic `$apr1$`
//! (apr_md5_encode in APR), as written by `htpasswd -m`.

use md5::{Digest, Md5};

const MAGIC: &[u8] = b"$apr1$";
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The salt of a `$apr1$salt$hash` entry: at most 8 bytes, ending at the next `$`.
pub fn salt_of(entry: &str) -> Option<&[u8]> {
    let rest = entry.strip_prefix("$apr1$")?;
    let (salt, _) = rest.split_once('$')?;
    Some(&salt.as_bytes()[..salt.len().min(8)])
}

/// `$apr1$<salt>$<22 characters>` for `password` and `salt` (at most 8 bytes used).
pub fn hash(password: &[u8], salt: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alt = {
        let mut m = Md5::new();
        m.update(password);
        m.update(salt);
        m.update(password);
        m.finalize()
    };
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut m = Md5::new();
        if round & 1 == 1 {
            m.update(password);
        } else {
            m.update(fin);
        }
        if round % 3 != 0 {
            m.update(salt);
        }
        if round % 7 != 0 {
            m.update(password);
        }
        if round & 1 == 1 {
            m.update(fin);
        } else {
            m.update(password);
        }
        fin = m.finalize();
    }
    let f: &[u8] = &fin;
    let mut out = String::with_capacity(MAGIC.len() + salt.len() + 23);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        let v = u32::from(f[a]) << 16 | u32::from(f[b]) << 8 | u32::from(f[c]);
        to64(&mut out, v, 4);
    }
    to64(&mut out, u32::from(f[11]), 2);
    out
}

fn to64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(char::from(ITOA64[(v & 0x3f) as usize]));
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `htpasswd -nbm USER PASSWORD` (Apache 2.4.71); the last one with
    /// `openssl passwd -apr1 -salt KxuW7LnH`, an independent implementation.
    const VECTORS: &[(&str, &str)] = &[
        ("password", "$apr1$LUcn0QRl$b0OC5kImTJBU6RxOay2Av1"),
        ("", "$apr1$i1OQcBqt$RZaXlNU7zSeEmMs9XYtdT."),
        ("jo\u{e9}-p\u{e4}ss", "$apr1$1OplU5aG$GZ75Z5TrojU2uovJmWbh//"),
        ("a:colon and spaces, longer than sixteen bytes", "$apr1$JjU/SfUq$8o/ukfQf35fhQHXE6cVhq/"),
        ("password", "$apr1$KxuW7LnH$s2s86Rz7u0aLmL5Nr3MU3."),
    ];

    #[test]
    fn matches_htpasswd() {
        for (pw, entry) in VECTORS {
            let salt = salt_of(entry).expect("salt");
            assert_eq!(hash(pw.as_bytes(), salt), *entry, "{pw:?}");
        }
    }

    #[test]
    fn wrong_password_differs() {
        let (_, entry) = VECTORS[0];
        assert_ne!(hash(b"Password", salt_of(entry).expect("salt")), entry);
    }

    #[test]
    fn salt_parsing() {
        assert_eq!(salt_of("$apr1$abc$xyz"), Some(&b"abc"[..]));
        assert_eq!(salt_of("$apr1$123456789$xyz"), Some(&b"12345678"[..]));
        assert_eq!(salt_of("$apr1$\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}$x").map(<[u8]>::len), Some(8));
        assert_eq!(salt_of("$apr1$nohash"), None);
        assert_eq!(salt_of("$1$abc$xyz"), None);
    }
}
