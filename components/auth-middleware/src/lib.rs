//! Arena's auth middleware: placed in front of every API component by
//! `dependencies.middleware` in spin.toml, it decides whether a request goes on.
//!
//! For each request:
//!
//! 1. Identity headers the client sent are removed: only this middleware sets them.
//! 2. The path's [`Policy`](policy::Policy) says what is needed: nothing (health,
//!    readiness, the API documents), a rate limit per address (login, registration),
//!    or a valid credential ([`authenticate`]) and the caller's rate limits.
//! 3. The request goes on with the verified identity in
//!    [`arena_common::auth::headers`] and without the `Authorization` header (no
//!    component needs the secret); the response gains `RateLimit-*` headers.
//!
//! A refusal is a problem+json: `401` with `WWW-Authenticate`, or `429` with
//! `Retry-After` (recorded once per window in the audit trail).

mod authenticate;
mod limits;
mod policy;

use arena_common::Problem;
use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::Identity;
use arena_common::db::Db;
use arena_common::request;

use limits::{Limits, Verdict};
use policy::Policy;

/// Checks `req` and prepares it for the component behind: identity headers set,
/// credentials removed. Returns where the request left its rate limit, for the
/// response's headers; a refusal is the problem to answer with.
async fn admit<B>(req: &mut http::Request<B>) -> Result<Option<Verdict>, Problem> {
    Identity::remove_headers(req.headers_mut());
    let policy = Policy::for_path(request::path(req));
    if policy == Policy::Open {
        req.headers_mut().remove(http::header::AUTHORIZATION);
        return Ok(None);
    }

    let db = Db::connect().await?;
    let identity = match policy {
        Policy::Protected => Some(authenticate::identify(&db, authenticate::bearer(req)?).await?),
        Policy::Open | Policy::Login => None,
    };
    req.headers_mut().remove(http::header::AUTHORIZATION);

    let limits = Limits::from_variables().await?;
    let buckets = limits.buckets(policy, identity.as_ref(), request::client_ip(req));
    let verdict = limits.hit(&db, &buckets).await?;
    if let Some(verdict) = verdict.as_ref().filter(|verdict| verdict.exceeded()) {
        if verdict.first_excess() {
            record_excess(&db, req, identity.as_ref(), verdict).await;
        }
        return Err(verdict.problem());
    }

    if let Some(identity) = &identity {
        identity.write_headers(req.headers_mut());
    }
    Ok(verdict)
}

/// Records the first request over a limit in its window. Failing to record it
/// does not change the answer (a 429 either way).
async fn record_excess<B>(
    db: &Db,
    req: &http::Request<B>,
    identity: Option<&Identity>,
    verdict: &Verdict,
) {
    let mut event = AuditEvent::new("rate_limit.exceeded", Outcome::Denied)
        .detail("bucket", &verdict.bucket)
        .detail("limit", verdict.limit)
        .detail("path", request::path(req));
    if let Some(identity) = identity {
        event = event.by(identity);
    }
    if let Err(error) = event.record(db, req).await {
        eprintln!("recording a rate limit excess: {error}");
    }
}

/// Answers one request: checks it, then hands it to the next handler in the chain
/// (the API component) and adds the rate-limit headers to its answer.
pub async fn handle(mut req: spin_sdk::http::Request) -> impl spin_sdk::http::IntoResponse {
    use spin_sdk::http::IntoResponse;

    let verdict = match admit(&mut req).await {
        Ok(verdict) => verdict,
        Err(problem) => return problem.for_request(&req).into_response(),
    };
    match spin_sdk::http::next(req).await {
        Ok(mut response) => {
            if let Some(verdict) = &verdict {
                verdict.write_headers(response.headers_mut());
            }
            response.into_response()
        }
        Err(error) => {
            Problem::internal(format!("the component behind failed: {error:?}")).into_response()
        }
    }
}

/// The Spin entry point: the component's `wasi:http/handler` export.
#[cfg(all(feature = "component", target_family = "wasm"))]
#[spin_sdk::http_service]
async fn serve(req: spin_sdk::http::Request) -> impl spin_sdk::http::IntoResponse {
    handle(req).await
}
