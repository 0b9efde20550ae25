//! From an `Authorization` header to a verified [`Identity`].
//!
//! | Credential | Checked |
//! |---|---|
//! | access token (JWT) | signature, `alg`, `kid`, `iss`, `aud`, `exp` without the database; then its session is live and its user enabled (one query) |
//! | API key (`arena_ak_...`) | its digest names a key that is neither revoked nor expired, of an enabled user |
//!
//! The role in force is the lowest of the credential's and the user's current
//! role, so a demotion takes effect on the next request, not at token expiry.

use arena_common::Problem;
use arena_common::auth::{Credential, Identity, Role, WWW_AUTHENTICATE_CHALLENGE};
use arena_common::credentials::{self, SigningKeys};
use arena_common::db::{Db, Row};
use arena_common::ids::Uuid;
use http::HeaderValue;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};

/// The bearer credential of a request, if it has one.
pub(crate) fn bearer<B>(req: &http::Request<B>) -> Result<&str, Problem> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Err(challenge(
            "this request needs credentials: an access token or an API key",
        ));
    };
    let text = value.to_str().unwrap_or_default();
    match text.split_once(' ') {
        Some((scheme, credential))
            if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() =>
        {
            Ok(credential.trim())
        }
        _ => Err(challenge(
            "the Authorization header must be `Bearer <access token or API key>`",
        )),
    }
}

/// The identity `credential` proves, or a 401 saying why not.
pub(crate) async fn identify(db: &Db, credential: &str) -> Result<Identity, Problem> {
    if credentials::is_api_key(credential) {
        return api_key(db, credential).await;
    }
    let keys = SigningKeys::from_variables().await?;
    let token = keys
        .verify(credential)
        .map_err(|invalid| rejected(&invalid.0))?;
    let row: Option<Row> = db
        .query_opt(
            "select u.role, s.scope
             from sessions s join users u using (user_id)
             where s.session_id = $1 and s.user_id = $2
               and s.revoked_at is null and s.expires_at > now() and u.disabled_at is null",
            &[token.session_id.into(), token.user_id.into()],
        )
        .await?;
    let Some(row) = row else {
        return Err(rejected("the token's session has ended"));
    };
    let user_role: Role = row.get("role")?;
    let scope: Option<Role> = row.get("scope")?;
    let role = token.role.min(user_role).min(scope.unwrap_or(Role::Admin));
    Ok(Identity {
        user_id: token.user_id,
        role,
        credential: Credential::Session(token.session_id),
    })
}

async fn api_key(db: &Db, key: &str) -> Result<Identity, Problem> {
    let row: Option<Row> = db
        .query_opt(
            "select k.api_key_id, k.user_id, k.role, u.role as user_role,
                    (k.last_used_at is null or k.last_used_at < now() - interval '1 minute')
                        as stale
             from api_keys k join users u using (user_id)
             where k.key_hash = $1 and k.revoked_at is null
               and (k.expires_at is null or k.expires_at > now()) and u.disabled_at is null",
            &[credentials::digest(key).into()],
        )
        .await?;
    let Some(row) = row else {
        return Err(rejected("the API key is not valid"));
    };
    let key_id: Uuid = row.get("api_key_id")?;
    let key_role: Role = row.get("role")?;
    let user_role: Role = row.get("user_role")?;
    // `last_used_at` is kept to the minute: a write per request would serialize
    // a busy key's requests on its row.
    if row.get::<bool>("stale")? {
        db.execute(
            "update api_keys set last_used_at = now() where api_key_id = $1",
            &[key_id.into()],
        )
        .await?;
    }
    Ok(Identity {
        user_id: row.get("user_id")?,
        role: key_role.min(user_role),
        credential: Credential::ApiKey(key_id),
    })
}

/// 401 for a request without usable credentials (RFC 6750 §3).
fn challenge(detail: &str) -> Problem {
    Problem::unauthorized(detail).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE),
    )
}

/// 401 for a credential that was presented and refused (`error="invalid_token"`).
fn rejected(reason: &str) -> Problem {
    let value = format!(
        r#"{WWW_AUTHENTICATE_CHALLENGE}, error="invalid_token", error_description="{reason}""#
    );
    let value = HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE));
    Problem::unauthorized(reason).with_header(WWW_AUTHENTICATE, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> http::Request<()> {
        http::Request::builder()
            .header(AUTHORIZATION, value)
            .body(())
            .unwrap()
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_trimmed() {
        assert_eq!(bearer(&with_authorization("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(&with_authorization("bearer  abc ")).unwrap(), "abc");
    }

    #[test]
    fn no_header_another_scheme_or_an_empty_token_is_a_challenge() {
        let none = http::Request::builder().body(()).unwrap();
        for problem in [
            bearer(&none).unwrap_err(),
            bearer(&with_authorization("Basic YWRhOnB3")).unwrap_err(),
            bearer(&with_authorization("Bearer ")).unwrap_err(),
        ] {
            assert_eq!(problem.status(), http::StatusCode::UNAUTHORIZED);
            assert_eq!(
                problem.headers()[WWW_AUTHENTICATE],
                WWW_AUTHENTICATE_CHALLENGE
            );
        }
    }

    #[test]
    fn a_refused_token_says_invalid_token_in_the_challenge() {
        let problem = rejected("the token has expired");
        let challenge = problem.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"arena\""));
        assert!(challenge.contains("error=\"invalid_token\""));
        assert!(challenge.contains("the token has expired"));
    }
}
