//! Budget periods in UTC: a day starts at 00:00 UTC, a week on Monday 00:00 UTC (ISO 8601), a
//! month on the 1st at 00:00 UTC. Every instance and the database agree on these boundaries
//! without a time-zone setting, and they fall on the request log's hour rollups, so the spend of
//! the current period can be read back from storage exactly.
//!
//! ```
//! use octo_limits::period::Period;
//!
//! // 2026-12-02T07:30:00Z, a Wednesday.
//! let now = 1_796_196_600_000;
//! let (start, end) = Period::Week.bounds(now);
//! assert_eq!(octo_limits::period::rfc3339(start), "2026-11-30T00:00:00Z");
//! assert_eq!(octo_limits::period::rfc3339(end), "2026-12-07T00:00:00Z");
//! ```

use serde::{Deserialize, Serialize};

const DAY_MS: i64 = 86_400_000;

/// How often a budget starts afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// 00:00 UTC to 00:00 UTC.
    Day,
    /// Monday 00:00 UTC to the next Monday.
    Week,
    /// The 1st 00:00 UTC to the next month's 1st.
    Month,
}

impl Period {
    /// The name written in the config (`day`, `week`, `month`).
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The period containing `now_ms` (Unix milliseconds): its start and its end (the next
    /// period's start).
    pub fn bounds(self, now_ms: i64) -> (i64, i64) {
        let day = now_ms.div_euclid(DAY_MS);
        match self {
            Period::Day => (day * DAY_MS, (day + 1) * DAY_MS),
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) mod 7.
                let monday = day - (day + 3).rem_euclid(7);
                (monday * DAY_MS, (monday + 7) * DAY_MS)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (start * DAY_MS, days_from_civil(ny, nm, 1) * DAY_MS)
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `ms` (Unix milliseconds, whole seconds) as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(ms: i64) -> String {
    let day = ms.div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(day);
    let secs = ms.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * 3_600_000
    }

    #[test]
    fn dates_round_trip() {
        for day in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn day_week_and_month_bounds() {
        let now = at(2026, 12, 2, 7);
        assert_eq!(
            Period::Day.bounds(now),
            (at(2026, 12, 2, 0), at(2026, 12, 3, 0))
        );
        assert_eq!(
            Period::Week.bounds(now),
            (at(2026, 11, 30, 0), at(2026, 12, 7, 0))
        );
        assert_eq!(
            Period::Month.bounds(now),
            (at(2026, 12, 1, 0), at(2027, 1, 1, 0))
        );
        // A Monday at midnight starts its own week; the Sunday before belongs to the last one.
        assert_eq!(
            Period::Week.bounds(at(2026, 11, 30, 0)).0,
            at(2026, 11, 30, 0)
        );
        assert_eq!(
            Period::Week.bounds(at(2026, 11, 29, 23)).0,
            at(2026, 11, 23, 0)
        );
        // February in a leap year, and the last millisecond of a month.
        assert_eq!(
            Period::Month.bounds(at(2028, 2, 29, 12)),
            (at(2028, 2, 1, 0), at(2028, 3, 1, 0))
        );
        assert_eq!(
            Period::Month.bounds(at(2027, 1, 1, 0) - 1).1,
            at(2027, 1, 1, 0)
        );
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(at(2026, 12, 7, 0)), "2026-12-07T00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
