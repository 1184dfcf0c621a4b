//! `GET /api/v1/config`: the configuration in force, as the panel's Settings page shows it — the
//! file's document (interpolated) with the API's objects merged in, each object marked with its
//! `source`, and every secret masked (upstream and gateway keys, secret headers, admin tokens,
//! password hashes, passwords in database URLs, and any other value under a key that names a
//! secret).
//!
//! ```text
//! {"source": "/etc/octollm.yaml", "generation": 7, "config": {"listen": …, "backends": {"oa": {…, "source": "file"}}, …}}
//! ```

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::AdminState;
use crate::control::objects::{Kind, mask, masked};

pub(super) fn routes() -> Router<AdminState> {
    Router::new().route("/api/v1/config", get(config))
}

/// Whether a key names a secret (outside the object sections, which mask by their own rules).
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "key",
        "token",
        "password",
        "secret",
        "authorization",
        "credential",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Masks every string under a secret-naming key, and passwords in URLs, recursively.
fn mask_rest(v: &mut Value, under_secret: bool) {
    match v {
        Value::String(s) if under_secret => *s = mask(s),
        Value::String(s) => {
            if let Some(m) = masked_url(s) {
                *s = m;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| mask_rest(x, under_secret)),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                mask_rest(x, under_secret || secret_key(k));
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host…` with the password masked.
fn masked_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let at = rest.find('@')?;
    let (cred, host) = rest.split_at(at);
    if cred.contains('/') {
        return None;
    }
    let (user, _) = cred.split_once(':')?;
    Some(format!("{scheme}://{user}:****{host}"))
}

/// The effective configuration, masked; see the [module docs](self).
pub fn effective(state: &crate::control::State) -> Value {
    let mut doc = serde_json::to_value(&state.file_doc).unwrap_or(Value::Null);
    if !doc.is_object() {
        doc = Value::Object(Map::new());
    }
    let root = doc.as_object_mut().expect("an object");
    let mut sections: Vec<(&str, Value)> = Vec::new();
    for kind in Kind::ALL {
        let mut out = Map::new();
        if let Some(Value::Object(file)) = root.remove(kind.section()) {
            for (name, body) in file {
                let mut o = masked(kind, &body);
                if let Value::Object(m) = &mut o {
                    m.insert("source".into(), "file".into());
                } else {
                    o = json!({"source": "file"});
                }
                out.insert(name, o);
            }
        }
        for ((k, name), obj) in &state.objects {
            if *k != kind {
                continue;
            }
            let mut o = masked(kind, &obj.body);
            if let Value::Object(m) = &mut o {
                m.insert("source".into(), "api".into());
            }
            out.insert(name.clone(), o);
        }
        sections.push((kind.section(), Value::Object(out)));
    }
    let mut rest = Value::Object(std::mem::take(root));
    mask_rest(&mut rest, false);
    if let Value::Object(mut m) = rest {
        for (k, v) in sections {
            m.insert(k.to_owned(), v);
        }
        return Value::Object(m);
    }
    Value::Null
}

async fn config(State(state): State<AdminState>) -> Response {
    let view = state.control.view();
    axum::Json(json!({
        "source": state.control.label(),
        "generation": view.generation,
        "config": effective(&view),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_outside_the_sections_are_masked() {
        let mut v = json!({
            "admin": {"tokens": ["a-very-long-admin-token"], "users": [{"name": "ada", "password": "argon2:$argon2id$v=19$abcdef"}]},
            "storage": {"url": "postgres://octo:hunter2@db:5432/octo"},
            "telemetry": {"otlp_headers": {"x-api-key": "collector-secret-1234"}},
            "listen": "127.0.0.1:8080"
        });
        mask_rest(&mut v, false);
        let s = v.to_string();
        for secret in [
            "a-very-long-admin-token",
            "argon2id",
            "hunter2",
            "collector-secret",
        ] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(v["storage"]["url"], "postgres://octo:****@db:5432/octo");
        assert_eq!(v["listen"], "127.0.0.1:8080");
        assert_eq!(v["admin"]["users"][0]["name"], "ada");
    }
}
