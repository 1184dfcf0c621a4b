//! Admin credentials: bearer tokens checked in constant time against SHA-256 digests, so no token
//! is ever held, logged or stored in plaintext beyond the config line an operator wrote.
//!
//! `admin.tokens` entries are plaintext or `sha256:<hex>`. When none are configured, a random token
//! is made at first start, its digest stored in a file beside the config (mode 0600), and the token
//! printed once; later starts read the digest.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of accepted admin tokens, as digests.
#[derive(Clone, Default)]
pub struct Tokens(Vec<[u8; 32]>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} digests)", self.0.len())
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The SHA-256 digest of `token`, as [`Tokens`] holds it.
pub fn digest(token: &str) -> [u8; 32] {
    sha256(token)
}

/// The `sha256:<hex>` form of `token`, for configs that should not hold plaintext.
///
/// ```
/// assert!(octo_server::admin::tokens::hashed("secret").starts_with("sha256:2bb80d53"));
/// ```
pub fn hashed(token: &str) -> String {
    let mut s = String::from("sha256:");
    for b in sha256(token) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Parses `admin.tokens` entries (plaintext or `sha256:<hex>`).
    ///
    /// # Errors
    /// `(index, message)` for an entry that is empty or a malformed digest.
    pub fn parse(entries: &[String]) -> Result<Self, (usize, String)> {
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let digest = match e.strip_prefix("sha256:") {
                Some(hex) => parse_hex(&hex.to_ascii_lowercase()).ok_or_else(|| {
                    (i, "a `sha256:` token needs 64 hex digits after the prefix (make one with `octollm-server hash-token`)".to_owned())
                })?,
                None if e.trim().is_empty() => {
                    return Err((i, "an admin token must not be empty".into()));
                }
                None if e.len() < 16 => {
                    return Err((i, "an admin token must be at least 16 characters long".into()));
                }
                None => sha256(e),
            };
            out.push(digest);
        }
        Ok(Tokens(out))
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a digest.
    pub fn push_digest(&mut self, digest: [u8; 32]) {
        self.0.push(digest);
    }

    /// Whether `presented` is one of the tokens. Every digest is compared, in constant time.
    pub fn verify(&self, presented: &str) -> bool {
        self.position(presented).is_some()
    }

    /// The position (0-based, in `admin.tokens` order; generated tokens come last) of the token
    /// `presented` is, if any. Every digest is compared, in constant time.
    pub fn position(&self, presented: &str) -> Option<usize> {
        let d = sha256(presented);
        let mut found = None;
        for (i, t) in self.0.iter().enumerate() {
            if bool::from(t.ct_eq(&d)) {
                found = Some(i);
            }
        }
        found
    }
}

/// A fresh random token: 32 bytes from the operating system, hex-encoded, prefixed `octo_admin_`.
///
/// # Errors
/// When the operating system's random source fails.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    let mut s = String::from("octo_admin_");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

/// The file holding the generated token's digest, beside the config file.
pub fn token_file(config_dir: &Path) -> PathBuf {
    config_dir.join(".octollm-admin-token")
}

/// The generated token for an instance without configured tokens: the digest from `file` when it
/// exists (`None` returned: the token was printed at first start), else a new token whose digest
/// is written to `file` (returned, to be printed once).
///
/// # Errors
/// When the file cannot be read, parsed or written.
pub fn first_start(file: &Path, tokens: &mut Tokens) -> Result<Option<String>, String> {
    if let Ok(text) = std::fs::read_to_string(file) {
        let digest = text
            .trim()
            .strip_prefix("sha256:")
            .and_then(parse_hex)
            .ok_or_else(|| {
                format!(
                    "{} does not hold a `sha256:<hex>` digest; delete it to make a new admin token",
                    file.display()
                )
            })?;
        tokens.push_digest(digest);
        return Ok(None);
    }
    let token = generate().map_err(|e| format!("cannot make an admin token: {e}"))?;
    write_private(file, &format!("{}\n", hashed(&token)))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    tokens.push_digest(sha256(&token));
    Ok(Some(token))
}

/// Creates `path` (it must not exist) readable by its owner only (mode 0600 on Unix) and writes
/// `contents`: for files that hold secrets (the generated admin token's digest, the sealing key).
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// See the Unix version: elsewhere, a plain new file.
#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_and_digest_entries_verify() {
        let t = Tokens::parse(&[
            "a-long-plaintext-token".into(),
            hashed("another-long-token!"),
        ])
        .unwrap();
        assert!(t.verify("a-long-plaintext-token"));
        assert!(t.verify("another-long-token!"));
        assert!(!t.verify("a-long-plaintext-tokeN"));
        assert!(!t.verify(""));
        assert!(Tokens::parse(&["sha256:abc".into()]).is_err());
        assert!(Tokens::parse(&["short".into()]).is_err());
        assert!(!Tokens::default().verify("anything"));
    }

    #[test]
    fn first_start_writes_a_digest_once() {
        let dir = std::env::temp_dir().join(format!("octo-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = token_file(&dir);
        let _ = std::fs::remove_file(&file);
        let mut t = Tokens::default();
        let token = first_start(&file, &mut t).unwrap().unwrap();
        assert!(t.verify(&token));
        let stored = std::fs::read_to_string(&file).unwrap();
        assert!(!stored.contains(&token), "only the digest is stored");
        let mut again = Tokens::default();
        assert_eq!(first_start(&file, &mut again).unwrap(), None);
        assert!(again.verify(&token));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
