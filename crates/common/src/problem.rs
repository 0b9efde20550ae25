//! The one error type every handler returns: an RFC 9457 problem document.
//!
//! ```json
//! {
//!   "type": "https://arena.dev/problems/not-found",
//!   "title": "Not found",
//!   "status": 404,
//!   "detail": "no agent 0191f0c4-...",
//!   "instance": "/v1/agents/0191f0c4-...",
//!   "code": "not_found",
//!   "request_id": "0191f0c4-...",
//!   "errors": [{ "field": "name", "message": "must not be empty" }]
//! }
//! ```
//!
//! `type`, `title` and `status` follow from the [`ProblemCode`], so a constructor only
//! asks for what differs between occurrences. `errors` is left out when empty.
//! Internal errors keep their cause out of the body: it is logged with the request id
//! instead, so a client learns nothing about Arena's internals.

mod code;
pub mod responses;

use std::borrow::Cow;
use std::fmt;

use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{PartialSchema, ToSchema};

pub use code::{PROBLEM_TYPE_BASE, ProblemCode};

/// The media type of every problem response.
pub const APPLICATION_PROBLEM_JSON: &str = "application/problem+json";

/// What a client is told when Arena itself failed; the real cause goes to the log.
const INTERNAL_DETAIL: &str =
    "An unexpected error occurred. It has been logged; quote the request id when reporting it.";

/// An RFC 9457 problem: what went wrong with a request, for people (`title`, `detail`)
/// and for programs (`code`, `errors`).
///
/// Boxed, so `Result<T, Problem>` stays a pointer wide however much a problem says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<Details>);

// The members of a `Problem` as they appear on the wire. The doc comment below is
// the schema's description in the API reference.
/// An RFC 9457 problem document: what went wrong with a request, for people (`title`,
/// `detail`) and for programs (`code`, `errors`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Problem)]
#[schema(example = json!({
    "type": "https://arena.dev/problems/validation-failed",
    "title": "Validation failed",
    "status": 400,
    "detail": "the agent has 1 invalid field",
    "instance": "/v1/agents",
    "code": "validation_failed",
    "request_id": "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f",
    "errors": [{ "field": "name", "message": "must not be empty" }]
}))]
struct Details {
    /// URI naming the problem type; one per `code`.
    #[serde(rename = "type")]
    type_uri: String,
    /// Short summary of the problem type; the same for every occurrence.
    title: String,
    /// The HTTP status of the response, repeated for convenience.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What went wrong with this request, for a person to read.
    detail: String,
    /// The path of the request that failed.
    #[schema(required = true)]
    instance: Option<String>,
    code: ProblemCode,
    /// The `X-Request-Id` of the request; quote it when reporting a problem.
    #[schema(required = true)]
    request_id: Option<String>,
    /// One entry per invalid input field; left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    /// Headers the response must carry (`Allow` on a 405, `Retry-After` on a 429).
    #[serde(skip)]
    headers: HeaderMap,
    /// Why an internal error happened; logged, never sent.
    #[serde(skip)]
    cause: Option<String>,
}

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Where the field is in the input, e.g. `name` or `agents[2].model`.
    pub field: String,
    /// What is wrong with it, e.g. `must not be empty`.
    pub message: String,
}

