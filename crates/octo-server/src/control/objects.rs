//! The four object kinds the admin API manages (`backends`, `models`, `orgs`, `prices`: the
//! YAML's sections, by name), and what is done to their JSON bodies on the way in and out:
//! secrets masked in answers, masked values in a replacement kept as they were, gateway keys in
//! an org hashed, upstream keys sealed at rest.

use serde_json::{Map, Value};

use super::secrets::Sealer;

/// A kind of object: a section of the YAML whose entries are named objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `backends`.
    Backends,
    /// `models`.
    Models,
    /// `orgs`.
    Orgs,
    /// `prices`.
    Prices,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Backends, Kind::Models, Kind::Orgs, Kind::Prices];

    /// The YAML section (and admin API path segment).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Backends => "backends",
            Kind::Models => "models",
            Kind::Orgs => "orgs",
            Kind::Prices => "prices",
        }
    }

    /// The kind of a section name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.section() == s)
    }
}

/// Fields of an answer that are not part of the object's YAML.
pub const META_FIELDS: [&str; 4] = ["name", "source", "updated_at", "updated_by"];

/// Header names whose values are treated as secrets.
fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["auth", "key", "token", "secret", "cookie", "signature"]
        .iter()
        .any(|w| n.contains(w))
}

/// The masked form of a secret: its last four characters when it is long enough to keep the
/// rest secret, so an operator can tell keys apart.
///
/// ```
/// use octo_server::control::objects::mask;
/// assert_eq!(mask("sk-upstream-1234"), "****1234");
/// assert_eq!(mask("short"), "****");
/// ```
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() >= 12 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("****{tail}")
    } else {
        "****".to_owned()
    }
}

