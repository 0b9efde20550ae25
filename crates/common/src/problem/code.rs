//! The stable, machine-readable error codes.
//!
//! A code is part of the public API: clients branch on it, and the SDK maps it to an
//! error class. Each code always comes with the same HTTP status, so the two never
//! disagree. Add codes; never rename or repurpose one.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// Where problem type URIs live; the rest of the URI is the code in kebab case.
pub const PROBLEM_TYPE_BASE: &str = "https://arena.dev/problems/";

/// What went wrong, in a form a program can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// **400 Bad Request.** The input is malformed or a value is out of bounds:
    /// malformed JSON, a wrong type, an unknown field, a bad UUID, an out-of-range
    /// number. `errors` names each offending field.
    ValidationFailed,
    /// **422 Unprocessable Content.** The request is well formed, but a value cannot
    /// be used as asked: a generation parameter out of its range, or outside what the
    /// deployment's policy allows. `errors` names each offending field.
    InvalidParameters,
    /// **404 Not Found.** Nothing lives at this path, or the caller may not know it exists.
    NotFound,
    /// **405 Method Not Allowed.** The path exists but not with this method; the
    /// `Allow` header lists the methods that work.
    MethodNotAllowed,
    /// **401 Unauthorized.** Credentials are missing, invalid or expired.
    Unauthorized,
    /// **403 Forbidden.** The credentials are valid but do not permit this.
    Forbidden,
    /// **409 Conflict.** The request contradicts the current state: a duplicate, or a
    /// stale `version` in a `PATCH`.
    Conflict,
    /// **409 Conflict.** The resource's lifecycle does not allow this from its current
    /// state (e.g. pausing a completed discussion); `detail` names the state.
    InvalidTransition,
    /// **409 Conflict.** A discussion's turn is in progress and this must wait for it
    /// (another advance, a roster change, a rejected human message).
    TurnInProgress,
    /// **409 Conflict.** There is no turn in progress to act on.
    NoTurnInProgress,
    /// **409 Conflict.** A human participant raised a hand and speaks next; they post,
    /// or their hand is lowered, before an agent's turn.
    AwaitingParticipant,
    /// **409 Conflict.** The agent takes part in a discussion that is not over, so it
    /// cannot be deleted; remove it from the discussion or end the discussion first.
    AgentInUse,
    /// **412 Precondition Failed.** An `If-Match` ETag no longer matches the resource.
    PreconditionFailed,
    /// **422 Unprocessable Content.** An `Idempotency-Key` was used before with a
    /// different request; a key names one request.
    IdempotencyKeyReused,
    /// **413 Content Too Large.** The request body is over the size limit.
    PayloadTooLarge,
    /// **415 Unsupported Media Type.** The body is not in a media type the route accepts.
    UnsupportedMediaType,
    /// **429 Too Many Requests.** A short-term rate limit; retry after `Retry-After` seconds.
    RateLimited,
    /// **429 Too Many Requests.** An allowance for a longer period is used up; retrying
    /// soon will not help.
    QuotaExceeded,
    /// **503 Service Unavailable.** A service Arena depends on (PostgreSQL, Qdrant, a
    /// language model) did not answer; the request changed nothing and may be retried.
    UpstreamUnavailable,
    /// **500 Internal Server Error.** A fault on Arena's side. The detail is generic;
    /// the cause is logged under the request id.
    Internal,
    /// **503 Service Unavailable.** Arena itself cannot take the request now (at
    /// capacity, shutting down, or the request collided with a concurrent write and
    /// was rolled back); nothing changed; retry after `Retry-After` seconds.
    Unavailable,
    /// **504 Gateway Timeout.** The request took longer than its time limit and was
    /// stopped; what it changed was rolled back.
    Timeout,
}

