//! Who is connecting: the same credentials as the HTTP API, checked natively.
//!
//! | Presented as | Checked |
//! |---|---|
//! | `Authorization: Bearer <access token>` (or the first WS message `{"type":"auth","token":...}`) | signature and claims with [`SigningKeys`] (`arena_common::credentials`), then its session is live and its user enabled |
//! | `Authorization: Bearer arena_ak_...` | the key's digest names a key neither revoked nor expired, of an enabled user |
//! | `?ticket=arena_wt_...` | a ticket from `POST /v1/realtime/tickets`: unused, unexpired, spent by this check; its credential still live |
//!
//! The role in force is the lowest of the credential's, the user's current role and
//! the session's scope, as `components/auth-middleware/src/authenticate.rs` decides
//! it; the SQL here follows that file's (it runs on tokio-postgres, not Spin's
//! PostgreSQL interface, so it cannot be the same code).

use std::sync::Arc;

use arena_common::Problem;
use arena_common::auth::{Credential, Identity, Role, WWW_AUTHENTICATE_CHALLENGE};
use arena_common::credentials::{self, SIGNING_KEYS_VARIABLE, SigningKeys};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_postgres::Row;
use uuid::Uuid;

use super::channels::Channel;
use crate::realtime::hub::{Event, Hub, Subscriber, SubscriptionId};

/// The start of every realtime ticket.
pub const TICKET_PREFIX: &str = "arena_wt_";

/// The signing keys in `text` (the `jwt_signing_keys` variable's value, as
/// [`crate::realtime::Config::jwt_signing_keys`] holds it). A broken value is a
/// deployment error: logged, and access tokens are refused meanwhile.
pub fn signing_keys(text: Option<&str>) -> Option<SigningKeys> {
    let text = text?;
    match SigningKeys::parse(text) {
        Ok(keys) => Some(keys),
        Err(error) => {
            // Names what is wrong, never the secret.
            tracing::error!("the variable {SIGNING_KEYS_VARIABLE}: {error}");
            None
        }
    }
}

/// Why a connection was not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No credential, or not in a usable form (401 with a bare challenge).
    Missing(String),
    /// A credential was presented and refused (401, `error="invalid_token"`).
    Rejected(String),
    /// The database could not say (503; the cause is logged).
    Failed(anyhow::Error),
}

impl AuthError {
    /// What a client is told (no internals).
    pub fn detail(&self) -> String {
        match self {
            AuthError::Missing(detail) | AuthError::Rejected(detail) => detail.clone(),
            AuthError::Failed(_) => "the credentials could not be checked; retry".to_owned(),
        }
    }

    /// The HTTP answer.
    pub fn problem(&self) -> Problem {
        match self {
            AuthError::Missing(detail) => Problem::unauthorized(detail.clone()).with_header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE),
            ),
            AuthError::Rejected(reason) => {
                let value = format!(
                    r#"{WWW_AUTHENTICATE_CHALLENGE}, error="invalid_token", error_description="{reason}""#
                );
                let value = HeaderValue::from_str(&value)
                    .unwrap_or_else(|_| HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE));
                Problem::unauthorized(reason.clone()).with_header(WWW_AUTHENTICATE, value)
            }
            AuthError::Failed(error) => {
                Problem::upstream_unavailable(self.detail()).with_cause(format!("{error:#}"))
            }
        }
    }
}

impl From<tokio_postgres::Error> for AuthError {
    fn from(error: tokio_postgres::Error) -> Self {
        AuthError::Failed(error.into())
    }
}

/// The bearer credential in `Authorization`: `Ok(None)` without the header,
/// `Err` when it is not `Bearer <credential>`.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    match text.split_once(' ') {
        Some((scheme, credential))
            if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() =>
        {
            Ok(Some(credential.trim()))
        }
        _ => Err(AuthError::Missing(
            "the Authorization header must be `Bearer <access token or API key>`".to_owned(),
        )),
    }
}

