//! The token estimate a request is admitted on, before anyone knows its real usage.
//!
//! Tokens-per-minute limits and budgets must decide *before* the upstream answers, so a request
//! is admitted on an estimate and charged its real usage when its record completes
//! ([`crate::limiter`]). The estimate is read from the raw body bytes in one pass, without parsing
//! the JSON (a passthrough request stays unparsed):
//!
//! - **input**: the body's bytes divided by 4, rounded up — about a token per 4 characters of
//!   English, and JSON punctuation makes it err on the high side. A run of 1,024 or more
//!   characters without a space or punctuation other than `+/=` (inline base64: an image, audio,
//!   a file) counts as [`DATA_RUN_TOKENS`] instead of its length / 4.
//! - **output**: the request's own output limit, the first of `max_completion_tokens`,
//!   `max_tokens`, `max_output_tokens` (Responses) or `maxOutputTokens` (Gemini) found in the
//!   body; without one, [`DEFAULT_OUTPUT_TOKENS`].
//!
//! ```
//! use octo_limits::estimate::estimate;
//!
//! let body = br#"{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"hello there"}]}"#;
//! let e = estimate(body);
//! assert_eq!(e.input_tokens, (body.len() as u64).div_ceil(4));
//! assert_eq!(e.output_tokens, 50);
//! assert_eq!(e.total(), e.input_tokens + 50);
//! ```

use memchr::memmem;

/// Output tokens assumed when the request sets no output limit.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1_024;
/// What one long run of base64-like characters counts for.
pub const DATA_RUN_TOKENS: u64 = 256;
/// Runs at least this long count as inline data.
const DATA_RUN_BYTES: usize = 1_024;

/// A request's estimated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output tokens: the request's limit, or [`DEFAULT_OUTPUT_TOKENS`].
    pub output_tokens: u64,
}

impl Estimate {
    /// Input plus output.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// Estimates `body`'s tokens; see the [module docs](self).
pub fn estimate(body: &[u8]) -> Estimate {
    Estimate {
        input_tokens: input_tokens(body),
        output_tokens: output_limit(body).unwrap_or(DEFAULT_OUTPUT_TOKENS),
    }
}

fn is_data_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

fn input_tokens(body: &[u8]) -> u64 {
    let mut plain = 0usize;
    let mut runs = 0u64;
    let mut run = 0usize;
    for &b in body {
        if is_data_byte(b) {
            run += 1;
        } else {
            if run >= DATA_RUN_BYTES {
                runs += 1;
            } else {
                plain += run;
            }
            run = 0;
            plain += 1;
        }
    }
    if run >= DATA_RUN_BYTES {
        runs += 1;
    } else {
        plain += run;
    }
    (plain as u64).div_ceil(4) + runs * DATA_RUN_TOKENS
}

/// The output-limit fields, by precedence; every one starts with [`MAX`].
const OUTPUT_KEYS: [&[u8]; 4] = [
    b"\"max_completion_tokens\"",
    b"\"max_tokens\"",
    b"\"max_output_tokens\"",
    b"\"maxOutputTokens\"",
];
/// What every output-limit field starts with: one search finds them all.
const MAX: &[u8] = b"\"max";

/// The first output limit written in the body: of the fields followed by a number, the one
/// first in [`OUTPUT_KEYS`], its first occurrence. One pass for every field (each field searched
/// on its own cost a searcher's set-up per field per request).
fn output_limit(body: &[u8]) -> Option<u64> {
    static FINDER: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    let finder = FINDER.get_or_init(|| memmem::Finder::new(MAX));
    let mut found: [Option<u64>; 4] = [None; 4];
    for at in finder.find_iter(body) {
        let here = &body[at..];
        let Some((k, key)) = OUTPUT_KEYS
            .iter()
            .enumerate()
            .find(|(_, k)| here.starts_with(k))
        else {
            continue;
        };
        if found[k].is_some() {
            continue;
        }
        let rest = trim_start(&here[key.len()..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        let rest = trim_start(rest);
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 && digits <= 12 {
            found[k] = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse().ok());
            if k == 0 {
                break;
            }
        }
    }
    found.into_iter().flatten().next()
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_protocols_output_limit() {
        assert_eq!(output_limit(br#"{"max_completion_tokens": 7}"#), Some(7));
        assert_eq!(output_limit(br#"{"max_tokens" :	12,"x":1}"#), Some(12));
        assert_eq!(output_limit(br#"{"max_output_tokens":300}"#), Some(300));
        assert_eq!(
            output_limit(br#"{"generationConfig":{"maxOutputTokens":64}}"#),
            Some(64)
        );
        // `max_completion_tokens` wins over `max_tokens`, wherever they are.
        assert_eq!(
            output_limit(br#"{"max_tokens":9,"max_completion_tokens":4}"#),
            Some(4)
        );
        // A mention inside text is skipped when no number follows it.
        assert_eq!(
            output_limit(br#"{"content":"set \"max_tokens\" please","max_tokens":3}"#),
            Some(3)
        );
        assert_eq!(output_limit(br#"{"max_tokens":null}"#), None);
        assert_eq!(
            output_limit(br#"{"max_output_tokens":5,"maxOutputTokens":6,"max_tokens":7}"#),
            Some(7)
        );
        assert_eq!(
            output_limit(br#"{"max":1,"max_tokens" 2,"max_tokens":8}"#),
            Some(8)
        );
        assert_eq!(estimate(b"{}").output_tokens, DEFAULT_OUTPUT_TOKENS);
    }

    #[test]
    fn inline_data_counts_as_a_fixed_amount() {
        let text = format!(r#"{{"content":"{}"}}"#, "word ".repeat(400));
        assert_eq!(
            input_tokens(text.as_bytes()),
            (text.len() as u64).div_ceil(4)
        );
        let image = format!(
            r#"{{"url":"data:image/png;base64,{}"}}"#,
            "iVBORw0KGgo".repeat(10_000)
        );
        let e = input_tokens(image.as_bytes());
        let framing = image.len() - 110_000;
        assert_eq!(e, (framing as u64).div_ceil(4) + DATA_RUN_TOKENS);
    }
}
