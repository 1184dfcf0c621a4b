//! Model-name spellings: the same model reaches the gateway as `claude-sonnet-4-5-20250929`,
//! `anthropic/claude-sonnet-4-5`, `models/gemini-2.5-pro` or `GPT-4o`, while a price list has one
//! key for it. This module turns a name into the spellings worth looking up, most specific first.

/// The spellings of `name` to look up, in order: the name itself (lowercased, trimmed), without a
/// `models/` prefix, the part after the last `/`, then each of those with a release date stripped
/// from its end. Duplicates are removed.
///
/// ```
/// use octo_prices::names::spellings;
/// assert_eq!(
///     spellings("Claude-Sonnet-4-5-20250929"),
///     ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]
/// );
/// assert_eq!(spellings("openrouter/openai/gpt-4o"), ["openrouter/openai/gpt-4o", "gpt-4o"]);
/// ```
pub fn spellings(name: &str) -> Vec<String> {
    let lower = name.trim().to_ascii_lowercase();
    let mut out: Vec<String> = Vec::with_capacity(4);
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    push(&lower);
    let unprefixed = lower.strip_prefix("models/").unwrap_or(&lower);
    push(unprefixed);
    let last = unprefixed.rsplit('/').next().unwrap_or(unprefixed);
    push(last);
    let bases: Vec<String> = out.clone();
    for b in &bases {
        if let Some(stripped) = strip_date(b)
            && !out.iter().any(|o| o == stripped)
        {
            out.push(stripped.to_owned());
        }
    }
    out
}

/// `name` without a trailing release date: `-20250929`, `@20250929` (Vertex AI) or `-2024-08-06`.
/// `None` when it ends with none of these.
///
/// ```
/// use octo_prices::names::strip_date;
/// assert_eq!(strip_date("gpt-4o-2024-08-06"), Some("gpt-4o"));
/// assert_eq!(strip_date("claude-sonnet-4-5@20250929"), Some("claude-sonnet-4-5"));
/// assert_eq!(strip_date("gpt-4-0613"), None); // four digits are not a date we can tell apart
/// ```
pub fn strip_date(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // -YYYYMMDD or @YYYYMMDD
    if b.len() > 9 {
        let (head, tail) = b.split_at(b.len() - 9);
        if (tail[0] == b'-' || tail[0] == b'@')
            && digits(&tail[1..])
            && tail[1..3] == *b"20"
            && !head.is_empty()
        {
            return Some(&name[..head.len()]);
        }
    }
    // -YYYY-MM-DD
    if b.len() > 11 {
        let (head, tail) = b.split_at(b.len() - 11);
        if tail[0] == b'-'
            && digits(&tail[1..5])
            && tail[5] == b'-'
            && digits(&tail[6..8])
            && tail[8] == b'-'
            && digits(&tail[9..11])
            && !head.is_empty()
        {
            return Some(&name[..head.len()]);
        }
    }
    None
}

/// The name a key is known by without its provider prefix: `gemini/gemini-2.5-pro` →
/// `gemini-2.5-pro`, `groq/openai/gpt-oss-120b` → `openai/gpt-oss-120b`. `None` for keys without
/// a `/`.
pub(crate) fn unprefixed(key: &str) -> Option<&str> {
    key.split_once('/')
        .map(|(_, rest)| rest)
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_go_from_specific_to_general() {
        assert_eq!(spellings("gpt-4o"), ["gpt-4o"]);
        assert_eq!(
            spellings("models/gemini-2.5-pro"),
            ["models/gemini-2.5-pro", "gemini-2.5-pro"]
        );
        assert_eq!(
            spellings("anthropic/claude-sonnet-4-5-20250929"),
            [
                "anthropic/claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5-20250929",
                "anthropic/claude-sonnet-4-5",
                "claude-sonnet-4-5"
            ]
        );
        assert_eq!(spellings("  "), Vec::<String>::new());
    }

    #[test]
    fn only_whole_dates_are_stripped() {
        assert_eq!(
            strip_date("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(strip_date("-20250929"), None);
        assert_eq!(strip_date("model-12345678"), None); // not 20xx
        assert_eq!(strip_date("gpt-4o-2024-08-6"), None);
        assert_eq!(strip_date("grok-4.20-0309-reasoning"), None);
        assert_eq!(strip_date("é-20250929"), Some("é"));
    }

    #[test]
    fn prefixes_come_off_once() {
        assert_eq!(unprefixed("gemini/gemini-2.5-pro"), Some("gemini-2.5-pro"));
        assert_eq!(
            unprefixed("groq/openai/gpt-oss-120b"),
            Some("openai/gpt-oss-120b")
        );
        assert_eq!(unprefixed("gpt-4o"), None);
        assert_eq!(unprefixed("x/"), None);
    }
}
