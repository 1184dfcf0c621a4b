//! Where entries live: the [`CacheStore`] trait, implemented in process ([`MemoryStore`]) and,
//! shared by several gateway instances, in Redis.
//!
//! [`MemoryStore`]: super::MemoryStore

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use octo_core::Error;

use super::key::CacheKey;

/// A key-value store for encoded entries, with a TTL per entry.
///
/// The cache engine bounds every call with a short timeout and treats an error or a timeout as a
/// miss (lookups) or a skipped write (stores): a slow or absent store never fails or hangs a
/// request.
#[async_trait]
pub trait CacheStore: Send + Sync + std::fmt::Debug + 'static {
    /// The live value under `key`, if any.
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error>;
    /// Stores `value` under `key` for `ttl`.
    async fn put(&self, key: &CacheKey, value: Bytes, ttl: Duration) -> Result<(), Error>;
    /// The largest encoded entry worth collecting (a stream longer than this is not stored).
    fn max_entry_bytes(&self) -> usize;
    /// `memory` or `redis`, for logs.
    fn kind(&self) -> &'static str;
}
