//! A structure-only scan of a JSON object for its top-level `model` and `stream`.
//!
//! Why not serde: a borrowed serde scan validates every byte of every string (UTF-8, control
//! characters, escapes), about 2.5 instructions per byte, and that validation was two thirds of
//! the gateway's cost for a 1 MiB passthrough. Routing needs two short scalars, and a
//! passthrough forwards the bytes untouched, so the upstream validates them anyway. This scan
//! jumps from quote to quote (`memchr2` for `"` and `\`, SIMD where the CPU has it) and only
//! looks at the bytes between strings.
//!
//! What is checked, and reported as the same 400 `invalid_json` error serde would give:
//! - the body is a JSON object (anything else is "the wrong shape");
//! - the top-level object's own grammar: string keys, `:` after each key, `,` or `}` after each
//!   value, nothing but whitespace after the closing `}`;
//! - every string is terminated and every nested `[`/`{` is closed by the matching bracket, so a
//!   truncated or unterminated body is always caught (every strict prefix of an object is);
//! - the `model` and `stream` values themselves, fully: `model` is a string (escapes decoded,
//!   UTF-8 and control characters checked) or `null`; `stream` is `true`, `false` or `null`;
//! - keys are compared after decoding escapes (`"mod\u0065l"` is `model`), as serde does;
//! - a duplicate top-level `model` or `stream` is refused, as the serde scan it replaces did
//!   ("duplicate field"): a later copy could route the request one way while an upstream that
//!   reads the first copy serves another model. The duplicate is named even when the first copy
//!   has the wrong type (`{"model":1,"model":"m"}`): a type error is only reported once the
//!   object has been read to its end without a duplicate. (`Body::json` would keep the last copy, like
//!   serde_json's `Value`; refusing here means the two never disagree on a routed request.)
//!
//! Left to the upstream (or to a full parse, for an engine that needs the document): the contents
//! of other values — number and literal syntax, commas and colons inside nested values, UTF-8
//! and control characters inside strings other than `model`, escape sequences other than `\"`
//! and `\\` being well-formed. Like serde's `IgnoredAny`, nesting depth is not limited.

use std::borrow::Cow;
use std::ops::Range;

use memchr::memchr2;

/// The routing scalars found at the top level. `None` when absent (or `null`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scalars<'a> {
    pub(super) model: Option<Cow<'a, str>>,
    pub(super) stream: Option<bool>,
}

/// Why a scan failed, and the byte offset where it was noticed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ScanError {
    /// Not JSON (or not JSON the scan can read): the body is malformed.
    Syntax(&'static str, usize),
    /// JSON, but not an object, or with a duplicate routing key.
    Shape(&'static str, usize),
    /// `model` is neither a string nor `null`.
    ModelType,
    /// `stream` is neither a boolean nor `null`.
    StreamType,
}

/// Scans `bytes` for the top-level `model` and `stream`. See the [module docs](self).
///
/// A wrongly typed `model`/`stream` stops the scan where it is met ([`ScanError::ModelType`],
/// [`ScanError::StreamType`]); a duplicate of it later in the body is the clearer error, which
/// the caller finds with [`duplicate_routing_key`] on that error path (so the hot path is
/// unchanged).
pub(super) fn scan(bytes: &[u8]) -> Result<Scalars<'_>, ScanError> {
    Scanner { b: bytes, i: 0 }.object()
}

/// Reads the whole object for a second top-level `model` or `stream` (the error naming it), or
/// a malformed body (its syntax error); `Ok` when there is neither.
#[cold]
pub(super) fn duplicate_routing_key(bytes: &[u8]) -> Result<(), ScanError> {
    let mut s = Scanner { b: bytes, i: 0 };
    s.open_object()?;
    if s.peek() == Some(b'}') {
        s.i += 1;
        return s.end(());
    }
    let (mut seen_model, mut seen_stream) = (false, false);
    loop {
        s.whitespace();
        s.member_key_start()?;
        let key_at = s.i;
        // Not `Scanner::key` (a second caller would take it out of line on the hot path).
        let (raw, escaped) = s.string()?;
        let decoded;
        let name: &[u8] = if escaped {
            decoded = decode(&s.b[key_at..s.i]).ok_or(ScanError::Syntax(
                "invalid escape or character in a key",
                key_at,
            ))?;
            decoded.as_bytes()
        } else {
            raw
        };
        let key = match name {
            b"model" => Key::Model,
            b"stream" => Key::Stream,
            _ => Key::Other,
        };
        s.colon()?;
        match key {
            Key::Model if seen_model => {
                return Err(ScanError::Shape("duplicate field `model`", key_at));
            }
            Key::Stream if seen_stream => {
                return Err(ScanError::Shape("duplicate field `stream`", key_at));
            }
            Key::Model => seen_model = true,
            Key::Stream => seen_stream = true,
            Key::Other => {}
        }
        s.skip_value()?;
        if s.after_member()? {
            return s.end(());
        }
    }
}