/// The identity a bearer credential (access token or API key) proves.
pub async fn identify(
    db: &deadpool_postgres::Client,
    keys: Option<&SigningKeys>,
    credential: &str,
) -> Result<Identity, AuthError> {
    if credentials::is_api_key(credential) {
        return api_key(db, credential).await;
    }
    if credential.starts_with(TICKET_PREFIX) {
        return Err(AuthError::Rejected(
            "a realtime ticket goes in `?ticket=`, not in Authorization".to_owned(),
        ));
    }
    let Some(keys) = keys else {
        return Err(AuthError::Rejected(
            "access tokens cannot be checked here (no signing keys are configured); use an API key"
                .to_owned(),
        ));
    };
    let token = keys
        .verify(credential)
        .map_err(|invalid| AuthError::Rejected(invalid.0))?;
    let statement = db
        .prepare_cached(
            "select u.role, s.scope
             from sessions s join users u using (user_id)
             where s.session_id = $1 and s.user_id = $2
               and s.revoked_at is null and s.expires_at > now() and u.disabled_at is null",
        )
        .await?;
    let row = db
        .query_opt(&statement, &[&token.session_id, &token.user_id])
        .await?;
    let Some(row) = row else {
        return Err(AuthError::Rejected(
            "the token's session has ended".to_owned(),
        ));
    };
    let user_role = role(&row, "role")?;
    let scope = optional_role(&row, "scope")?;
    Ok(Identity {
        user_id: token.user_id,
        role: role_in_force(token.role, user_role, scope),
        credential: Credential::Session(token.session_id),
    })
}

async fn api_key(db: &deadpool_postgres::Client, key: &str) -> Result<Identity, AuthError> {
    let statement = db
        .prepare_cached(
            "select k.api_key_id, k.user_id, k.role, u.role as user_role,
                    (k.last_used_at is null or k.last_used_at < now() - interval '1 minute')
                        as stale
             from api_keys k join users u using (user_id)
             where k.key_hash = $1 and k.revoked_at is null
               and (k.expires_at is null or k.expires_at > now()) and u.disabled_at is null",
        )
        .await?;
    let row = db
        .query_opt(&statement, &[&credentials::digest(key)])
        .await?;
    let Some(row) = row else {
        return Err(AuthError::Rejected("the API key is not valid".to_owned()));
    };
    let key_id: Uuid = row.try_get("api_key_id")?;
    let key_role = role(&row, "role")?;
    let user_role = role(&row, "user_role")?;
    // Kept to the minute, as the middleware does.
    if row.try_get::<_, bool>("stale")? {
        let update = db
            .prepare_cached("update api_keys set last_used_at = now() where api_key_id = $1")
            .await?;
        db.execute(&update, &[&key_id]).await?;
    }
    Ok(Identity {
        user_id: row.try_get("user_id")?,
        role: role_in_force(key_role, user_role, None),
        credential: Credential::ApiKey(key_id),
    })
}

/// The lowest of the credential's role, the user's current role and the scope.
pub fn role_in_force(credential: Role, user: Role, scope: Option<Role>) -> Role {
    credential.min(user).min(scope.unwrap_or(Role::Admin))
}

/// The digest a ticket is stored and found by: hex SHA-256.
pub fn ticket_digest(ticket: &str) -> String {
    hex::encode(credentials::digest(ticket))
}

