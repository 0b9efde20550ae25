//! Reusable OpenAPI responses, one per [`ProblemCode`], described once for the whole API.
//!
//! An operation lists the problems it can answer with by naming these types in its
//! `responses(...)`; each becomes `"<status>": {"$ref": "#/components/responses/<Name>"}`:
//!
//! ```ignore
//! use arena_common::problem::responses::{NotFound, ValidationFailed};
//!
//! #[utoipa::path(get, path = "/v1/agents/{id}", responses(
//!     (status = 200, description = "The agent", body = Agent),
//!     ValidationFailed, NotFound,
//! ))]
//! async fn retrieve(..) { .. }
//! ```
//!
//! The responses themselves (and the `Problem` schemas they point at) are defined in
//! [`openapi`], which the meta component merges into the published document once.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, OpenApi, OpenApiBuilder, Ref, RefOr};
use utoipa::{IntoResponses, PartialSchema, ToResponse, ToSchema};

use super::{APPLICATION_PROBLEM_JSON, FieldError, Problem, ProblemCode};

/// Declares, for each listed code, a unit type that names its shared response: as a
/// [`ToResponse`] it is the definition under `#/components/responses/<Code>`; as an
/// [`IntoResponses`] it is an operation's `"<status>": {"$ref": ...}` to it.
macro_rules! problem_responses {
    ($($code:ident),* $(,)?) => {
        $(
            #[doc = concat!("The shared `", stringify!($code), "` problem response; see [`ProblemCode::", stringify!($code), "`].")]
            pub struct $code;

            impl<'r> ToResponse<'r> for $code {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($code), definition(ProblemCode::$code).into())
                }
            }

            impl IntoResponses for $code {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    let status = ProblemCode::$code.status().as_u16().to_string();
                    BTreeMap::from([(status, Ref::from_response_name(stringify!($code)).into())])
                }
            }
        )*

        /// Every shared response as `(name, definition)`.
        fn all() -> Vec<(&'static str, RefOr<Response>)> {
            vec![$(<$code as ToResponse>::response()),*]
        }
    };
}

problem_responses!(
    ValidationFailed,
    InvalidParameters,
    NotFound,
    MethodNotAllowed,
    Unauthorized,
    Forbidden,
    Conflict,
    InvalidTransition,
    TurnInProgress,
    NoTurnInProgress,
    AwaitingParticipant,
    AgentInUse,
    PreconditionFailed,
    IdempotencyKeyReused,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    QuotaExceeded,
    UpstreamUnavailable,
    Internal,
    Unavailable,
    Timeout,
);

/// The OpenAPI components every area shares: the problem schemas and responses.
pub fn openapi() -> OpenApi {
    let mut components = ComponentsBuilder::new()
        .schema(Problem::name(), Problem::schema())
        .schema(ProblemCode::name(), ProblemCode::schema())
        .schema(FieldError::name(), FieldError::schema());
    for (name, response) in all() {
        components = components.response(name, response);
    }
    OpenApiBuilder::new()
        .components(Some(components.build()))
        .build()
}

/// The response for one code: its description, the headers it carries, and a
/// `Problem` body with an example.
fn definition(code: ProblemCode) -> Response {
    let example = Problem::new(code, example_detail(code))
        .with_instance("/v1/agents/0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f")
        .with_request_id("0191f0c4-9a00-7000-8000-000000000001");
    let example = serde_json::to_value(&example).unwrap_or(Value::Null);
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(Problem::name())))
        .example(Some(example))
        .build();
    let mut response = ResponseBuilder::new()
        .description(format!("`{code}`: {}", code.description()))
        .content(APPLICATION_PROBLEM_JSON, content);
    match code {
        ProblemCode::MethodNotAllowed => {
            response = response.header(
                "Allow",
                header(Type::String, "The methods this path allows."),
            );
        }
        ProblemCode::RateLimited | ProblemCode::Unavailable => {
            response = response.header(
                "Retry-After",
                header(Type::Integer, "Seconds to wait before trying again."),
            );
        }
        _ => {}
    }
    response.build()
}

fn header(schema_type: Type, description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Object::with_type(schema_type))
        .description(Some(description))
        .build()
}

/// A plausible `detail` for the reference's examples.
fn example_detail(code: ProblemCode) -> &'static str {
    match code {
        ProblemCode::ValidationFailed => "the agent has 1 invalid field",
        ProblemCode::InvalidParameters => "options.temperature must be from 0 to 2, got 3",
        ProblemCode::NotFound => "no agent 0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f",
        ProblemCode::MethodNotAllowed => "DELETE is not allowed here; allowed: GET, PATCH",
        ProblemCode::Unauthorized => "the access token has expired",
        ProblemCode::Forbidden => "only the agent's owner or an admin may change it",
        ProblemCode::Conflict => "version 3 is stale; the current version is 4",
        ProblemCode::InvalidTransition => "the discussion is completed; it cannot be paused",
        ProblemCode::TurnInProgress => "a turn is in progress (Ada is speaking)",
        ProblemCode::NoTurnInProgress => "no turn is in progress",
        ProblemCode::AwaitingParticipant => "grace raised a hand and speaks next",
        ProblemCode::AgentInUse => "the agent takes part in 2 discussions that are not over",
        ProblemCode::IdempotencyKeyReused => {
            "the Idempotency-Key was first used with another request"
        }
        ProblemCode::PreconditionFailed => "If-Match \"3\" does not match the current ETag \"4\"",
        ProblemCode::PayloadTooLarge => "the body is 2 MiB; the limit is 1 MiB",
        ProblemCode::UnsupportedMediaType => "expected application/json, got text/plain",
        ProblemCode::RateLimited => "more than 60 requests in a minute",
        ProblemCode::QuotaExceeded => "the daily token allowance is used up",
        ProblemCode::UpstreamUnavailable => "the language model did not answer",
        ProblemCode::Internal => super::INTERNAL_DETAIL,
        ProblemCode::Unavailable => "the server is shutting down",
        ProblemCode::Timeout => "the component did not answer within the request time limit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_shared_response_per_code() {
        let names: Vec<_> = all().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names.len(), ProblemCode::ALL.len());
        for code in ProblemCode::ALL {
            let pascal: String = code
                .as_str()
                .split('_')
                .map(|word| word[..1].to_uppercase() + &word[1..])
                .collect();
            assert!(names.contains(&pascal.as_str()), "{pascal} missing");
        }
    }

    #[test]
    fn into_responses_points_at_the_shared_definition_under_its_status() {
        let responses = serde_json::to_value(NotFound::responses()).unwrap();
        assert_eq!(
            responses,
            serde_json::json!({ "404": { "$ref": "#/components/responses/NotFound" } })
        );
    }

    #[test]
    fn shared_document_defines_the_problem_schemas_and_responses() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let components = &doc["components"];
        for schema in ["Problem", "ProblemCode", "FieldError"] {
            assert!(
                components["schemas"].get(schema).is_some(),
                "{schema} missing"
            );
        }
        let not_allowed = &components["responses"]["MethodNotAllowed"];
        assert!(not_allowed["headers"].get("Allow").is_some());
        let content = &not_allowed["content"]["application/problem+json"];
        assert_eq!(content["schema"]["$ref"], "#/components/schemas/Problem");
        assert_eq!(content["example"]["code"], "method_not_allowed");
    }
}
