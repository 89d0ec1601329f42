//! `--since 7d` / `--since 2026-11-01T00:00:00Z`: a time window start in unix ms.

use anyhow::{anyhow, Result};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration back from now (`90m`, `24h`, `7d`) or an RFC 3339 timestamp.
pub fn parse_since(s: &str) -> Result<i64> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    Err(anyhow!("--since `{s}` is neither a duration (e.g. 30m, 24h, 7d) nor an RFC 3339 time (e.g. 2026-11-01T00:00:00Z)"))
}

/// Unix ms as `2026-11-23 12:00:01.123 UTC`.
pub fn format_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000);
    match t {
        Ok(t) => {
            let f = time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3] UTC"
            );
            t.format(&f).unwrap_or_else(|_| ms.to_string())
        }
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_timestamps() {
        let week = parse_since("7d").unwrap();
        assert!((now_ms() - week - 7 * 86_400_000).abs() < 5_000);
        assert_eq!(
            parse_since("2026-11-01T00:00:00Z").unwrap(),
            1_793_491_200_000
        );
        assert!(parse_since("yesterday")
            .unwrap_err()
            .to_string()
            .contains("--since"));
        assert_eq!(format_ms(1_793_491_200_123), "2026-11-01 00:00:00.123 UTC");
    }
}