/// Spends a ticket: the identity it was issued to, if it is unused, unexpired,
/// and its session or key (and user) are still live.
pub async fn redeem_ticket(
    db: &deadpool_postgres::Client,
    ticket: &str,
) -> Result<Identity, AuthError> {
    let refused =
        || AuthError::Rejected("the ticket is not valid (unknown, used or expired)".to_owned());
    if !ticket.starts_with(TICKET_PREFIX) || ticket.len() > 128 {
        return Err(refused());
    }
    let statement = db
        .prepare_cached(
            "with redeemed as (
                 update realtime_tickets set used_at = now()
                 where ticket_digest = $1 and used_at is null and expires_at > now()
                 returning user_id, session_id, api_key_id, role
             )
             select r.user_id, r.session_id, r.api_key_id, r.role, u.role as user_role,
                    s.scope,
                    (u.disabled_at is null
                     and (r.session_id is null
                          or (s.revoked_at is null and s.expires_at > now()))
                     and (r.api_key_id is null
                          or (k.revoked_at is null
                              and (k.expires_at is null or k.expires_at > now()))))
                        as live
             from redeemed r
             join users u on u.user_id = r.user_id
             left join sessions s on s.session_id = r.session_id
             left join api_keys k on k.api_key_id = r.api_key_id",
        )
        .await?;
    let row = db.query_opt(&statement, &[&ticket_digest(ticket)]).await?;
    let Some(row) = row else {
        return Err(refused());
    };
    if !row.try_get::<_, Option<bool>>("live")?.unwrap_or(false) {
        return Err(AuthError::Rejected(
            "the ticket's session or API key has ended".to_owned(),
        ));
    }
    let session_id: Option<Uuid> = row.try_get("session_id")?;
    let api_key_id: Option<Uuid> = row.try_get("api_key_id")?;
    let credential = match (session_id, api_key_id) {
        (Some(session), _) => Credential::Session(session),
        (None, Some(key)) => Credential::ApiKey(key),
        (None, None) => return Err(refused()),
    };
    Ok(Identity {
        user_id: row.try_get("user_id")?,
        role: role_in_force(
            role(&row, "role")?,
            role(&row, "user_role")?,
            optional_role(&row, "scope")?,
        ),
        credential,
    })
}

/// Stores a new ticket for `identity`, valid for `lifetime_secs`; returns its text.
pub async fn issue_ticket(
    db: &deadpool_postgres::Client,
    identity: &Identity,
    lifetime_secs: u64,
) -> anyhow::Result<String> {
    let secret = credentials::Secret::generate(TICKET_PREFIX)
        .map_err(|problem| anyhow::anyhow!("{}", problem.cause().unwrap_or(problem.detail())))?;
    let (session_id, api_key_id) = match identity.credential {
        Credential::Session(id) => (Some(id), None),
        Credential::ApiKey(id) => (None, Some(id)),
    };
    let lifetime = i64::try_from(lifetime_secs).unwrap_or(i64::MAX);
    let statement = db
        .prepare_cached(
            "insert into realtime_tickets
                 (ticket_digest, user_id, session_id, api_key_id, role, expires_at)
             values ($1, $2, $3, $4, $5, now() + $6::bigint * interval '1 second')",
        )
        .await?;
    db.execute(
        &statement,
        &[
            &hex::encode(&secret.digest),
            &identity.user_id,
            &session_id,
            &api_key_id,
            &identity.role.as_str(),
            &lifetime,
        ],
    )
    .await?;
    Ok(secret.text)
}

/// Whether the credential behind `identity` still works: its session live (or
/// its key unrevoked and unexpired) and its user enabled. Asked every minute of
/// a long-lived connection.
pub async fn still_live(
    db: &deadpool_postgres::Client,
    identity: &Identity,
) -> anyhow::Result<bool> {
    let (sql, id) = match identity.credential {
        Credential::Session(id) => (
            "select 1 from sessions s join users u using (user_id)
             where s.session_id = $1 and s.revoked_at is null and s.expires_at > now()
               and u.disabled_at is null",
            id,
        ),
        Credential::ApiKey(id) => (
            "select 1 from api_keys k join users u using (user_id)
             where k.api_key_id = $1 and k.revoked_at is null
               and (k.expires_at is null or k.expires_at > now()) and u.disabled_at is null",
            id,
        ),
    };
    let statement = db.prepare_cached(sql).await?;
    Ok(db.query_opt(&statement, &[&id]).await?.is_some())
}

/// A connection's watch on its user's channel, where `session.revoked` is
/// announced: a hub subscription with a small queue of its own (so the client's
/// own subscriptions are not affected), left out of the metrics (it is the
/// server's, not the client's: see [`Subscriber::unmetered`]).
pub struct RevocationWatch {
    id: SubscriptionId,
    events: mpsc::Receiver<Arc<Event>>,
    queue: Subscriber,
}

/// Revocation events queued for one connection (they are rare).
const REVOCATION_QUEUE: usize = 16;

/// What an event on the user's channel means for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Unaffected,
    /// Its session was revoked: close it.
    Revoked,
    /// Something may have changed (another session of the user ended, which
    /// comes with disabling the user; or revocations were missed): check the
    /// credential again.
    Recheck,
}

