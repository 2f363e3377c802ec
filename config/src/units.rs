//! Small value parsers for the configuration: durations (`"30s"`, `"10min"`, `"1h30m"`, by
//! `humantime`), sizes (`"100M"`, `"100MiB"`, by `bytesize`; binary multiples), CPU
//! shares (`"50%"`) and networks (`10.0.0.0/8`).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Parse a duration with `humantime`: `"250ms"`, `"30s"`, `"30 seconds"`, `"10m"`, `"10min"`,
/// `"1h30m"`, `"2h"`, `"1d"`; a bare number means seconds (as it always has).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map(Duration::from_secs).map_err(|_| format!("`{s}` is too large"));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("`{s}` is not a duration such as \"30s\", \"10min\" or \"1h30m\" ({e})")
    })
}

/// Parse a size into bytes with `bytesize`: `"512"`, `"64K"`, `"100M"`, `"1.5G"`, `"100MiB"`.
/// Every multiple is binary, as it always was here (and as in nginx and systemd): `K`, `KB`
/// and `KiB` are 2^10, `M`, `MB` and `MiB` 2^20, `G`, `GB` and `GiB` 2^30, `T`... 2^40. A
/// decimal size is written in bytes (`"100000000"`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let binary = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => "B",
        "K" | "KB" | "KIB" => "KiB",
        "M" | "MB" | "MIB" => "MiB",
        "G" | "GB" | "GIB" => "GiB",
        "T" | "TB" | "TIB" => "TiB",
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}` (use K, M, G or T, binary multiples: M = MB = MiB = 2^20 bytes)"
            ))
        }
    };
    if num.is_empty() {
        return Err(format!("`{s}` is not a size such as \"100M\""));
    }
    let size: bytesize::ByteSize = format!("{num} {binary}")
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as \"100M\""))?;
    // bytesize saturates instead of overflowing.
    match size.as_u64() {
        u64::MAX => Err(format!("`{s}` is too large")),
        n => Ok(n),
    }
}

/// `cpu_max`: a share of one CPU in percent (`"50%"`, `"200%"` for two CPUs) or `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMax {
    Max,
    Percent(u32),
}

/// The period `cpu.max` quotas are written against (100 ms, the kernel's default).
const PERIOD_US: u64 = 100_000;

impl CpuMax {
    pub fn parse(s: &str) -> Result<CpuMax, String> {
        let t = s.trim();
        if t == "max" {
            return Ok(CpuMax::Max);
        }
        let pct = t.strip_suffix('%').and_then(|n| n.trim().parse::<u32>().ok());
        match pct {
            Some(p) if (1..=100_000).contains(&p) => Ok(CpuMax::Percent(p)),
            _ => Err(format!("`{s}` is not a CPU share such as \"50%\" or \"max\"")),
        }
    }

    /// What is written to `cpu.max`: `"$QUOTA $PERIOD"` in microseconds.
    pub fn file_value(&self) -> String {
        match self {
            CpuMax::Max => format!("max {PERIOD_US}"),
            CpuMax::Percent(p) => format!("{} {PERIOD_US}", PERIOD_US * u64::from(*p) / 100),
        }
    }
}

/// Parse `trusted_proxies` entries: addresses (`10.0.0.1`) or networks (`10.0.0.0/8`).
pub fn parse_nets(entries: &[String]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|e| {
            e.parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{e}` is not an address or network such as 10.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("30 seconds"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        for bad in ["soon", "", "5 fortnights", "-5s", "30 s econds", "99999999999999999999"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("12"), Ok(12));
        assert_eq!(parse_size("100MB"), Ok(100 << 20), "MB is binary, as it always was");
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("100 mib"), Ok(100 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2TiB"), Ok(2 << 40));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10B"), Ok(10));
        for bad in ["lots", "", "M", "5 MHz", "-5M", "1.2.3M", "99999999999999G", "1e9"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(CpuMax::parse("max"), Ok(CpuMax::Max));
        assert_eq!(CpuMax::parse("50%").map(|c| c.file_value()).as_deref(), Ok("50000 100000"));
        assert_eq!(CpuMax::parse("250%").map(|c| c.file_value()).as_deref(), Ok("250000 100000"));
        assert_eq!(CpuMax::Max.file_value(), "max 100000");
        for bad in ["0%", "half", "50", "-5%", ""] {
            assert!(CpuMax::parse(bad).is_err(), "{bad}");
        }
    }
}
