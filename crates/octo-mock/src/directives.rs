//! Per-request directives: fault injection, pacing and reply shaping, read from `x-mock-*` headers
//! and from `[mock:name=value]` tokens in the raw request body (headers win). Scanning raw bytes
//! keeps this independent of the wire protocol.

use http::HeaderMap;

/// The directives of one request. `None` / `false` means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<u64>,
    pub(crate) latency_ms: Option<u64>,
    pub(crate) jitter_ms: Option<u64>,
    pub(crate) interval_ms: Option<u64>,
    pub(crate) events: Option<usize>,
    pub(crate) timeout: bool,
    pub(crate) reset: bool,
    pub(crate) truncate: Option<usize>,
    pub(crate) abort: Option<usize>,
    pub(crate) midstream_error: Option<usize>,
    pub(crate) max_tokens: bool,
    /// `thinking`: the reply starts with reasoning carrying a signature.
    pub(crate) thinking: bool,
    /// `echo_key`: injected errors (HTTP and mid-stream) quote the presented API key.
    pub(crate) echo_key: bool,
    /// `no_retry_after`: an injected 429 comes without `retry-after`.
    pub(crate) no_retry_after: bool,
    tool: Option<bool>,
    tools: Option<usize>,
    /// `tool=NAME`: the tool to call, by name (instead of cycling through the defined tools).
    pub(crate) tool_name: Option<String>,
    /// `tool_arg=TEXT`: the value given to the named tool's required string parameters.
    pub(crate) tool_arg: Option<String>,
    /// `tool_args=B64`: the exact arguments of every tool call, as compact JSON object text.
    pub(crate) tool_args: Option<String>,
    /// `say=B64`: the exact reply text (instead of the echo).
    pub(crate) say: Option<String>,
}

const HEADER_PREFIX: &str = "x-mock-";
const BODY_PREFIX: &[u8] = b"[mock:";
/// Longest `name=value` accepted inside a body token.
const MAX_TOKEN_LEN: usize = 64;
/// Longest `tool_args=value` accepted inside a body token (the value is base64 of a JSON object,
/// e.g. a whole patch or file).
const MAX_TOOL_ARGS_TOKEN_LEN: usize = 16 * 1024;

impl Directives {
    /// Body tokens first, then headers, so that headers override the body.
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Self {
        let mut directives = Directives::default();
        for (name, value) in body_tokens(body) {
            directives.apply(name, value);
        }
        for (name, value) in headers {
            if let Some(name) = name.as_str().strip_prefix(HEADER_PREFIX) {
                let value = value.to_str().ok().map(str::trim);
                directives.apply(&name.replace('-', "_"), value);
            }
        }
        directives
    }

    /// How many tool calls were asked for (0 = none).
    pub(crate) fn tool_calls(&self) -> usize {
        match (self.tool, self.tools) {
            (Some(false), _) => 0,
            (_, Some(n)) => n,
            (Some(true), None) => 1,
            (None, None) => 0,
        }
    }

    /// The HTTP status to inject, when it is an error status.
    pub(crate) fn error_status(&self) -> Option<u16> {
        self.status.filter(|s| (400..=599).contains(s))
    }

    fn apply(&mut self, name: &str, value: Option<&str>) {
        match name {
            "status" => set_num(&mut self.status, value),
            "retry_after" => set_num(&mut self.retry_after, value),
            "latency_ms" => set_num(&mut self.latency_ms, value),
            "jitter_ms" => set_num(&mut self.jitter_ms, value),
            "interval_ms" => set_num(&mut self.interval_ms, value),
            "events" => set_num(&mut self.events, value),
            "truncate" => set_num(&mut self.truncate, value),
            "abort" => set_num(&mut self.abort, value),
            "midstream_error" => set_num(&mut self.midstream_error, value),
            "tools" => set_num(&mut self.tools, value),
            "tool" => match value {
                Some(name) if !is_flag_word(name) => {
                    self.tool = Some(true);
                    self.tool_name = Some(name.to_owned());
                }
                _ => self.tool = Some(flag(value)),
            },
            "tool_arg" => self.tool_arg = value.map(str::to_owned),
            "tool_args" => {
                if let Some(args) = value.and_then(decode_tool_args) {
                    self.tool_args = Some(args);
                }
            }
            "say" => {
                if let Some(v) = value {
                    self.say = Some(decode_say(v));
                }
            }
            "timeout" => self.timeout = flag(value),
            "reset" => self.reset = flag(value),
            "max_tokens" => self.max_tokens = flag(value),
            "thinking" => self.thinking = flag(value),
            "echo_key" => self.echo_key = flag(value),
            "no_retry_after" => self.no_retry_after = flag(value),
            _ => {}
        }
    }
}