impl RevocationWatch {
    pub fn start(hub: &Hub, identity: &Identity) -> RevocationWatch {
        let (queue, events) = Subscriber::unmetered(REVOCATION_QUEUE);
        let channel = Channel::User(identity.user_id).to_string();
        let (id, _) = hub.subscribe(&channel, queue.clone());
        RevocationWatch { id, events, queue }
    }

    pub fn stop(self, hub: &Hub) {
        hub.unsubscribe(self.id);
    }

    /// What the next event on the user's channel means for `identity`. Its
    /// queue overflowing (a flood of the user's events) is a [`Verdict::Recheck`]
    /// and a fresh watch.
    pub async fn next(&mut self, hub: &Hub, identity: &Identity) -> Verdict {
        loop {
            let event = if self.queue.is_slow() && self.events.is_empty() {
                None
            } else {
                tokio::select! {
                    biased;
                    event = self.events.recv() => event,
                    () = self.queue.slowed(), if self.events.is_empty() => None,
                }
            };
            let Some(event) = event else {
                let fresh = RevocationWatch::start(hub, identity);
                std::mem::replace(self, fresh).stop(hub);
                return Verdict::Recheck;
            };
            let verdict = verdict(identity, &event);
            if verdict != Verdict::Unaffected {
                return verdict;
            }
        }
    }
}

/// What `event` (on `identity`'s user channel) means for a connection of `identity`.
pub fn verdict(identity: &Identity, event: &Event) -> Verdict {
    if &*event.kind != "session.revoked" {
        return Verdict::Unaffected;
    }
    match identity.credential {
        Credential::Session(session) if revokes(&event.payload, session) => Verdict::Revoked,
        Credential::Session(_) => Verdict::Unaffected,
        // The user may have been disabled with their sessions.
        Credential::ApiKey(_) => Verdict::Recheck,
    }
}

/// Whether a `session.revoked` payload (`{"session_ids": [...], "reason": ...}`,
/// see `components/auth/src/sessions.rs`) names `session`.
pub fn revokes(payload: &RawValue, session: Uuid) -> bool {
    #[derive(serde::Deserialize)]
    struct Revoked {
        #[serde(default)]
        session_ids: Vec<Uuid>,
    }
    serde_json::from_str::<Revoked>(payload.get())
        .is_ok_and(|revoked| revoked.session_ids.contains(&session))
}

fn role(row: &Row, column: &str) -> Result<Role, AuthError> {
    let text: &str = row.try_get(column)?;
    text.parse()
        .map_err(|error: String| AuthError::Failed(anyhow::anyhow!("{column}: {error}")))
}

