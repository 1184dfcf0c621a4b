//! Tool-call ids and names across protocols.
//!
//! - **Sanitising for Anthropic.** Anthropic accepts tool-use ids matching `^[a-zA-Z0-9_-]+$`;
//!   OpenAI-compatible upstreams produce ids such as `functions.search:0`. [`anthropic_id`] replaces
//!   every other character with `_`. The same function is applied to the `tool_use` blocks and to the
//!   `tool_result`s that answer them, so the pairing survives; the client sees and sends back the
//!   sanitised id.
//! - **Gemini thought signatures.** A Gemini function call may carry a `thoughtSignature` that must
//!   be replayed with the call on the next turn. Protocols with no place for it get it folded into the
//!   call id ([`fold_signature`]: `<id>__thought__<signature as URL-safe base64>`), which every client
//!   sends back unchanged with the call and its result; [`unfold_signature`] splits it again (the
//!   convention LiteLLM uses). The folded form is valid for Anthropic.
//! - **Synthesised ids.** Gemini calls often have no id. [`synthesized_id`] makes
//!   `call_syn_<hash of the response id>_<n>`, unique per response; ids with the `call_syn_` prefix
//!   are never sent to Gemini (it did not make them), everything else is echoed.
//! - **Answer ids.** Each client sees the id of an answer in its own protocol's convention
//!   ([`response_id`]): `msg_…` for Anthropic, `resp_…` for Responses, `chatcmpl-…` for OpenAI
//!   Chat. The id is derived from the upstream's, so it is stable: a foreign prefix (`chatcmpl-`,
//!   `msg_`, `resp_`) is replaced by the client's, other characters outside `[A-Za-z0-9_-]` become
//!   `_` (`chatcmpl-abc` → `msg_abc` → `resp_abc`). Only an upstream that gave no id gets a fresh
//!   one. Gemini's `responseId` has no convention and is passed as is.
//! - **Long names.** OpenAI and Gemini limit function names to 64 characters from a small alphabet;
//!   Anthropic does not. [`short_name`] keeps the first 55 characters plus `_` and an 8-hex hash; the
//!   converter keeps the reverse map for the response of the same request.

use octo_core::Protocol;

/// Separator between an id and a folded signature.
const THOUGHT_SEP: &str = "__thought__";
/// Separator when the signature was not base64 and is carried as base64 of its bytes.
const THOUGHT_SEP_BYTES: &str = "__thoughtb__";
/// Prefix of ids the converter made up.
pub(crate) const SYNTH_PREFIX: &str = "call_syn_";

/// The id with every character outside `[A-Za-z0-9_-]` replaced by `_` (`toolu_empty` if empty).
pub(crate) fn anthropic_id(id: &str) -> String {
    if id.is_empty() {
        return "toolu_empty".to_owned();
    }
    id.chars().map(id_char).collect()
}

/// `c` if Anthropic allows it in an id (`[A-Za-z0-9_-]`), else `_`.
fn id_char(c: char) -> char {
    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
        c
    } else {
        '_'
    }
}

/// The id prefix of answers in `client`'s protocol (empty for Gemini, which has no convention).
pub(crate) fn response_id_prefix(client: Protocol) -> &'static str {
    match client {
        Protocol::Anthropic => "msg_",
        Protocol::OpenAiResponses => "resp_",
        Protocol::OpenAiChat => "chatcmpl-",
        _ => "",
    }
}

/// The id a `client` is shown for an answer the upstream called `upstream_id` (see the module
/// docs); a fresh one when the upstream gave none.
pub(crate) fn response_id(client: Protocol, upstream_id: &str) -> String {
    let prefix = response_id_prefix(client);
    if upstream_id.is_empty() {
        return super::util::fresh_id(prefix);
    }
    if prefix.is_empty() || upstream_id.starts_with(prefix) {
        return upstream_id.to_owned();
    }
    let rest = ["chatcmpl-", "msg_", "resp_"]
        .iter()
        .find_map(|p| upstream_id.strip_prefix(p))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(upstream_id);
    let mut out = String::with_capacity(prefix.len() + rest.len());
    out.push_str(prefix);
    out.extend(rest.chars().map(id_char));
    out
}

