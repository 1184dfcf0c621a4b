//! Stored Responses API answers: what lets the gateway serve `previous_response_id`,
//! `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and `DELETE /v1/responses/{id}`
//! for clients whose upstream does not speak the Responses API.
//!
//! One row per answer in `stored_response` (schema version 5), keyed by the caller's org and the
//! response id: an org never reads, lists or deletes another org's answers. The row holds the whole
//! input history the answer was generated from (the expanded `previous_response_id` chain plus the
//! request's own input) and the answer as the client received it, both as JSON text. Rows are
//! deleted with the request log's retention ([`Store::prune`]).

use crate::db::{Col, Sql, Value};
use crate::schema::{MAX_ID_LEN, MAX_KEY_LEN};
use crate::{ErrorKind, Store, StoreError};

/// One stored answer.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use octo_store::{Store, StoreConfig, StoredResponse};
///
/// let store = Store::open(&StoreConfig::with_url("sqlite::memory:")).await.unwrap();
/// let answer = StoredResponse {
///     org: "acme".into(),
///     id: "resp_1".into(),
///     created_at_ms: 1_700_000_000_000,
///     model: "gpt".into(),
///     input: r#"[{"role":"user","content":"hi"}]"#.into(),
///     response: r#"{"id":"resp_1","object":"response","output":[]}"#.into(),
/// };
/// store.put_response(&answer).await.unwrap();
/// assert_eq!(store.response("acme", "resp_1").await.unwrap(), Some(answer));
/// // Another org does not see it.
/// assert_eq!(store.response("beta", "resp_1").await.unwrap(), None);
/// assert!(store.delete_response("acme", "resp_1").await.unwrap());
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The caller's org (empty for a gateway without orgs).
    pub org: String,
    /// The response id the client was given (`resp_…`).
    pub id: String,
    /// When it was created, in Unix milliseconds (retention deletes by this).
    pub created_at_ms: i64,
    /// The model the client asked for.
    pub model: String,
    /// The whole input history it answered, a JSON array of Responses input items.
    pub input: String,
    /// The answer as the client received it, a JSON Responses `response` object.
    pub response: String,
}

const COLUMNS: &str = "org, id, created_at, model, input, response";
const TYPES: [Col; 6] = [
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
];

impl Store {
    /// Keeps an answer (replacing one with the same org and id).
    ///
    /// # Errors
    /// A [`StoreError`] when the database refuses or cannot be reached (retryable), or a
    /// `Rejected` error for an id or org longer than the columns allow.
    pub async fn put_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        if r.id.len() > MAX_ID_LEN || r.org.chars().count() > MAX_KEY_LEN {
            return Err(StoreError::new(
                ErrorKind::Rejected,
                false,
                format!(
                    "a stored response's id is at most {MAX_ID_LEN} bytes and its org at most {MAX_KEY_LEN} characters"
                ),
            ));
        }
        let b = self.backend();
        let mut delete = Sql::new(b);
        delete
            .push("DELETE FROM stored_response WHERE org = ")
            .bind(Value::Text(Some(r.org.clone())))
            .push(" AND id = ")
            .bind(Value::Text(Some(r.id.clone())));
        let mut insert = Sql::new(b);
        insert
            .push(&format!("INSERT INTO stored_response ({COLUMNS}) VALUES ("))
            .bind(Value::Text(Some(r.org.clone())))
            .push(", ")
            .bind(Value::Text(Some(r.id.clone())))
            .push(", ")
            .bind(Value::Int(Some(r.created_at_ms)))
            .push(", ")
            .bind(Value::Text(Some(r.model.clone())))
            .push(", ")
            .bind(Value::Text(Some(r.input.clone())))
            .push(", ")
            .bind(Value::Text(Some(r.response.clone())))
            .push(")");
        self.pool.transaction(vec![delete, insert]).await
    }

    /// The answer `id` of `org`, if it is stored.
    ///
    /// # Errors
    /// A [`StoreError`] when the database cannot be read.
    pub async fn response(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        if id.len() > MAX_ID_LEN {
            return Ok(None);
        }
        let mut q = Sql::new(self.backend());
        q.push(&format!(
            "SELECT {COLUMNS} FROM stored_response WHERE org = "
        ))
        .bind(Value::Text(Some(org.to_owned())))
        .push(" AND id = ")
        .bind(Value::Text(Some(id.to_owned())));
        let Some(row) = self.pool.fetch(q, &TYPES).await?.into_iter().next() else {
            return Ok(None);
        };
        let mut cols = row.into_iter();
        let mut next = || cols.next().unwrap_or(Value::Text(None));
        let (org, id, created, model, input, response) =
            (next(), next(), next(), next(), next(), next());
        Ok(Some(StoredResponse {
            org: org.into_text().unwrap_or_default(),
            id: id.into_text().unwrap_or_default(),
            created_at_ms: created.int().unwrap_or_default(),
            model: model.into_text().unwrap_or_default(),
            input: input.into_text().unwrap_or_default(),
            response: response.into_text().unwrap_or_default(),
        }))
    }

    /// Deletes the answer `id` of `org`; whether there was one.
    ///
    /// # Errors
    /// A [`StoreError`] when the database refuses or cannot be reached.
    pub async fn delete_response(&self, org: &str, id: &str) -> Result<bool, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("DELETE FROM stored_response WHERE org = ")
            .bind(Value::Text(Some(org.to_owned())))
            .push(" AND id = ")
            .bind(Value::Text(Some(id.to_owned())));
        Ok(self.pool.execute(q).await? > 0)
    }

    /// Deletes the answers created before `cutoff_ms`; how many.
    pub(crate) async fn prune_responses(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("DELETE FROM stored_response WHERE created_at < ")
            .bind(Value::Int(Some(cutoff_ms)));
        self.pool.execute(q).await
    }
}
