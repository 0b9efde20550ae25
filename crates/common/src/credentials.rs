//! Credentials: what the auth component hands out and the auth middleware checks.
//!
//! | Credential | Looks like | Arena stores | Checked by |
//! |---|---|---|---|
//! | access token | an HS256 JWT: `kid` header; `iss`, `aud`, `sub`, `exp`, `jti`, `sid`, `role` | nothing | signature and claims, then its session is looked up |
//! | refresh token | `arena_rt_` + 43 base64url characters (256 random bits) | its SHA-256 | digest lookup, once: it rotates on use |
//! | API key | `arena_ak_` + 43 base64url characters | its SHA-256 and first characters | digest lookup |
//!
//! Access tokens are signed with the keys in the secret Spin variable
//! [`SIGNING_KEYS_VARIABLE`]: `kid:secret` pairs separated by spaces or commas, each
//! secret at least 32 bytes. The first pair signs; all of them verify. To rotate,
//! put a new pair first, and drop the old one once the tokens it signed have expired.
//!
//! Everything here but `SigningKeys::from_variables` (which needs the `spin`
//! feature) works natively too: the realtime hub in the `arena` host verifies the
//! same credentials, with the keys it is given.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::{Claims, Duration, HS256Key, MACLike, Token, VerificationOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Problem;
use crate::auth::Role;

/// Who issues access tokens (`iss`).
pub const ISSUER: &str = "arena";
/// Who access tokens are for (`aud`): Arena's API.
pub const AUDIENCE: &str = "arena-api";
/// The secret Spin variable holding the signing keys.
pub const SIGNING_KEYS_VARIABLE: &str = "jwt_signing_keys";
/// The shortest secret accepted: HS256's own output size.
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew forgiven when checking `exp` and `nbf`: a few seconds between
/// replicas, not jwt-simple's default quarter of an hour.
const CLOCK_TOLERANCE_SECS: u64 = 5;

/// The start of every refresh token: secret scanners and people can tell what it is.
pub const REFRESH_TOKEN_PREFIX: &str = "arena_rt_";
/// The start of every API key.
pub const API_KEY_PREFIX: &str = "arena_ak_";

/// What an access token says, once its signature and claims have been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessToken {
    pub user_id: Uuid,
    pub role: Role,
    pub session_id: Uuid,
}

/// The claims Arena adds to the registered ones.
#[derive(Debug, Serialize, Deserialize)]
struct ArenaClaims {
    /// The session (login) the token belongs to.
    sid: Uuid,
    role: Role,
}

/// Why a token was refused. Said in `WWW-Authenticate`'s `error_description` and
/// the audit log; never more than the client could work out itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken(pub String);

/// The keys access tokens are signed and verified with.
pub struct SigningKeys {
    /// Newest first: the first signs.
    keys: Vec<HS256Key>,
}

impl SigningKeys {
    /// Parses the variable's value. Every failure says what is wrong without
    /// repeating the secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut ids = HashSet::new();
        for (n, pair) in text
            .split([' ', ',', '\n', '\t'])
            .filter(|pair| !pair.is_empty())
            .enumerate()
        {
            let Some((kid, secret)) = pair.split_once(':') else {
                return Err(format!("key {} is not in the form kid:secret", n + 1));
            };
            if kid.is_empty()
                || !kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(format!(
                    "key {}'s id {kid:?} must be letters, digits, '-', '_' or '.'",
                    n + 1
                ));
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "key {kid:?} is {} bytes; a signing secret needs at least {MIN_SECRET_BYTES}",
                    secret.len()
                ));
            }
            if !ids.insert(kid) {
                return Err(format!("key id {kid:?} is given twice"));
            }
            keys.push(HS256Key::from_bytes(secret.as_bytes()).with_key_id(kid));
        }
        if keys.is_empty() {
            return Err("no signing key is set".to_owned());
        }
        Ok(Self { keys })
    }

    /// The keys in the Spin variable [`SIGNING_KEYS_VARIABLE`]. Unset or invalid is a
    /// 500: the deployment is broken, and the log says how.
    #[cfg(feature = "spin")]
    pub async fn from_variables() -> Result<Self, Problem> {
        let text = crate::variables::text(SIGNING_KEYS_VARIABLE).await?;
        Self::parse(&text).map_err(|error| {
            Problem::internal(format!("the variable {SIGNING_KEYS_VARIABLE}: {error}"))
        })
    }

    /// A signed access token for `token`, valid for `lifetime_secs` seconds.
    pub fn issue(&self, token: &AccessToken, lifetime_secs: u64) -> Result<String, Problem> {
        let claims = Claims::with_custom_claims(
            ArenaClaims {
                sid: token.session_id,
                role: token.role,
            },
            Duration::from_secs(lifetime_secs),
        )
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject(token.user_id)
        .with_jwt_id(crate::ids::new_id());
        self.keys[0]
            .authenticate(claims)
            .map_err(|error| Problem::internal(format!("signing an access token: {error}")))
    }

    /// Checks `token`'s signature (with the key its `kid` names), algorithm,
    /// issuer, audience and lifetime, and reads Arena's claims.
    pub fn verify(&self, token: &str) -> Result<AccessToken, InvalidToken> {
        let invalid = |reason: &str| InvalidToken(reason.to_owned());
        let metadata =
            Token::decode_metadata(token).map_err(|_| invalid("the token is not a JWT"))?;
        let kid = metadata
            .key_id()
            .ok_or_else(|| invalid("the token names no signing key"))?;
        let key = self
            .keys
            .iter()
            .find(|key| key.key_id().as_deref() == Some(kid))
            .ok_or_else(|| invalid("the token's signing key is not known"))?;
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([ISSUER.to_owned()])),
            allowed_audiences: Some(HashSet::from([AUDIENCE.to_owned()])),
            time_tolerance: Some(Duration::from_secs(CLOCK_TOLERANCE_SECS)),
            ..Default::default()
        };
        // jwt-simple refuses any `alg` but the key's own (so `none` too), a bad
        // signature, and `exp`/`nbf`/`iss`/`aud` outside the options.
        let claims = key
            .verify_token::<ArenaClaims>(token, Some(options))
            .map_err(|error| InvalidToken(describe(&error.to_string())))?;
        let user_id = claims
            .subject
            .as_deref()
            .and_then(|sub| Uuid::parse_str(sub).ok())
            .ok_or_else(|| invalid("the token's subject is not a user id"))?;
        Ok(AccessToken {
            user_id,
            role: claims.custom.role,
            session_id: claims.custom.sid,
        })
    }
}

