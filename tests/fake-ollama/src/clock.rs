//! Times as Ollama (Go) writes and reads them: RFC 3339 timestamps with nanoseconds, and
//! Go duration strings for `keep_alive`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` in UTC as Go's `time.Time` marshals it: `2024-06-04T14:38:31.83753Z` (fraction
/// trimmed of trailing zeros, absent when zero).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    );
    let nanos = since_epoch.subsec_nanos();
    if nanos > 0 {
        text.push('.');
        text.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// The (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A `keep_alive` value: how long a model stays loaded after a request.
pub(crate) enum KeepAlive {
    For(Duration),
    /// Negative values mean "forever" in Ollama.
    Forever,
}

/// Parses a Go duration string (`"5m"`, `"1h30m"`, `"1.5s"`, `"-1m"`, `"0"`), as
/// `time.ParseDuration` does; `None` when it isn't one.
pub(crate) fn parse_go_duration(text: &str) -> Option<KeepAlive> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(KeepAlive::For(Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        seconds += number * unit;
        rest = &rest[unit_end..];
    }
    Some(keep_alive_seconds(if negative {
        -seconds
    } else {
        seconds
    }))
}

/// A `keep_alive` given as a number of seconds.
pub(crate) fn keep_alive_seconds(seconds: f64) -> KeepAlive {
    if seconds < 0.0 {
        KeepAlive::Forever
    } else {
        KeepAlive::For(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_go_ones() {
        let t = UNIX_EPOCH + Duration::new(1_717_511_911, 837_530_000);
        assert_eq!(rfc3339(t), "2024-06-04T14:38:31.83753Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        let seconds = |text| match parse_go_duration(text) {
            Some(KeepAlive::For(d)) => Some(d.as_secs_f64()),
            _ => None,
        };
        assert_eq!(seconds("5m"), Some(300.0));
        assert_eq!(seconds("1h30m"), Some(5400.0));
        assert_eq!(seconds("1.5s"), Some(1.5));
        assert_eq!(seconds("0"), Some(0.0));
        assert!(matches!(parse_go_duration("-1m"), Some(KeepAlive::Forever)));
        assert!(parse_go_duration("5").is_none());
        assert!(parse_go_duration("abc").is_none());
        assert!(parse_go_duration("").is_none());
    }
}
