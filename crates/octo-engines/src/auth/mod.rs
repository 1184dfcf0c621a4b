//! Gateway API keys and per-model access control.
//!
//! OctoLLM gave anonymous access to any request whose key was missing, malformed or unknown, and
//! read only `Authorization`; Octopus kept keys in plaintext. This module is the fix:
//!
//! - **Where keys come from**: `Authorization: Bearer <key>`, `x-api-key`, `x-goog-api-key`, or the
//!   `key` query parameter (Gemini), read in that order; the first one present is the key.
//! - **Orgs own named keys.** A configured key is plaintext or `sha256:<hex>` ([`hash_key`] makes
//!   the latter). Every presented key is hashed with SHA-256 and compared with *every* configured
//!   digest in constant time, so response timing reveals neither which key matched nor how much of
//!   a key was right. The same key configured twice (in one org or two, plaintext or hashed) is a
//!   build error.
//! - **Per-model [`Access`]**: `public` (anyone, even without a key), `internal` (any valid key),
//!   `private` (a valid key whose org lists the model).
//! - **Per-key limits (Octopus)**: an expiry instant ([`parse_expiry`] reads RFC 3339, dates and
//!   unix seconds) and an optional list of allowed models.
//!
//! Outcomes: no key on a non-public model → **401**; a wrong, expired or unreadable key → **401**,
//! *also on a public model* — a mistyped key must not silently work as anonymous, or the client
//! would never learn it is wrong (and would lose its org's rules and limits without noticing); a
//! valid key on a model it may not use (not in its allowed models, or a private model its org does
//! not list) → **403**. Errors are rendered in the client's protocol by the front.
//!
//! On success the caller's [`Identity`] goes into the request's extensions (rules read it as
//! `auth.org` / `auth.user`), with a [`StickyKey`] of `org/key` (plus `/<x-session-id>` when the
//! client sent one) unless one is there already, so sticky sessions follow the caller's key; and
//! the credential headers and `key` query parameter are removed from the request, so no later
//! engine can log or forward them. (The upstream client builds its headers
//! from scratch anyway.) Keys are never logged, and `Debug` output redacts them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use octo_core::{engine_fn, Protocol, ArcEngine, Body, Engine, Request, Response};
//! use octo_engines::auth::{Access, AuthConfig, AuthEngine, Authenticator, Identity, KeyConfig, OrgConfig};
//!
//! let config = AuthConfig {
//!     orgs: vec![OrgConfig::new("acme").key(KeyConfig::new("alice", "sk-acme-alice"))],
//!     model_access: [("gpt-4o".to_owned(), Access::Internal)].into(),
//!     ..AuthConfig::default()
//! };
//! let who: ArcEngine = Arc::new(engine_fn(|req: Request| async move {
//!     let id = req.extensions.get::<Identity>().unwrap();
//!     Ok(Response::json(200, Body::from(serde_json::json!({"org": &*id.org, "user": &*id.user}))))
//! }));
//! let engine = AuthEngine::new(Arc::new(Authenticator::new(config).unwrap()), who);
//!
//! let mut req = Request::post(Protocol::OpenAiChat, "/v1/chat/completions",
//!     Body::from_static(br#"{"model":"gpt-4o"}"#));
//! assert_eq!(engine.process(req.clone()).await.unwrap_err().status(), 401);
//! req.headers.insert("authorization", "Bearer sk-acme-alice".parse().unwrap());
//! assert_eq!(engine.process(req).await.unwrap().status, 200);
//! # }
//! ```

mod credentials;
mod expiry;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use http::{HeaderMap, Uri, header};
use octo_core::layer::Layer;
use octo_core::{
    ArcEngine, BuildError, BuildErrorKind, Engine, Error, Protocol, Request, Response,
};
use subtle::{ConditionallySelectable, ConstantTimeEq};

pub use self::credentials::hash_key;
pub use self::expiry::parse_expiry;

use self::credentials::{KeyDigest, digest, parse_hex_digest, presented_key};
use crate::balance::{STICKY_HEADER, StickyKey};

/// Who may use a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone, with or without a key (a key that is presented must still be valid).
    Public,
    /// Any valid key.
    Internal,
    /// A valid key whose org lists the model.
    Private,
}

impl Access {
    /// The config spelling: `public`, `internal` or `private`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Internal => "internal",
            Access::Private => "private",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = BuildError;

    /// Parses `public`, `internal` or `private`; anything else (a typo) is an error, never public.
    fn from_str(s: &str) -> Result<Self, BuildError> {
        match s {
            "public" => Ok(Access::Public),
            "internal" => Ok(Access::Internal),
            "private" => Ok(Access::Private),
            _ => Err(BuildError::invalid(format!(
                "unknown access `{s}`; expected public, internal or private"
            ))),
        }
    }
}

