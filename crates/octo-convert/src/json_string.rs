//! Incremental decoding of a JSON string value while its text arrives in fragments.
//!
//! A Responses client declares free-form (`custom`) tools, such as Codex's `apply_patch`, whose
//! calls stream their `input` as plain text. Toward other upstreams such a tool is a function with
//! one string parameter, so the upstream streams arguments `{"input": "…"}` as JSON text cut at
//! arbitrary bytes. [`InputDecoder`] turns those fragments back into the string's text as soon as
//! each character is complete (escapes and surrogate pairs included), never re-reading what it has
//! already decoded.

/// Decodes the string value of `{"input": "…"}` arguments while their fragments arrive, so a
/// `custom` tool's input streams as `response.custom_tool_call_input.delta` text. Arguments of
/// any other shape are not streamed; their input is sent whole when the call ends.
#[derive(Debug, Default)]
pub(crate) struct InputDecoder {
    /// Byte offset in the arguments of the next undecoded character of the value.
    pos: Option<usize>,
    /// The value ended, or the arguments have another shape.
    stopped: bool,
    /// The text decoded so far.
    pub(crate) text: String,
}

impl InputDecoder {
    /// Decodes what `arguments` (all fragments so far) added; returns the new text.
    pub(crate) fn advance(&mut self, arguments: &str) -> &str {
        let before = self.text.len();
        if self.stopped {
            return "";
        }
        let mut i = match self.pos {
            Some(i) => i,
            None => match value_start(arguments) {
                Ok(Some(i)) => i,
                Ok(None) => return "",
                Err(()) => {
                    self.stopped = true;
                    return "";
                }
            },
        };
        while let Some(c) = arguments[i..].chars().next() {
            match c {
                '"' => {
                    self.stopped = true;
                    i += 1;
                    break;
                }
                '\\' => match unescape(&arguments[i..]) {
                    Escape::Char(c, len) => {
                        self.text.push(c);
                        i += len;
                    }
                    Escape::Incomplete => break,
                    Escape::Invalid => {
                        self.stopped = true;
                        break;
                    }
                },
                c => {
                    self.text.push(c);
                    i += c.len_utf8();
                }
            }
        }
        self.pos = Some(i);
        &self.text[before..]
    }
}

/// Where the value of `{"input": "` starts: `Ok(None)` while the text is a prefix of that,
/// `Err` when it cannot be.
fn value_start(arguments: &str) -> Result<Option<usize>, ()> {
    let b = arguments.as_bytes();
    let mut i = 0;
    for token in [&b"{"[..], b"\"input\"", b":", b"\""] {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let n = token.len().min(b.len() - i);
        if b[i..i + n] != token[..n] {
            return Err(());
        }
        if n < token.len() {
            return Ok(None);
        }
        i += n;
    }
    Ok(Some(i))
}

enum Escape {
    /// The character and the length of its escape.
    Char(char, usize),
    Incomplete,
    Invalid,
}

/// The JSON escape at the start of `s` (which starts with a backslash).
fn unescape(s: &str) -> Escape {
    let b = s.as_bytes();
    let Some(&e) = b.get(1) else {
        return Escape::Incomplete;
    };
    let c = match e {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hex = |at: usize| -> Option<Option<u32>> {
                let digits = s.get(at..at + 4)?;
                Some(u32::from_str_radix(digits, 16).ok())
            };
            let Some(unit) = hex(2) else {
                return Escape::Incomplete;
            };
            let Some(unit) = unit else {
                return Escape::Invalid;
            };
            if (0xD800..0xDC00).contains(&unit) {
                // A high surrogate: its low half follows as another `\uXXXX`.
                if b.len() < 12 {
                    return Escape::Incomplete;
                }
                if &b[6..8] != b"\\u" {
                    return Escape::Char('\u{fffd}', 6);
                }
                return match hex(8).flatten() {
                    Some(low) if (0xDC00..0xE000).contains(&low) => {
                        let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        Escape::Char(char::from_u32(c).unwrap_or('\u{fffd}'), 12)
                    }
                    _ => Escape::Char('\u{fffd}', 6),
                };
            }
            return Escape::Char(char::from_u32(unit).unwrap_or('\u{fffd}'), 6);
        }
        _ => return Escape::Invalid,
    };
    Escape::Char(c, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_decoder_survives_any_split() {
        let input = "*** Begin Patch\n+say \"hi\" \\ tab\t café ☕ 😀 \u{1}\n";
        let args = format!("{{ \"input\" : {}}}", serde_json::to_string(input).unwrap());
        // And with the non-ASCII escaped as \uXXXX (surrogate pairs included).
        let ascii = args
            .replace('é', "\\u00e9")
            .replace('☕', "\\u2615")
            .replace('😀', "\\ud83d\\ude00");
        for args in [args, ascii] {
            for split in 0..=args.len() {
                if !args.is_char_boundary(split) {
                    continue;
                }
                let mut d = InputDecoder::default();
                let mut got = d.advance(&args[..split]).to_owned();
                got.push_str(d.advance(&args));
                assert_eq!(got, input, "split at {split} of {args}");
            }
        }
        // Another shape is not streamed (the whole input goes out at the end).
        let mut d = InputDecoder::default();
        assert_eq!(d.advance(r#"{"patch":"x"}"#), "");
        assert_eq!(d.advance(r#"{"patch":"x"} more"#), "");
    }

    #[test]
    fn escapes_decode_or_stop() {
        let decode = |args: &str| InputDecoder::default().advance(args).to_owned();
        assert_eq!(decode(r#"{"input":"a\u00e9\n"}"#), "aé\n");
        // A high surrogate without its low half is the replacement character.
        assert_eq!(decode(r#"{"input":"\ud83dxyzxyz"}"#), "\u{fffd}xyzxyz");
        // An unknown escape ends the value (the whole input goes out at the end instead).
        assert_eq!(decode(r#"{"input":"ab\qcd"}"#), "ab");
        // The closing quote ends it; what follows is never read.
        assert_eq!(decode(r#"{"input":"ab"} "cd""#), "ab");
    }
}
