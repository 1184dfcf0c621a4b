//! Finding the key a client presented, and hashing keys.

use http::{HeaderMap, Uri, header};
use octo_core::Error;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub(crate) type KeyDigest = [u8; 32];

/// SHA-256 of a key.
pub(crate) fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.as_bytes()).into()
}

/// The `sha256:<hex>` form of a key, for configs that should not hold plaintext keys.
///
/// ```
/// use octo_engines::auth::hash_key;
/// assert_eq!(
///     hash_key("abc"),
///     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn hash_key(key: &str) -> String {
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest(key) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Parses 64 hex digits (either case).
pub(crate) fn parse_hex_digest(hex: &str) -> Option<KeyDigest> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The key the client presented, if any.
///
/// Looked for, in order: `Authorization: Bearer <key>`, `x-api-key`, `x-goog-api-key`, the `key`
/// query parameter; the first present wins. Surrounding whitespace is trimmed and an empty value
/// counts as absent.
///
/// # Errors
/// 401 when `Authorization` is present with another scheme than `Bearer`, or a header is not
/// valid text: a credential that cannot be read is a wrong credential, not an absent one.
pub(crate) fn presented_key(headers: &HeaderMap, uri: &Uri) -> Result<Option<String>, Error> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| unreadable("Authorization"))?
            .trim();
        let token = match text.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            None if text.eq_ignore_ascii_case("bearer") => "",
            _ if text.is_empty() => "",
            _ => {
                return Err(Error::unauthorized(
                    "the Authorization header must be `Bearer <API key>`",
                )
                .with_code("invalid_api_key"));
            }
        };
        if !token.is_empty() {
            return Ok(Some(token.to_owned()));
        }
    }
    for name in ["x-api-key", "x-goog-api-key"] {
        if let Some(value) = headers.get(name) {
            let text = value.to_str().map_err(|_| unreadable(name))?.trim();
            if !text.is_empty() {
                return Ok(Some(text.to_owned()));
            }
        }
    }
    if let Some(query) = uri.query() {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name == "key" {
                let value = percent_decode(value).ok_or_else(|| unreadable("?key="))?;
                let value = value.trim();
                if !value.is_empty() {
                    return Ok(Some(value.to_owned()));
                }
            }
        }
    }
    Ok(None)
}

fn unreadable(what: &str) -> Error {
    Error::unauthorized(format!("the API key in `{what}` is not valid text"))
        .with_code("invalid_api_key")
}

/// Decodes `%XX` escapes and `+` (space) in a query value; `None` when the result is not UTF-8
/// or an escape is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key(headers: &[(&str, &str)], uri: &str) -> Result<Option<String>, Error> {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        presented_key(&h, &uri.parse().unwrap())
    }

    #[test]
    fn each_place_a_key_can_be() {
        let p = "/v1/chat/completions";
        assert_eq!(
            key(&[("authorization", "Bearer sk-1")], p)
                .unwrap()
                .as_deref(),
            Some("sk-1")
        );
        assert_eq!(
            key(&[("authorization", "bearer   sk-1 ")], p)
                .unwrap()
                .as_deref(),
            Some("sk-1")
        );
        assert_eq!(
            key(&[("x-api-key", "sk-2")], p).unwrap().as_deref(),
            Some("sk-2")
        );
        assert_eq!(
            key(&[("x-goog-api-key", "sk-3")], p).unwrap().as_deref(),
            Some("sk-3")
        );
        assert_eq!(
            key(&[], "/v1beta/models/g:generateContent?alt=sse&key=sk%2D4")
                .unwrap()
                .as_deref(),
            Some("sk-4")
        );
        assert_eq!(key(&[], p).unwrap(), None);
    }

    #[test]
    fn precedence_and_empty_values() {
        let both = [("authorization", "Bearer a"), ("x-api-key", "b")];
        assert_eq!(key(&both, "/?key=c").unwrap().as_deref(), Some("a"));
        // Empty credentials count as absent, so the next place is read.
        let empty = [("authorization", "Bearer "), ("x-api-key", " ")];
        assert_eq!(key(&empty, "/?key=c").unwrap().as_deref(), Some("c"));
        assert_eq!(key(&[("authorization", "Bearer")], "/").unwrap(), None);
    }

    #[test]
    fn unreadable_credentials_are_401() {
        let e = key(&[("authorization", "Basic dXNlcjpwdw==")], "/").unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(key(&[], "/?key=%zz").unwrap_err().status(), 401);
        assert_eq!(key(&[], "/?key=%ff").unwrap_err().status(), 401);
    }

    #[test]
    fn digests() {
        assert_eq!(parse_hex_digest(&hash_key("k")[7..]), Some(digest("k")));
        assert_eq!(
            parse_hex_digest(&hash_key("k")[7..].to_uppercase()),
            Some(digest("k"))
        );
        assert_eq!(parse_hex_digest("abc"), None);
        assert_eq!(parse_hex_digest(&"g".repeat(64)), None);
    }
}
