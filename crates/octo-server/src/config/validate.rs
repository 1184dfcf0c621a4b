//! Checks a deserialized [`Config`] for what no single value shows: references between sections
//! (a target's backend, an org's models), settings that exclude each other, and limits.

use octo_engines::endpoint::{HttpVersion, Transport};

use super::schema::{AccessConfig, Config, KeySpec, RuleConfig, TargetConfig};

/// Every cross-field problem in `c`, as `(key path, message with the fix)`.
pub(crate) fn validate(c: &Config) -> Vec<(String, String)> {
    let mut p = Vec::new();
    crate::limits::validate(c, &mut p);
    if c.limits.max_body_bytes == 0 {
        p.push(("limits.max_body_bytes".into(), "must be positive".into()));
    }
    for (name, b) in &c.backends {
        let at = |k: &str| format!("backends.{name}.{k}");
        let protocols = &b.protocol;
        if protocols.is_empty() {
            p.push((
                at("protocol"),
                "list at least one protocol: openai_chat, openai_responses, anthropic or gemini"
                    .into(),
            ));
        }
        match b.base_url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                if u.path().len() > 1 {
                    p.push((at("base_url"), format!(
                        "`{}` has a path; give the host root (e.g. `https://api.openai.com`) and set per-protocol `paths` if the upstream needs another path",
                        b.base_url
                    )));
                }
            }
            _ => p.push((
                at("base_url"),
                format!(
                    "`{}` is not an http(s) URL; write e.g. `https://api.openai.com`",
                    b.base_url
                ),
            )),
        }
        if b.api_key.is_some() && !b.api_keys.is_empty() {
            p.push((
                at("api_key"),
                "set either `api_key` or `api_keys`, not both".into(),
            ));
        }
        for (i, k) in b.keys().iter().enumerate() {
            if k.is_empty() || http::HeaderValue::from_str(k).is_err() {
                p.push((
                    format!("backends.{name}.api_keys[{i}]"),
                    "empty, or contains characters not allowed in an HTTP header".into(),
                ));
            }
        }
        for (proto, path) in &b.paths {
            // The embeddings API of the backend's provider comes with its chat protocols.
            let implied = protocols.iter().find_map(|p| p.embeddings()) == Some(*proto);
            if !protocols.contains(proto) && !implied {
                p.push((
                    format!("backends.{name}.paths.{proto}"),
                    format!(
                        "`{proto}` is not one of this backend's protocols ({})",
                        octo_core::protocol_list(protocols)
                    ),
                ));
            }
            if !path.starts_with('/') {
                p.push((
                    format!("backends.{name}.paths.{proto}"),
                    format!("`{path}` must start with `/`"),
                ));
            }
        }
        if b.transport == Transport::Hyper
            && b.base_url
                .parse::<http::Uri>()
                .ok()
                .as_ref()
                .and_then(http::Uri::scheme_str)
                != Some("http")
        {
            p.push((at("transport"), format!(
                "`hyper` serves plain http:// upstreams only, not `{}`; https:// upstreams use reqwest: remove `transport` (or set `auto`)",
                b.base_url
            )));
        }
        if b.http_version == HttpVersion::H2c
            && b.base_url
                .parse::<http::Uri>()
                .ok()
                .as_ref()
                .and_then(http::Uri::scheme_str)
                != Some("http")
        {
            p.push((at("http_version"), format!(
                "`h2c` is HTTP/2 without TLS and needs an `http://` base_url, not `{}`; an https:// upstream negotiates HTTP/2 by itself (ALPN): remove `http_version`",
                b.base_url
            )));
        }
    }
    for (model, m) in &c.models {
        let at = |k: &str| format!("models.{model}.{k}");
        if m.targets.is_empty() {
            p.push((
                at("targets"),
                "list at least one target: `- {backend: NAME}`".into(),
            ));
        }
        validate_targets(&at("targets"), &m.targets, c, &mut p);
        if let Some(r) = &m.retry {
            if r.max_attempts == 0 {
                p.push((
                    at("retry.max_attempts"),
                    "must be at least 1 (1 means no retry)".into(),
                ));
            }
        }
        if m.access != AccessConfig::Public && c.orgs.is_empty() {
            // Without orgs there is no key a client could present, and no auth engine to check
            // one: the model would be unreachable (or, worse, open to anyone).
            p.push((
                at("access"),
                format!(
                    "`{}` needs gateway API keys, and no `orgs` are defined; add an org with `api_keys` (and, for `private`, list the model under its `models`), or make the model `public`",
                    match m.access {
                        AccessConfig::Internal => "internal",
                        _ => "private",
                    }
                ),
            ));
        }
        if m.max_concurrency == Some(0) {
            p.push((
                at("max_concurrency"),
                "must be at least 1; remove the key for no limit".into(),
            ));
        }
        validate_rules(&at("rules"), &m.rules, c, &mut p);
    }
    for (org, o) in &c.orgs {
        for (key_name, spec) in &o.api_keys {
            let key = match spec {
                KeySpec::Key(k) => k,
                KeySpec::Detailed(d) => {
                    let at = format!("orgs.{org}.api_keys.{key_name}");
                    if let Some(r) = &d.rate_limit {
                        p.extend(r.validate(&format!("{at}.rate_limit")));
                    }
                    if let Some(b) = &d.budget {
                        p.extend(b.validate(&format!("{at}.budget")));
                    }
                    for allowed in d.models.iter().flatten() {
                        if !c.models.contains_key(allowed) {
                            p.push((
                                format!("orgs.{org}.api_keys.{key_name}.models"),
                                format!("unknown model `{allowed}`; define it under `models`"),
                            ));
                        }
                    }
                    &d.key
                }
            };
            if key.trim().is_empty() {
                p.push((
                    format!("orgs.{org}.api_keys.{key_name}"),
                    "empty key".into(),
                ));
            }
        }
        for (model, per_org) in &o.models {
            if !c.models.contains_key(model) {
                p.push((
                    format!("orgs.{org}.models.{model}"),
                    format!("unknown model `{model}`; define it under `models` first"),
                ));
            }
            if let Some(per_org) = per_org {
                validate_rules(
                    &format!("orgs.{org}.models.{model}.rules"),
                    &per_org.rules,
                    c,
                    &mut p,
                );
            }
        }
    }
    super::cache::validate(c, &mut p);
    operations(c, &mut p);
    p
}

