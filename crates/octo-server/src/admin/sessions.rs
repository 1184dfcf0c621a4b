//! Panel sessions: a random id in an HttpOnly, SameSite=Strict cookie, kept server-side only as
//! its SHA-256 (in the database when storage is on, so sessions survive restarts and are shared by
//! instances on one PostgreSQL/MySQL; in memory otherwise), with a fixed expiry.
//!
//! The CSRF token of a session is derived from its id (`SHA-256("octollm-csrf:" + id)`): the panel
//! reads it from `POST /api/v1/login` or `GET /api/v1/me` and sends it in the
//! [`CSRF_HEADER`] of every changing request; another site can neither read it nor make the
//! browser add it. Nothing besides the id needs storing, and knowing the token reveals nothing of
//! the id.
//!
//! One-time sign-in links ([`OnceTokens`]) are what `--demo` prints: a single-use token in the URL
//! that opens a session and redirects to the panel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use octo_store::Store;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Actor;

/// The session cookie's name.
pub const COOKIE: &str = "octollm_session";
/// The request header carrying a session's CSRF token.
pub const CSRF_HEADER: &str = "x-octollm-csrf";
/// How long a session lasts when `admin.session_ttl` is not set.
pub const DEFAULT_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept in memory (storage off) at most; the oldest are dropped beyond it.
const MEMORY_CAP: usize = 10_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// How session `id` is stored: its SHA-256, hex-encoded.
pub fn id_hash(id: &str) -> String {
    sha256_hex(id)
}

/// 32 random bytes from the operating system, hex-encoded.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the random source failed: {e}"))?;
    Ok(hex(&bytes))
}

/// The CSRF token of session `id`.
///
/// ```
/// use octo_server::admin::sessions::{csrf_token, csrf_matches};
/// let t = csrf_token("a-session-id");
/// assert!(csrf_matches("a-session-id", &t));
/// assert!(!csrf_matches("a-session-id", "forged"));
/// ```
pub fn csrf_token(id: &str) -> String {
    sha256_hex(&format!("octollm-csrf:{id}"))
}

/// Whether `presented` is session `id`'s CSRF token, compared in constant time.
pub fn csrf_matches(id: &str, presented: &str) -> bool {
    bool::from(csrf_token(id).as_bytes().ct_eq(presented.as_bytes()))
}

/// How an actor is stored in a session row (`user:ada`, `token:0`).
fn actor_text(actor: &Actor) -> String {
    actor.to_string()
}

fn parse_actor(text: &str) -> Option<Actor> {
    if let Some(name) = text.strip_prefix("user:") {
        return Some(Actor::User(name.to_owned()));
    }
    text.strip_prefix("token:")
        .and_then(|i| i.parse().ok())
        .map(Actor::Token)
}

/// A session just opened: the id goes in the cookie, the CSRF token to the panel.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session id (the cookie's value; never stored).
    pub id: String,
    /// The CSRF token the panel sends back in [`CSRF_HEADER`].
    pub csrf_token: String,
    /// When it expires, Unix milliseconds.
    pub expires_at: i64,
}

/// A valid session found from a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Who it acts as.
    pub actor: Actor,
    /// When it expires, Unix milliseconds.
    pub expires_at: i64,
}

/// Why a presented session was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such session (never existed, signed out, or its user was deleted).
    Unknown,
    /// It existed and has expired.
    Expired,
}

/// The database of API users and sessions: set at startup when it is open, or later, when a
/// database that did not answer at startup does (until then users and sessions work as with
/// storage off: file users, sessions in memory).
#[derive(Debug, Clone, Default)]
pub struct StoreCell(Arc<std::sync::OnceLock<Store>>);

impl StoreCell {
    /// A cell holding `store` when given.
    pub fn new(store: Option<Store>) -> Self {
        let cell = StoreCell::default();
        if let Some(s) = store {
            cell.set(s);
        }
        cell
    }

