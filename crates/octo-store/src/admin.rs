//! Admin users and panel sessions: the two tables behind the web panel's sign-in (schema version 4).
//!
//! - `admin_users`: users created through the admin API (`POST /api/v1/users`), by name, with an
//!   `argon2:` PHC hash of their password (never the password). Users from the config file are not
//!   stored: they live in the YAML the operator keeps.
//! - `admin_sessions`: one row per signed-in browser, keyed by the SHA-256 (hex) of the session id
//!   the cookie carries, so a copy of the database signs nobody in. `actor` is who the session
//!   acts as (`user:ada`); `expires_at` bounds it.
//!
//! The store only keeps rows; hashing, expiry rules and rate limits are the server's.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use octo_store::{Store, StoreConfig};
//!
//! let store = Store::open(&StoreConfig::with_url("sqlite::memory:")).await.unwrap();
//! assert!(store.create_user("ada", "argon2:$argon2id$…", Some("token:0")).await.unwrap());
//! assert!(!store.create_user("ada", "argon2:…", None).await.unwrap(), "names are unique");
//! store.create_session("5e55…", "user:ada", 1_000, 2_000).await.unwrap();
//! assert_eq!(store.session("5e55…").await.unwrap().unwrap().actor, "user:ada");
//! assert!(store.delete_user("ada").await.unwrap());
//! assert!(store.session("5e55…").await.unwrap().is_none(), "her sessions end with her");
//! # });
//! ```

use serde::Serialize;

use crate::config::Backend;
use crate::db::{Col, Sql, Value};
use crate::error::StoreError;
use crate::{Store, query};

/// An admin user created through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminUser {
    /// The sign-in name.
    pub name: String,
    /// The password's hash as configured (`argon2:$argon2id$…`).
    #[serde(skip)]
    pub password_hash: String,
    /// When it was created, Unix milliseconds.
    pub created_at: i64,
    /// Who created it (`token:0`, `user:ada`), when known.
    pub created_by: Option<String>,
}

/// A panel session, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who the session acts as (`user:ada`).
    pub actor: String,
    /// When it was created, Unix milliseconds.
    pub created_at: i64,
    /// When it stops being accepted, Unix milliseconds.
    pub expires_at: i64,
}

/// The longest user name the table holds.
pub const MAX_USER_NAME_LEN: usize = 64;

/// Version 4's statements: the users and sessions tables.
pub(crate) fn v4(b: Backend) -> Vec<String> {
    let (key, int, text, suffix) = match b {
        Backend::Sqlite => ("TEXT", "INTEGER", "TEXT", ""),
        Backend::Postgres => ("TEXT", "BIGINT", "TEXT", ""),
        Backend::MySql => (
            "VARCHAR(150)",
            "BIGINT",
            "TEXT",
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        ),
    };
    let mut out = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS admin_users (name {key} NOT NULL, password_hash {text} NOT NULL, \
             created_at {int} NOT NULL, created_by {text}, PRIMARY KEY (name)){suffix}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS admin_sessions (id_hash {key} NOT NULL, actor {key} NOT NULL, \
             created_at {int} NOT NULL, expires_at {int} NOT NULL, PRIMARY KEY (id_hash){}){suffix}",
            if b == Backend::MySql {
                ", KEY admin_sessions_actor (actor)"
            } else {
                ""
            }
        ),
    ];
    if b != Backend::MySql {
        out.push(
            "CREATE INDEX IF NOT EXISTS admin_sessions_actor ON admin_sessions (actor)".into(),
        );
    }
    out
}

/// `INSERT` that skips a row whose key exists (the caller reads the rows affected).
fn insert_ignore(b: Backend, table: &str, cols: &str) -> String {
    match b {
        Backend::MySql => format!("INSERT IGNORE INTO {table} ({cols}) VALUES ("),
        _ => format!("INSERT INTO {table} ({cols}) VALUES ("),
    }
}

fn on_conflict(b: Backend, q: &mut Sql) {
    if b != Backend::MySql {
        q.push(" ON CONFLICT DO NOTHING");
    }
}

fn text(s: &str) -> Value {
    Value::Text(Some(s.to_owned()))
}

fn int(v: i64) -> Value {
    Value::Int(Some(v))
}

