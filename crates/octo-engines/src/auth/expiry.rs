//! Parsing key expiry times: RFC 3339 timestamps, plain dates and unix seconds.
//!
//! A tiny parser instead of a date crate: keys need one instant, in UTC, and nothing else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a key expiry.
///
/// Accepted forms:
/// - unix seconds: `1767225600`;
/// - RFC 3339: `2026-01-01T00:00:00Z`, `2026-01-01T08:00:00+08:00`, fractions of a second allowed,
///   `t`/`z` in lowercase and a space instead of `T` allowed;
/// - a date, `2026-01-01`, meaning the start of that day in UTC.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use octo_engines::auth::parse_expiry;
///
/// let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
/// assert_eq!(parse_expiry("1767225600"), Ok(t));
/// assert_eq!(parse_expiry("2026-01-01T00:00:00Z"), Ok(t));
/// assert_eq!(parse_expiry("2026-01-01T08:00:00+08:00"), Ok(t));
/// assert_eq!(parse_expiry("2026-01-01"), Ok(t));
/// assert!(parse_expiry("2026-02-30").is_err());
/// ```
///
/// # Errors
/// A message naming the accepted forms when `s` is none of them or names an impossible date.
pub fn parse_expiry(s: &str) -> Result<SystemTime, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "`{s}` is not an expiry time; write an RFC 3339 timestamp (`2026-01-01T00:00:00Z`), \
             a date (`2026-01-01`, start of day UTC) or unix seconds (`1767225600`)"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| bad())?;
        return UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(bad);
    }
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        part.iter()
            .try_fold(0u32, |acc, d| {
                acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
            })
            .ok_or_else(bad)
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad());
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        // 60 is a leap second; count it as the last second of the minute.
        if h > 23 || m > 59 || sec > 60 {
            return Err(bad());
        }
        secs += i64::from(h * 3600 + m * 60 + sec.min(59));
        let mut rest = &b[19..];
        let mut nanos = 0u32;
        if let Some(frac) = rest.strip_prefix(b".") {
            let digits = frac.iter().take_while(|d| d.is_ascii_digit()).count();
            if digits == 0 {
                return Err(bad());
            }
            for (i, d) in frac[..digits].iter().take(9).enumerate() {
                nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
            }
            rest = &frac[digits..];
        }
        match rest {
            b"Z" | b"z" => {}
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(bad());
                }
                let oh = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let om = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let offset = oh * 3600 + om * 60;
                // Local time = UTC + offset.
                secs -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return Err(bad()),
        }
        let secs = u64::try_from(secs).map_err(|_| bad())?;
        return Ok(UNIX_EPOCH + Duration::new(secs, nanos));
    }
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn known_instants() {
        assert_eq!(parse_expiry("1970-01-01T00:00:00Z"), Ok(at(0)));
        assert_eq!(parse_expiry("2000-02-29T12:34:56Z"), Ok(at(951_827_696)));
        assert_eq!(parse_expiry("2038-01-19T03:14:07Z"), Ok(at(2_147_483_647)));
        assert_eq!(
            parse_expiry("2025-12-31t23:00:00-01:00"),
            Ok(at(1_767_225_600))
        );
        assert_eq!(parse_expiry("2026-01-01 00:00:00z"), Ok(at(1_767_225_600)));
        assert_eq!(
            parse_expiry("2026-01-01T00:00:00.250Z"),
            Ok(at(1_767_225_600) + Duration::from_millis(250))
        );
        assert_eq!(parse_expiry(" 0 "), Ok(at(0)));
    }

    #[test]
    fn refuses_nonsense() {
        for s in [
            "",
            "soon",
            "2026-13-01",
            "2026-02-29",
            "1900-01-01",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0800",
            "2026-01-01T00:00:00.Z",
            "2026-1-1",
            "-5",
        ] {
            assert!(parse_expiry(s).is_err(), "{s}");
        }
    }
}
