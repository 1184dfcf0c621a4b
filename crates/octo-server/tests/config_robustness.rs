//! The config loader never panics, on any prefix of the example configs and on thousands of
//! deterministic mutations of them (byte flips, deleted and duplicated spans, spliced lines): it
//! answers with the config or a `ConfigError`, and a config it accepts builds or fails with an
//! error naming the key. The same property the `config` fuzz target (`fuzz/`) explores with
//! coverage guidance; this test runs on every `cargo test`.

use std::path::Path;

fn examples() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    assert!(!out.is_empty());
    out
}

/// Parses (every `${VAR}` set) and, when accepted, builds; must not panic.
fn load(text: &str) {
    let env = |name: &str| Some(format!("value-of-{name}"));
    if let Ok(config) = octo_server::config::parse(text, "mutated.yaml", &env)
        && let Err(e) = octo_server::build(&config, "mutated.yaml")
    {
        assert!(!e.to_string().is_empty());
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn every_prefix_of_every_example_loads_or_fails_cleanly() {
    for (_, text) in examples() {
        for end in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
            load(&text[..end]);
        }
    }
}

#[test]
fn mutated_examples_load_or_fail_cleanly() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let pieces = [
        "",
        "~",
        "null",
        "[]",
        "{}",
        "-1",
        "0",
        "99999999999999999999",
        "1e400",
        "\"\"",
        "0s",
        "-5s",
        "1000000h",
        "${",
        "${X",
        "${}",
        "&a",
        "*a",
        "!!binary",
        "? x",
        "\t",
        ": :",
        "- -",
        "'",
        "\"",
        "\\u0000",
        "é",
        "🦀",
    ];
    for (name, text) in examples() {
        let lines: Vec<&str> = text.lines().collect();
        for _ in 0..800 {
            let mut bytes = text.clone().into_bytes();
            match rng.below(4) {
                0 => {
                    // Replace a value after a colon with something odd.
                    let at = rng.below(bytes.len());
                    if let Some(colon) = bytes[at..].iter().position(|&b| b == b':') {
                        let start = at + colon + 1;
                        let end = bytes[start..]
                            .iter()
                            .position(|&b| b == b'\n' || b == b',' || b == b'}')
                            .map_or(bytes.len(), |e| start + e);
                        let piece = pieces[rng.below(pieces.len())];
                        bytes.splice(start..end, format!(" {piece}").into_bytes());
                    }
                }
                1 => {
                    // Delete a span.
                    let a = rng.below(bytes.len());
                    let b = (a + rng.below(40)).min(bytes.len());
                    bytes.drain(a..b);
                }
                2 => {
                    // Duplicate a line elsewhere (duplicate keys, misplaced sections).
                    let line = lines[rng.below(lines.len())];
                    let at = rng.below(bytes.len());
                    bytes.splice(at..at, format!("\n{line}\n").into_bytes());
                }
                _ => {
                    // Flip a byte.
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            if let Ok(text) = String::from_utf8(bytes) {
                let outcome = std::panic::catch_unwind(|| load(&text));
                assert!(
                    outcome.is_ok(),
                    "{name}: the loader panicked on this mutation:\n{text}"
                );
            }
        }
    }
}