    /// The database, once open.
    pub fn get(&self) -> Option<&Store> {
        self.0.get()
    }

    /// Sets the database (once; later calls are ignored).
    pub fn set(&self, store: Store) {
        let _ = self.0.set(store);
    }
}

/// The session table: database-backed when storage is on, in memory otherwise (and while the
/// database has not answered since startup: those sessions stay valid after it does).
#[derive(Debug)]
pub struct Sessions {
    store: StoreCell,
    memory: Mutex<HashMap<String, octo_store::Session>>,
    ttl: Duration,
    secure: bool,
}

impl Sessions {
    /// Sessions lasting `ttl`, kept in `store` when given; `secure` adds the cookie's `Secure`
    /// attribute (for an admin listener behind TLS).
    pub fn new(store: StoreCell, ttl: Duration, secure: bool) -> Self {
        Sessions {
            store,
            memory: Mutex::default(),
            ttl,
            secure,
        }
    }

    /// Opens a session for `actor`.
    ///
    /// # Errors
    /// When the random source or the database fails (the message says which).
    pub async fn open(&self, actor: &Actor) -> Result<NewSession, String> {
        let id = random_hex()?;
        let now = Store::now_ms();
        let expires_at = now.saturating_add(self.ttl.as_millis() as i64);
        self.insert(&sha256_hex(&id), &actor_text(actor), now, expires_at)
            .await?;
        Ok(NewSession {
            csrf_token: csrf_token(&id),
            id,
            expires_at,
        })
    }

    /// Stores a session row as given (tests use it to plant an already-expired session).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn insert(
        &self,
        id_hash: &str,
        actor: &str,
        created_at: i64,
        expires_at: i64,
    ) -> Result<(), String> {
        match self.store.get() {
            Some(store) => store
                .create_session(id_hash, actor, created_at, expires_at)
                .await
                .map_err(|e| format!("cannot store the session: {}", e.message())),
            None => {
                let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
                if m.len() >= MEMORY_CAP {
                    let now = Store::now_ms();
                    m.retain(|_, s| s.expires_at > now);
                    while m.len() >= MEMORY_CAP {
                        let Some(oldest) = m
                            .iter()
                            .min_by_key(|(_, s)| s.created_at)
                            .map(|(k, _)| k.clone())
                        else {
                            break;
                        };
                        m.remove(&oldest);
                    }
                }
                m.insert(
                    id_hash.to_owned(),
                    octo_store::Session {
                        actor: actor.to_owned(),
                        created_at,
                        expires_at,
                    },
                );
                Ok(())
            }
        }
    }

    /// The session whose id is `id`, if it exists and has not expired (an expired one is deleted).
    ///
    /// # Errors
    /// `Err(Ok(refused))` for an unknown or expired session, `Err(Err(message))` when the
    /// database fails.
    pub async fn find(&self, id: &str) -> Result<Found, Result<Refused, String>> {
        let key = sha256_hex(id);
        let stored = match self.store.get() {
            Some(store) => store
                .session(&key)
                .await
                .map_err(|e| Err(format!("cannot read the session: {}", e.message())))?,
            None => None,
        };
        let row = stored.or_else(|| {
            self.memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned()
        });
        let Some(row) = row else {
            return Err(Ok(Refused::Unknown));
        };
        if row.expires_at <= Store::now_ms() {
            let _ = self.delete_hash(&key).await;
            return Err(Ok(Refused::Expired));
        }
        match parse_actor(&row.actor) {
            Some(actor) => Ok(Found {
                actor,
                expires_at: row.expires_at,
            }),
            None => Err(Ok(Refused::Unknown)),
        }
    }

    /// Ends session `id`.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn close(&self, id: &str) -> Result<(), String> {
        self.delete_hash(&sha256_hex(id)).await
    }

    async fn delete_hash(&self, key: &str) -> Result<(), String> {
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        match self.store.get() {
            Some(store) => store
                .delete_session(key)
                .await
                .map_err(|e| format!("cannot end the session: {}", e.message())),
            None => Ok(()),
        }
    }

    /// Ends every in-memory session acting as `actor` (the database ones go with the user row).
    pub fn forget_actor(&self, actor: &Actor) {
        let text = actor_text(actor);
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.actor != text);
    }

    /// Deletes expired sessions (run now and then).
    pub async fn prune(&self) {
        let now = Store::now_ms();
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.expires_at > now);
        if let Some(store) = self.store.get()
            && let Err(e) = store.prune_sessions(now).await
        {
            tracing::warn!(error = %e, "admin: pruning expired sessions failed");
        }
    }

    /// The `Set-Cookie` value carrying session `id`.
    pub fn cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.ttl.as_secs()
        );
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
        ))
        .unwrap_or(HeaderValue::from_static(""))
    }
}