impl ProblemCode {
    /// Every code, in documentation order.
    pub const ALL: [ProblemCode; 22] = [
        Self::ValidationFailed,
        Self::InvalidParameters,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Unauthorized,
        Self::Forbidden,
        Self::Conflict,
        Self::InvalidTransition,
        Self::TurnInProgress,
        Self::NoTurnInProgress,
        Self::AwaitingParticipant,
        Self::AgentInUse,
        Self::PreconditionFailed,
        Self::IdempotencyKeyReused,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::QuotaExceeded,
        Self::UpstreamUnavailable,
        Self::Internal,
        Self::Unavailable,
        Self::Timeout,
    ];

    /// The HTTP status every response with this code carries.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::ValidationFailed => StatusCode::BAD_REQUEST,
            Self::InvalidParameters => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Conflict
            | Self::InvalidTransition
            | Self::TurnInProgress
            | Self::NoTurnInProgress
            | Self::AwaitingParticipant
            | Self::AgentInUse => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited | Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The code as it appears in JSON (`not_found`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::InvalidParameters => "invalid_parameters",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::InvalidTransition => "invalid_transition",
            Self::TurnInProgress => "turn_in_progress",
            Self::NoTurnInProgress => "no_turn_in_progress",
            Self::AwaitingParticipant => "awaiting_participant",
            Self::AgentInUse => "agent_in_use",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }

    /// The RFC 9457 `title`: the same short summary for every occurrence of the code.
    pub const fn title(self) -> &'static str {
        match self {
            Self::ValidationFailed => "Validation failed",
            Self::InvalidParameters => "Invalid parameters",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::Conflict => "Conflict",
            Self::InvalidTransition => "Invalid transition",
            Self::TurnInProgress => "Turn in progress",
            Self::NoTurnInProgress => "No turn in progress",
            Self::AwaitingParticipant => "Awaiting a participant",
            Self::AgentInUse => "Agent in use",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::PreconditionFailed => "Precondition failed",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RateLimited => "Rate limited",
            Self::QuotaExceeded => "Quota exceeded",
            Self::UpstreamUnavailable => "Upstream unavailable",
            Self::Internal => "Internal error",
            Self::Unavailable => "Service unavailable",
            Self::Timeout => "Timed out",
        }
    }

    /// When a client sees this code, for the API reference (the variant docs say the
    /// same for Rust readers).
    pub const fn description(self) -> &'static str {
        match self {
            Self::ValidationFailed => {
                "The input is malformed or a value is out of bounds; `errors` names each offending field."
            }
            Self::InvalidParameters => {
                "The request is well formed but a value cannot be used as asked (a generation parameter out of range or outside the deployment's policy); `errors` names each offending field."
            }
            Self::NotFound => {
                "Nothing lives at this path, or the caller may not know that it exists."
            }
            Self::MethodNotAllowed => {
                "The path exists but not with this method; the `Allow` header lists the methods that work."
            }
            Self::Unauthorized => "Credentials are missing, invalid or expired.",
            Self::Forbidden => "The credentials are valid but do not permit this.",
            Self::Conflict => {
                "The request contradicts the current state: a duplicate, or a stale `version`."
            }
            Self::InvalidTransition => {
                "The resource's lifecycle does not allow this from its current state; `detail` names the state."
            }
            Self::TurnInProgress => {
                "A discussion's turn is in progress and this must wait until it ends (or is cancelled)."
            }
            Self::NoTurnInProgress => "There is no turn in progress to act on.",
            Self::AwaitingParticipant => {
                "A human participant raised a hand and speaks next: they post, or their hand is lowered, first."
            }
            Self::AgentInUse => {
                "The agent takes part in a discussion that is not over; remove it from the discussion or end the discussion first."
            }
            Self::IdempotencyKeyReused => {
                "The `Idempotency-Key` was used before with a different request; a key names one request."
            }
            Self::PreconditionFailed => "An `If-Match` ETag no longer matches the resource.",
            Self::PayloadTooLarge => "The request body is over the size limit.",
            Self::UnsupportedMediaType => "The body is not in a media type the route accepts.",
            Self::RateLimited => {
                "Too many requests in a short time; retry after `Retry-After` seconds."
            }
            Self::QuotaExceeded => {
                "An allowance for a longer period is used up; retrying soon will not help."
            }
            Self::UpstreamUnavailable => {
                "A service Arena depends on did not answer; nothing changed and the request may be retried."
            }
            Self::Internal => "A fault on Arena's side; quote the `request_id` when reporting it.",
            Self::Unavailable => {
                "Arena cannot take the request now (at capacity, shutting down, or it collided with a concurrent write); nothing changed; retry after `Retry-After` seconds."
            }
            Self::Timeout => "The request overran its time limit and was stopped.",
        }
    }

    /// The RFC 9457 `type`: a URI naming the problem, e.g.
    /// `https://arena.dev/problems/not-found`.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.as_str().replace('_', "-"))
    }
}

