//! The Responses API's stored answers in the request log's database: the
//! [`ResponseStore`] the engines use, over `octo_store`'s `stored_response` table (schema version
//! 5). Answers live as long as the log's retention keeps rows. A PostgreSQL/MySQL database that did
//! not answer at startup is used as soon as it does; until then loading or saving an answer is a
//! retryable 503.

use async_trait::async_trait;
use octo_core::Error;
use octo_engines::responses::{ResponseStore, StoredAnswer};
use octo_store::{LogWriter, Secrets, Store, StoredResponse};
use serde_json::Value;

/// [`ResponseStore`] over the server's database. Like kept log bodies, a stored conversation is
/// written with every configured credential replaced by `[REDACTED]` (a client that types an
/// upstream key into a prompt must not put it in the database).
#[derive(Clone)]
pub struct DbResponses {
    store: Source,
    secrets: Secrets,
}

/// Where the database comes from: open, or the log writer that opens it in the background.
#[derive(Clone)]
enum Source {
    Open(Store),
    Opening(std::sync::Arc<LogWriter>),
}

impl std::fmt::Debug for DbResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbResponses").finish_non_exhaustive()
    }
}

impl DbResponses {
    /// Answers kept in `store`, with `secrets` redacted.
    pub fn new(store: Store, secrets: Secrets) -> Self {
        DbResponses {
            store: Source::Open(store),
            secrets,
        }
    }

    /// Answers kept in the database `writer` opens (it did not answer at startup).
    pub fn opening(writer: std::sync::Arc<LogWriter>, secrets: Secrets) -> Self {
        DbResponses {
            store: Source::Opening(writer),
            secrets,
        }
    }

    fn store(&self) -> Result<Store, Error> {
        match &self.store {
            Source::Open(s) => Ok(s.clone()),
            Source::Opening(w) => w.store().ok_or_else(|| {
                Error::internal(
                    "storage: the database keeping Responses API answers has not answered since the gateway started; try again",
                )
                .with_status(http::StatusCode::SERVICE_UNAVAILABLE)
                .with_retryable(true)
            }),
        }
    }
}

fn store_error(e: &octo_store::StoreError) -> Error {
    Error::internal(format!("storage: {e}")).with_retryable(e.is_retryable())
}

#[async_trait]
impl ResponseStore for DbResponses {
    async fn load(&self, org: &str, id: &str) -> Result<Option<StoredAnswer>, Error> {
        let Some(row) = self
            .store()?
            .response(org, id)
            .await
            .map_err(|e| store_error(&e))?
        else {
            return Ok(None);
        };
        let input: Vec<Value> = serde_json::from_str(&row.input)
            .map_err(|e| Error::internal(format!("a stored response's input is not JSON: {e}")))?;
        let response: Value = serde_json::from_str(&row.response)
            .map_err(|e| Error::internal(format!("a stored response is not JSON: {e}")))?;
        Ok(Some(StoredAnswer {
            org: row.org,
            id: row.id,
            created_at_ms: row.created_at_ms,
            model: row.model,
            input,
            response,
        }))
    }

    async fn save(&self, answer: StoredAnswer) -> Result<(), Error> {
        let row = StoredResponse {
            org: answer.org,
            id: answer.id,
            created_at_ms: answer.created_at_ms,
            model: answer.model,
            input: self
                .secrets
                .redact(&Value::Array(answer.input).to_string())
                .into_owned(),
            response: self
                .secrets
                .redact(&answer.response.to_string())
                .into_owned(),
        };
        self.store()?
            .put_response(&row)
            .await
            .map_err(|e| store_error(&e))
    }

    async fn delete(&self, org: &str, id: &str) -> Result<bool, Error> {
        self.store()?
            .delete_response(org, id)
            .await
            .map_err(|e| store_error(&e))
    }
}
