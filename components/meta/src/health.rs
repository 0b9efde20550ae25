//! `GET /v1/health`: whether the API is up, and which version is answering.

use arena_common::problem::responses::MethodNotAllowed;
use arena_common::{Problem, json};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The API is up.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({ "status": "ok", "version": "0.1.0" }))]
pub(crate) struct Health {
    // Inline: a schema named `Status` would be too generic for the shared namespace.
    #[schema(inline)]
    status: Status,
    /// The version of the Arena release answering.
    version: &'static str,
}

/// Always `ok`: a component that can answer is up.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
}

/// Check that the API is up
///
/// Answers as soon as the meta component can, without touching PostgreSQL or any other
/// service, so it serves as a liveness probe and tells which release is deployed.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "meta",
    operation_id = "retrieveHealth",
    security(()),
    responses(
        (status = 200, description = "The API is up.", body = Health),
        MethodNotAllowed,
    ),
)]
pub(crate) fn get() -> Result<http::Response<String>, Problem> {
    json(
        StatusCode::OK,
        &Health {
            status: Status::Ok,
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_ok_and_the_package_version() {
        let response = get().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })
        );
    }
}
