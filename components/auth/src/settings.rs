//! The component's settings, from Spin variables (declared with their defaults in
//! spin.toml).

use arena_common::Problem;
use arena_common::variables::parsed;

/// How long an access token lives, in seconds: also how long a revoked session's
/// tokens could be used if the middleware did not look the session up.
pub(crate) async fn access_token_ttl_secs() -> Result<u64, Problem> {
    parsed("access_token_ttl_seconds").await
}

/// How long a session lasts however often it is refreshed, in seconds.
pub(crate) async fn session_ttl_secs() -> Result<u64, Problem> {
    parsed("session_ttl_seconds").await
}

/// Whether anyone may create an account with `POST /v1/auth/register`.
pub(crate) async fn open_registration() -> Result<bool, Problem> {
    parsed("open_registration").await
}

/// Login back-off: failures allowed before the first lockout, and how long that
/// lockout lasts (each further failure doubles it, up to [`MAX_LOCKOUT_SECS`]).
pub(crate) struct Backoff {
    pub free_failures: i32,
    pub first_lockout_secs: i64,
}

/// The longest a login back-off locks an account or address out.
pub(crate) const MAX_LOCKOUT_SECS: i64 = 15 * 60;

impl Backoff {
    pub(crate) async fn from_variables() -> Result<Self, Problem> {
        Ok(Self {
            free_failures: parsed("login_free_failures").await?,
            first_lockout_secs: parsed("login_lockout_seconds").await?,
        })
    }
}