impl Store {
    /// Creates an admin user; `false` when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        created_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let b = self.backend();
        let mut q = Sql::new(b);
        q.push(&insert_ignore(
            b,
            "admin_users",
            "name, password_hash, created_at, created_by",
        ))
        .bind(text(name))
        .push(", ")
        .bind(text(password_hash))
        .push(", ")
        .bind(int(crate::now_ms()))
        .push(", ")
        .bind(Value::Text(created_by.map(str::to_owned)))
        .push(")");
        on_conflict(b, &mut q);
        Ok(self.pool.execute(q).await? == 1)
    }

    /// Every admin user created through the API, by name.
    pub async fn users(&self) -> Result<Vec<AdminUser>, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT name, password_hash, created_at, created_by FROM admin_users ORDER BY name");
        self.read_users(q).await
    }

    /// One admin user by name.
    pub async fn user(&self, name: &str) -> Result<Option<AdminUser>, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT name, password_hash, created_at, created_by FROM admin_users WHERE name = ")
            .bind(text(name));
        Ok(self.read_users(q).await?.into_iter().next())
    }

    async fn read_users(&self, q: Sql) -> Result<Vec<AdminUser>, StoreError> {
        let rows = self
            .pool
            .fetch(q, &[Col::Text, Col::Text, Col::Int, Col::Text])
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                let name = r.next().and_then(Value::into_text).unwrap_or_default();
                let password_hash = r.next().and_then(Value::into_text).unwrap_or_default();
                let created_at = r.next().and_then(|v| v.int()).unwrap_or(0);
                let created_by = r.next().and_then(Value::into_text);
                AdminUser {
                    name,
                    password_hash,
                    created_at,
                    created_by,
                }
            })
            .collect())
    }

    /// Deletes a user and every session acting as them; `false` when there was no such user.
    pub async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let b = self.backend();
        let mut sessions = Sql::new(b);
        sessions
            .push("DELETE FROM admin_sessions WHERE actor = ")
            .bind(text(&format!("user:{name}")));
        self.pool.execute(sessions).await?;
        let mut q = Sql::new(b);
        q.push("DELETE FROM admin_users WHERE name = ")
            .bind(text(name));
        Ok(self.pool.execute(q).await? > 0)
    }

    /// Stores a session by the hash of its id.
    pub async fn create_session(
        &self,
        id_hash: &str,
        actor: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let b = self.backend();
        let mut q = Sql::new(b);
        q.push(&insert_ignore(
            b,
            "admin_sessions",
            "id_hash, actor, created_at, expires_at",
        ))
        .bind(text(id_hash))
        .push(", ")
        .bind(text(actor))
        .push(", ")
        .bind(int(created_at))
        .push(", ")
        .bind(int(expires_at))
        .push(")");
        on_conflict(b, &mut q);
        self.pool.execute(q).await?;
        Ok(())
    }

    /// The session stored under `id_hash`, expired or not (the caller decides).
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT actor, created_at, expires_at FROM admin_sessions WHERE id_hash = ")
            .bind(text(id_hash));
        let row = self
            .pool
            .fetch(q, &[Col::Text, Col::Int, Col::Int])
            .await?
            .into_iter()
            .next();
        Ok(row.map(|r| {
            let mut r = r.into_iter();
            Session {
                actor: r.next().and_then(Value::into_text).unwrap_or_default(),
                created_at: r.next().and_then(|v| v.int()).unwrap_or(0),
                expires_at: r.next().and_then(|v| v.int()).unwrap_or(0),
            }
        }))
    }

    /// Ends a session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("DELETE FROM admin_sessions WHERE id_hash = ")
            .bind(text(id_hash));
        self.pool.execute(q).await?;
        Ok(())
    }

    /// Deletes sessions that expired before `now_ms`; returns how many.
    pub async fn prune_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("DELETE FROM admin_sessions WHERE expires_at < ")
            .bind(int(now_ms));
        self.pool.execute(q).await
    }

    /// The current time in Unix milliseconds, as the store writes it.
    pub fn now_ms() -> i64 {
        query::ms(std::time::SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    #[tokio::test]
    async fn users_and_sessions_round_trip() {
        let store = Store::open(&StoreConfig::with_url("sqlite::memory:"))
            .await
            .unwrap();
        assert!(store.users().await.unwrap().is_empty());
        assert!(store.create_user("bo", "argon2:x", None).await.unwrap());
        assert!(
            store
                .create_user("ada", "argon2:y", Some("token:1"))
                .await
                .unwrap()
        );
        let users = store.users().await.unwrap();
        assert_eq!(
            users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["ada", "bo"]
        );
        assert_eq!(users[0].created_by.as_deref(), Some("token:1"));
        assert_eq!(
            store.user("bo").await.unwrap().unwrap().password_hash,
            "argon2:x"
        );
        let json = serde_json::to_string(&users[0]).unwrap();
        assert!(!json.contains("argon2"), "hashes never serialize: {json}");

        store.create_session("h1", "user:bo", 10, 20).await.unwrap();
        store
            .create_session("h2", "user:ada", 10, 5_000)
            .await
            .unwrap();
        assert_eq!(
            store.session("h1").await.unwrap(),
            Some(Session {
                actor: "user:bo".into(),
                created_at: 10,
                expires_at: 20
            })
        );
        assert_eq!(store.prune_sessions(100).await.unwrap(), 1);
        assert!(store.session("h1").await.unwrap().is_none());
        store.delete_session("h2").await.unwrap();
        assert!(store.session("h2").await.unwrap().is_none());
        assert!(!store.delete_user("nobody").await.unwrap());
    }

    #[test]
    fn v4_names_both_tables_on_every_backend() {
        for b in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
            let s = v4(b).join(";\n");
            assert!(s.contains("admin_users (") && s.contains("admin_sessions ("));
            assert!(s.contains("admin_sessions_actor"));
        }
    }
}
