//! The control plane's tables: objects created through the admin API (backends, models, orgs,
//! prices), gateway keys (hashed), when each key was last used, the audit trail, and a change
//! counter other instances poll.
//!
//! The store knows nothing of the config's types: an object is a kind, a name and a JSON body
//! (already stripped of plaintext secrets by the server); a key is its hash and a JSON body. Every
//! change is written in one transaction with its audit entry and a bump of the change counter
//! (`config_version`), so an instance that sees the counter move reads a consistent state.
//!
//! | table | key | columns |
//! |---|---|---|
//! | `config_object` | (kind, name) | body (JSON), updated_at (Unix ms), updated_by |
//! | `gateway_key` | (org, name) | key_hash (`sha256:<hex>`), body (JSON), created_at, created_by |
//! | `key_usage` | (org, name) | last_used_at (Unix ms; only ever moves forward) |
//! | `audit_log` | id (ascending) | at, actor, kind, name, action, detail (JSON) |
//! | `config_version` | id = 1 | version (bumped by every change) |
//!
//! On PostgreSQL every change also sends `NOTIFY octollm_config` from its transaction (delivered
//! at commit, never for a rolled-back change): instances that [listen](Store::control_listener)
//! re-read at once instead of waiting for their next poll of the counter. The notification only
//! says "look"; the counter and the tables stay the truth, so a lost notification (a dropped
//! listener connection, a pooler that does not pass them on) costs only the poll's delay.

use crate::config::Backend;
use crate::db::{Col, Sql, Value};
use crate::error::{ErrorKind, StoreError};
use crate::{Store, now_ms};

/// The PostgreSQL notification channel of control-plane changes.
pub const CONTROL_CHANNEL: &str = "octollm_config";

/// Other instances' change notifications (PostgreSQL `LISTEN`); see
/// [`Store::control_listener`].
pub struct ControlListener(sqlx::postgres::PgListener);

impl std::fmt::Debug for ControlListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlListener")
    }
}

/// What [`ControlListener::recv`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// A change was committed (by any instance, this one included).
    Changed,
    /// The connection was lost and made again: notifications sent meanwhile are lost, so the
    /// state must be re-read.
    Reconnected,
}

impl ControlListener {
    /// Waits for the next notification.
    ///
    /// # Errors
    /// When the connection is lost and cannot be made again (the caller falls back to polling).
    pub async fn recv(&mut self) -> Result<Heard, StoreError> {
        Ok(match self.0.try_recv().await? {
            Some(_) => Heard::Changed,
            None => Heard::Reconnected,
        })
    }
}

/// An object written through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `backends`, `models`, `orgs` or `prices`.
    pub kind: String,
    /// The object's name (its key in the YAML section).
    pub name: String,
    /// The object as JSON, secrets sealed.
    pub body: String,
    /// When it was last written, Unix milliseconds.
    pub updated_at: i64,
    /// Who wrote it (an admin actor, e.g. `token:0`).
    pub updated_by: String,
}

/// A gateway key created through the admin API. The key itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The org the key belongs to.
    pub org: String,
    /// The key's name within the org.
    pub name: String,
    /// `sha256:<hex>` of the key.
    pub key_hash: String,
    /// The key's settings as JSON (models, expiry, limits).
    pub body: String,
    /// When it was created, Unix milliseconds.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
}

/// One change to write with [`Store::control_write`].
#[derive(Debug, Clone)]
pub enum ControlWrite {
    /// Create or replace an object.
    PutObject(StoredObject),
    /// Delete an object (no error when absent).
    DeleteObject {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
    },
    /// Create a key; fails with [`ErrorKind::Rejected`] when (org, name) exists.
    PutKey(StoredKey),
    /// Delete a key (no error when absent).
    DeleteKey {
        /// Its org.
        org: String,
        /// Its name.
        name: String,
    },
}

/// An audit entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// Who: an admin actor (`token:0`, `user:ada`) or `file`.
    pub actor: String,
    /// What kind of object (`backends`, `models`, `orgs`, `prices`, `keys`).
    pub kind: String,
    /// Its name (`org/name` for keys).
    pub name: String,
    /// `create`, `update`, `delete` or `reload`.
    pub action: String,
    /// JSON: the new object or a diff, secrets masked.
    pub detail: String,
}

