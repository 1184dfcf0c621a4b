//! The shared store: entries in Redis, read and written by every gateway instance on it.
//!
//! An entry is one string key, `{prefix}cache:{key hex}`, holding the encoded entry and set with
//! `SET … PX ttl`, so Redis expires it; a lookup is one `GET`. The connection is made lazily and
//! re-made by itself after a failure (redis-rs's connection manager); every call gives up after
//! the configured timeout, and the cache engine treats a failure as a miss or a skipped write.
//! Memory is Redis's to bound (`maxmemory` with an eviction policy such as `allkeys-lru`); the
//! store itself only refuses entries larger than `max_entry_bytes`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use octo_core::Error;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::key::CacheKey;
use super::store::CacheStore;

/// A [`CacheStore`] in Redis; see the module docs.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    max_entry_bytes: usize,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `url` (`redis://[user:password@]host:port[/db]`), keys starting with `prefix`,
    /// each call bounded by `timeout`, entries up to `max_entry_bytes`. Connects on first use.
    ///
    /// # Errors
    /// A [`BuildError`](octo_core::BuildError) when `url` is not a Redis URL (the message does not
    /// repeat a password).
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        max_entry_bytes: usize,
    ) -> Result<Self, octo_core::BuildError> {
        Self::check_url(url)?;
        let client = redis::Client::open(url).map_err(|e| {
            octo_core::BuildError::invalid(format!("not a Redis URL ({})", e.kind_str()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            octo_core::BuildError::invalid(format!("cannot use this Redis URL: {e}"))
        })?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            max_entry_bytes,
        })
    }

    /// Whether `url` is a Redis URL this store can use (no connection is made).
    ///
    /// # Errors
    /// As [`RedisStore::new`].
    pub fn check_url(url: &str) -> Result<(), octo_core::BuildError> {
        redis::Client::open(url).map(drop).map_err(|e| {
            octo_core::BuildError::invalid(format!(
                "not a Redis URL ({}); write e.g. redis://127.0.0.1:6379/0",
                e.kind_str()
            ))
        })
    }

    /// The Redis key of `key`.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}cache:{}", self.prefix, key.to_hex())
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::upstream(format!(
                "Redis {what} failed: {}",
                e.kind_str()
            ))),
            Err(_) => Err(Error::timeout(format!(
                "Redis {what} did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error without the connection details (a URL could carry a password).
    fn kind_str(&self) -> String {
        format!(
            "{:?}{}",
            self.kind(),
            if self.is_timeout() { " (timeout)" } else { "" }
        )
    }
}

#[async_trait]
impl CacheStore for RedisStore {
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        let mut conn = self.conn.clone();
        let k = self.redis_key(key);
        let v: Option<Vec<u8>> = self.bounded("GET", conn.get(k)).await?;
        Ok(v.map(Bytes::from))
    }

    async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        let k = self.redis_key(key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let opts = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ms));
        self.bounded::<()>("SET", conn.set_options(k, value.as_ref(), opts))
            .await
    }

    fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
