//! `POST /v1/realtime/tickets`: a short-lived, single-use ticket for a client that
//! cannot set headers on a WebSocket or an `EventSource` (browsers).
//!
//! The caller authenticates as for any API request (`Authorization: Bearer` with an
//! access token or an API key) and gets `201 {"ticket":"arena_wt_...","expires_in":30}`.
//! The ticket goes in `?ticket=` of `/v1/realtime/ws` or `/v1/realtime/sse` within
//! 30 seconds, once: it is stored as its SHA-256 digest and spent by an
//! `update ... where used_at is null and expires_at > now()` — two connections racing
//! with one ticket cannot both win. The connection it opens acts with the identity
//! (user, role, session or key) of the request that made it, re-checked at use.

use arena_common::Problem;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::auth::{self, AuthError};

/// How long a ticket is valid, in seconds.
pub const TICKET_LIFETIME_SECS: u64 = 30;

/// The body of the 201.
#[derive(Debug, Serialize)]
pub struct Ticket {
    pub ticket: String,
    pub expires_in: u64,
}

/// Issues a ticket to the caller `headers` authenticate.
pub async fn create(
    realtime: &super::Realtime,
    headers: &HeaderMap,
) -> Result<Response<String>, Problem> {
    let Some(credential) = auth::bearer(headers).map_err(|error| error.problem())? else {
        return Err(AuthError::Missing(
            "a ticket is issued to an authenticated caller: send `Authorization: Bearer <access token or API key>`"
                .to_owned(),
        )
        .problem());
    };
    let db = super::http::database(realtime).await?;
    let identity = super::http::identify(realtime, &db, credential)
        .await
        .map_err(|error| error.problem())?;
    let ticket = auth::issue_ticket(&db, &identity, TICKET_LIFETIME_SECS)
        .await
        .map_err(|error| {
            Problem::upstream_unavailable("the ticket could not be stored; retry")
                .with_cause(format!("{error:#}"))
        })?;
    tracing::debug!(user_id = %identity.user_id, credential = %identity.credential, "realtime ticket issued");
    let body = Ticket {
        ticket,
        expires_in: TICKET_LIFETIME_SECS,
    };
    let mut response = Response::new(serde_json::to_string(&body).map_err(Problem::internal)?);
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A secret: never cached by anything between.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticket_body_is_as_documented() {
        let body = serde_json::to_value(Ticket {
            ticket: "arena_wt_x".to_owned(),
            expires_in: TICKET_LIFETIME_SECS,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"ticket": "arena_wt_x", "expires_in": 30})
        );
    }
}