/// An audit entry as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Ascending id (the `before` cursor).
    pub id: i64,
    /// When, Unix milliseconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What kind of object.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// What was done.
    pub action: String,
    /// The detail, as JSON.
    pub detail: serde_json::Value,
}

/// The whole control-plane state, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// The change counter at the time of reading.
    pub version: i64,
    /// Every object.
    pub objects: Vec<StoredObject>,
    /// Every key.
    pub keys: Vec<StoredKey>,
}

/// Spend and last use of one (org, key name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyActivity {
    /// Total recorded cost, USD (from the day rollups).
    pub spend_usd: f64,
    /// Requests recorded.
    pub requests: u64,
    /// Last use, Unix milliseconds, when known.
    pub last_used_at: Option<i64>,
}

/// The largest page of audit entries.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

struct Types {
    int: &'static str,
    text: &'static str,
    key: &'static str,
    suffix: &'static str,
    serial: &'static str,
}

fn types(b: Backend) -> Types {
    match b {
        Backend::Sqlite => Types {
            int: "INTEGER",
            text: "TEXT",
            key: "TEXT",
            suffix: "",
            serial: "INTEGER PRIMARY KEY AUTOINCREMENT",
        },
        Backend::Postgres => Types {
            int: "BIGINT",
            text: "TEXT",
            key: "TEXT",
            suffix: "",
            serial: "BIGSERIAL PRIMARY KEY",
        },
        Backend::MySql => Types {
            int: "BIGINT",
            text: "MEDIUMTEXT",
            key: "VARCHAR(150)",
            suffix: " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
            serial: "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        },
    }
}

/// Version 3: the control plane's tables.
pub(crate) fn v3(b: Backend) -> Vec<String> {
    let t = types(b);
    let (int, text, key, suffix) = (t.int, t.text, t.key, t.suffix);
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS config_object (kind {key} NOT NULL, name {key} NOT NULL, \
             body {text} NOT NULL, updated_at {int} NOT NULL, updated_by {key} NOT NULL, \
             PRIMARY KEY (kind, name)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS gateway_key (org {key} NOT NULL, name {key} NOT NULL, \
             key_hash {key} NOT NULL, body {text} NOT NULL, created_at {int} NOT NULL, \
             created_by {key} NOT NULL, PRIMARY KEY (org, name)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS key_usage (org {key} NOT NULL, name {key} NOT NULL, \
             last_used_at {int} NOT NULL, PRIMARY KEY (org, name)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS audit_log (id {}, at {int} NOT NULL, actor {key} NOT NULL, \
             kind {key} NOT NULL, name {key} NOT NULL, action {key} NOT NULL, detail {text} NOT NULL){suffix}",
            t.serial
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS config_version (id {int} NOT NULL, version {int} NOT NULL, \
             PRIMARY KEY (id)){suffix}"
        ),
        match b {
            Backend::MySql => {
                "INSERT IGNORE INTO config_version (id, version) VALUES (1, 0)".into()
            }
            _ => {
                "INSERT INTO config_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
                    .into()
            }
        },
    ]
}

fn text(s: &str) -> Value {
    Value::Text(Some(s.to_owned()))
}

fn int(v: i64) -> Value {
    Value::Int(Some(v))
}

fn audit_insert(b: Backend, a: &NewAudit, at: i64) -> Sql {
    let mut q = Sql::new(b);
    q.push("INSERT INTO audit_log (at, actor, kind, name, action, detail) VALUES (")
        .bind(int(at))
        .push(", ")
        .bind(text(&a.actor))
        .push(", ")
        .bind(text(&a.kind))
        .push(", ")
        .bind(text(&a.name))
        .push(", ")
        .bind(text(&a.action))
        .push(", ")
        .bind(text(&a.detail))
        .push(")");
    q
}

fn bump(b: Backend) -> Sql {
    let mut q = Sql::new(b);
    q.push("UPDATE config_version SET version = version + 1 WHERE id = 1");
    q
}

impl Store {
    /// The change counter: it moves whenever an object or key changes.
    pub async fn control_version(&self) -> Result<i64, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT version FROM config_version WHERE id = 1");
        let rows = self.pool.fetch(q, &[Col::Int]).await?;
        Ok(rows.first().and_then(|r| r[0].int()).unwrap_or(0))
    }

    /// Every object and key, with the counter read first (a change racing the read makes the
    /// next poll see a newer counter and read again).
    pub async fn control_state(&self) -> Result<ControlState, StoreError> {
        let b = self.backend();
        let version = self.control_version().await?;
        let mut q = Sql::new(b);
        q.push("SELECT kind, name, body, updated_at, updated_by FROM config_object ORDER BY kind, name");
        let objects = self
            .pool
            .fetch(q, &[Col::Text, Col::Text, Col::Text, Col::Int, Col::Text])
            .await?
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let mut s = || r.next().and_then(Value::into_text).unwrap_or_default();
                let (kind, name, body) = (s(), s(), s());
                let updated_at = r.next().and_then(|v| v.int()).unwrap_or(0);
                let updated_by = r.next().and_then(Value::into_text).unwrap_or_default();
                StoredObject {
                    kind,
                    name,
                    body,
                    updated_at,
                    updated_by,
                }
            })
            .collect();
        let mut q = Sql::new(b);
        q.push(
            "SELECT org, name, key_hash, body, created_at, created_by FROM gateway_key ORDER BY org, name",
        );
        let keys = self
            .pool
            .fetch(
                q,
                &[
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Int,
                    Col::Text,
                ],
            )
            .await?
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let mut s = || r.next().and_then(Value::into_text).unwrap_or_default();
                let (org, name, key_hash, body) = (s(), s(), s(), s());
                let created_at = r.next().and_then(|v| v.int()).unwrap_or(0);
                let created_by = r.next().and_then(Value::into_text).unwrap_or_default();
                StoredKey {
                    org,
                    name,
                    key_hash,
                    body,
                    created_at,
                    created_by,
                }
            })
            .collect();
        Ok(ControlState {
            version,
            objects,
            keys,
        })
    }

    /// Writes one change, its audit entry and a bump of the change counter in one transaction.
    ///
    /// # Errors
    /// [`ErrorKind::Rejected`] for a key that exists already; [`ErrorKind::Unavailable`] when the
    /// database is away (nothing is written).
    pub async fn control_write(
        &self,
        write: &ControlWrite,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let b = self.backend();
        let mut stmts = Vec::new();
        match write {
            ControlWrite::PutObject(o) => {
                let mut d = Sql::new(b);
                d.push("DELETE FROM config_object WHERE kind = ")
                    .bind(text(&o.kind))
                    .push(" AND name = ")
                    .bind(text(&o.name));
                stmts.push(d);
                let mut q = Sql::new(b);
                q.push(
                    "INSERT INTO config_object (kind, name, body, updated_at, updated_by) VALUES (",
                )
                .bind(text(&o.kind))
                .push(", ")
                .bind(text(&o.name))
                .push(", ")
                .bind(text(&o.body))
                .push(", ")
                .bind(int(o.updated_at))
                .push(", ")
                .bind(text(&o.updated_by))
                .push(")");
                stmts.push(q);
            }
            ControlWrite::DeleteObject { kind, name } => {
                let mut d = Sql::new(b);
                d.push("DELETE FROM config_object WHERE kind = ")
                    .bind(text(kind))
                    .push(" AND name = ")
                    .bind(text(name));
                stmts.push(d);
            }
            ControlWrite::PutKey(k) => {
                let mut q = Sql::new(b);
                q.push("INSERT INTO gateway_key (org, name, key_hash, body, created_at, created_by) VALUES (")
                    .bind(text(&k.org))
                    .push(", ")
                    .bind(text(&k.name))
                    .push(", ")
                    .bind(text(&k.key_hash))
                    .push(", ")
                    .bind(text(&k.body))
                    .push(", ")
                    .bind(int(k.created_at))
                    .push(", ")
                    .bind(text(&k.created_by))
                    .push(")");
                stmts.push(q);
            }
            ControlWrite::DeleteKey { org, name } => {
                let mut d = Sql::new(b);
                d.push("DELETE FROM gateway_key WHERE org = ")
                    .bind(text(org))
                    .push(" AND name = ")
                    .bind(text(name));
                stmts.push(d);
            }
        }
        stmts.push(bump(b));
        stmts.push(audit_insert(b, audit, now_ms()));
        if b == Backend::Postgres {
            let mut n = Sql::new(b);
            n.push(&format!("NOTIFY {CONTROL_CHANNEL}"));
            stmts.push(n);
        }
        self.pool.transaction(stmts).await
    }

    /// The control-plane state of the database at `url`, read without changing anything (no
    /// migration; a SQLite file is opened read-only and never created): `None` when the database
    /// holds no control-plane tables yet (a SQLite file that does not exist, a schema older
    /// than version 3). For `octollm-server --check`.
    ///
    /// # Errors
    /// When the database cannot be reached or read, or its schema is newer than this build's.
    pub async fn read_control_state(url: &str) -> Result<Option<ControlState>, StoreError> {
        let Some(pool) = crate::db::Pool::connect_read_only(url).await? else {
            return Ok(None);
        };
        let mut q = Sql::new(pool.backend());
        q.push("SELECT MAX(version) FROM octollm_schema");
        // No schema table: a database this gateway never opened.
        let version = match pool.fetch(q, &[Col::Int]).await {
            Ok(rows) => rows.first().and_then(|r| r[0].int()).unwrap_or(0),
            Err(e) if e.is_retryable() => {
                pool.close().await;
                return Err(e);
            }
            Err(_) => 0,
        };
        if version > crate::schema::SCHEMA_VERSION {
            pool.close().await;
            return Err(StoreError::new(
                ErrorKind::Migration,
                false,
                format!(
                    "the database's schema is version {version}, newer than this build's {}: upgrade OctoLLM",
                    crate::schema::SCHEMA_VERSION
                ),
            ));
        }
        if version < 3 {
            pool.close().await;
            return Ok(None);
        }
        let store = Store {
            pool: std::sync::Arc::new(pool),
            redact: Default::default(),
        };
        let state = store.control_state().await;
        store.close().await;
        state.map(Some)
    }

    /// A listener for other instances' changes: on PostgreSQL, a connection of its own that
    /// `LISTEN`s on [`CONTROL_CHANNEL`]; `None` on MySQL and SQLite (they poll).
    ///
    /// # Errors
    /// When the listening connection cannot be made (retryable: the caller polls meanwhile).
    pub async fn control_listener(&self) -> Result<Option<ControlListener>, StoreError> {
        let crate::db::Pool::Postgres(pool) = &*self.pool else {
            return Ok(None);
        };
        // Its own one-connection pool (as `PgListener::connect` makes), so the log writer and
        // the admin API keep every connection of the store's; it reconnects through it.
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*pool.connect_options()).clone());
        let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
        listener.listen(CONTROL_CHANNEL).await?;
        Ok(Some(ControlListener(listener)))
    }

    /// Writes an audit entry alone (a file reload, which changes nothing stored).
    pub async fn audit(&self, audit: &NewAudit) -> Result<(), StoreError> {
        self.pool
            .execute(audit_insert(self.backend(), audit, now_ms()))
            .await
            .map(|_| ())
    }

    /// Audit entries, newest first: at most `limit` (1..=[`MAX_AUDIT_LIMIT`]), with ids below
    /// `before` when given.
    pub async fn audit_page(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 || limit > MAX_AUDIT_LIMIT {
            return Err(StoreError::invalid_query(format!(
                "`limit` must be between 1 and {MAX_AUDIT_LIMIT}"
            )));
        }
        let mut q = Sql::new(self.backend());
        q.push("SELECT id, at, actor, kind, name, action, detail FROM audit_log");
        if let Some(before) = before {
            q.push(" WHERE id < ").bind(int(before));
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .bind(int(i64::from(limit)));
        let rows = self
            .pool
            .fetch(
                q,
                &[
                    Col::Int,
                    Col::Int,
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Text,
                    Col::Text,
                ],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let id = r.next().and_then(|v| v.int()).unwrap_or(0);
                let at = r.next().and_then(|v| v.int()).unwrap_or(0);
                let mut s = || r.next().and_then(Value::into_text).unwrap_or_default();
                let (actor, kind, name, action, detail) = (s(), s(), s(), s(), s());
                AuditEntry {
                    id,
                    at,
                    actor,
                    kind,
                    name,
                    action,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                }
            })
            .collect())
    }

    /// Notes that keys were used: `(org, key name, Unix ms)`; a time older than the stored one
    /// is ignored.
    pub async fn touch_keys(&self, uses: &[(String, String, i64)]) -> Result<(), StoreError> {
        let b = self.backend();
        let stmts = uses
            .iter()
            .map(|(org, name, at)| {
                let mut q = Sql::new(b);
                q.push("INSERT INTO key_usage (org, name, last_used_at) VALUES (")
                    .bind(text(org))
                    .push(", ")
                    .bind(text(name))
                    .push(", ")
                    .bind(int(*at))
                    .push(")");
                match b {
                    Backend::MySql => q.push(
                        " ON DUPLICATE KEY UPDATE last_used_at = GREATEST(last_used_at, VALUES(last_used_at))",
                    ),
                    _ => q.push(
                        " ON CONFLICT (org, name) DO UPDATE SET last_used_at = CASE \
                         WHEN excluded.last_used_at > key_usage.last_used_at \
                         THEN excluded.last_used_at ELSE key_usage.last_used_at END",
                    ),
                };
                q
            })
            .collect::<Vec<_>>();
        if stmts.is_empty() {
            return Ok(());
        }
        self.pool.transaction(stmts).await
    }

    /// Spend, request count and last use of every (org, key name) seen: spend and requests from
    /// the day rollups (kept forever), last use from `key_usage`.
    pub async fn key_activity(
        &self,
    ) -> Result<std::collections::BTreeMap<(String, String), KeyActivity>, StoreError> {
        let b = self.backend();
        let int_ty = crate::db::int_type(b);
        let mut out: std::collections::BTreeMap<(String, String), KeyActivity> = Default::default();
        let mut q = Sql::new(b);
        q.push(&format!(
            "SELECT org, user_name, SUM(cost_usd), CAST(SUM(requests) AS {int_ty}) FROM rollup_day \
             WHERE org <> '' GROUP BY org, user_name"
        ));
        for r in self
            .pool
            .fetch(q, &[Col::Text, Col::Text, Col::Real, Col::Int])
            .await?
        {
            let mut r = r.into_iter();
            let org = r.next().and_then(Value::into_text).unwrap_or_default();
            let user = r.next().and_then(Value::into_text).unwrap_or_default();
            let usd = r.next().and_then(|v| v.real()).unwrap_or(0.0);
            let n = r.next().and_then(|v| v.int()).unwrap_or(0);
            let a = out.entry((org, user)).or_default();
            a.spend_usd = usd;
            a.requests = crate::db::i64_to_u64(n);
        }
        let mut q = Sql::new(b);
        q.push("SELECT org, name, last_used_at FROM key_usage");
        for r in self
            .pool
            .fetch(q, &[Col::Text, Col::Text, Col::Int])
            .await?
        {
            let mut r = r.into_iter();
            let org = r.next().and_then(Value::into_text).unwrap_or_default();
            let name = r.next().and_then(Value::into_text).unwrap_or_default();
            let at = r.next().and_then(|v| v.int());
            out.entry((org, name)).or_default().last_used_at = at;
        }
        Ok(out)
    }
}

/// Whether `e` is a refused duplicate (a key or object that exists already).
pub fn is_duplicate(e: &StoreError) -> bool {
    e.kind() == ErrorKind::Rejected
        && ["unique", "duplicate", "primary key"]
            .iter()
            .any(|w| e.message().to_ascii_lowercase().contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_creates_every_table_on_every_backend() {
        for b in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
            let all = v3(b).join(";\n");
            for t in [
                "config_object",
                "gateway_key",
                "key_usage",
                "audit_log",
                "config_version",
            ] {
                assert!(
                    all.contains(&format!("TABLE IF NOT EXISTS {t} ")),
                    "{b:?} {t}"
                );
            }
        }
    }
}