fn set_num<T: std::str::FromStr>(slot: &mut Option<T>, value: Option<&str>) {
    if let Some(n) = value.and_then(|v| v.parse().ok()) {
        *slot = Some(n);
    }
}

/// A flag is on unless its value says otherwise.
fn flag(value: Option<&str>) -> bool {
    !matches!(
        value.map(str::to_ascii_lowercase).as_deref(),
        Some("0" | "false" | "no" | "off")
    )
}

/// Whether `value` reads as a flag value rather than a name (`tool=1` is a flag, `tool=Bash` a name).
fn is_flag_word(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "" | "0" | "1" | "true" | "false" | "yes" | "no" | "on" | "off"
    )
}

/// The `tool_args` value: a JSON object, either as is (handy in a header) or base64-encoded
/// (standard or URL-safe alphabet, padding optional; the only form that survives in a body, where
/// the request's own JSON would escape the quotes). Returns the object as compact JSON text, or
/// `None` when the value is neither.
fn decode_tool_args(value: &str) -> Option<String> {
    let text = if value.starts_with('{') {
        value.to_owned()
    } else {
        String::from_utf8(decode_base64(value)?).ok()?
    };
    match serde_json::from_str::<serde_json::Value>(&text).ok()? {
        object @ serde_json::Value::Object(_) => Some(object.to_string()),
        _ => None,
    }
}

/// The `say` value: base64 of UTF-8 text (standard or URL-safe alphabet, padding optional), or,
/// when it is not that, the value itself (handy in a header).
fn decode_say(value: &str) -> String {
    decode_base64(value)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| value.to_owned())
}

/// Decodes base64 in the standard (`+/`) or URL-safe (`-_`) alphabet, with or without `=`
/// padding. `None` on any other character or an impossible length.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
    STANDARD_PAD_INDIFFERENT
        .decode(text)
        .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(text))
        .ok()
}

