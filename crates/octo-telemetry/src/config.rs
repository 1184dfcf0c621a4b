//! The `telemetry` section of the gateway's configuration, and the errors of starting what it
//! describes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The `telemetry` section: where traces go. Metrics and the access log need no configuration
/// here (metrics are served on the admin listener; the access log follows the log level).
///
/// ```
/// use octo_telemetry::TelemetryConfig;
///
/// let c: TelemetryConfig = serde_yaml_ng::from_str("otlp_endpoint: http://collector:4318\nsample: 0.25\n").unwrap();
/// assert_eq!(c.service_name, "octollm");
/// assert_eq!(c.sample, 0.25);
/// assert_eq!(c.traces_url().unwrap(), "http://collector:4318/v1/traces");
/// assert!(serde_yaml_ng::from_str::<TelemetryConfig>("otlp_endpoit: x").is_err());
/// ```
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP endpoint (`http://collector:4318`); spans are POSTed to
    /// `<endpoint>/v1/traces`. Unset: no tracing, at no cost.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Headers sent with every export (a collector's API key). Never logged.
    #[serde(default)]
    pub otlp_headers: BTreeMap<String, String>,
    /// How long one export may take.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub otlp_timeout: Duration,
    /// The `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of new traces kept, 0 to 1 (a client's `traceparent` decides for its own
    /// traces: sampled or not).
    #[serde(default = "default_sample")]
    pub sample: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_headers: BTreeMap::new(),
            otlp_timeout: default_timeout(),
            service_name: default_service_name(),
            sample: default_sample(),
        }
    }
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field(
                "otlp_headers",
                &self.otlp_headers.keys().collect::<Vec<_>>(),
            )
            .field("otlp_timeout", &self.otlp_timeout)
            .field("service_name", &self.service_name)
            .field("sample", &self.sample)
            .finish()
    }
}

impl TelemetryConfig {
    /// Checks the values serde cannot: the endpoint is an `http(s)` URL, the ratio is within
    /// 0..=1, header names and values are valid.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(TelemetryError::config(format!(
                "telemetry.sample must be between 0 and 1, not {}",
                self.sample
            )));
        }
        if let Some(e) = &self.otlp_endpoint {
            let ok = reqwest::Url::parse(e)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(TelemetryError::config(format!(
                    "telemetry.otlp_endpoint: `{e}` is not an http(s) URL"
                )));
            }
        }
        for (k, v) in &self.otlp_headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(TelemetryError::config(format!(
                    "telemetry.otlp_headers: `{k}` is not a valid header"
                )));
            }
        }
        Ok(())
    }

    /// `<otlp_endpoint>/v1/traces`, or `None` when no endpoint is set.
    pub fn traces_url(&self) -> Option<String> {
        let e = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(format!("{e}/v1/traces"))
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_service_name() -> String {
    "octollm".into()
}

fn default_sample() -> f64 {
    1.0
}

/// A duration as the rest of the config writes it: `500ms`, `5s`, `2m`, or a bare number of
/// seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom),
        Raw::Text(s) => humantime::parse_duration(s.trim()).map_err(serde::de::Error::custom),
    }
}

/// Why telemetry could not start. Never retryable: the configuration must change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryError {
    kind: TelemetryErrorKind,
    message: String,
}

/// What kind of [`TelemetryError`] it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TelemetryErrorKind {
    /// A configured value is invalid.
    Config,
    /// The logging subscriber could not be installed (one was already set, or the filter is
    /// invalid).
    Logging,
}

impl TelemetryError {
    pub(crate) fn config(message: String) -> Self {
        TelemetryError {
            kind: TelemetryErrorKind::Config,
            message,
        }
    }

    pub(crate) fn logging(message: String) -> Self {
        TelemetryError {
            kind: TelemetryErrorKind::Logging,
            message,
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> TelemetryErrorKind {
        self.kind
    }

    /// Whether trying again unchanged could succeed: never.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TelemetryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ratio_endpoint_and_headers() {
        let mut c = TelemetryConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.traces_url(), None);
        c.sample = 1.5;
        assert_eq!(c.validate().unwrap_err().kind(), TelemetryErrorKind::Config);
        c.sample = 1.0;
        c.otlp_endpoint = Some("collector:4318".into());
        assert!(c.validate().is_err());
        c.otlp_endpoint = Some("http://x:4318/".into());
        assert_eq!(c.traces_url().unwrap(), "http://x:4318/v1/traces");
        c.otlp_headers.insert("bad header".into(), "v".into());
        assert!(c.validate().is_err());
        c.otlp_headers.clear();
        c.otlp_headers.insert("x-api-key".into(), "secret".into());
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn timeout_is_a_duration_string() {
        let c: TelemetryConfig = serde_yaml_ng::from_str("otlp_timeout: 3s").unwrap();
        assert_eq!(c.otlp_timeout, Duration::from_secs(3));
        let c: TelemetryConfig = serde_yaml_ng::from_str("otlp_timeout: 1.5").unwrap();
        assert_eq!(c.otlp_timeout, Duration::from_millis(1500));
        assert!(serde_yaml_ng::from_str::<TelemetryConfig>("otlp_timeout: soon").is_err());
        assert!(serde_yaml_ng::from_str::<TelemetryConfig>("otlp_timeout: -1").is_err());
    }
}
