//! Small value parsers for the configuration: durations (`"30s"`, `"10m"`), sizes (`"100M"`), CPU
//! shares (`"50%"`) and networks (`10.0.0.0/8`).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Parse `"250ms"`, `"30s"`, `"10m"`, `"2h"`, `"1d"`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("`{s}` is not a duration such as \"30s\" or \"10m\""))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        u => return Err(format!("unknown unit `{u}` in `{s}` (use ms, s, m, h or d)")),
    };
    Ok(d)
}

/// Parse `"512"`, `"64K"`, `"100M"`, `"2G"` (binary multiples) into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size such as \"100M\""))?;
    let mul: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        u => return Err(format!("unknown unit `{u}` in `{s}` (use K, M or G)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("`{s}` is too large"))
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
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 weeks").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
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
