//! The `redis` section: a Redis shared by every gateway instance (here, the response cache's
//! `redis` store). Same keys and defaults as the rate limits' use of it, so one section serves
//! both.

use std::time::Duration;

use serde::Deserialize;

use super::de;

/// What requests that need Redis get when it fails or is slow. The response cache ignores it: a
/// Redis failure there is a miss (or a skipped write), never a refused request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisOnError {
    /// Carry on without Redis.
    #[default]
    Allow,
    /// 503 in the client's protocol.
    Deny,
}

/// The `redis` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// `allow` (default) or `deny`.
    #[serde(default)]
    pub on_error: RedisOnError,
    /// How long one Redis call may take (default `100ms`).
    #[serde(default = "default_redis_timeout", deserialize_with = "de::duration")]
    pub timeout: Duration,
    /// Prepended to every key (default `octollm:`), to share one Redis between deployments.
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_redis_prefix() -> String {
    "octollm:".to_owned()
}
