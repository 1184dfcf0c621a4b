//! Model prices and the cost of each request.
//!
//! OctoLLM prices a finished [`Record`](octo_core::record::Record) from its canonical
//! [`Usage`](octo_core::usage::Usage) (uncached input, cache reads, cache writes, output with
//! reasoning inside) at USD-per-million-token rates, so cached tokens are never counted twice. The
//! rates come from, in order of precedence:
//!
//! 1. `prices:` overrides in the config ([`PricesConfig`]), by exposed or upstream model name;
//! 2. the last good table fetched by the optional sync ([`PriceSyncConfig`], [`sync`]);
//! 3. the embedded snapshot of LiteLLM's price list (MIT; [`PriceTable::embedded`]).
//!
//! Tables are matched on the upstream model name with the backend's protocol as a provider hint,
//! tolerant of case, provider prefixes and release dates ([`names`]). Where the source has context
//! tiers (`above 200k input tokens`), the tier is chosen once from the request's total input and
//! applied to every category. No price → no cost (never a made-up zero), counted per model in
//! [`PriceBook::unpriced`].
//!
//! ```
//! use std::sync::Arc;
//! use octo_core::record::Observers;
//! use octo_prices::{PriceBook, PricesConfig};
//!
//! let book = Arc::new(PriceBook::new(&PricesConfig::default()).unwrap());
//! let observers = Observers::new().with_pricing(book.clone().pricing());
//! # let _ = observers;
//! ```

pub mod book;
pub mod config;
pub mod names;
pub mod sync;
pub mod table;
pub mod unpriced;

pub use book::PriceBook;
pub use config::{PriceOverride, PriceSyncConfig, PricesConfig, SyncSettings};
pub use sync::{SyncError, SyncErrorKind, SyncStatus};
pub use table::{ModelPrice, PriceTable, Rates, TableError, TableInfo, Tier};
