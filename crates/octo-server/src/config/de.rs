//! serde `deserialize_with` functions for the config's typed values: each reads the string the
//! file holds and parses it once, failing with a message that says what to write instead.
//!
//! Errors raised here carry the key path, because `serde_path_to_error` records the path of the
//! value being deserialized when the error happens.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use octo_core::Protocol;
use octo_engines::endpoint::{HttpVersion, Transport};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::duration::parse_duration;

const PROTOCOL_CHOICES: &str =
    "use openai_chat, openai_responses, anthropic, gemini, openai_embeddings or gemini_embeddings";

/// A protocol a backend may speak: a chat protocol or an embeddings API.
fn backend_protocol(p: Protocol) -> bool {
    Protocol::CHAT_PROTOCOLS.contains(&p) || p.is_embeddings()
}

/// The text of a duration: a string (`500ms`, `5s`, `2m`, `1h`) or a bare number of seconds.
struct DurationText;

impl Visitor<'_> for DurationText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `500ms`, `5s`, `2m` or `1h`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

fn parse_text<E: de::Error>(text: &str) -> Result<Duration, E> {
    parse_duration(text).map_err(E::custom)
}

/// `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_text(&d.deserialize_any(DurationText)?)
}

/// An optional duration.
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<Duration>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as `500ms`, `5s`, `2m` or `1h`")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            duration(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

/// `127.0.0.1:8080`.
pub(crate) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        de::Error::custom(format!(
            "`{s}` is not an address; write e.g. `127.0.0.1:8080`"
        ))
    })
}

/// An RFC 3339 time.
pub(crate) fn opt_expiry<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => octo_engines::auth::parse_expiry(&s)
            .map(Some)
            .map_err(de::Error::custom),
    }
}

/// `auto` (or absent) or `h2c`.
pub(crate) fn http_version<'de, D: Deserializer<'de>>(d: D) -> Result<HttpVersion, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("auto") => Ok(HttpVersion::Auto),
        Some("h2c") => Ok(HttpVersion::H2c),
        Some(other) => Err(de::Error::custom(format!(
            "unknown HTTP version setting `{other}`; use `h2c` (HTTP/2 without TLS, for an http:// upstream that speaks it) or `auto` (the default: HTTP/1.1 to http://, HTTP/2 by ALPN to https://)"
        ))),
    }
}

/// `auto` (or absent), `hyper` or `reqwest`.
pub(crate) fn transport<'de, D: Deserializer<'de>>(d: D) -> Result<Transport, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("auto") => Ok(Transport::Auto),
        Some("hyper") => Ok(Transport::Hyper),
        Some("reqwest") => Ok(Transport::Reqwest),
        Some(other) => Err(de::Error::custom(format!(
            "unknown transport `{other}`; use `auto` (the default: hyper-util's client for http:// upstreams no proxy applies to, reqwest otherwise), `hyper` (http:// only, never through a proxy) or `reqwest`"
        ))),
    }
}

fn chat_protocol<E: de::Error>(name: &str) -> Result<Protocol, E> {
    match name.parse::<Protocol>() {
        Ok(p) if backend_protocol(p) => Ok(p),
        _ => Err(E::custom(format!(
            "unknown protocol `{name}`; {PROTOCOL_CHOICES}"
        ))),
    }
}