impl Problem {
    /// A problem with `code`; `detail` says what went wrong with this request.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self(Box::new(Details {
            type_uri: code.type_uri(),
            title: code.title().to_owned(),
            status: code.status().as_u16(),
            detail: detail.into(),
            instance: None,
            code,
            request_id: None,
            errors: Vec::new(),
            headers: HeaderMap::new(),
            cause: None,
        }))
    }

    /// 400: the input is malformed or out of bounds. Add fields with
    /// [`with_field_error`](Self::with_field_error).
    pub fn validation_failed(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::ValidationFailed, detail)
    }

    /// 422: a well-formed value that cannot be used as asked. Add fields with
    /// [`with_field_error`](Self::with_field_error).
    pub fn invalid_parameters(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::InvalidParameters, detail)
    }

    /// 404: nothing lives at this path (or the caller may not know that it does).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::NotFound, detail)
    }

    /// 405: the path exists, but not with `method`. The response carries an `Allow`
    /// header listing `allowed`, as RFC 9110 requires.
    pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> Self {
        let allowed = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut problem = Self::new(
            ProblemCode::MethodNotAllowed,
            format!("{method} is not allowed here; allowed: {allowed}"),
        );
        // Method names are tokens, so the joined list is always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&allowed) {
            problem.0.headers.insert(ALLOW, value);
        }
        problem
    }

    /// 401: credentials are missing, invalid or expired.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::Unauthorized, detail)
    }

    /// 403: the credentials are valid but do not permit this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::Forbidden, detail)
    }

    /// 409: the request contradicts the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::Conflict, detail)
    }

    /// 412: an `If-Match` precondition no longer holds.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::PreconditionFailed, detail)
    }

    /// 409: a change based on `version` `given`, which is no longer the current one;
    /// names the current version (in `detail` and as the `version` field's error) so
    /// the client can re-read and retry.
    pub fn stale_version(given: i32, current: i32) -> Self {
        Self::conflict(format!(
            "version {given} is stale; the current version is {current}"
        ))
        .with_field_error(
            "version",
            format!("is stale; the current version is {current}"),
        )
    }

    /// 413: the body is over the size limit.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::PayloadTooLarge, detail)
    }

    /// 415: the body is in a media type the route does not accept.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::UnsupportedMediaType, detail)
    }

    /// 429: too many requests in a short time. Add
    /// [`with_retry_after`](Self::with_retry_after) to say when to come back.
    pub fn rate_limited(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::RateLimited, detail)
    }

    /// 429: a longer-term allowance is used up.
    pub fn quota_exceeded(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::QuotaExceeded, detail)
    }

    /// 503: a service Arena depends on did not answer.
    pub fn upstream_unavailable(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::UpstreamUnavailable, detail)
    }

    /// 500: Arena itself failed. `cause` is logged when the response is sent and never
    /// reaches the client, whose detail is a fixed sentence.
    pub fn internal(cause: impl fmt::Display) -> Self {
        Self::new(ProblemCode::Internal, INTERNAL_DETAIL).with_cause(cause)
    }

    /// Records why a server error happened, for the log only: the client still gets
    /// just `detail`. (A 503 says "the database is unavailable"; the log says which
    /// address refused the connection.)
    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.0.cause = Some(cause.to_string());
        self
    }

    /// Sets `instance`, the path of the request that failed.
    pub fn with_instance(mut self, path: impl Into<String>) -> Self {
        self.0.instance = Some(path.into());
        self
    }

    /// Sets `request_id`, so a client can quote it and an operator can find the logs.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.0.request_id = Some(id.into());
        self
    }

    /// Adds one invalid field to `errors`.
    pub fn with_field_error(
        mut self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.0.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Adds a `Retry-After` header: how many seconds to wait before trying again.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.0
            .headers
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
        self
    }

    /// Adds a response header (`WWW-Authenticate`, `RateLimit-Limit`, ...).
    pub fn with_header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// Sets `instance` and `request_id` from the request being answered.
    pub fn for_request<B>(self, req: &http::Request<B>) -> Self {
        let problem = self.with_instance(crate::request::path(req));
        match crate::request::request_id(req) {
            Some(id) => problem.with_request_id(id),
            None => problem,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> ProblemCode {
        self.0.code
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.0.code.status()
    }

    /// What went wrong, for a person.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The path of the failed request, once known.
    pub fn instance(&self) -> Option<&str> {
        self.0.instance.as_deref()
    }

    /// The request id of the failed request, once known.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// Why the problem happened, as [`with_cause`](Self::with_cause) recorded it for
    /// the log. Never part of the response: a caller that shows it anywhere (the
    /// readiness report's `reason`) scrubs it of secrets first.
    pub fn cause(&self) -> Option<&str> {
        self.0.cause.as_deref()
    }

    /// The invalid fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.0.errors
    }

    /// Headers the response carries besides `Content-Type`.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// The response as a plain `http` value: status, `Content-Type:
    /// application/problem+json`, any extra headers, and the JSON body.
    ///
    /// Separate from spin-sdk's `IntoResponse` so the native host and tests can use it.
    pub fn to_response(&self) -> http::Response<String> {
        // Every field serializes infallibly (strings, numbers, a unit enum); the
        // fallback only guards against that changing, without a panic.
        let body = serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"type":"{}","title":"{}","status":{},"code":"{}"}}"#,
                self.0.code.type_uri(),
                self.0.code.title(),
                self.0.status,
                self.0.code
            )
        });
        let mut response = http::Response::new(body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(APPLICATION_PROBLEM_JSON),
        );
        for (name, value) in &self.0.headers {
            headers.insert(name, value.clone());
        }
        response
    }

    #[cfg(feature = "spin")]
    /// Server errors are Arena's fault: record them where operators look, with the
    /// cause the client does not get.
    fn log_if_server_error(&self) {
        if self.status().is_server_error() {
            eprintln!(
                "{} {} request_id={} instance={}: {}",
                self.0.status,
                self.0.code,
                self.0.request_id.as_deref().unwrap_or("-"),
                self.0.instance.as_deref().unwrap_or("-"),
                self.0.cause.as_deref().unwrap_or(&self.0.detail),
            );
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.0.status, self.0.code, self.0.detail)
    }
}

