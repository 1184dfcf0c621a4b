//! The shapes of `rate_limit` and `budget`, shared by the config file, the admin API's keys and
//! the engine that enforces them.
//!
//! ```yaml
//! rate_limit: {rpm: 60, tpm: 100000, concurrency: 4}   # each optional; at least one
//! budget: {usd: 25, period: month}                       # period: day | week | month
//! ```
//!
//! The control plane (`POST /api/v1/keys`) validates and stores them with the key; enforcement
//! (admission, token reconciliation, budgets per period) lives with the limits engine, which reads
//! these same types from the built config (`orgs.O.api_keys.K`). Keep the two in step by changing
//! only this module.

use serde::{Deserialize, Serialize};

/// Request, token and concurrency caps. Absent fields are not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once (streams until they end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

/// A spend cap per calendar period (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// USD per period.
    pub usd: f64,
    /// The period the spend is counted over.
    pub period: Period,
}

/// The period of a [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// A UTC day.
    Day,
    /// A week starting Monday 00:00 UTC.
    Week,
    /// A calendar month, UTC.
    Month,
}

impl RateLimit {
    /// Problems as `(key path, message)`, under `at` (e.g. `orgs.acme.api_keys.ci.rate_limit`).
    ///
    /// ```
    /// use octo_server::config::limits::RateLimit;
    /// let none = RateLimit::default();
    /// assert_eq!(none.validate("rate_limit")[0].0, "rate_limit");
    /// let zero = RateLimit { rpm: Some(0), ..RateLimit::default() };
    /// assert_eq!(zero.validate("rate_limit")[0].0, "rate_limit.rpm");
    /// ```
    pub fn validate(&self, at: &str) -> Vec<(String, String)> {
        let mut p = Vec::new();
        if self.rpm.is_none() && self.tpm.is_none() && self.concurrency.is_none() {
            p.push((
                at.to_owned(),
                "give at least one of `rpm`, `tpm`, `concurrency`, or remove `rate_limit`".into(),
            ));
        }
        for (k, v) in [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("concurrency", self.concurrency),
        ] {
            if v == Some(0) {
                p.push((
                    format!("{at}.{k}"),
                    "must be at least 1; remove the key for no limit".into(),
                ));
            }
        }
        p
    }
}

impl Budget {
    /// Problems as `(key path, message)`, under `at`.
    ///
    /// ```
    /// use octo_server::config::limits::{Budget, Period};
    /// let b = Budget { usd: -1.0, period: Period::Day };
    /// assert_eq!(b.validate("budget")[0].0, "budget.usd");
    /// ```
    pub fn validate(&self, at: &str) -> Vec<(String, String)> {
        if self.usd.is_finite() && self.usd > 0.0 {
            Vec::new()
        } else {
            vec![(
                format!("{at}.usd"),
                format!("`{}` is not a budget; write USD, a number > 0", self.usd),
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_round_trip_and_refuse_unknown_fields() {
        let r: RateLimit = serde_json::from_str(r#"{"rpm": 5, "concurrency": 2}"#).unwrap();
        assert_eq!(r.tpm, None);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"rpm":5,"concurrency":2}"#
        );
        assert!(serde_json::from_str::<RateLimit>(r#"{"rps": 5}"#).is_err());
        let b: Budget = serde_json::from_str(r#"{"usd": 2.5, "period": "week"}"#).unwrap();
        assert_eq!(b.period, Period::Week);
        assert!(serde_json::from_str::<Budget>(r#"{"usd": 1, "period": "year"}"#).is_err());
        assert!(b.validate("budget").is_empty());
    }
}
