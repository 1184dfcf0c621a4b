//! What is limited: the rate limits and budgets of models, orgs and keys, and which of them apply
//! to one request ([`Policy::checks`]).
//!
//! Every limit that applies must pass: a request from key `acme/ci` to model `gpt` is checked
//! against `models.gpt.rate_limit`, `orgs.acme.rate_limit` and `budget`, and
//! `orgs.acme.api_keys.ci.rate_limit` and `budget`, all at once; it is admitted only when all of
//! them have room, and then counted in all of them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::period::Period;

/// `rate_limit: {rpm, tpm, concurrency}`; an absent field is not limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once (a stream counts until it ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
}

impl RateLimit {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.concurrency.is_none()
    }
}

/// `budget: {usd, period}`: spend allowed per period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// US dollars per period.
    pub usd: f64,
    /// How often it starts afresh (UTC).
    pub period: Period,
}

/// Whose limit it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// `models.M.rate_limit`: every caller of the model together.
    Model,
    /// `orgs.O`: every key of the org together.
    Org,
    /// `orgs.O.api_keys.K`: one key.
    Key,
}

/// A model, an org or a key, by name (`acme/ci` for a key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Scope {
    /// Model, org or key.
    pub kind: ScopeKind,
    /// The model's or org's name, or `org/key`.
    pub name: String,
}

impl Scope {
    /// The scope's part of storage keys: `model:gpt`, `org:acme`, `key:acme/ci`.
    pub fn id(&self) -> String {
        let kind = match self.kind {
            ScopeKind::Model => "model",
            ScopeKind::Org => "org",
            ScopeKind::Key => "key",
        };
        format!("{kind}:{}", self.name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ScopeKind::Model => "model",
            ScopeKind::Org => "org",
            ScopeKind::Key => "key",
        };
        write!(f, "{kind} `{}`", self.name)
    }
}

/// One limit of one scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Requests per minute.
    Rpm(u64),
    /// Tokens per minute.
    Tpm(u64),
    /// Requests in flight.
    Concurrency(u64),
    /// Spend per period.
    Budget(Budget),
}

impl Limit {
    /// `rpm`, `tpm`, `concurrency` or `budget`.
    pub fn name(&self) -> &'static str {
        match self {
            Limit::Rpm(_) => "rpm",
            Limit::Tpm(_) => "tpm",
            Limit::Concurrency(_) => "concurrency",
            Limit::Budget(_) => "budget",
        }
    }
}

/// A limit to pass, and whose it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Whose limit.
    pub scope: Arc<Scope>,
    /// Which limit.
    pub limit: Limit,
    /// The scope's storage id (`model:gpt`), precomputed.
    pub id: Arc<str>,
}

/// The limits of one org or key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Its rate limit.
    pub rate: RateLimit,
    /// Its budget.
    pub budget: Option<Budget>,
}

/// Every configured limit; built from the config, replaced on reload (the counters live in the
/// store and survive it).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    models: HashMap<String, Vec<Check>>,
    orgs: HashMap<String, Vec<Check>>,
    keys: HashMap<String, HashMap<String, Vec<Check>>>,
    listed: Vec<(Arc<Scope>, RateLimit, Option<Budget>)>,
}

fn checks_of(scope: Scope, rate: RateLimit, budget: Option<Budget>) -> Vec<Check> {
    let scope = Arc::new(scope);
    let id: Arc<str> = scope.id().into();
    let mut out = Vec::new();
    let mut push = |limit| {
        out.push(Check {
            scope: scope.clone(),
            limit,
            id: id.clone(),
        })
    };
    if let Some(n) = rate.rpm {
        push(Limit::Rpm(n));
    }
    if let Some(n) = rate.tpm {
        push(Limit::Tpm(n));
    }
    if let Some(n) = rate.concurrency {
        push(Limit::Concurrency(n));
    }
    if let Some(b) = budget {
        push(Limit::Budget(b));
    }
    out
}

impl Policy {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is limited (requests then skip the limiter entirely).
    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Limits `model` for every caller together.
    pub fn model(mut self, model: impl Into<String>, rate: RateLimit) -> Self {
        let model = model.into();
        let checks = checks_of(
            Scope {
                kind: ScopeKind::Model,
                name: model.clone(),
            },
            rate,
            None,
        );
        if !checks.is_empty() {
            self.listed.push((checks[0].scope.clone(), rate, None));
            self.models.insert(model, checks);
        }
        self
    }

    /// Limits every key of `org` together.
    pub fn org(mut self, org: impl Into<String>, rules: Rules) -> Self {
        let org = org.into();
        let checks = checks_of(
            Scope {
                kind: ScopeKind::Org,
                name: org.clone(),
            },
            rules.rate,
            rules.budget,
        );
        if !checks.is_empty() {
            self.listed
                .push((checks[0].scope.clone(), rules.rate, rules.budget));
            self.orgs.insert(org, checks);
        }
        self
    }

    /// Limits one key of `org`.
    pub fn key(mut self, org: impl Into<String>, key: impl Into<String>, rules: Rules) -> Self {
        let (org, key) = (org.into(), key.into());
        let checks = checks_of(
            Scope {
                kind: ScopeKind::Key,
                name: format!("{org}/{key}"),
            },
            rules.rate,
            rules.budget,
        );
        if !checks.is_empty() {
            self.listed
                .push((checks[0].scope.clone(), rules.rate, rules.budget));
            self.keys.entry(org).or_default().insert(key, checks);
        }
        self
    }

    /// The limits a request to `model` from `caller` (org, key) must pass: the model's, then the
    /// org's, then the key's.
    ///
    /// ```
    /// use octo_limits::policy::{Policy, RateLimit, Rules};
    ///
    /// let p = Policy::new()
    ///     .model("gpt", RateLimit { rpm: Some(100), ..RateLimit::default() })
    ///     .key("acme", "ci", Rules { rate: RateLimit { concurrency: Some(2), ..RateLimit::default() }, budget: None });
    /// assert_eq!(p.checks("gpt", Some(("acme", "ci"))).len(), 2);
    /// assert_eq!(p.checks("gpt", Some(("acme", "bob"))).len(), 1);
    /// assert_eq!(p.checks("other", None).len(), 0);
    /// ```
    pub fn checks(&self, model: &str, caller: Option<(&str, &str)>) -> Vec<Check> {
        let mut out = Vec::new();
        if let Some(c) = self.models.get(model) {
            out.extend(c.iter().cloned());
        }
        if let Some((org, key)) = caller {
            if let Some(c) = self.orgs.get(org) {
                out.extend(c.iter().cloned());
            }
            if let Some(c) = self.keys.get(org).and_then(|keys| keys.get(key)) {
                out.extend(c.iter().cloned());
            }
        }
        out
    }

    /// Every limited scope with its limits, in the order they were added.
    pub fn scopes(&self) -> &[(Arc<Scope>, RateLimit, Option<Budget>)] {
        &self.listed
    }

    /// Every check of every scope (for reading their state).
    pub fn all_checks(&self) -> Vec<Check> {
        self.models
            .values()
            .chain(self.orgs.values())
            .chain(self.keys.values().flat_map(HashMap::values))
            .flatten()
            .cloned()
            .collect()
    }
}
