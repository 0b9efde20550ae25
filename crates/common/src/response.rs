//! Building successful responses.
//!
//! spin-sdk's `Json` always answers 200; creates answer 201 and some actions 202, so
//! handlers build JSON responses here instead, with the status they mean.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::Problem;

/// The media type of every JSON body Arena sends. JSON is UTF-8 by definition
/// (RFC 8259), so no `charset` parameter is needed.
pub const APPLICATION_JSON: &str = "application/json";

/// A response with `status` and `value` as its `application/json` body.
///
/// Fails only if `value` cannot be serialized (a map with non-string keys, a
/// `Serialize` impl that errors), which is a bug in Arena: hence a 500, not a 4xx.
pub fn json<T: Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Result<http::Response<String>, Problem> {
    let body = serde_json::to_string(value)
        .map_err(|error| Problem::internal(format!("serializing a response body: {error}")))?;
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
    Ok(response)
}

/// `201 Created` with `value` as its body and `Location: location`, the new
/// resource's path.
pub fn created<T: Serialize + ?Sized>(
    location: &str,
    value: &T,
) -> Result<http::Response<String>, Problem> {
    let mut response = json(StatusCode::CREATED, value)?;
    let location = HeaderValue::from_str(location)
        .map_err(|_| Problem::internal(format!("{location:?} is not a valid Location")))?;
    response
        .headers_mut()
        .insert(http::header::LOCATION, location);
    Ok(response)
}

/// An empty `204 No Content`: a delete or an action with nothing to say.
pub fn no_content() -> Result<http::Response<String>, Problem> {
    let mut response = http::Response::new(String::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// A response of any body: a whole one, or a stream (see `sse`). What a component
/// whose routes answer both kinds returns from its handler.
#[cfg(feature = "spin")]
pub type AnyResponse = spin_sdk::wasip3::http::types::Response;

/// A whole response as an [`AnyResponse`], for the routes of such a component that
/// answer whole.
#[cfg(feature = "spin")]
pub fn any(response: Result<http::Response<String>, Problem>) -> Result<AnyResponse, Problem> {
    use spin_sdk::http::IntoResponse;
    response?
        .into_response()
        .map_err(|error| Problem::internal(format!("converting a response: {error:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn created_says_where_the_new_resource_lives() {
        let response = created("/v1/users/42", &serde_json::json!({"user_id": 42})).unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[http::header::LOCATION], "/v1/users/42");
        assert_eq!(response.body(), r#"{"user_id":42}"#);
    }

    #[test]
    fn no_content_is_an_empty_204() {
        let response = no_content().unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response.body().is_empty());
    }

    #[test]
    fn json_sets_the_status_media_type_and_body() {
        let response = json(StatusCode::CREATED, &serde_json::json!({ "id": 7 })).unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.body(), r#"{"id":7}"#);
    }

    #[test]
    fn a_value_json_cannot_represent_is_an_internal_problem() {
        let unrepresentable: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
        let problem = json(StatusCode::OK, &unrepresentable).unwrap_err();
        assert_eq!(problem.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