/// The byte range of the value of top-level `key` in `bytes` (the last one when repeated, as a
/// full parse would keep), checked like [`scan`] but with no type or duplicate rule: any value
/// may be replaced.
pub(super) fn value_span(bytes: &[u8], key: &str) -> Result<Option<Range<usize>>, ScanError> {
    let mut s = Scanner { b: bytes, i: 0 };
    s.open_object()?;
    let mut found = None;
    if s.peek() == Some(b'}') {
        s.i += 1;
        return s.end(()).map(|()| found);
    }
    loop {
        s.whitespace();
        s.member_key_start()?;
        let at = s.i;
        let (raw, escaped) = s.string()?;
        let is_key = if escaped {
            decode(&s.b[at..s.i]).ok_or(ScanError::Syntax(
                "invalid escape or character in a key",
                at,
            ))? == key
        } else {
            raw == key.as_bytes()
        };
        s.colon()?;
        let start = s.i;
        s.skip_value()?;
        if is_key {
            found = Some(start..s.i);
        }
        if s.after_member()? {
            return s.end(()).map(|()| found);
        }
    }
}

/// Which top-level key a member has.
enum Key {
    Model,
    Stream,
    Other,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn object(&mut self) -> Result<Scalars<'a>, ScanError> {
        self.open_object()?;
        let mut out = Scalars::default();
        let (mut seen_model, mut seen_stream) = (false, false);
        if self.peek() == Some(b'}') {
            self.i += 1;
            return self.end(out);
        }
        loop {
            self.whitespace();
            self.member_key_start()?;
            let key_at = self.i;
            let key = self.key()?;
            self.colon()?;
            match key {
                Key::Model if seen_model => {
                    return Err(ScanError::Shape("duplicate field `model`", key_at));
                }
                Key::Stream if seen_stream => {
                    return Err(ScanError::Shape("duplicate field `stream`", key_at));
                }
                Key::Model => {
                    seen_model = true;
                    out.model = self.model()?;
                }
                Key::Stream => {
                    seen_stream = true;
                    out.stream = self.stream()?;
                }
                Key::Other => self.skip_value()?,
            }
            if self.after_member()? {
                return self.end(out);
            }
        }
    }

    /// The opening brace of the body (after whitespace), and the whitespace after it.
    fn open_object(&mut self) -> Result<(), ScanError> {
        self.whitespace();
        match self.peek() {
            Some(b'{') => self.i += 1,
            None => return Err(self.syntax("EOF while parsing a value")),
            Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                return Err(ScanError::Shape("expected a JSON object", self.i));
            }
            Some(_) => return Err(self.syntax("expected value")),
        }
        self.whitespace();
        Ok(())
    }

    /// Checks that a member starts with a key (its opening quote).
    fn member_key_start(&self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => Ok(()),
            Some(b'}') => Err(self.syntax("trailing comma")),
            None => Err(self.syntax("EOF while parsing an object")),
            Some(_) => Err(self.syntax("key must be a string")),
        }
    }

    /// The `:` after a key, with the whitespace around it.
    fn colon(&mut self) -> Result<(), ScanError> {
        self.whitespace();
        match self.peek() {
            Some(b':') => self.i += 1,
            None => return Err(self.syntax("EOF while parsing an object")),
            Some(_) => return Err(self.syntax("expected `:`")),
        }
        self.whitespace();
        Ok(())
    }

    /// After a member's value: `,` (another member follows: `false`) or the closing `}` (`true`).
    fn after_member(&mut self) -> Result<bool, ScanError> {
        self.whitespace();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(b'}') => {
                self.i += 1;
                Ok(true)
            }
            None => Err(self.syntax("EOF while parsing an object")),
            Some(_) => Err(self.syntax("expected `,` or `}`")),
        }
    }

    /// After the closing brace: only whitespace may follow.
    fn end<T>(&mut self, out: T) -> Result<T, ScanError> {
        self.whitespace();
        if self.i < self.b.len() {
            return Err(self.syntax("trailing characters"));
        }
        Ok(out)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn syntax(&self, what: &'static str) -> ScanError {
        ScanError::Syntax(what, self.i)
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// Skips a string starting at the opening quote; returns its raw contents (between the
    /// quotes) and whether they contain a backslash.
    fn string(&mut self) -> Result<(&'a [u8], bool), ScanError> {
        let start = self.i + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            let Some(p) = quote_or_backslash(self.b, at) else {
                self.i = self.b.len();
                return Err(self.syntax("EOF while parsing a string"));
            };
            if self.b[p] == b'"' {
                self.i = p + 1;
                return Ok((&self.b[start..p], escaped));
            }
            // A backslash: the next byte is escaped, whatever it is (a quote included).
            escaped = true;
            at = p + 2;
        }
    }

    /// Reads a top-level key, decoding escapes only when there are any.
    fn key(&mut self) -> Result<Key, ScanError> {
        let at = self.i;
        let (raw, escaped) = self.string()?;
        let decoded;
        let name: &[u8] = if escaped {
            decoded = decode(&self.b[at..self.i]).ok_or(ScanError::Syntax(
                "invalid escape or character in a key",
                at,
            ))?;
            decoded.as_bytes()
        } else {
            raw
        };
        Ok(match name {
            b"model" => Key::Model,
            b"stream" => Key::Stream,
            _ => Key::Other,
        })
    }

    /// The value of `model`: a string, fully validated, or `null`.
    fn model(&mut self) -> Result<Option<Cow<'a, str>>, ScanError> {
        match self.peek() {
            Some(b'"') => {
                let at = self.i;
                let (raw, escaped) = self.string()?;
                let invalid = ScanError::Syntax("invalid escape or character in `model`", at);
                if escaped || raw.iter().any(|&c| c < 0x20) {
                    return decode(&self.b[at..self.i]).map(Some).ok_or(invalid);
                }
                std::str::from_utf8(raw)
                    .map(|s| Some(Cow::Borrowed(s)))
                    .map_err(|_| invalid)
            }
            _ => match self.literal()? {
                Some(None) => Ok(None),
                _ => Err(ScanError::ModelType),
            },
        }
    }

    /// The value of `stream`: `true`, `false` or `null`.
    fn stream(&mut self) -> Result<Option<bool>, ScanError> {
        match self.literal()? {
            Some(b) => Ok(b),
            None => Err(ScanError::StreamType),
        }
    }

    /// Reads `true`, `false` or `null` (as `Some(Some(bool))` / `Some(None)`); `None` when the
    /// value is of another type (and left unread, since the caller fails anyway).
    fn literal(&mut self) -> Result<Option<Option<bool>>, ScanError> {
        let rest = &self.b[self.i..];
        let (word, value): (&[u8], _) = match rest.first() {
            Some(b't') => (b"true", Some(true)),
            Some(b'f') => (b"false", Some(false)),
            Some(b'n') => (b"null", None),
            Some(b'"' | b'[' | b'{' | b'-' | b'0'..=b'9') => return Ok(None),
            None => return Err(self.syntax("EOF while parsing a value")),
            Some(_) => return Err(self.syntax("expected value")),
        };
        if rest.starts_with(word) {
            self.i += word.len();
            Ok(Some(value))
        } else if word.starts_with(rest) {
            self.i = self.b.len();
            Err(self.syntax("EOF while parsing a value"))
        } else {
            Err(self.syntax("expected ident"))
        }
    }

    /// Skips any value: strings and brackets are followed, scalars are skipped unread.
    fn skip_value(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => self.skip_nested(),
            None => Err(self.syntax("EOF while parsing a value")),
            Some(b',' | b'}' | b']' | b':') => Err(self.syntax("expected value")),
            Some(_) => {
                // A number or literal: up to the next delimiter or structural byte (so that what
                // follows is checked by the caller); its own syntax is not checked.
                while let Some(c) = self.peek() {
                    if matches!(
                        c,
                        b',' | b'}'
                            | b']'
                            | b' '
                            | b'\n'
                            | b'\r'
                            | b'\t'
                            | b'"'
                            | b'{'
                            | b'['
                            | b':'
                    ) {
                        break;
                    }
                    self.i += 1;
                }
                Ok(())
            }
        }
    }

    /// Skips an array or object starting at its opening bracket.
    fn skip_nested(&mut self) -> Result<(), ScanError> {
        match skip_nested(self.b, self.i) {
            Ok(end) => {
                self.i = end;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Skips the array or object opening at `b[open]`, checking that strings end and brackets
/// match; returns the index just past its closing bracket.
///
/// The hot loop of a large body, kept out of line so that its state stays in registers: it looks
/// at each byte outside strings once and jumps over each string with [`string_end`]. The kinds of
/// the open brackets are a shift register (`1` for `{`, innermost lowest) spilling every 64
/// levels into a vector.
#[inline(never)]
fn skip_nested(b: &[u8], open: usize) -> Result<usize, ScanError> {
    let mut i = open;
    let mut depth = 0usize;
    let mut kinds = 0u64;
    let mut deeper: Vec<u64> = Vec::new();
    while let Some(&c) = b.get(i) {
        i += 1;
        match c {
            b'"' => match string_end(b, i) {
                Some(end) => i = end,
                None => return Err(ScanError::Syntax("EOF while parsing a string", b.len())),
            },
            b'{' | b'[' => {
                if depth > 0 && depth % 64 == 0 {
                    deeper.push(kinds);
                    kinds = 0;
                }
                kinds = kinds << 1 | u64::from(c == b'{');
                depth += 1;
            }
            b'}' | b']' => {
                if (kinds & 1 == 1) != (c == b'}') {
                    return Err(ScanError::Syntax("mismatched bracket", i - 1));
                }
                kinds >>= 1;
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
                if depth % 64 == 0 {
                    kinds = deeper.pop().unwrap_or_default();
                }
            }
            _ => {}
        }
    }
    Err(ScanError::Syntax("EOF while parsing a value", b.len()))
}

/// The index just past the closing quote of the string whose contents start at `from`.
#[inline(always)]
fn string_end(b: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let p = quote_or_backslash(b, from)?;
        if b[p] == b'"' {
            return Some(p + 1);
        }
        // A backslash: the next byte is escaped, whatever it is (a quote included).
        from = p + 2;
    }
}

/// The position of the first `"` or `\\` at or after `from`.
///
/// Most strings in a chat body are short (roles, keys, a sentence), where a call into `memchr2`
/// costs more than the search; so the first 64 bytes are searched 16 bytes (two words) at a
/// time, and only a longer string is handed to `memchr2` (vectorised).
#[inline(always)]
fn quote_or_backslash(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at - from < 64 {
        let Some(block) = b.get(at..at + 16) else {
            break;
        };
        let (lo, hi) = block.split_at(8);
        let lo = specials(u64::from_le_bytes(lo.try_into().unwrap_or_default()));
        let hi = specials(u64::from_le_bytes(hi.try_into().unwrap_or_default()));
        if lo | hi != 0 {
            let first = if lo != 0 {
                lo.trailing_zeros()
            } else {
                64 + hi.trailing_zeros()
            };
            return Some(at + (first / 8) as usize);
        }
        at += 16;
    }
    memchr2(b'"', b'\\', b.get(at..)?).map(|p| at + p)
}

/// The high bit of each byte of `w` that is `"` or `\\` (exact up to the first such byte, which
/// is the only one used: a borrow can only set bits above a real match).
#[inline(always)]
fn specials(w: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let q = w ^ QUOTES;
    let s = w ^ BACKSLASHES;
    (q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s) & HIGH
}

/// Decodes one JSON string literal (quotes included) with serde_json: escapes (surrogate pairs
/// too), UTF-8 and control characters exactly as a full parse would read them. Only used for the
/// few short strings the scan reads and only when they are not plain.
fn decode(literal: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<Cow<'_, str>>(literal).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (Option<String>, Option<bool>) {
        let got = scan(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        (got.model.map(Cow::into_owned), got.stream)
    }

    fn err(s: &str) -> ScanError {
        scan(s.as_bytes()).expect_err(s)
    }

    #[test]
    fn reads_top_level_scalars_only() {
        assert_eq!(
            ok(r#"{"messages":[{"model":"inner","stream":1}],"stream":true,"model":"m"}"#),
            (Some("m".into()), Some(true))
        );
        assert_eq!(ok(r#" { } "#), (None, None));
        assert_eq!(ok(r#"{"model":null,"stream":null}"#), (None, None));
        assert_eq!(ok(r#"{"x":{"model":"no"},"y":"model"}"#), (None, None));
        assert_eq!(
            ok("{\n\t\"stream\" :\r false , \"a\" : -1.5e3 }\n"),
            (None, Some(false))
        );
    }

    #[test]
    fn escapes_in_keys_and_values_are_decoded() {
        assert_eq!(
            ok(r#"{"mod\u0065l":"a\"b\\c"}"#).0.as_deref(),
            Some("a\"b\\c")
        );
        assert_eq!(ok(r#"{"model":"\ud83d\ude00"}"#).0.as_deref(), Some("😀"));
        assert_eq!(ok(r#"{"x":"\\","model":"é"}"#).0.as_deref(), Some("é"));
        // An escaped quote does not end a skipped string.
        assert_eq!(ok(r#"{"x":"a\"}","model":"m"}"#).0.as_deref(), Some("m"));
        assert_eq!(ok(r#"{"x":["\\\"]"],"model":"m"}"#).0.as_deref(), Some("m"));
        assert_eq!(
            err(r#"{"model":"\x"}"#),
            ScanError::Syntax("invalid escape or character in `model`", 9)
        );
        assert!(matches!(
            err("{\"model\":\"a\u{1}\"}"),
            ScanError::Syntax(..)
        ));
        assert!(matches!(err(r#"{"\q":1}"#), ScanError::Syntax(..)));
        assert!(matches!(
            scan(b"{\"model\":\"\xff\"}"),
            Err(ScanError::Syntax(..))
        ));
    }

    #[test]
    fn wrong_types_and_duplicates_are_refused() {
        assert_eq!(err(r#"{"model":1}"#), ScanError::ModelType);
        assert_eq!(err(r#"{"model":["m"]}"#), ScanError::ModelType);
        assert_eq!(err(r#"{"stream":"yes"}"#), ScanError::StreamType);
        assert_eq!(err(r#"{"stream":0}"#), ScanError::StreamType);
        assert_eq!(
            err(r#"{"model":"a","x":1,"model":"b"}"#),
            ScanError::Shape("duplicate field `model`", 19)
        );
        assert!(matches!(
            err(r#"{"stream":true,"stream":true}"#),
            ScanError::Shape(..)
        ));
        for s in ["[1]", "\"s\"", "1", "null", "true"] {
            assert!(matches!(err(s), ScanError::Shape(..)), "{s}");
        }
        // A duplicate is named even when the first copy has the wrong type (found by the `peek`
        // fuzz target: a reader keeping the last copy reads a string there).
        let err = |s: &str| match scan(s.as_bytes()).expect_err(s) {
            e @ (ScanError::ModelType | ScanError::StreamType) => {
                duplicate_routing_key(s.as_bytes()).err().unwrap_or(e)
            }
            e => e,
        };
        assert_eq!(
            err("{\"model\":2,\n\"model\":\"\",\"\":{}\n}"),
            ScanError::Shape("duplicate field `model`", 12)
        );
        for s in [
            r#"{"model":[1,"x"],"model":"m"}"#,
            r#"{"model":true,"a":{"b":[]},"model":null}"#,
            r#"{"stream":"yes","stream":true}"#,
            r#"{"stream":{"a":1},"stream":false}"#,
            r#"{"model":1,"stream":2,"stream":true}"#,
        ] {
            assert!(
                matches!(err(s), ScanError::Shape(d, _) if d.starts_with("duplicate field")),
                "{s}"
            );
        }
        // Without a duplicate the type error stands, after the rest of the object is checked.
        assert_eq!(err(r#"{"model":[1],"x":"y"}"#), ScanError::ModelType);
        assert_eq!(err(r#"{"model":1,"stream":"s"}"#), ScanError::ModelType);
        assert_eq!(err(r#"{"stream":0,"model":1}"#), ScanError::StreamType);
        assert!(matches!(err(r#"{"model":1,"x":}"#), ScanError::Syntax(..)));
    }

    #[test]
    fn malformed_bodies_are_syntax_errors() {
        for s in [
            "",
            "  ",
            "{",
            "{\"model\":",
            "{\"model\":\"m",
            "{\"a\":[1,2}",
            "{\"a\":{]}",
            "{\"a\":[[]]]}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":1\"b\":2}",
            "{\"a\":1{}}",
            "{\"a\":tru:e}",
            "{a:1}",
            "{\"a\":1}x",
            "{\"a\":1}{}",
            "{\"stream\":tru}",
            "{\"stream\":tru",
            "{\"stream\":truex}",
            "{\"a\":}",
            "{\"a\":\"\\",
            "\u{feff}{}",
        ] {
            assert!(
                matches!(err(s), ScanError::Syntax(..)),
                "{s:?}: {:?}",
                err(s)
            );
        }
    }

    #[test]
    fn deep_nesting_is_followed_past_the_inline_bits() {
        let deep = format!(
            "{{\"a\":{}{},\"model\":\"m\"}}",
            "[{\"k\":".repeat(300),
            "1}]".repeat(300)
        );
        assert_eq!(ok(&deep).0.as_deref(), Some("m"));
        let wrong = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(199) + "}");
        assert!(matches!(
            err(&wrong),
            ScanError::Syntax("mismatched bracket", _)
        ));
    }
}