/// `id`, with `signature` folded in when there is one.
pub(crate) fn fold_signature(id: &str, signature: Option<&str>) -> String {
    let Some(sig) = signature.filter(|s| !s.is_empty()) else {
        return id.to_owned();
    };
    let is_base64 = sig.bytes().all(|b| {
        b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' || b == b'-' || b == b'_'
    }) && !sig.contains("__");
    if is_base64 {
        let mapped: String = sig
            .chars()
            .filter(|&c| c != '=')
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        format!("{id}{THOUGHT_SEP}{mapped}")
    } else {
        format!(
            "{id}{THOUGHT_SEP_BYTES}{}",
            base64_encode(sig.as_bytes(), true)
        )
    }
}

/// Splits an id made by [`fold_signature`] into the original id and the signature.
pub(crate) fn unfold_signature(id: &str) -> (String, Option<String>) {
    if let Some((base, enc)) = id.split_once(THOUGHT_SEP_BYTES) {
        if let Some(sig) = base64_decode(enc).and_then(|b| String::from_utf8(b).ok()) {
            return (base.to_owned(), Some(sig));
        }
    }
    if let Some((base, enc)) = id.split_once(THOUGHT_SEP) {
        return (
            base.to_owned(),
            Some(crate::media::url_safe_to_standard(enc)),
        );
    }
    (id.to_owned(), None)
}

/// An id for the `n`-th call of the response `response_id`, which had none.
pub(crate) fn synthesized_id(response_id: &str, n: usize) -> String {
    format!("{SYNTH_PREFIX}{:08x}_{n}", fnv1a(response_id.as_bytes()))
}

/// Whether the converter made this id up.
pub(crate) fn is_synthesized(id: &str) -> bool {
    id.starts_with(SYNTH_PREFIX)
}

/// The name made valid for OpenAI and Gemini (`^[a-zA-Z0-9_-]{1,64}$`), or `None` when it already is.
pub(crate) fn short_name(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        return None;
    }
    if name.is_empty() {
        return Some("unnamed_tool".to_owned());
    }
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // The hash keeps distinct names distinct (`a.b` and `a:b` both clean to `a_b`).
    let keep: String = clean.chars().take(55).collect();
    Some(format!("{keep}_{:08x}", fnv1a(name.as_bytes())))
}

/// 32-bit FNV-1a.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Base64 (standard with padding, or URL-safe without).
pub(crate) fn base64_encode(bytes: &[u8], url_safe: bool) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    if url_safe {
        URL_SAFE_NO_PAD.encode(bytes)
    } else {
        STANDARD.encode(bytes)
    }
}