impl fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written by hand rather than derived so the reference lists each code with its
/// status, taken from [`ProblemCode::status`] itself: the two cannot drift apart.
impl PartialSchema for ProblemCode {
    fn schema() -> RefOr<Schema> {
        let mut description = String::from(
            "Stable machine-readable error code. Branch on this, never on `title` or \
             `detail`. Each code always comes with the same HTTP status:\n",
        );
        for code in Self::ALL {
            description.push_str(&format!(
                "\n- `{}` ({}): {}",
                code.as_str(),
                code.status().as_u16(),
                code.description()
            ));
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::ALL.map(Self::as_str)))
            .description(Some(description))
            .into()
    }
}

impl ToSchema for ProblemCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProblemCode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_serializes_to_its_snake_case_name() {
        for code in ProblemCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::from(code.as_str()));
            let back: ProblemCode = serde_json::from_value(json).unwrap();
            assert_eq!(back, code);
        }
    }

    #[test]
    fn all_lists_each_code_once() {
        let names: HashSet<_> = ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ProblemCode::ALL.len());
    }

    #[test]
    fn statuses_are_the_documented_ones() {
        use ProblemCode::*;
        let expected = [
            (ValidationFailed, 400),
            (InvalidParameters, 422),
            (NotFound, 404),
            (MethodNotAllowed, 405),
            (Unauthorized, 401),
            (Forbidden, 403),
            (Conflict, 409),
            (PreconditionFailed, 412),
            (PayloadTooLarge, 413),
            (UnsupportedMediaType, 415),
            (RateLimited, 429),
            (QuotaExceeded, 429),
            (UpstreamUnavailable, 503),
            (Internal, 500),
            (Unavailable, 503),
            (Timeout, 504),
        ];
        for (code, status) in expected {
            assert_eq!(code.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn only_codes_for_arenas_own_failures_are_server_errors() {
        for code in ProblemCode::ALL {
            let server_side = matches!(
                code,
                ProblemCode::Internal
                    | ProblemCode::UpstreamUnavailable
                    | ProblemCode::Unavailable
                    | ProblemCode::Timeout
            );
            assert_eq!(code.status().is_server_error(), server_side, "{code}");
        }
    }

    #[test]
    fn type_uri_is_the_code_in_kebab_case() {
        assert_eq!(
            ProblemCode::NotFound.type_uri(),
            "https://arena.dev/problems/not-found"
        );
        assert_eq!(
            ProblemCode::UnsupportedMediaType.type_uri(),
            "https://arena.dev/problems/unsupported-media-type"
        );
    }

    #[test]
    fn schema_lists_every_code_with_its_status() {
        let schema = serde_json::to_value(ProblemCode::schema()).unwrap();
        let values = schema["enum"].as_array().unwrap();
        assert_eq!(values.len(), ProblemCode::ALL.len());
        let description = schema["description"].as_str().unwrap();
        assert!(
            description.contains("- `not_found` (404):"),
            "{description}"
        );
        assert!(description.contains("- `internal` (500):"), "{description}");
    }
}
