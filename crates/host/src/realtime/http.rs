//! The hub's HTTP entry point: every request under `/v1/realtime`.
//!
//! | Route | Module | What |
//! |---|---|---|
//! | `GET /v1/realtime/ws` | [`ws`] | a WebSocket (JSON messages: `auth`, `subscribe`, `unsubscribe`, `ping`) |
//! | `GET /v1/realtime/sse?channels=a,b` | [`sse`] | the same events as `text/event-stream` |
//! | `POST /v1/realtime/tickets` | [`tickets`] | a 30-second single-use ticket for `?ticket=` |
//!
//! [`auth`] checks credentials (the API's access tokens and API keys, and tickets)
//! and [`channels`](super::channels) parses channel names and authorizes subscriptions. Every refusal
//! before a stream starts is `application/problem+json`, as the rest of the API
//! answers: 401 without valid credentials, 403/404 for a channel the caller may not
//! read, 405 with `Allow` for a wrong method, 429 over the per-user connection limit,
//! 503 while shutting down.

use std::sync::Arc;
use std::time::Duration;

use arena_common::auth::Identity;
use arena_common::{Problem, ProblemCode};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;

use super::{Realtime, RequestInfo, TooManyConnections, auth, sse, tickets, ws};
use crate::problem;
use crate::server::Body;
use auth::AuthError;

/// The WebSocket endpoint.
pub const WS_PATH: &str = "/v1/realtime/ws";
/// The server-sent events endpoint.
pub const SSE_PATH: &str = "/v1/realtime/sse";
/// Where tickets are issued.
pub const TICKETS_PATH: &str = "/v1/realtime/tickets";

/// How long a request waits for the hub's log reader to be connected (only
/// right after start) before a 503.
const READY_WAIT: Duration = Duration::from_secs(5);

/// Seconds a client over its connection limit is told to wait.
const TOO_MANY_RETRY_AFTER: u64 = 5;

/// Answers a request under `/v1/realtime`.
pub async fn serve(realtime: Arc<Realtime>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let request_id = req
        .extensions()
        .get::<RequestInfo>()
        .map_or_else(String::new, |info| info.request_id.to_string());
    match route(realtime, req, &path).await {
        Ok(response) => response,
        Err(problem) => {
            if problem.status().is_server_error() {
                tracing::warn!(
                    request_id = %request_id,
                    path = %path,
                    status = problem.status().as_u16(),
                    cause = problem.cause().unwrap_or_default(),
                    "realtime request failed: {}",
                    problem.detail()
                );
            }
            problem::render(problem, &path, &request_id)
        }
    }
}

async fn route(
    realtime: Arc<Realtime>,
    req: Request<hyper::body::Incoming>,
    path: &str,
) -> Result<Response<Body>, Problem> {
    let allowed = match path {
        WS_PATH | SSE_PATH => Method::GET,
        TICKETS_PATH => Method::POST,
        _ => return Err(problem::no_route(path)),
    };
    if req.method() != allowed {
        return Err(Problem::method_not_allowed(req.method(), &[allowed]));
    }
    if realtime.shutdown.is_triggered() {
        return Err(problem::shutting_down());
    }
    match path {
        WS_PATH => ws::handle(realtime, req).await,
        SSE_PATH => sse::handle(realtime, req).await,
        _ => tickets::create(&realtime, req.headers())
            .await
            .map(|response| response.map(full)),
    }
}

/// A whole body as the front door's body type.
pub(crate) fn full(text: String) -> Body {
    http_body_util::Full::from(text)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A connection from the hub's pool, or a 503.
pub(crate) async fn database(realtime: &Realtime) -> Result<deadpool_postgres::Client, Problem> {
    realtime.db.get().await.map_err(|error| {
        Problem::upstream_unavailable("the database did not answer; retry")
            .with_cause(format!("realtime pool: {error}"))
    })
}

/// Waits (briefly) for the hub's log reader, without which a subscription's
/// cursor means nothing.
pub(crate) async fn hub_ready(realtime: &Realtime) -> Result<(), Problem> {
    if realtime.hub.is_ready() {
        return Ok(());
    }
    tokio::time::timeout(READY_WAIT, realtime.hub.ready())
        .await
        .map_err(|_| {
            Problem::new(
                ProblemCode::Unavailable,
                "the realtime hub is starting (its database connection is not up yet); retry",
            )
            .with_retry_after(1)
        })
}

/// The `name` parameter of a query string, decoded (the first, if repeated).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The identity of a request: its `Authorization: Bearer` credential, else its
/// `ticket` (spent here); `Ok(None)` when it has neither.
pub(crate) async fn authenticate(
    realtime: &Realtime,
    headers: &HeaderMap,
    ticket: Option<&str>,
) -> Result<Option<Identity>, AuthError> {
    let bearer = auth::bearer(headers)?;
    if bearer.is_none() && ticket.is_none() {
        return Ok(None);
    }
    let db = realtime
        .db
        .get()
        .await
        .map_err(|error| AuthError::Failed(anyhow::anyhow!("realtime pool: {error}")))?;
    let identity = match (bearer, ticket) {
        (Some(credential), _) => identify(realtime, &db, credential).await?,
        (None, Some(ticket)) => auth::redeem_ticket(&db, ticket).await?,
        (None, None) => return Ok(None),
    };
    Ok(Some(identity))
}

/// The identity a bearer credential (access token or API key) proves.
pub(crate) async fn identify(
    realtime: &Realtime,
    db: &deadpool_postgres::Client,
    credential: &str,
) -> Result<Identity, AuthError> {
    let keys = auth::signing_keys(realtime.config.jwt_signing_keys.as_deref());
    auth::identify(db, keys.as_ref(), credential).await
}

/// The 429 for a user over the connection limit.
pub(crate) fn too_many(error: TooManyConnections) -> Problem {
    Problem::rate_limited(format!("{error}; close one first"))
        .with_retry_after(TOO_MANY_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let query = Some("channels=discussion%3Aa,user:b&since=4&ticket=arena_wt_x%2By");
        assert_eq!(
            query_param(query, "channels").as_deref(),
            Some("discussion:a,user:b")
        );
        assert_eq!(query_param(query, "since").as_deref(), Some("4"));
        assert_eq!(
            query_param(query, "ticket").as_deref(),
            Some("arena_wt_x+y")
        );
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_param(None, "since"), None);
    }

    #[test]
    fn too_many_connections_is_a_429_with_retry_after() {
        let problem = too_many(TooManyConnections { limit: 20 });
        assert_eq!(problem.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert!(problem.detail().contains("20"));
        assert!(problem.headers().contains_key(http::header::RETRY_AFTER));
    }
}