/// Yields `(name, value)` for every well-formed `[mock:name]` / `[mock:name=value]` in `body`.
fn body_tokens(body: &[u8]) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = body;
    std::iter::from_fn(move || {
        loop {
            let start = rest.iter().position(|&b| b == b'[')?;
            rest = &rest[start + 1..];
            let Some(after) = rest.strip_prefix(&BODY_PREFIX[1..]) else {
                continue;
            };
            let max = if after.starts_with(b"tool_args=") || after.starts_with(b"say=") {
                MAX_TOOL_ARGS_TOKEN_LEN
            } else {
                MAX_TOKEN_LEN
            };
            let window = &after[..after.len().min(max + 1)];
            let Some(end) = window.iter().position(|&b| b == b']') else {
                continue;
            };
            let Ok(token) = std::str::from_utf8(&after[..end]) else {
                continue;
            };
            rest = &after[end + 1..];
            let (name, value) = match token.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (token, None),
            };
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Some((name, value));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn body_tokens_are_found_anywhere() {
        let body = br#"{"messages":[{"role":"user","content":"hi [mock:status=503] and [mock:tool] [mock:events=3][mock:nope"}]}"#;
        let d = Directives::parse(&HeaderMap::new(), body);
        assert_eq!(d.status, Some(503));
        assert_eq!(d.error_status(), Some(503));
        assert_eq!(d.tool_calls(), 1);
        assert_eq!(d.events, Some(3));
        assert!(!d.timeout);
    }

    #[test]
    fn headers_win_and_accept_dashes() {
        let body = b"[mock:tools=3] [mock:latency_ms=5] [mock:timeout]";
        let h = headers(&[
            ("x-mock-latency-ms", "7"),
            ("x-mock-tool", "false"),
            ("x-mock-timeout", "0"),
            ("x-mock-midstream_error", "2"),
        ]);
        let d = Directives::parse(&h, body);
        assert_eq!(d.latency_ms, Some(7));
        assert_eq!(d.tool_calls(), 0);
        assert!(!d.timeout);
        assert_eq!(d.midstream_error, Some(2));
    }

    #[test]
    fn say_is_base64_or_plain() {
        // base64 of "[[flag:violence]] ok"
        let d = Directives::parse(
            &HeaderMap::new(),
            b"x [mock:say=W1tmbGFnOnZpb2xlbmNlXV0gb2s=] y",
        );
        assert_eq!(d.say.as_deref(), Some("[[flag:violence]] ok"));
        let d = Directives::parse(&headers(&[("x-mock-say", "plain words!")]), b"");
        assert_eq!(d.say.as_deref(), Some("plain words!"));
    }

    #[test]
    fn flags_and_bad_values() {
        let h = headers(&[("x-mock-reset", ""), ("x-mock-status", "abc")]);
        let d = Directives::parse(
            &h,
            b"[mock:max_tokens] [mock:status=200] [mock:Bad=1] [mock:thinking] [mock:echo_key] [mock:no_retry_after]",
        );
        assert!(d.echo_key && d.no_retry_after);
        assert!(d.reset);
        assert!(d.max_tokens);
        assert!(d.thinking);
        assert_eq!(d.status, Some(200));
        assert_eq!(d.error_status(), None);
        assert_eq!(
            Directives::parse(&HeaderMap::new(), b"[mock:tools=2]").tool_calls(),
            2
        );
    }

    #[test]
    fn tool_by_name_and_argument() {
        let d = Directives::parse(
            &HeaderMap::new(),
            b"run [mock:tool=Bash] [mock:tool_arg=echo octo tool]",
        );
        assert_eq!(d.tool_calls(), 1);
        assert_eq!(d.tool_name.as_deref(), Some("Bash"));
        assert_eq!(d.tool_arg.as_deref(), Some("echo octo tool"));
        // Flag words are flags, not names; a header can still switch a named call off.
        let d = Directives::parse(&HeaderMap::new(), b"[mock:tool=yes]");
        assert_eq!((d.tool_calls(), d.tool_name), (1, None));
        let d = Directives::parse(&headers(&[("x-mock-tool", "off")]), b"[mock:tool=Bash]");
        assert_eq!(d.tool_calls(), 0);
    }

    #[test]
    fn exact_tool_arguments_in_base64_or_json() {
        // {"file_path":"/tmp/a b.txt","content":"line 1\nline \"2\"]\n"} in base64, padded
        // (standard alphabet) and unpadded (URL-safe), far longer than an ordinary token.
        let json = r#"{"file_path":"/tmp/a b.txt","content":"line 1\nline \"2\"]\n"}"#;
        let expected = serde_json::from_str::<serde_json::Value>(json)
            .unwrap()
            .to_string();
        let b64 =
            "eyJmaWxlX3BhdGgiOiIvdG1wL2EgYi50eHQiLCJjb250ZW50IjoibGluZSAxXG5saW5lIFwiMlwiXVxuIn0=";
        assert!(b64.len() > MAX_TOKEN_LEN);
        let body = format!("write it [mock:tool=Write] [mock:tool_args={b64}] please");
        let d = Directives::parse(&HeaderMap::new(), body.as_bytes());
        assert_eq!(d.tool_args.as_deref(), Some(expected.as_str()));
        assert_eq!(d.tool_name.as_deref(), Some("Write"));
        let url_safe = b64
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        let d = Directives::parse(
            &HeaderMap::new(),
            format!("[mock:tool_args={url_safe}]").as_bytes(),
        );
        assert_eq!(d.tool_args.as_deref(), Some(expected.as_str()));
        // A header may carry the JSON as is, and wins over the body.
        let h = headers(&[("x-mock-tool-args", r#"{"input": "a\nb"}"#)]);
        let d = Directives::parse(&h, body.as_bytes());
        assert_eq!(d.tool_args.as_deref(), Some(r#"{"input":"a\nb"}"#));
        // Not base64, not JSON, or not an object: ignored.
        for bad in ["not base64!", "WzEsMl0", "eyJh", "{\"a\":"] {
            let d = Directives::parse(&headers(&[("x-mock-tool-args", bad)]), b"");
            assert_eq!(d.tool_args, None, "{bad}");
        }
        assert_eq!(decode_base64("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("a"), None);
    }

    #[test]
    fn unterminated_or_long_tokens_are_ignored() {
        let long = format!("[mock:status={}]", "5".repeat(80));
        assert_eq!(
            Directives::parse(&HeaderMap::new(), long.as_bytes()),
            Directives::default()
        );
        assert_eq!(
            Directives::parse(&HeaderMap::new(), b"[mock:status=500"),
            Directives::default()
        );
        assert_eq!(
            Directives::parse(&HeaderMap::new(), b"[[mock:abort=2]").abort,
            Some(2)
        );
    }
}