/// One named API key of an org.
#[derive(Clone)]
pub struct KeyConfig {
    /// The key's name: the `user` of the [`Identity`] it authenticates.
    pub name: String,
    /// The key: plaintext, or `sha256:<64 hex digits>` (see [`hash_key`]).
    pub key: String,
    /// After this instant the key is refused (401). `None`: never expires.
    pub expires_at: Option<SystemTime>,
    /// If set, the only models the key may use (403 for others, public models included).
    pub allowed_models: Option<Vec<String>>,
}

impl KeyConfig {
    /// A key that never expires and may use every model its access allows.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        KeyConfig {
            name: name.into(),
            key: key.into(),
            expires_at: None,
            allowed_models: None,
        }
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Restricts the key to `models`.
    pub fn allowed_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_models = Some(models.into_iter().map(Into::into).collect());
        self
    }
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("allowed_models", &self.allowed_models)
            .finish()
    }
}

/// An org: its keys and the private models it may use.
#[derive(Debug, Clone, Default)]
pub struct OrgConfig {
    /// The org's name: the `org` of the [`Identity`] its keys authenticate.
    pub name: String,
    /// Its keys.
    pub keys: Vec<KeyConfig>,
    /// Models the org lists: grants access to those that are [`Access::Private`].
    pub models: Vec<String>,
}

impl OrgConfig {
    /// An org with no keys and no models.
    pub fn new(name: impl Into<String>) -> Self {
        OrgConfig {
            name: name.into(),
            ..OrgConfig::default()
        }
    }

    /// Adds a key.
    pub fn key(mut self, key: KeyConfig) -> Self {
        self.keys.push(key);
        self
    }

    /// Lists a model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.models.push(model.into());
        self
    }
}

/// Everything the [`Authenticator`] needs.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The orgs and their keys.
    pub orgs: Vec<OrgConfig>,
    /// Access per model name (the name the client requests).
    pub model_access: HashMap<String, Access>,
    /// Access for models not in `model_access`, and for requests that name no model (the model
    /// list). Defaults to [`Access::Internal`].
    pub default_access: Access,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            orgs: Vec::new(),
            model_access: HashMap::new(),
            default_access: Access::Internal,
        }
    }
}

/// Who sent a request: the org and the name of the key it used.
///
/// The auth engine puts it in [`Request::extensions`]; absent means anonymous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The org's name.
    pub org: Arc<str>,
    /// The key's name within the org.
    pub user: Arc<str>,
}

impl Identity {
    /// An identity (for tests and embedders with their own authentication).
    pub fn new(org: impl Into<Arc<str>>, user: impl Into<Arc<str>>) -> Self {
        Identity {
            org: org.into(),
            user: user.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.user)
    }
}

struct StoredKey {
    digest: KeyDigest,
    identity: Identity,
    expires_at: Option<SystemTime>,
    allowed_models: Option<HashSet<String>>,
}

struct OrgEntry {
    models: HashSet<String>,
    keys: HashMap<Arc<str>, usize>,
}

/// Checks keys and access; the policy behind [`AuthEngine`], usable on its own (for example to
/// filter a model list with [`Authenticator::may_use`]).
pub struct Authenticator {
    keys: Vec<StoredKey>,
    orgs: HashMap<Arc<str>, OrgEntry>,
    model_access: HashMap<String, Access>,
    default_access: Access,
    any_public: bool,
    any_private: bool,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("orgs", &self.orgs.keys().collect::<Vec<_>>())
            .field("model_access", &self.model_access)
            .field("default_access", &self.default_access)
            .finish()
    }
}