/// One protocol name or a list of them.
pub(crate) fn protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Protocol>, D::Error> {
    struct Protocols;
    impl<'de> Visitor<'de> for Protocols {
        type Value = Vec<Protocol>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a protocol name or a list of them")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![chat_protocol(v)?])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.push(chat_protocol(&name)?);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Protocols)
}

/// Protocol name → path.
pub(crate) fn protocol_paths<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<Protocol, String>, D::Error> {
    let raw = BTreeMap::<String, String>::deserialize(d)?;
    raw.into_iter()
        .map(|(name, path)| {
            name.parse::<Protocol>()
                .ok()
                .filter(|p| backend_protocol(*p))
                .map(|p| (p, path))
                .ok_or_else(|| {
                    de::Error::custom(format!("`{name}` is not a protocol; {PROTOCOL_CHOICES}"))
                })
        })
        .collect()
}

/// Header name → value, both checked. The check runs while the value is read, so an error's path
/// names the header (`backends.oa.headers.X-Team`).
pub(crate) fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderMap, D::Error> {
    struct Entry(String);
    impl<'de> DeserializeSeed<'de> for Entry {
        type Value = (HeaderName, HeaderValue);
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            let value = String::deserialize(d)?;
            match (
                HeaderName::from_bytes(self.0.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                (Ok(n), Ok(v)) => Ok((n, v)),
                _ => Err(de::Error::custom(
                    "not a valid HTTP header name/value (names are tokens like `X-Team`; values are visible ASCII)",
                )),
            }
        }
    }
    struct Headers;
    impl<'de> Visitor<'de> for Headers {
        type Value = HeaderMap;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of header names to values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = HeaderMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let (n, v) = map.next_value_seed(Entry(name))?;
                out.insert(n, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Headers)
}

/// A map read in the order written, with string keys (rewrite paths).
fn ordered<'de, D, V>(d: D, what: &'static str) -> Result<Vec<(String, V)>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Ordered<V>(&'static str, std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Ordered<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a map of string paths like `a.b` to {}", self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
                let Some(key) = key.as_str().map(str::to_owned) else {
                    return Err(de::Error::custom(format!(
                        "key {key:?} must be a string path like `a.b`"
                    )));
                };
                out.push((key, map.next_value()?));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Ordered(what, std::marker::PhantomData))
}

/// `set_keys`: path → any value, in order.
pub(crate) fn ordered_json_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, serde_json::Value)>, D::Error> {
    ordered(d, "values")
}

/// `set_keys_by_expr`: path → expression, in order.
pub(crate) fn ordered_expr_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    ordered(d, "expression strings")
}

/// `storage.retention`: a duration (`30d`, `12h`), or `0` / `forever` to keep rows.
pub(super) fn retention<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as `30d`, or `forever`")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            octo_store::parse_retention(v).map_err(|e| E::custom(e.message()))
        }
    }
    d.deserialize_any(V)
}

/// `storage.log_bodies` when set to `true`: the first 64 KiB of each body.
pub(crate) const DEFAULT_LOG_BODY_BYTES: usize = 64 * 1024;
/// The largest `storage.log_bodies.max_bytes` (each body is one text value; MySQL's MEDIUMTEXT
/// holds 16 MiB).
pub(crate) const MAX_LOG_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `storage.log_bodies`: `false` (none), `true` ([`DEFAULT_LOG_BODY_BYTES`]) or
/// `{max_bytes: N}` (1 to [`MAX_LOG_BODY_BYTES`]).
pub(super) fn log_bodies<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Sized(Sized),
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sized {
        max_bytes: u64,
    }
    let hint = "write `log_bodies: true` (the first 64 KiB of each body), `log_bodies: {max_bytes: 65536}` or `log_bodies: false`";
    match Raw::deserialize(d)
        .map_err(|_| <D::Error as de::Error>::custom(format!("invalid value; {hint}")))?
    {
        Raw::Flag(false) => Ok(None),
        Raw::Flag(true) => Ok(Some(DEFAULT_LOG_BODY_BYTES)),
        Raw::Sized(Sized { max_bytes }) => match usize::try_from(max_bytes) {
            Ok(n) if (1..=MAX_LOG_BODY_BYTES).contains(&n) => Ok(Some(n)),
            _ => Err(<D::Error as de::Error>::custom(format!(
                "max_bytes must be between 1 and {MAX_LOG_BODY_BYTES} (8 MiB), got {max_bytes}"
            ))),
        },
    }
}