impl std::error::Error for Problem {}

/// The schema is the wire members', under the name `Problem`.
impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        Details::schema()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        Details::schemas(schemas);
    }
}

/// Lets `?` turn any unexpected failure into a 500 whose cause is logged, not sent.
impl From<anyhow::Error> for Problem {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(format!("{error:#}"))
    }
}

#[cfg(feature = "spin")]
impl spin_sdk::http::IntoResponse for Problem {
    fn into_response(
        self,
    ) -> Result<spin_sdk::wasip3::http::types::Response, spin_sdk::wasip3::http::types::ErrorCode>
    {
        self.log_if_server_error();
        self.to_response().into_response()
    }
}

/// Makes `Result<T, Problem>` a response too: spin-sdk implements `IntoResponse` for
/// any `Result` whose error converts into its `Error`, and a problem is a response.
#[cfg(feature = "spin")]
impl From<Problem> for spin_sdk::http::Error {
    fn from(problem: Problem) -> Self {
        use spin_sdk::http::IntoResponse;
        match problem.into_response() {
            Ok(response) => Self::Response(response),
            Err(code) => Self::ErrorCode(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn body(problem: &Problem) -> Value {
        serde_json::from_str(problem.to_response().body()).unwrap()
    }

    #[test]
    fn body_has_every_rfc_9457_member_and_the_arena_extensions() {
        let problem = Problem::not_found("no agent 42")
            .with_instance("/v1/agents/42")
            .with_request_id("req-1");
        assert_eq!(
            body(&problem),
            json!({
                "type": "https://arena.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "no agent 42",
                "instance": "/v1/agents/42",
                "code": "not_found",
                "request_id": "req-1",
            })
        );
    }

    #[test]
    fn errors_are_left_out_when_empty_and_listed_when_not() {
        let plain = Problem::validation_failed("bad");
        assert!(body(&plain).get("errors").is_none());

        let with_fields = plain
            .with_field_error("name", "must not be empty")
            .with_field_error("model", "unknown model \"gpt-9\"");
        assert_eq!(
            body(&with_fields)["errors"],
            json!([
                { "field": "name", "message": "must not be empty" },
                { "field": "model", "message": "unknown model \"gpt-9\"" },
            ])
        );
    }

    #[test]
    fn unknown_instance_and_request_id_are_null_not_missing() {
        let json = body(&Problem::conflict("stale version"));
        assert_eq!(json["instance"], Value::Null);
        assert_eq!(json["request_id"], Value::Null);
    }

    #[test]
    fn response_carries_the_status_and_problem_media_type() {
        let response = Problem::forbidden("admins only").to_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    }

    #[test]
    fn method_not_allowed_sends_an_allow_header() {
        let problem = Problem::method_not_allowed(&Method::DELETE, &[Method::GET, Method::HEAD]);
        let response = problem.to_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
        assert_eq!(
            problem.detail(),
            "DELETE is not allowed here; allowed: GET, HEAD"
        );
    }

    #[test]
    fn retry_after_is_sent_as_a_header() {
        let response = Problem::rate_limited("slow down")
            .with_retry_after(30)
            .to_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "30");
    }

    #[test]
    fn internal_errors_keep_their_cause_out_of_the_body() {
        let problem = Problem::internal("connection refused to 10.0.0.5:5432");
        let text = problem.to_response().into_body();
        assert!(!text.contains("10.0.0.5"), "{text}");
        assert_eq!(problem.detail(), INTERNAL_DETAIL);
        assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_cause_stays_out_of_the_body_of_any_problem() {
        let problem = Problem::upstream_unavailable("the database is unavailable")
            .with_cause("connection refused to 10.0.0.5:5432");
        let text = problem.to_response().into_body();
        assert!(!text.contains("10.0.0.5"), "{text}");
        assert_eq!(problem.detail(), "the database is unavailable");
        assert_eq!(problem.cause(), Some("connection refused to 10.0.0.5:5432"));
    }

    #[test]
    fn anyhow_errors_become_internal_problems() {
        let problem: Problem = anyhow::anyhow!("disk full").into();
        assert_eq!(problem.code(), ProblemCode::Internal);
        assert!(!problem.to_response().body().contains("disk full"));
    }

    #[test]
    fn for_request_takes_the_path_and_request_id() {
        let req = http::Request::builder()
            .uri("https://arena.test/v1/agents/7?expand=all")
            .header("x-request-id", "abc-123")
            .body(())
            .unwrap();
        let problem = Problem::not_found("no agent 7").for_request(&req);
        assert_eq!(problem.instance(), Some("/v1/agents/7"));
        assert_eq!(problem.request_id(), Some("abc-123"));
    }

    #[test]
    fn a_stale_version_is_a_conflict_naming_the_current_one() {
        let problem = Problem::stale_version(3, 5);
        assert_eq!(problem.code(), ProblemCode::Conflict);
        assert_eq!(
            problem.detail(),
            "version 3 is stale; the current version is 5"
        );
        assert_eq!(problem.errors()[0].field, "version");
    }

    #[test]
    fn every_constructor_agrees_with_its_code() {
        let cases = [
            (
                Problem::validation_failed("x"),
                ProblemCode::ValidationFailed,
            ),
            (Problem::not_found("x"), ProblemCode::NotFound),
            (
                Problem::method_not_allowed(&Method::PUT, &[Method::GET]),
                ProblemCode::MethodNotAllowed,
            ),
            (Problem::unauthorized("x"), ProblemCode::Unauthorized),
            (Problem::forbidden("x"), ProblemCode::Forbidden),
            (Problem::conflict("x"), ProblemCode::Conflict),
            (
                Problem::precondition_failed("x"),
                ProblemCode::PreconditionFailed,
            ),
            (
                Problem::payload_too_large("x"),
                ProblemCode::PayloadTooLarge,
            ),
            (
                Problem::unsupported_media_type("x"),
                ProblemCode::UnsupportedMediaType,
            ),
            (Problem::rate_limited("x"), ProblemCode::RateLimited),
            (Problem::quota_exceeded("x"), ProblemCode::QuotaExceeded),
            (
                Problem::upstream_unavailable("x"),
                ProblemCode::UpstreamUnavailable,
            ),
            (Problem::internal("x"), ProblemCode::Internal),
        ];
        for (problem, code) in cases {
            let json = body(&problem);
            assert_eq!(json["code"], code.as_str());
            assert_eq!(json["status"], code.status().as_u16());
            assert_eq!(json["type"], code.type_uri());
            assert_eq!(json["title"], code.title());
        }
    }

    #[test]
    fn a_problem_body_reads_back_as_a_problem() {
        let problem = Problem::validation_failed("bad")
            .with_field_error("limit", "must be at most 200")
            .with_instance("/v1/agents")
            .with_request_id("r");
        let back: Problem = serde_json::from_str(problem.to_response().body()).unwrap();
        assert_eq!(back, problem);
    }

    #[test]
    fn schema_names_the_wire_fields_and_requires_all_but_errors() {
        let schema = serde_json::to_value(Problem::schema()).unwrap();
        let mut properties: Vec<_> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        properties.sort();
        assert_eq!(
            properties,
            [
                "code",
                "detail",
                "errors",
                "instance",
                "request_id",
                "status",
                "title",
                "type"
            ]
        );
        assert_eq!(
            schema["required"],
            json!([
                "type",
                "title",
                "status",
                "detail",
                "instance",
                "code",
                "request_id"
            ])
        );
    }
}