/// The session id in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then_some(value)
    })
}

/// Single-use sign-in tokens (for the links `--demo` prints), held in memory as digests.
#[derive(Debug, Default)]
pub struct OnceTokens(Mutex<HashMap<[u8; 32], (Actor, Instant)>>);

impl OnceTokens {
    /// A new token that signs in as `actor` once, within `ttl`.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn issue(&self, actor: Actor, ttl: Duration) -> Result<String, String> {
        let token = random_hex()?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, (_, until)| *until > now);
        m.insert(digest, (actor, now + ttl));
        Ok(token)
    }

    /// The actor `token` signs in as, consuming it; `None` when unknown, used or expired.
    pub fn redeem(&self, token: &str) -> Option<Actor> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (actor, until) = m.remove(&digest)?;
        (until > Instant::now()).then_some(actor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_sessions_open_find_and_close() {
        let s = Sessions::new(StoreCell::default(), Duration::from_secs(60), false);
        let new = s.open(&Actor::User("ada".into())).await.unwrap();
        assert_eq!(new.id.len(), 64);
        assert_eq!(new.csrf_token, csrf_token(&new.id));
        let found = s.find(&new.id).await.unwrap();
        assert_eq!(found.actor, Actor::User("ada".into()));
        assert_eq!(s.find("nope").await, Err(Ok(Refused::Unknown)));
        s.close(&new.id).await.unwrap();
        assert_eq!(s.find(&new.id).await, Err(Ok(Refused::Unknown)));
        s.insert(&sha256_hex("old"), "user:ada", 0, 1)
            .await
            .unwrap();
        assert_eq!(s.find("old").await, Err(Ok(Refused::Expired)));
        let tok = s.open(&Actor::Token(2)).await.unwrap();
        assert_eq!(s.find(&tok.id).await.unwrap().actor, Actor::Token(2));
        s.forget_actor(&Actor::Token(2));
        assert!(s.find(&tok.id).await.is_err());
    }

    #[test]
    fn cookie_attributes_and_parsing() {
        let s = Sessions::new(StoreCell::default(), Duration::from_secs(3600), true);
        let c = s.cookie("abc");
        let c = c.to_str().unwrap();
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=3600",
            "Secure",
            "Path=/",
        ] {
            assert!(c.contains(attr), "{c}");
        }
        assert_eq!(
            from_cookie_header("a=b; octollm_session=xyz; c=d"),
            Some("xyz")
        );
        assert_eq!(from_cookie_header("octollm_session="), None);
        assert_eq!(from_cookie_header("other=1"), None);
    }

    #[test]
    fn once_tokens_work_once() {
        let once = OnceTokens::default();
        let t = once
            .issue(Actor::User("demo".into()), Duration::from_secs(60))
            .unwrap();
        assert_eq!(once.redeem(&t), Some(Actor::User("demo".into())));
        assert_eq!(once.redeem(&t), None);
        assert_eq!(once.redeem("guess"), None);
    }
}
