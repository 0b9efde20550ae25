//! Passwords: Argon2id hashes, strength rules, and checks that take the same time
//! whether or not the user exists.

use arena_common::Problem;
use arena_common::validate::Validator;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id cost: 12 MiB and 3 passes (one of OWASP's equivalent settings), which
/// costs tens of milliseconds inside Wasm; more memory would cost more per login
/// than it adds against an attacker with the hashes.
const MEMORY_KIB: u32 = 12 * 1024;
const PASSES: u32 = 3;
const LANES: u32 = 1;

/// Password length bounds, in characters. The upper bound keeps one login's work
/// bounded; it is far beyond any passphrase.
pub(crate) const MIN_CHARS: usize = 12;
pub(crate) const MAX_CHARS: usize = 256;

/// Passwords too common to allow whatever their length (the long ones of the
/// usual breach lists).
const COMMON: &[&str] = &[
    "password1234",
    "123456789012",
    "qwertyuiopas",
    "passwordpassword",
    "iloveyou1234",
    "administrator",
    "letmein12345",
    "welcome12345",
    "changeme1234",
    "qwerty123456",
];

fn argon2() -> Argon2<'static> {
    // The parameters are constants within Argon2's bounds, so this cannot fail.
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string (`$argon2id$v=19$m=...`) to store for `password`.
pub(crate) fn hash(password: &str) -> Result<String, Problem> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Problem::internal(format!("hashing a password: {error}")))
}

/// Whether `password` matches `stored`. With no stored hash (no such user) it does
/// the same work against a throwaway hash and says no, so a response's timing does
/// not tell whether the user exists. Comparison is constant-time (argon2's own).
pub(crate) fn verify(password: &str, stored: Option<&str>) -> bool {
    let Some(stored) = stored else {
        // Hashing costs what verifying does: the same parameters, the same work.
        let _ = hash(password);
        return false;
    };
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Adds the strength rules' complaints about `password` (for the account
/// `username`) to `v`, under `field`.
pub(crate) fn check_strength(v: &mut Validator, field: &str, password: &str, username: &str) {
    let chars = password.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&chars) {
        v.error(
            field,
            format!("must have {MIN_CHARS} to {MAX_CHARS} characters, got {chars}"),
        );
        return;
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        v.error(field, "must not contain the username");
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        v.error(field, "must use at least 5 different characters");
    }
    if COMMON.contains(&lower.as_str()) {
        v.error(field, "is one of the most common passwords");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complaints(password: &str, username: &str) -> Vec<String> {
        let mut v = Validator::default();
        check_strength(&mut v, "password", password, username);
        match v.finish() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.message.clone()).collect(),
        }
    }

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let stored = hash("correct horse battery").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse battery", Some(&stored)));
        assert!(!verify("correct horse batterz", Some(&stored)));
    }

    #[test]
    fn no_stored_hash_or_a_corrupt_one_never_verifies() {
        assert!(!verify("anything at all", None));
        assert!(!verify("anything at all", Some("not a phc string")));
    }

    #[test]
    fn strong_passwords_pass_including_unicode_ones() {
        assert!(complaints("correct horse battery", "ada").is_empty());
        assert!(complaints("ünïcødé pässwörd ✓", "ada").is_empty());
    }

    #[test]
    fn weak_passwords_say_why() {
        assert!(complaints("short", "ada")[0].contains("12 to 256"));
        assert!(complaints(&"x".repeat(257), "ada")[0].contains("got 257"));
        assert_eq!(
            complaints("my name is ADA-lovelace", "ada"),
            ["must not contain the username"]
        );
        assert_eq!(
            complaints("aaaaaabbbbbb", "zed"),
            ["must use at least 5 different characters"]
        );
        assert_eq!(
            complaints("Password1234", "zed"),
            ["is one of the most common passwords"]
        );
    }
}
