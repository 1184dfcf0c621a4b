//! Removing top-level keys from a JSON object by splicing bytes, without building a tree.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

/// `bytes` without every member whose key is in `keys` (all duplicates), or `None` when no such
/// key is present. Every other byte is kept: the kept members with the separators that preceded
/// them (the first kept member takes none), and the object's own whitespace.
///
/// # Errors
/// When `bytes` is not a JSON object (the whole document is validated).
pub(crate) fn remove_top_level(
    bytes: &Bytes,
    keys: &[&str],
) -> Result<Option<Bytes>, serde_json::Error> {
    let members = members(bytes, keys)?;
    if !members.iter().any(|m| m.remove) {
        return Ok(None);
    }
    let (Some(first), Some(last)) = (members.first(), members.last()) else {
        return Ok(None);
    };
    let mut out = BytesMut::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first.start]);
    let mut first_kept = true;
    for (i, m) in members.iter().enumerate() {
        if m.remove {
            continue;
        }
        if !first_kept {
            // The separator (`,` and whitespace) right before this member in the original.
            out.extend_from_slice(&bytes[members[i - 1].end..m.start]);
        }
        out.extend_from_slice(&bytes[m.start..m.end]);
        first_kept = false;
    }
    out.extend_from_slice(&bytes[last.end..]);
    Ok(Some(out.freeze()))
}

/// One member of the top-level object: from its key's opening quote to the end of its value.
struct Member {
    start: usize,
    end: usize,
    remove: bool,
}

/// The key's opening quote, found from the value's start: back over `ws : ws` to the key's closing
/// quote, then to the first `"` not preceded by an odd number of backslashes (the key is a valid
/// JSON string, so every quote inside it is escaped).
fn key_start(b: &[u8], value_start: usize) -> usize {
    let mut i = value_start;
    while i > 0 && b[i - 1] != b':' {
        i -= 1;
    }
    i = i.saturating_sub(1);
    while i > 0 && b[i - 1] != b'"' {
        i -= 1;
    }
    let mut open = i.saturating_sub(1);
    while open > 0 {
        open -= 1;
        if b[open] == b'"' {
            let slashes = b[..open].iter().rev().take_while(|&&c| c == b'\\').count();
            if slashes % 2 == 0 {
                break;
            }
        }
    }
    open
}

/// Every member of the top-level object, marking those named in `keys`.
fn members(bytes: &[u8], keys: &[&str]) -> Result<Vec<Member>, serde_json::Error> {
    struct IsKey<'k>(&'k [&'k str]);
    impl<'de> DeserializeSeed<'de> for IsKey<'_> {
        type Value = bool;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl Visitor<'_> for IsKey<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(self.0.contains(&v))
        }
    }
    struct Scan<'k>(&'k [&'k str]);
    impl<'de> Visitor<'de> for Scan<'_> {
        type Value = Vec<(&'de RawValue, bool)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = Vec::new();
            while let Some(hit) = map.next_key_seed(IsKey(self.0))? {
                found.push((map.next_value::<&'de RawValue>()?, hit));
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let found = de::Deserializer::deserialize_map(&mut de, Scan(keys))?;
    de.end()?;
    Ok(found
        .into_iter()
        .map(|(raw, remove)| {
            let start = raw.get().as_ptr() as usize - bytes.as_ptr() as usize;
            Member {
                start: key_start(bytes, start),
                end: start + raw.get().len(),
                remove,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn rm(doc: &'static str, keys: &[&str]) -> Option<String> {
        remove_top_level(&Bytes::from_static(doc.as_bytes()), keys)
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn removes_members_and_their_commas() {
        assert_eq!(
            rm(r#"{"a":1,"b":2,"c":3}"#, &["a"]).unwrap(),
            r#"{"b":2,"c":3}"#
        );
        assert_eq!(
            rm(r#"{"a":1,"b":2,"c":3}"#, &["b"]).unwrap(),
            r#"{"a":1,"c":3}"#
        );
        assert_eq!(
            rm(r#"{"a":1,"b":2,"c":3}"#, &["c"]).unwrap(),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(rm(r#"{"a":1}"#, &["a"]).unwrap(), "{}");
        assert_eq!(
            rm(r#"{"a":1,"b":2,"c":3}"#, &["a", "b", "c"]).unwrap(),
            "{}"
        );
        assert_eq!(
            rm(r#"{"a":1,"b":2,"c":3}"#, &["b", "c"]).unwrap(),
            r#"{"a":1}"#
        );
        assert_eq!(
            rm(r#"{"a":1,"b":2,"c":3}"#, &["a", "c"]).unwrap(),
            r#"{"b":2}"#
        );
        assert_eq!(
            rm("{ \"a\" : [1, {\"b\":\"}\"}] ,\n  \"keep\": true }", &["a"]).unwrap(),
            "{ \"keep\": true }"
        );
        assert_eq!(rm(r#"{"a":1}"#, &["z"]), None);
    }

    #[test]
    fn tricky_keys_and_duplicates() {
        let doc = r#"{"x\"y":1,"q\\":2,"user":{"a":"\"user\":"},"user":3,"z":4}"#;
        let out = rm(doc, &["user"]).unwrap();
        assert_eq!(out, r#"{"x\"y":1,"q\\":2,"z":4}"#);
        let out = rm(doc, &["x\"y", "q\\"]).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"user":3,"z":4}));
        // Escaped key spelling matches its decoded form, like a parse would.
        assert_eq!(rm(r#"{"\u0061":1,"b":2}"#, &["a"]).unwrap(), r#"{"b":2}"#);
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        assert!(remove_top_level(&Bytes::from_static(b"[1]"), &["a"]).is_err());
        assert!(remove_top_level(&Bytes::from_static(b"{\"a\":1"), &["a"]).is_err());
        assert!(remove_top_level(&Bytes::from_static(b"[DONE]"), &["a"]).is_err());
    }
}
