//! Validators (`ETag`, `Last-Modified`), conditional requests and `Range` (RFC 9110 §13, §14).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap};

/// The validators of one file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Strong entity tag from size and modification time (nanoseconds), as nginx makes it:
    /// the same file gives the same tag on every host that shares it.
    pub etag: String,
    /// Modification time in whole seconds since the epoch (HTTP dates have no fraction).
    pub mtime: u64,
    /// `mtime` as an HTTP date.
    pub last_modified: String,
}

/// The part of the file a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// 200: the whole file.
    Full,
    /// 206: bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: no byte of the file is in the range.
    Unsatisfiable,
}

impl Validators {
    pub fn of(meta: &Metadata) -> Validators {
        let secs = meta.mtime().max(0) as u64;
        let nanos = meta.mtime_nsec().clamp(0, 999_999_999) as u64;
        let etag = format!("\"{:x}-{:x}{:08x}\"", meta.len(), secs, nanos);
        let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        Validators { etag, mtime: secs, last_modified }
    }

    /// `If-None-Match` decides when present (weak comparison, `*` matches); otherwise
    /// `If-Modified-Since`. True: answer 304.
    pub fn not_modified(&self, headers: &HeaderMap) -> bool {
        if headers.contains_key(header::IF_NONE_MATCH) {
            return headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == self.etag);
        }
        match header_date(headers, header::IF_MODIFIED_SINCE) {
            Some(since) => self.mtime <= since,
            None => false,
        }
    }

    /// `If-Range`: the range applies only if the file is still the version the client has
    /// (strong comparison of the tag, or the exact date).
    fn range_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::IF_RANGE) else { return true };
        let Ok(value) = value.to_str() else { return false };
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            value == self.etag
        } else {
            httpdate::parse_http_date(value).ok().and_then(epoch_secs) == Some(self.mtime)
        }
    }

    /// The part of a file of `len` bytes that a GET with `headers` gets.
    pub fn ranged(&self, headers: &HeaderMap, len: u64) -> Ranged {
        let mut ranges = headers.get_all(header::RANGE).iter();
        let (Some(value), None) = (ranges.next(), ranges.next()) else { return Ranged::Full };
        if !self.range_allowed(headers) {
            return Ranged::Full;
        }
        value.to_str().ok().map_or(Ranged::Full, |v| parse_range(v, len))
    }
}

/// One `bytes=` range; anything else (other units, bad syntax, several ranges) is ignored
/// and the whole file is sent, which RFC 9110 allows.
pub fn parse_range(value: &str, len: u64) -> Ranged {
    let Some((unit, spec)) = value.split_once('=') else { return Ranged::Full };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.split_once('-') else { return Ranged::Full };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-N`: the last N bytes.
        return match digits(last) {
            None => Ranged::Full,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Partial { start: len - n.min(len), end: len - 1 },
        };
    }
    // `A-` and `A-B`; B past the end means the end, A past the end is unsatisfiable.
    let Some(start) = digits(first) else { return Ranged::Full };
    let end = match (last.is_empty(), digits(last)) {
        (true, _) => u64::MAX,
        (false, Some(end)) => end,
        (false, None) => return Ranged::Full,
    };
    if end < start {
        return Ranged::Full;
    }
    if start >= len {
        return Ranged::Unsatisfiable;
    }
    Ranged::Partial { start, end: end.min(len - 1) }
}

/// A decimal number; one too large for `u64` saturates (it is past the end of any file).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

fn header_date(headers: &HeaderMap, name: header::HeaderName) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok().and_then(epoch_secs)
}

fn epoch_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |start, end| Ranged::Partial { start, end };
        assert_eq!(parse_range("bytes=0-9", 100), p(0, 9));
        assert_eq!(parse_range("bytes=10-", 100), p(10, 99));
        assert_eq!(parse_range("bytes=-10", 100), p(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), p(0, 99));
        assert_eq!(parse_range("bytes=90-1000", 100), p(90, 99));
        assert_eq!(parse_range("BYTES = 1-1", 100), p(1, 1));
        assert_eq!(parse_range("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=99999999999999999999999-", 100), Ranged::Unsatisfiable);
        for ignored in ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=x-1", "bytes=", "0-1"] {
            assert_eq!(parse_range(ignored, 100), Ranged::Full, "{ignored}");
        }
    }
}