/// A short reason for a failed verification, in words a client can act on.
fn describe(error: &str) -> String {
    let error = error.to_ascii_lowercase();
    let reason = if error.contains("expired") {
        "the token has expired"
    } else if error.contains("audience") {
        "the token is for another audience"
    } else if error.contains("issuer") {
        "the token is from another issuer"
    } else if error.contains("algorithm") {
        "the token's algorithm is not accepted"
    } else if error.contains("not yet valid") || error.contains("future") {
        "the token is not valid yet"
    } else {
        "the token's signature or claims are invalid"
    };
    reason.to_owned()
}

/// A new random secret (a refresh token or API key) and the digest Arena keeps.
pub struct Secret {
    /// What the client is given, once.
    pub text: String,
    /// SHA-256 of `text`: what is stored and looked up.
    pub digest: Vec<u8>,
}

impl Secret {
    /// 256 random bits from the platform's source, after `prefix`.
    pub fn generate(prefix: &str) -> Result<Self, Problem> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|error| Problem::internal(format!("no randomness: {error}")))?;
        let text = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
        let digest = digest(&text);
        Ok(Self { text, digest })
    }
}

/// SHA-256 of a secret's text: how a presented secret is found.
pub fn digest(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Whether a bearer credential is an API key rather than an access token.
pub fn is_api_key(text: &str) -> bool {
    text.starts_with(API_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys(text: &str) -> SigningKeys {
        SigningKeys::parse(text).unwrap()
    }

    fn token() -> AccessToken {
        AccessToken {
            user_id: Uuid::from_u128(1),
            role: Role::Member,
            session_id: Uuid::from_u128(2),
        }
    }

    #[test]
    fn a_token_verifies_with_the_key_that_signed_it() {
        let keys = keys(&format!("k1:{SECRET}"));
        let jwt = keys.issue(&token(), 60).unwrap();
        assert_eq!(keys.verify(&jwt), Ok(token()));
    }

    #[test]
    fn after_rotation_old_tokens_still_verify_until_their_key_is_dropped() {
        let old = keys(&format!("k1:{SECRET}"));
        let jwt = old.issue(&token(), 60).unwrap();
        let rotated = keys(&format!("k2:{SECRET}-new, k1:{SECRET}"));
        assert_eq!(rotated.verify(&jwt), Ok(token()));
        let dropped = keys(&format!("k2:{SECRET}-new"));
        assert!(dropped.verify(&jwt).is_err());
    }

    #[test]
    fn a_token_signed_with_another_secret_under_the_same_kid_is_refused() {
        let forged = keys(&format!("k1:{SECRET}-forged"))
            .issue(&token(), 60)
            .unwrap();
        assert!(keys(&format!("k1:{SECRET}")).verify(&forged).is_err());
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let keys = keys(&format!("k1:{SECRET}"));
        let jwt = keys.issue(&token(), 60).unwrap();
        let claims = jwt.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        assert!(keys.verify(&format!("{header}.{claims}.")).is_err());
    }

    #[test]
    fn bad_key_settings_are_explained_without_the_secret() {
        for (text, wanted) in [
            ("", "no signing key"),
            ("k1", "kid:secret"),
            ("k1:short", "at least 32"),
            (&format!("k1:{SECRET} k1:{SECRET}x"), "twice"),
            (&format!("bad kid:{SECRET}"), "kid:secret"),
        ] {
            let error = SigningKeys::parse(text).err().unwrap();
            assert!(error.contains(wanted), "{text:?}: {error}");
            assert!(!error.contains(SECRET), "{error}");
        }
    }

    #[test]
    fn secrets_are_random_prefixed_and_found_by_digest() {
        let a = Secret::generate(API_KEY_PREFIX).unwrap();
        let b = Secret::generate(API_KEY_PREFIX).unwrap();
        assert_ne!(a.text, b.text);
        assert!(is_api_key(&a.text));
        assert_eq!(a.text.len(), API_KEY_PREFIX.len() + 43);
        assert_eq!(digest(&a.text), a.digest);
    }
}