impl Authenticator {
    /// Validates `config` and hashes its keys.
    ///
    /// # Errors
    /// An empty or duplicate org name, an empty or duplicate key name within an org, an empty key,
    /// a malformed `sha256:` digest, or the same key configured twice anywhere.
    pub fn new(config: AuthConfig) -> Result<Self, BuildError> {
        let mut keys: Vec<StoredKey> = Vec::new();
        let mut orgs: HashMap<Arc<str>, OrgEntry> = HashMap::new();
        for org in config.orgs {
            if org.name.is_empty() {
                return Err(BuildError::new(
                    BuildErrorKind::Missing,
                    "an org has an empty name",
                ));
            }
            let org_name: Arc<str> = org.name.as_str().into();
            if orgs.contains_key(&org_name) {
                return Err(BuildError::new(
                    BuildErrorKind::Conflict,
                    format!("org `{}` is defined twice", org.name),
                ));
            }
            let mut entry = OrgEntry {
                models: org.models.into_iter().collect(),
                keys: HashMap::new(),
            };
            for key in org.keys {
                let here = format!("org `{}` key `{}`", org.name, key.name);
                if key.name.is_empty() {
                    return Err(BuildError::new(
                        BuildErrorKind::Missing,
                        format!("org `{}` has a key with an empty name", org.name),
                    ));
                }
                let user: Arc<str> = key.name.as_str().into();
                if entry.keys.contains_key(&user) {
                    return Err(BuildError::new(
                        BuildErrorKind::Conflict,
                        format!("{here} is defined twice"),
                    ));
                }
                let secret = key.key.trim();
                let digest = match secret.strip_prefix("sha256:") {
                    Some(hex) => parse_hex_digest(hex).ok_or_else(|| {
                        BuildError::invalid(format!(
                            "{here}: `sha256:` must be followed by 64 hex digits (the SHA-256 of the key)"
                        ))
                    })?,
                    None if secret.is_empty() => {
                        return Err(BuildError::new(BuildErrorKind::Missing, format!("{here}: the key is empty")));
                    }
                    None => digest(secret),
                };
                if let Some(other) = keys.iter().find(|k| k.digest == digest) {
                    return Err(BuildError::new(
                        BuildErrorKind::Conflict,
                        format!(
                            "{here} is the same key as org `{}` key `{}`; every API key must be unique",
                            other.identity.org, other.identity.user
                        ),
                    ));
                }
                entry.keys.insert(user.clone(), keys.len());
                keys.push(StoredKey {
                    digest,
                    identity: Identity {
                        org: org_name.clone(),
                        user,
                    },
                    expires_at: key.expires_at,
                    allowed_models: key.allowed_models.map(|m| m.into_iter().collect()),
                });
            }
            orgs.insert(org_name, entry);
        }
        let levels = || {
            config
                .model_access
                .values()
                .copied()
                .chain([config.default_access])
        };
        let any_public = levels().any(|a| a == Access::Public);
        let any_private = levels().any(|a| a == Access::Private);
        Ok(Authenticator {
            keys,
            orgs,
            model_access: config.model_access,
            default_access: config.default_access,
            any_public,
            any_private,
        })
    }

    /// The access level of `model` (`None`: a request naming no model).
    pub fn access(&self, model: Option<&str>) -> Access {
        model
            .and_then(|m| self.model_access.get(m))
            .copied()
            .unwrap_or(self.default_access)
    }

    /// Finds the key presented in `headers` or `uri`.
    ///
    /// `Ok(None)`: no key was presented.
    ///
    /// # Errors
    /// 401 when a key was presented and is unknown, expired or unreadable.
    pub fn authenticate(&self, headers: &HeaderMap, uri: &Uri) -> Result<Option<Identity>, Error> {
        let Some(key) = presented_key(headers, uri)? else {
            return Ok(None);
        };
        let stored = self
            .find(&digest(&key))
            .ok_or_else(|| Error::unauthorized("invalid API key").with_code("invalid_api_key"))?;
        if stored.expires_at.is_some_and(|at| SystemTime::now() >= at) {
            return Err(Error::unauthorized("the API key has expired").with_code("expired_api_key"));
        }
        Ok(Some(stored.identity.clone()))
    }

    /// Compares `d` with every configured digest in constant time.
    fn find(&self, d: &KeyDigest) -> Option<&StoredKey> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, k) in self.keys.iter().enumerate() {
            let eq = k.digest[..].ct_eq(&d[..]);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        bool::from(found)
            .then(|| usize::try_from(index).ok())
            .flatten()
            .and_then(|i| self.keys.get(i))
    }

    fn stored(&self, identity: &Identity) -> Option<(&StoredKey, &OrgEntry)> {
        let org = self.orgs.get(&identity.org)?;
        let key = self.keys.get(*org.keys.get(&identity.user)?)?;
        Some((key, org))
    }

    /// Whether `identity` (`None`: anonymous) may use `model` (`None`: a request naming no model).
    ///
    /// # Errors
    /// 401 when anonymous and the model is not public (or the identity is not one of this
    /// authenticator's keys); 403 when the key may not use the model.
    pub fn authorize(&self, identity: Option<&Identity>, model: Option<&str>) -> Result<(), Error> {
        let access = self.access(model);
        let Some(identity) = identity else {
            if access == Access::Public {
                return Ok(());
            }
            return Err(key_required(model));
        };
        let Some((key, org)) = self.stored(identity) else {
            return Err(Error::unauthorized("invalid API key").with_code("invalid_api_key"));
        };
        let Some(model) = model else {
            return Ok(());
        };
        if key
            .allowed_models
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(model))
        {
            return Err(Error::forbidden(format!(
                "API key `{}` of org `{}` may not use model `{model}`",
                identity.user, identity.org
            ))
            .with_code("model_not_allowed"));
        }
        if access == Access::Private && !org.models.contains(model) {
            return Err(Error::forbidden(format!(
                "org `{}` has no access to model `{model}`",
                identity.org
            ))
            .with_code("model_not_allowed"));
        }
        Ok(())
    }

    /// Whether `identity` may use `model`: [`Authenticator::authorize`] as a boolean, for model lists.
    pub fn may_use(&self, identity: Option<&Identity>, model: &str) -> bool {
        self.authorize(identity, Some(model)).is_ok()
    }

    /// Whether some model is public (anonymous callers may use the gateway at all).
    pub fn any_public(&self) -> bool {
        self.any_public
    }

    /// Authenticates and authorizes a request: the key from its headers or query, the model from
    /// its path or body (not read for the model list, nor when the answer cannot depend on it).
    ///
    /// # Errors
    /// 401 or 403 as described in the [module docs](self); 400 when the model must be read and the
    /// body is not a JSON object.
    pub fn check(&self, req: &Request) -> Result<Option<Identity>, Error> {
        let identity = self.authenticate(&req.headers, &req.uri)?;
        let needs_model = match &identity {
            // Anonymous is refused everywhere unless something is public.
            None if !self.any_public => return Err(key_required(None)),
            None => true,
            Some(id) => {
                self.any_private
                    || self
                        .stored(id)
                        .is_some_and(|(k, _)| k.allowed_models.is_some())
            }
        };
        let model = if needs_model && req.protocol != Protocol::ModelList {
            req.peek()?.model
        } else {
            None
        };
        if needs_model || identity.is_some() {
            self.authorize(identity.as_ref(), model.as_deref())?;
        }
        Ok(identity)
    }
}