fn optional_role(row: &Row, column: &str) -> Result<Option<Role>, AuthError> {
    let text: Option<&str> = row.try_get(column)?;
    text.map(|text| {
        text.parse()
            .map_err(|error: String| AuthError::Failed(anyhow::anyhow!("{column}: {error}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn bearer_credentials_are_read_like_the_middleware_reads_them() {
        assert_eq!(bearer(&headers(None)).unwrap(), None);
        assert_eq!(bearer(&headers(Some("Bearer abc"))).unwrap(), Some("abc"));
        assert_eq!(bearer(&headers(Some("bearer  abc "))).unwrap(), Some("abc"));
        for bad in ["Basic YWRhOnB3", "Bearer ", "Bearer"] {
            assert!(matches!(
                bearer(&headers(Some(bad))),
                Err(AuthError::Missing(_))
            ));
        }
    }

    #[test]
    fn the_role_in_force_is_the_lowest() {
        use Role::*;
        assert_eq!(role_in_force(Admin, Member, None), Member);
        assert_eq!(role_in_force(Member, Admin, Some(Viewer)), Viewer);
        assert_eq!(role_in_force(Admin, Admin, None), Admin);
    }

    #[test]
    fn refusals_carry_the_bearer_challenge() {
        let problem = AuthError::Rejected("the token has expired".to_owned()).problem();
        assert_eq!(problem.status(), http::StatusCode::UNAUTHORIZED);
        let challenge = problem.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.contains(r#"error="invalid_token""#));
        let missing = AuthError::Missing("no credentials".to_owned()).problem();
        assert_eq!(
            missing.headers()[WWW_AUTHENTICATE],
            WWW_AUTHENTICATE_CHALLENGE
        );
        let failed = AuthError::Failed(anyhow::anyhow!("connection refused")).problem();
        assert_eq!(failed.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(!failed.detail().contains("refused"));
    }

    #[test]
    fn tickets_are_stored_as_hex_digests() {
        let digest = ticket_digest("arena_wt_abc");
        assert_eq!(digest.len(), 64);
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn broken_or_missing_signing_keys_verify_nothing() {
        assert!(signing_keys(None).is_none());
        assert!(signing_keys(Some("k1:short")).is_none());
        assert!(signing_keys(Some("k1:0123456789abcdef0123456789abcdef")).is_some());
    }

    fn session_event(kind: &str, payload: &str) -> Event {
        Event {
            id: 1,
            channel: Arc::from("user:x"),
            kind: Arc::from(kind),
            payload: Arc::from(RawValue::from_string(payload.to_owned()).unwrap()),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_revocation_closes_the_sessions_it_names_and_rechecks_api_keys() {
        let session = Uuid::from_u128(5);
        let other = Uuid::from_u128(6);
        let by_session = Identity {
            user_id: Uuid::from_u128(1),
            role: Role::Member,
            credential: Credential::Session(session),
        };
        let by_key = Identity {
            credential: Credential::ApiKey(Uuid::from_u128(7)),
            ..by_session
        };
        let revoked = session_event(
            "session.revoked",
            &format!(r#"{{"session_ids":["{session}"],"reason":"revoked"}}"#),
        );
        let elsewhere = session_event(
            "session.revoked",
            &format!(r#"{{"session_ids":["{other}"],"reason":"logout"}}"#),
        );
        assert_eq!(verdict(&by_session, &revoked), Verdict::Revoked);
        assert_eq!(verdict(&by_session, &elsewhere), Verdict::Unaffected);
        assert_eq!(verdict(&by_key, &elsewhere), Verdict::Recheck);
        let unrelated = session_event("notification.created", "{}");
        assert_eq!(verdict(&by_session, &unrelated), Verdict::Unaffected);
        assert_eq!(verdict(&by_key, &unrelated), Verdict::Unaffected);
        let malformed = session_event("session.revoked", "[1]");
        assert_eq!(verdict(&by_session, &malformed), Verdict::Unaffected);
    }

    #[tokio::test]
    async fn the_watch_is_not_counted_as_a_client_subscription() {
        let hub = Hub::new(crate::realtime::hub::tests::FakeStore::default());
        let identity = Identity {
            user_id: Uuid::from_u128(1),
            role: Role::Member,
            credential: Credential::Session(Uuid::from_u128(5)),
        };
        let gauge = || {
            hub.metrics()
                .subscriptions
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let watch = RevocationWatch::start(&hub, &identity);
        assert_eq!(hub.subscribers_of(&format!("user:{}", identity.user_id)), 1);
        assert_eq!(gauge(), 0);
        watch.stop(&hub);
        assert_eq!(hub.subscribers_of(&format!("user:{}", identity.user_id)), 0);
        assert_eq!(gauge(), 0);
    }

    /// Against a real PostgreSQL with every migration applied.
    mod database {
        use super::*;
        use crate::realtime::test_db::TestDb;

        const SECRET: &str = "k1:0123456789abcdef0123456789abcdef";

        async fn user(db: &tokio_postgres::Client, role: &str) -> Uuid {
            let id = Uuid::now_v7();
            db.execute(
                "insert into users (user_id, username, role, password_hash)
                 values ($1, $2, $3, 'x')",
                &[&id, &format!("u{}", id.simple()), &role],
            )
            .await
            .unwrap();
            id
        }

        async fn session(db: &tokio_postgres::Client, user: Uuid, scope: Option<&str>) -> Uuid {
            let id = Uuid::now_v7();
            db.execute(
                "insert into sessions (session_id, user_id, scope, expires_at)
                 values ($1, $2, $3, now() + interval '1 hour')",
                &[&id, &user, &scope],
            )
            .await
            .unwrap();
            id
        }

        #[tokio::test]
        async fn access_tokens_and_api_keys_prove_who_calls_with_the_lowest_role() {
            let test = TestDb::create().await;
            let sql = test.connect().await;
            let pool = test.pool();
            let db = pool.get().await.unwrap();
            let keys = SigningKeys::parse(SECRET).unwrap();

            let ada = user(&sql, "admin").await;
            let scoped = session(&sql, ada, Some("member")).await;
            let token = keys
                .issue(
                    &credentials::AccessToken {
                        user_id: ada,
                        role: Role::Admin,
                        session_id: scoped,
                    },
                    60,
                )
                .unwrap();
            let identity = identify(&db, Some(&keys), &token).await.unwrap();
            assert_eq!(identity.user_id, ada);
            assert_eq!(identity.role, Role::Member, "the session's scope");
            assert_eq!(identity.credential, Credential::Session(scoped));
            assert!(still_live(&db, &identity).await.unwrap());
            assert!(matches!(
                identify(&db, None, &token).await,
                Err(AuthError::Rejected(_))
            ));

            sql.execute(
                "update sessions set revoked_at = now() where session_id = $1",
                &[&scoped],
            )
            .await
            .unwrap();
            assert!(matches!(
                identify(&db, Some(&keys), &token).await,
                Err(AuthError::Rejected(_))
            ));
            assert!(!still_live(&db, &identity).await.unwrap());

            let bob = user(&sql, "viewer").await;
            let key = credentials::Secret::generate(credentials::API_KEY_PREFIX).unwrap();
            let key_id = Uuid::now_v7();
            sql.execute(
                "insert into api_keys (api_key_id, user_id, name, role, key_hash, key_prefix)
                 values ($1, $2, 'k', 'member', $3, 'arena_ak_')",
                &[&key_id, &bob, &key.digest],
            )
            .await
            .unwrap();
            let identity = identify(&db, None, &key.text).await.unwrap();
            assert_eq!(identity.role, Role::Viewer, "the user's role");
            assert_eq!(identity.credential, Credential::ApiKey(key_id));
            assert!(still_live(&db, &identity).await.unwrap());
            sql.execute(
                "update users set disabled_at = now() where user_id = $1",
                &[&bob],
            )
            .await
            .unwrap();
            assert!(!still_live(&db, &identity).await.unwrap());
            assert!(matches!(
                identify(&db, None, &key.text).await,
                Err(AuthError::Rejected(_))
            ));
        }

        #[tokio::test]
        async fn a_ticket_opens_one_connection_within_its_lifetime() {
            let test = TestDb::create().await;
            let sql = test.connect().await;
            let pool = test.pool();
            let db = pool.get().await.unwrap();
            let ada = user(&sql, "member").await;
            let login = session(&sql, ada, None).await;
            let identity = Identity {
                user_id: ada,
                role: Role::Member,
                credential: Credential::Session(login),
            };

            let ticket = issue_ticket(&db, &identity, 30).await.unwrap();
            assert!(ticket.starts_with(TICKET_PREFIX));
            assert_eq!(redeem_ticket(&db, &ticket).await.unwrap(), identity);
            assert!(matches!(
                redeem_ticket(&db, &ticket).await,
                Err(AuthError::Rejected(_))
            ));

            let expired = issue_ticket(&db, &identity, 30).await.unwrap();
            sql.execute(
                "update realtime_tickets set expires_at = now() - interval '1 second'
                 where used_at is null",
                &[],
            )
            .await
            .unwrap();
            assert!(redeem_ticket(&db, &expired).await.is_err());

            // Its session ended after it was issued.
            let orphan = issue_ticket(&db, &identity, 30).await.unwrap();
            sql.execute(
                "update sessions set revoked_at = now() where session_id = $1",
                &[&login],
            )
            .await
            .unwrap();
            assert!(redeem_ticket(&db, &orphan).await.is_err());
            assert!(redeem_ticket(&db, "arena_wt_made-up").await.is_err());
            assert!(redeem_ticket(&db, "not a ticket").await.is_err());
        }
    }
}