fn validate_targets(at: &str, targets: &[TargetConfig], c: &Config, p: &mut Vec<(String, String)>) {
    for (i, t) in targets.iter().enumerate() {
        if !c.backends.contains_key(&t.backend) {
            let known: Vec<&str> = c.backends.keys().map(String::as_str).collect();
            p.push((
                format!("{at}[{i}].backend"),
                format!(
                    "unknown backend `{}`; defined backends: {}",
                    t.backend,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
}

fn validate_rules(at: &str, rules: &[RuleConfig], c: &Config, p: &mut Vec<(String, String)>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        let here = format!("{at}[{i}]");
        if r.name.trim().is_empty() {
            p.push((format!("{here}.name"), "give the rule a name".into()));
        } else if !seen.insert(r.name.as_str()) {
            p.push((
                format!("{here}.name"),
                format!("duplicate rule name `{}`", r.name),
            ));
        }
        if r.deny.is_some()
            && (r.route.is_some() || r.rewrite.is_some() || !r.set_headers.is_empty())
        {
            p.push((
                here.clone(),
                "`deny` cannot be combined with `route`, `rewrite` or `set_headers`".into(),
            ));
        }
        if r.deny.is_none() && r.route.is_none() && r.rewrite.is_none() && r.set_headers.is_empty()
        {
            p.push((
                here.clone(),
                "the rule does nothing; give it `deny`, `route`, `rewrite` or `set_headers`".into(),
            ));
        }
        if let Some(d) = &r.deny {
            if let Some(status) = d.status {
                if !(400..=599).contains(&status) {
                    p.push((
                        format!("{here}.deny.status"),
                        format!("{status} is not an error status; use 400-599"),
                    ));
                }
            }
        }
        if let Some(route) = &r.route {
            if route.is_empty() {
                p.push((format!("{here}.route"), "list at least one target".into()));
            }
            validate_targets(&format!("{here}.route"), route, c, p);
        }
    }
}

/// The largest `storage.buffer`: records held in memory (about 1 KB each) while the database is
/// unavailable.
pub(crate) const MAX_STORAGE_BUFFER: u64 = 10_000_000;

/// The shortest `storage.write_timeout`.
const MIN_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// The operations sections: storage, admin, telemetry, prices.
fn operations(c: &Config, p: &mut Vec<(String, String)>) {
    if let super::schema::Storage::On(s) = &c.storage {
        if !(1..=MAX_STORAGE_BUFFER).contains(&s.buffer) {
            p.push((
                "storage.buffer".into(),
                format!(
                    "{} records is out of range; write a number of records from 1 to {MAX_STORAGE_BUFFER} (default 100000; each held record takes about 1 KB of memory)",
                    s.buffer
                ),
            ));
        }
        if s.write_timeout < MIN_WRITE_TIMEOUT {
            p.push((
                "storage.write_timeout".into(),
                format!(
                    "{} is too short for a batch write; write at least `100ms` (default `10s`)",
                    humantime::format_duration(s.write_timeout)
                ),
            ));
        }
    }
    if let super::schema::Storage::On(s) = &c.storage
        && let Err(e) = octo_store::Backend::from_url(&s.url)
    {
        p.push((
            "storage.url".into(),
            format!(
                "{}; use sqlite://octollm.db, postgres://user@host/db or mysql://user@host/db, or `storage: off`",
                e.message()
            ),
        ));
    }
    if let Some(a) = &c.admin {
        if let Err((i, m)) = crate::admin::Tokens::parse(&a.tokens) {
            p.push((format!("admin.tokens[{i}]"), m));
        }
        p.extend(a.auth_problems());
        if a.listen.parse::<std::net::SocketAddr>().is_err() {
            p.push((
                "admin.listen".into(),
                format!("`{}` is not an address like 127.0.0.1:8081", a.listen),
            ));
        }
    }
    if let Err(e) = c.telemetry.validate() {
        p.push(("telemetry".into(), e.to_string()));
    }
    p.extend(c.prices.validate());
    if let Some(sync) = &c.price_sync
        && let Err(mut e) = sync.settings()
    {
        p.append(&mut e);
    }
}
