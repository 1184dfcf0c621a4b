//! Human durations in config files: `500ms`, `5s`, `1.5s`, `2m`, `1h`.

use std::time::Duration;

/// Parses `text` as a duration; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("`{text}` is not a duration; write e.g. `500ms`, `5s`, `2m` or `1h`")
    })?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}`; use ms, s, m or h (e.g. `30s`)"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 7.0 {
        return Err(format!(
            "`{text}` is out of range; use a positive duration of at most a week"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn refuses_nonsense_with_a_fix() {
        assert!(
            parse_duration("5 sec")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("fast").unwrap_err().contains("e.g."));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
