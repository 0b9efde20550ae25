//! Problems the host answers itself (no route, a failed or overdue component,
//! shutdown), in the shape and with the codes every component uses.

use arena_common::{Problem, ProblemCode};
use http::Response;
use http_body_util::BodyExt;

use crate::server::Body;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECONDS: u64 = 1;

pub fn no_route(path: &str) -> Problem {
    Problem::not_found(format!("No route matches `{path}`."))
}

pub fn invalid_url(url: &str) -> Problem {
    Problem::validation_failed(format!("`{url}` is not a valid URL."))
}

pub fn body_too_large(limit: u64) -> Problem {
    Problem::payload_too_large(format!("The request body is larger than {limit} bytes."))
}

/// The cause stays in the host's log, under the request id.
pub fn component_failed() -> Problem {
    Problem::new(
        ProblemCode::Internal,
        "The component handling this request failed. It has been logged; quote the request id when reporting it.",
    )
}

pub fn component_timed_out() -> Problem {
    Problem::new(
        ProblemCode::Timeout,
        "The component did not answer within the request time limit.",
    )
}

pub fn no_capacity() -> Problem {
    Problem::new(
        ProblemCode::Unavailable,
        "No instance could be started for this request.",
    )
    .with_retry_after(RETRY_AFTER_SECONDS)
}

pub fn shutting_down() -> Problem {
    Problem::new(ProblemCode::Unavailable, "The server is shutting down.")
        .with_retry_after(RETRY_AFTER_SECONDS)
}

/// The response for `problem`, raised by a request to `path` with `request_id`.
pub fn render(problem: Problem, path: &str, request_id: &str) -> Response<Body> {
    problem
        .with_instance(path)
        .with_request_id(request_id)
        .to_response()
        .map(|body| {
            http_body_util::Full::from(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        })
}