fn key_required(model: Option<&str>) -> Error {
    let what = match model {
        Some(m) => format!("model `{m}` requires an API key"),
        None => "an API key is required".to_owned(),
    };
    Error::unauthorized(format!(
        "{what}; send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
    ))
    .with_code("missing_api_key")
}

/// The sticky-session key of an authenticated request: `org/key`, plus `/<x-session-id>` when the
/// client sent one (one key shared by many end users keeps their sessions apart).
fn sticky_key(identity: &Identity, req: &Request) -> StickyKey {
    let mut key = format!("{}/{}", identity.org, identity.user);
    if let Some(session) = req
        .headers
        .get(STICKY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        key.push('/');
        key.push_str(session);
    }
    StickyKey(key)
}

/// Removes the credential headers and the `key` query parameter.
fn strip_credentials(req: &mut Request) {
    req.headers.remove(header::AUTHORIZATION);
    req.headers.remove("x-api-key");
    req.headers.remove("x-goog-api-key");
    let Some(query) = req.uri.query() else {
        return;
    };
    if !query
        .split('&')
        .any(|p| p == "key" || p.starts_with("key="))
    {
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| *p != "key" && !p.starts_with("key="))
        .collect();
    let mut pq = req.uri.path().to_owned();
    if !kept.is_empty() {
        pq.push('?');
        pq.push_str(&kept.join("&"));
    }
    let mut parts = req.uri.clone().into_parts();
    if let Ok(pq) = pq.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            req.uri = uri;
        }
    }
}

/// Authenticates every request and enforces model access before calling the next engine; see the
/// [module docs](self).
#[derive(Clone)]
pub struct AuthEngine {
    auth: Arc<Authenticator>,
    next: ArcEngine,
}

impl fmt::Debug for AuthEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEngine")
            .field("auth", &self.auth)
            .finish()
    }
}

impl AuthEngine {
    /// Guards `next` with `auth`.
    pub fn new(auth: Arc<Authenticator>, next: ArcEngine) -> Self {
        AuthEngine { auth, next }
    }

    /// The policy.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

/// The [`Layer`] form of [`AuthEngine`]: every engine it wraps is guarded by the same policy.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// Guards with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthLayer { auth }
    }
}

impl Layer for AuthLayer {
    fn layer(&self, inner: ArcEngine) -> ArcEngine {
        Arc::new(AuthEngine::new(self.auth.clone(), inner))
    }
}

#[async_trait]
impl Engine for AuthEngine {
    async fn process(&self, mut req: Request) -> Result<Response, Error> {
        let identity = self.auth.check(&req)?;
        strip_credentials(&mut req);
        if let Some(identity) = identity {
            // Sticky sessions follow the caller's key (and, within it, its `x-session-id`), so a
            // client's conversation keeps its upstream and its prompt cache. A sticky key set by
            // an embedder before this engine wins.
            if req.extensions.get::<StickyKey>().is_none() {
                req.extensions.insert(sticky_key(&identity, &req));
            }
            if let Some(record) = req.extensions.get::<octo_core::record::RequestRecord>() {
                record.set_identity(identity.org.clone(), identity.user.clone());
            }
            req.extensions.insert(identity);
        } else {
            // An identity set by someone upstream of us is not trusted.
            req.extensions.remove::<Identity>();
        }
        self.next.process(req).await
    }
}

#[cfg(test)]
mod tests;