/// Applies `f` to every secret string of an object of `kind`.
fn each_secret(kind: Kind, body: &mut Value, f: &mut dyn FnMut(&mut String, SecretAt<'_>)) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    match kind {
        Kind::Backends => {
            if let Some(Value::String(s)) = obj.get_mut("api_key") {
                f(s, SecretAt::UpstreamKey);
            }
            if let Some(Value::Array(keys)) = obj.get_mut("api_keys") {
                for k in keys {
                    if let Value::String(s) = k {
                        f(s, SecretAt::UpstreamKey);
                    }
                }
            }
            if let Some(Value::Object(headers)) = obj.get_mut("headers") {
                for (name, v) in headers.iter_mut() {
                    if sensitive_header(name)
                        && let Value::String(s) = v
                    {
                        f(s, SecretAt::Header(name));
                    }
                }
            }
        }
        Kind::Orgs => {
            if let Some(Value::Object(keys)) = obj.get_mut("api_keys") {
                for (name, spec) in keys.iter_mut() {
                    match spec {
                        Value::String(s) => f(s, SecretAt::GatewayKey(name)),
                        Value::Object(d) => {
                            if let Some(Value::String(s)) = d.get_mut("key") {
                                f(s, SecretAt::GatewayKey(name));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Kind::Models | Kind::Prices => {}
    }
}

/// Where a secret sits in an object.
#[derive(Debug, Clone, Copy)]
enum SecretAt<'a> {
    UpstreamKey,
    Header(&'a str),
    GatewayKey(&'a str),
}

/// `body` with every secret masked (for answers and the audit trail).
pub fn masked(kind: Kind, body: &Value) -> Value {
    let mut out = body.clone();
    each_secret(kind, &mut out, &mut |s, _| *s = mask(s));
    out
}

/// Prepares a new body: masked values that match a secret of `old` (the object it replaces) take
/// that secret back, so an answer edited and sent back keeps its keys; plaintext gateway keys of
/// an org are replaced by their `sha256:` digest.
pub fn incoming(kind: Kind, body: &mut Value, old: Option<&Value>) {
    let mut old_secrets: Vec<(String, String)> = Vec::new();
    if let Some(old) = old {
        let mut o = old.clone();
        each_secret(kind, &mut o, &mut |s, at| {
            let place = match at {
                SecretAt::UpstreamKey => String::new(),
                SecretAt::Header(h) => format!("h:{}", h.to_ascii_lowercase()),
                SecretAt::GatewayKey(k) => format!("k:{k}"),
            };
            old_secrets.push((place, s.clone()));
        });
    }
    each_secret(kind, body, &mut |s, at| {
        let place = match at {
            SecretAt::UpstreamKey => String::new(),
            SecretAt::Header(h) => format!("h:{}", h.to_ascii_lowercase()),
            SecretAt::GatewayKey(k) => format!("k:{k}"),
        };
        if s.starts_with("****")
            && let Some((_, old)) = old_secrets
                .iter()
                .find(|(p, old)| *p == place && mask(old) == *s)
        {
            *s = old.clone();
        }
        if let SecretAt::GatewayKey(_) = at
            && !s.starts_with("sha256:")
            && !s.trim().is_empty()
        {
            *s = crate::admin::tokens::hashed(s);
        }
    });
}

/// `body` as stored: upstream keys and secret headers sealed.
pub fn sealed(kind: Kind, body: &Value, sealer: &Sealer) -> Value {
    let mut out = body.clone();
    each_secret(kind, &mut out, &mut |s, at| {
        if !matches!(at, SecretAt::GatewayKey(_)) {
            *s = sealer.seal(s);
        }
    });
    out
}

/// A stored body with its secrets opened.
///
/// # Errors
/// When a secret cannot be opened (another instance's sealing key).
pub fn opened(kind: Kind, body: &Value, sealer: &Sealer) -> Result<Value, String> {
    let mut out = body.clone();
    let mut err = None;
    each_secret(kind, &mut out, &mut |s, _| match sealer.open(s) {
        Ok(plain) => *s = plain,
        Err(e) => err = Some(e),
    });
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// An answer: `name` and `source` first, then the (masked) fields.
pub fn answer(
    kind: Kind,
    name: &str,
    source: &str,
    body: &Value,
    meta: Option<(i64, &str)>,
) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.to_owned()));
    out.insert("source".into(), Value::String(source.to_owned()));
    if let Some((at, by)) = meta {
        out.insert("updated_at".into(), Value::from(at));
        out.insert("updated_by".into(), Value::String(by.to_owned()));
    }
    match masked(kind, body) {
        Value::Object(fields) => out.extend(fields),
        other => {
            out.insert("value".into(), other);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_kept_on_replace_and_sealed() {
        let old = json!({"base_url": "http://x", "api_keys": ["sk-first-key-0001", "sk-second-key-0002"],
            "headers": {"X-Api-Key": "header-secret-value", "anthropic-version": "2023-06-01"}});
        let shown = masked(Kind::Backends, &old);
        assert_eq!(shown["api_keys"], json!(["****0001", "****0002"]));
        assert_eq!(shown["headers"]["X-Api-Key"], "****alue");
        assert_eq!(shown["headers"]["anthropic-version"], "2023-06-01");
        // The answer sent back with one key replaced keeps the other.
        let mut back = shown.clone();
        back["api_keys"][1] = json!("sk-new-key");
        incoming(Kind::Backends, &mut back, Some(&old));
        assert_eq!(back["api_keys"], json!(["sk-first-key-0001", "sk-new-key"]));
        assert_eq!(back["headers"]["X-Api-Key"], "header-secret-value");
        let sealer = Sealer::new([1; 32]);
        let stored = sealed(Kind::Backends, &back, &sealer);
        assert!(!stored.to_string().contains("sk-first"));
        assert_eq!(opened(Kind::Backends, &stored, &sealer).unwrap(), back);
    }

    #[test]
    fn org_keys_are_hashed() {
        let mut org =
            json!({"api_keys": {"a": "sk-plain-gateway-key", "b": {"key": "sk-other-key-123"}}});
        incoming(Kind::Orgs, &mut org, None);
        assert!(
            org["api_keys"]["a"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(
            org["api_keys"]["b"]["key"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }
}