/// Decodes standard or URL-safe base64 (either alphabet, even mixed), padded or not, ignoring the
/// unused bits of the last character and a dangling last character that completes no byte;
/// `None` on any other character.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::alphabet::STANDARD;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let s = s.trim_end_matches('=');
    let mut standard: Vec<u8> = s
        .bytes()
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .collect();
    if standard.len() % 4 == 1 {
        // Six bits make no byte: check the character, then leave it out.
        let last = standard.pop()?;
        if !(last.is_ascii_alphanumeric() || last == b'+' || last == b'/') {
            return None;
        }
    }
    LENIENT.decode(standard).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_ids_follow_the_client_convention() {
        use Protocol::*;
        assert_eq!(response_id(Anthropic, "chatcmpl-abc123"), "msg_abc123");
        assert_eq!(response_id(Anthropic, "msg_01X"), "msg_01X");
        assert_eq!(response_id(Anthropic, "resp_68af"), "msg_68af");
        assert_eq!(response_id(OpenAiResponses, "msg_01X"), "resp_01X");
        assert_eq!(response_id(OpenAiChat, "msg_01X"), "chatcmpl-01X");
        assert_eq!(response_id(OpenAiChat, "chatcmpl-9"), "chatcmpl-9");
        // Gemini response ids have no prefix; other characters are sanitised.
        assert_eq!(response_id(Anthropic, "mcT8aO:Wq+/"), "msg_mcT8aO_Wq__");
        assert_eq!(response_id(Gemini, "chatcmpl-abc"), "chatcmpl-abc");
        // Deterministic, and a fresh id only when there was none.
        assert_eq!(
            response_id(OpenAiResponses, "chatcmpl-x"),
            response_id(OpenAiResponses, "chatcmpl-x")
        );
        for (client, prefix) in [
            (Anthropic, "msg_"),
            (OpenAiResponses, "resp_"),
            (OpenAiChat, "chatcmpl-"),
        ] {
            let fresh = response_id(client, "");
            assert!(
                fresh.starts_with(prefix) && fresh.len() > prefix.len(),
                "{fresh}"
            );
        }
        // A bare prefix is not stripped to nothing.
        assert_eq!(response_id(Anthropic, "chatcmpl-"), "msg_chatcmpl-");
    }

    #[test]
    fn anthropic_ids_are_sanitised() {
        assert_eq!(anthropic_id("functions.search:0"), "functions_search_0");
        assert_eq!(anthropic_id("toolu_01-A"), "toolu_01-A");
        assert_eq!(anthropic_id(""), "toolu_empty");
    }

    #[test]
    fn signatures_fold_and_unfold() {
        for sig in [
            "c2ln",
            "ab+/cd==",
            "Zm9vYmFy+/+/",
            "not base64: ok?",
            "x__y",
        ] {
            let folded = fold_signature("call_1", Some(sig));
            assert_eq!(anthropic_id(&folded), folded, "{folded} is Anthropic-safe");
            let (id, back) = unfold_signature(&folded);
            assert_eq!(id, "call_1");
            let back = back.unwrap();
            // Base64 signatures may come back with canonical padding.
            assert_eq!(back.trim_end_matches('='), sig.trim_end_matches('='));
        }
        assert_eq!(fold_signature("c", None), "c");
        assert_eq!(unfold_signature("plain"), ("plain".to_owned(), None));
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..20 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for url in [false, true] {
                let enc = base64_encode(&bytes, url);
                assert_eq!(base64_decode(&enc).unwrap(), bytes);
            }
        }
        assert_eq!(base64_encode(b"sig", false), "c2ln");
        assert_eq!(base64_encode(b"si", false), "c2k=");
        assert!(base64_decode("a b").is_none());
        // Lenient where senders are: either alphabet (even mixed), padding optional, a dangling
        // last character ignored.
        assert_eq!(
            base64_decode("-_+/").unwrap(),
            base64_decode("+/+/").unwrap()
        );
        assert_eq!(base64_decode("c2k").unwrap(), b"si");
        assert_eq!(base64_decode("c2lnA").unwrap(), b"sig");
        assert!(base64_decode("c2ln!").is_none());
        assert!(base64_decode("c2=k").is_none());
    }

    #[test]
    fn long_names_are_shortened_stably() {
        let long = "mcp__some_server__".to_owned() + &"x".repeat(80);
        let s = short_name(&long).unwrap();
        assert_eq!(s.len(), 64);
        assert_eq!(short_name(&long).unwrap(), s);
        assert_eq!(short_name("get_weather"), None);
        let dotted = short_name("a.b").unwrap();
        assert!(dotted.starts_with("a_b_"));
        assert_ne!(short_name("a.b"), short_name("a:b"));
    }

    #[test]
    fn synthesized_ids_are_recognised() {
        let id = synthesized_id("resp-1", 2);
        assert!(is_synthesized(&id));
        assert!(id.ends_with("_2"));
        assert_ne!(id, synthesized_id("resp-2", 2));
    }
}
