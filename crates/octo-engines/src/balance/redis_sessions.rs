//! Sticky sessions in Redis: the [`SessionStore`] of the `redis` section, so a client pinned to a
//! target on one gateway instance is pinned to it on every instance sharing the Redis.
//!
//! A session is one string key, `{prefix}sticky:{64 hex digits}` (see
//! [`SharedSessions`](super::SharedSessions) for what is hashed), holding the target's index and
//! name, set with `SET … PX ttl` after each success (so Redis expires it like the local memory
//! does) and removed by a compare-and-delete script after a failure on it. A lookup is one `GET`
//! on the request's path; writes are spawned and never waited for.
//!
//! Failures never cost a request more than one timeout: every call is bounded by the configured
//! timeout, and after a failure the store rests for [`RedisSessions::REST`] (lookups answer
//! [`Remembered::Unknown`] at once and writes are skipped), with one warning per failure that
//! starts a rest. The connection is a single multiplexed one, re-made by itself after a failure
//! (redis-rs's connection manager).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::sticky::{Remembered, SessionStore};

/// Deletes KEYS\[1\] only while it still holds ARGV\[1\]: a failure seen by one instance must not
/// drop the pin another instance has just moved elsewhere.
const FORGET: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Sticky sessions in Redis; see the [module docs](self).
#[derive(Clone)]
pub struct RedisSessions {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    forget: Script,
    /// Milliseconds since `epoch` until which Redis is not called.
    rest_until: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisSessions")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSessions {
    /// How long the store skips Redis after a failed call.
    pub const REST: Duration = Duration::from_secs(1);

    /// Sessions on `url` (`redis://[user:password@]host:port[/db]`), keys starting with `prefix`,
    /// each call bounded by `timeout`. Connects on first use.
    ///
    /// # Errors
    /// A [`BuildError`](octo_core::BuildError) when `url` is not a Redis URL (the message does not
    /// repeat a password).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, octo_core::BuildError> {
        let client = redis::Client::open(url).map_err(|e| {
            octo_core::BuildError::invalid(format!("not a Redis URL ({:?})", e.kind()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            octo_core::BuildError::invalid(format!("cannot use this Redis URL: {:?}", e.kind()))
        })?;
        Ok(RedisSessions {
            inner: Arc::new(Inner {
                conn,
                prefix: prefix.to_owned(),
                timeout,
                forget: Script::new(FORGET),
                rest_until: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        })
    }

    /// The Redis key of a session key.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}sticky:{key}", self.inner.prefix)
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn resting(&self) -> bool {
        self.now_ms() < self.rest_until.load(Ordering::Relaxed)
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        let error = match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => format!("{:?}", e.kind()),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        let until = self.now_ms() + u64::try_from(RedisSessions::REST.as_millis()).unwrap_or(0);
        let before = self.rest_until.swap(until, Ordering::Relaxed);
        if before <= self.now_ms() {
            tracing::warn!(
                %error,
                "redis {what} for sticky sessions failed: this instance uses its own memory of the sessions for now"
            );
        }
        None
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn get(&self, key: &str) -> Remembered {
        let inner = &self.inner;
        if inner.resting() {
            return Remembered::Unknown;
        }
        let mut conn = inner.conn.clone();
        let k = self.redis_key(key);
        match inner.bounded::<Option<String>>("GET", conn.get(k)).await {
            Some(Some(v)) => Remembered::Value(v),
            Some(None) => Remembered::Nothing,
            None => Remembered::Unknown,
        }
    }

    fn put(&self, key: String, value: String, ttl: Duration) {
        if self.inner.resting() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let inner = self.inner.clone();
        let k = self.redis_key(&key);
        tokio::spawn(async move {
            let mut conn = inner.conn.clone();
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let opts = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ms));
            inner
                .bounded::<()>("SET", conn.set_options(k, value, opts))
                .await;
        });
    }

    fn forget(&self, key: String, value: String) {
        if self.inner.resting() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let inner = self.inner.clone();
        let k = self.redis_key(&key);
        tokio::spawn(async move {
            let mut conn = inner.conn.clone();
            let mut inv = inner.forget.key(k);
            inv.arg(value);
            inner
                .bounded::<i64>("EVALSHA", inv.invoke_async(&mut conn))
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_redis_is_unknown_at_once_after_the_first_failure() {
        let url = octo_test::closed_port_url().replace("http://", "redis://");
        let store = RedisSessions::new(&url, "t:", Duration::from_secs(2)).unwrap();
        assert_eq!(store.get("k").await, Remembered::Unknown);
        // Resting: no call, no wait.
        let t = Instant::now();
        assert_eq!(store.get("k").await, Remembered::Unknown);
        store.put("k".into(), "0:a".into(), Duration::from_secs(1));
        store.forget("k".into(), "0:a".into());
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(
            !format!("{store:?}").contains(&url),
            "the URL is never shown"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let e = RedisSessions::new(
            "http://user:secret@example.com",
            "p:",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(!e.message().contains("secret"), "{}", e.message());
    }
}
