//! Upstream keys at rest: sealed (ChaCha20-Poly1305) before an admin API object is written to
//! the database, opened when it is read back. The database never holds an upstream key in
//! plaintext.
//!
//! The 32-byte sealing key comes from `OCTOLLM_SECRET_KEY` (64 hex digits; every instance that
//! shares a database must be given the same one), else from the file `.octollm-secret-key`
//! beside the config file, made at first start (mode 0600). A sealed value is
//! `sealed:v1:<hex nonce><hex ciphertext and tag>`.

use std::path::Path;

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::admin::tokens::write_private;

/// The environment variable holding the sealing key.
pub const SECRET_KEY_ENV: &str = "OCTOLLM_SECRET_KEY";

const PREFIX: &str = "sealed:v1:";

/// Seals and opens secrets with one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(redacted)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Sealer {
    /// A sealer over a 32-byte key.
    pub fn new(key: [u8; 32]) -> Sealer {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key");
        Sealer {
            key: LessSafeKey::new(unbound),
        }
    }

    /// The key from `OCTOLLM_SECRET_KEY`, else from `.octollm-secret-key` in `dir` (made when
    /// missing).
    ///
    /// # Errors
    /// A message naming the variable or file when the key is malformed or cannot be written.
    pub fn from_env_or_file(dir: &Path) -> Result<Sealer, String> {
        if let Ok(v) = std::env::var(SECRET_KEY_ENV) {
            return parse_key(v.trim())
                .map(Sealer::new)
                .ok_or_else(|| format!("{SECRET_KEY_ENV} must be 64 hex digits (32 bytes); make one with `openssl rand -hex 32`"));
        }
        let file = dir.join(".octollm-secret-key");
        if let Ok(text) = std::fs::read_to_string(&file) {
            return parse_key(text.trim()).map(Sealer::new).ok_or_else(|| {
                format!(
                    "{} does not hold 64 hex digits; restore it (objects sealed with it cannot be read without it)",
                    file.display()
                )
            });
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| format!("cannot make a secret key: {e}"))?;
        match write_private(&file, &format!("{}\n", hex(&key))) {
            Ok(()) => Ok(Sealer::new(key)),
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                parse_key(text.trim())
                    .map(Sealer::new)
                    .ok_or_else(|| format!("{} does not hold 64 hex digits", file.display()))
            }
            Err(e) => Err(format!("cannot write {}: {e}", file.display())),
        }
    }

    /// The key from `OCTOLLM_SECRET_KEY` or the existing `.octollm-secret-key` in `dir`, never
    /// making one (`None` when there is neither): for `--check`, which changes nothing.
    ///
    /// # Errors
    /// As [`from_env_or_file`](Self::from_env_or_file), for a malformed key.
    pub fn from_env_or_existing_file(dir: &Path) -> Result<Option<Sealer>, String> {
        if std::env::var_os(SECRET_KEY_ENV).is_some() || dir.join(".octollm-secret-key").exists() {
            return Self::from_env_or_file(dir).map(Some);
        }
        Ok(None)
    }

    /// Seals `plain`.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The OS random source failing is not recoverable here; a zero nonce would be unsafe.
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .expect("sealing cannot fail for in-memory data");
        format!("{PREFIX}{}{}", hex(&nonce), hex(&data))
    }

    /// Opens a sealed value; a value without the prefix is returned as it is.
    ///
    /// # Errors
    /// When the value was sealed with another key or altered.
    pub fn open(&self, value: &str) -> Result<String, String> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_owned());
        };
        let bytes = unhex(rest)
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| "a sealed secret is malformed".to_owned())?;
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let mut data = data.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| "a sealed secret is malformed".to_owned())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut data)
            .map_err(|_| {
                format!(
                    "a secret was sealed with another key: give every instance the same {SECRET_KEY_ENV} (or the same .octollm-secret-key file)"
                )
            })?;
        String::from_utf8(plain.to_vec()).map_err(|_| "a sealed secret is not UTF-8".to_owned())
    }
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    unhex(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_another_key() {
        let s = Sealer::new([7; 32]);
        let sealed = s.seal("sk-upstream-secret");
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("sk-upstream"));
        assert_ne!(
            sealed,
            s.seal("sk-upstream-secret"),
            "fresh nonce each time"
        );
        assert_eq!(s.open(&sealed).unwrap(), "sk-upstream-secret");
        assert_eq!(s.open("plain").unwrap(), "plain");
        let other = Sealer::new([8; 32]);
        assert!(other.open(&sealed).unwrap_err().contains(SECRET_KEY_ENV));
        assert!(s.open("sealed:v1:zz").is_err());
    }
}
