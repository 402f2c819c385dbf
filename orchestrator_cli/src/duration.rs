//! Durations typed by people (`--timeout 90s`, `2m`, `1m30s`) and ages shown to them (`5s`, `3m`,
//! `2h`, `4d`).

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Parses `500ms`, `60s`, `2m`, `1h`, combinations such as `1m30s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let invalid = || format!("invalid duration `{text}`: use e.g. 500ms, 60s, 2m, 1h or 1m30s");
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(invalid)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(invalid)?),
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

/// A duration as people type it: `1m30s`, `2m`, `45s`, `250ms` (`1500ms` rather than a rounded
/// `1s`, so a message never contradicts the `--timeout` given).
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// How long ago `then` was, in its largest unit: `5s`, `3m`, `2h`, `4d`. A time in the future
/// (clocks of client and server differ) shows as `0s`.
pub fn format_age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "m1",
            "10 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_durations_and_ages() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        let now = Utc::now();
        let ago = |s: i64| format_age(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(200), "3m");
        assert_eq!(ago(2 * 3600 + 5), "2h");
        assert_eq!(ago(4 * 86_400 + 10), "4d");
        assert_eq!(ago(-30), "0s");
    }
}
