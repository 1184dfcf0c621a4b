//! Admin user passwords: Argon2id hashes in PHC form behind an `argon2:` prefix, the only form the
//! config file and the database hold (`octollm-server hash-password` makes one).
//!
//! Verifying costs about 19 MiB and tens of milliseconds on purpose (Argon2's default parameters,
//! the OWASP minimum): callers run it on a blocking thread, and sign-in attempts are rate-limited
//! ([`super::login`]).

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The prefix of a stored password hash.
pub const PREFIX: &str = "argon2:";

/// The shortest password accepted for a new user.
pub const MIN_LEN: usize = 12;

/// Hashes `password` with Argon2id (default parameters, random salt) as `argon2:$argon2id$…`.
///
/// # Errors
/// When the operating system's random source fails.
///
/// ```
/// use octo_server::admin::password::{hash, verify};
/// let h = hash("correct horse battery").unwrap();
/// assert!(h.starts_with("argon2:$argon2id$"));
/// assert!(verify(&h, "correct horse battery"));
/// assert!(!verify(&h, "wrong"));
/// ```
pub fn hash(password: &str) -> Result<String, String> {
    let phc = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    Ok(format!("{PREFIX}{phc}"))
}

/// Checks that `stored` is an `argon2:` PHC string this build can verify.
///
/// # Errors
/// A message naming the expected form.
pub fn check(stored: &str) -> Result<(), String> {
    let phc = stored.strip_prefix(PREFIX).ok_or_else(|| {
        "a password must be stored as an `argon2:` hash; make one with `octollm-server hash-password`"
            .to_owned()
    })?;
    PasswordHash::new(phc).map(|_| ()).map_err(|e| {
        format!("not a valid Argon2 PHC string ({e}); make one with `octollm-server hash-password`")
    })
}

/// Whether `password` matches the `stored` hash. A malformed hash matches nothing.
pub fn verify(stored: &str, password: &str) -> bool {
    let Some(phc) = stored.strip_prefix(PREFIX) else {
        return false;
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash no password matches, verified when a sign-in names an unknown user so that the answer
/// takes as long as for a known one (no user enumeration by timing).
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut random = [0u8; 32];
        let _ = getrandom::fill(&mut random);
        let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
        hash(&secret).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_form() {
        let h = hash("a long enough pass").unwrap();
        assert!(check(&h).is_ok());
        assert!(check("plaintext").unwrap_err().contains("hash-password"));
        assert!(check("argon2:nonsense").is_err());
        assert!(!verify("argon2:nonsense", "x"));
        assert!(!verify(decoy(), ""));
    }
}
