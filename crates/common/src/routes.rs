//! What an OpenAPI document says a component serves: the check every component
//! makes that its router and its declared routes agree.

use http::Method;
use utoipa::openapi::OpenApi;

/// The methods an OpenAPI path item may hold operations for.
const OPERATIONS: [Method; 8] = [
    Method::GET,
    Method::PUT,
    Method::POST,
    Method::DELETE,
    Method::OPTIONS,
    Method::HEAD,
    Method::PATCH,
    Method::TRACE,
];

/// The segments of an API path after `/v1/` (`/v1/agents/a1` → `["agents", "a1"]`),
/// for a router to match as a slice; `None` outside `/v1/`, or when a segment is
/// empty (a trailing slash, `//`): paths match exactly.
pub fn segments(path: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return None;
    }
    Some(segments)
}

/// Each documented path, with its `{parameters}` written as plain segments (so
/// `/v1/users/{user_id}` reads `/v1/users/user_id`, a path the router resolves),
/// and the methods it answers, sorted. HEAD is listed wherever GET is: OpenAPI
/// leaves it implied, as HTTP does.
pub fn documented(document: &OpenApi) -> Vec<(String, Vec<Method>)> {
    document
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let item = serde_json::to_value(item).unwrap_or_default();
            let mut methods: Vec<Method> = item
                .as_object()
                .into_iter()
                .flat_map(|operations| operations.keys())
                // A path item holds more than operations (`parameters`, `summary`).
                .filter_map(|key| {
                    OPERATIONS
                        .iter()
                        .find(|method| method.as_str().eq_ignore_ascii_case(key))
                })
                .cloned()
                .collect();
            if methods.contains(&Method::GET) {
                methods.push(Method::HEAD);
            }
            (path.replace(['{', '}'], ""), sorted(methods))
        })
        .collect()
}

/// `methods` in the order [`documented`] lists them.
pub fn sorted(mut methods: Vec<Method>) -> Vec<Method> {
    methods.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    methods.dedup();
    methods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_the_path_after_v1_and_none_is_empty() {
        assert_eq!(segments("/v1/agents/a1"), Some(vec!["agents", "a1"]));
        assert_eq!(segments("/v1/agents"), Some(vec!["agents"]));
        for path in [
            "/v1/agents/",
            "/v1//agents",
            "/v1/",
            "/agents",
            "/v2/agents",
        ] {
            assert_eq!(segments(path), None, "{path}");
        }
    }

    #[test]
    fn parameters_become_segments_and_get_brings_head() {
        let document: OpenApi = serde_json::from_value(serde_json::json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "paths": {
                "/v1/things/{thing_id}": {
                    "get": { "responses": {} },
                    "delete": { "responses": {} },
                    "parameters": []
                }
            }
        }))
        .unwrap();
        assert_eq!(
            documented(&document),
            [(
                "/v1/things/thing_id".to_owned(),
                vec![Method::DELETE, Method::GET, Method::HEAD]
            )]
        );
    }
}
