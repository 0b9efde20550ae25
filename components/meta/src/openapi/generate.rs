//! Assembling the API document from every area's declarations (tests only: see
//! the parent module), and the checks it must pass.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Server};

use super::{DOCUMENT, openapi};

/// What each area declares about its own routes: the one list to extend when an area
/// is added. Say `components/agents`, package `arena-agents`:
///
/// 1. in that crate, put the `#[http_service]` entry point behind a default `component`
///    feature and expose `pub fn openapi() -> utoipa::openapi::OpenApi` listing its
///    own routes, as this crate does;
/// 2. in `components/meta/Cargo.toml`, add it to `[dev-dependencies]` without that
///    feature: `arena-agents = { path = "../agents", default-features = false }`;
/// 3. add `arena_agents::openapi(),` below, and regenerate the document.
fn areas() -> Vec<OpenApi> {
    vec![
        // Shared first: the `Problem` schemas and responses every area refers to.
        arena_common::openapi(),
        openapi(),
        arena_auth::openapi(),
        arena_ai::openapi(),
        arena_agents::openapi(),
        arena_discussions::openapi(),
    ]
}

/// The document from every area's declarations, merged under Arena's `info`.
pub(crate) fn assemble() -> OpenApi {
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Arena API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION))
                .license(Some(
                    LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                )),
        )
        .servers(Some([Server::new("/")]))
        .build();
    for area in areas() {
        // `merge` keeps the first definition of a schema, response or operation and
        // drops later ones silently; a test below makes sure there are none to drop.
        document.merge(area);
    }
    require_bearer_credentials(&mut document);
    document
}

/// Declares the one security scheme (a bearer access token or API key) and
/// requires it of every operation; public ones say `security: [{}]` themselves.
fn require_bearer_credentials(document: &mut OpenApi) {
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT or API key")
        .description(Some(
            "An access token from `POST /v1/auth/token`, or an API key (`arena_ak_...`).",
        ))
        .build();
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    document.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
}

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

/// What every operation has in common, said once at the top of the reference.
const DESCRIPTION: &str = "The HTTP API of Arena, a multi-agent discussion arena.\n\n\
- JSON in and out (`application/json`), under `/v1`.\n\
- Errors are RFC 9457 problem documents (`application/problem+json`, schema `Problem`) \
with a stable `code`; an unknown path answers `404 not_found`, a known path with another \
method `405 method_not_allowed` with an `Allow` header.\n\
- Every response carries an `X-Request-Id` header; quote it when reporting a problem.\n\
- Every operation but the public ones (health, readiness, these documents, login and \
registration) needs `Authorization: Bearer <access token or API key>`; without it the \
answer is `401 unauthorized` with a `WWW-Authenticate` header. Requests are rate limited \
(`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`; `429 rate_limited` with \
`Retry-After` beyond the limit).";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;

    fn document_json() -> Value {
        serde_json::from_str(DOCUMENT).unwrap()
    }

    /// The document as it is written to `openapi.json`: pretty, one trailing newline.
    fn assembled_text() -> String {
        let mut text = serde_json::to_string_pretty(&assemble()).unwrap();
        text.push('\n');
        text
    }

    #[test]
    fn the_checked_in_document_is_what_the_areas_declare() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let assembled = assembled_text();
        if std::env::var_os("ARENA_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &assembled).unwrap();
            return;
        }
        assert!(
            DOCUMENT == assembled,
            "{path} is out of date: regenerate it with \
             `ARENA_UPDATE_OPENAPI=1 cargo test --release -p arena-meta`"
        );
    }

    /// Every `$ref` string anywhere under `value`.
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => found.push(target.clone()),
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    #[test]
    fn document_is_openapi_3_1_with_the_release_version_and_a_root_server() {
        let doc = document_json();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Arena API");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(doc["servers"], serde_json::json!([{ "url": "/" }]));
    }

    #[test]
    fn document_contains_health_readiness_openapi_and_docs() {
        let doc = document_json();
        for path in ["/v1/health", "/v1/ready", "/v1/openapi.json", "/docs"] {
            assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
        }
        assert_eq!(
            doc["paths"]["/v1/health"]["get"]["tags"],
            serde_json::json!(["meta"])
        );
    }

    #[test]
    fn every_ref_in_the_document_resolves() {
        let doc = document_json();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let pointer = target.strip_prefix('#').unwrap_or(&target);
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
        }
    }

    #[test]
    fn operations_describe_their_problem_responses_by_reference() {
        let doc = document_json();
        let responses = &doc["paths"]["/v1/health"]["get"]["responses"];
        assert_eq!(
            responses["405"]["$ref"],
            "#/components/responses/MethodNotAllowed"
        );
        assert!(doc["components"]["responses"]["NotFound"].is_object());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["schemas"]["Health"].is_object());
    }

    #[test]
    fn every_operation_needs_a_bearer_credential_unless_it_says_it_is_public() {
        let doc = document_json();
        assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let public = |path: &str, method: &str| {
            doc["paths"][path][method]["security"] == serde_json::json!([{}])
        };
        assert!(public("/v1/health", "get") && public("/v1/auth/token", "post"));
        assert!(!public("/v1/auth/me", "get") && !public("/v1/users", "post"));
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document_json();
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                if let Some(id) = operation["operationId"].as_str() {
                    ids.push(id.to_owned());
                }
            }
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }

    #[test]
    fn no_two_areas_define_the_same_name_differently_or_claim_the_same_route() {
        let mut definitions: HashMap<String, Value> = HashMap::new();
        let mut routes = Vec::new();
        for area in areas() {
            let area = serde_json::to_value(area).unwrap();
            for kind in ["schemas", "responses"] {
                for (name, definition) in area["components"][kind].as_object().into_iter().flatten()
                {
                    let key = format!("{kind}/{name}");
                    if let Some(earlier) = definitions.insert(key.clone(), definition.clone()) {
                        assert_eq!(&earlier, definition, "{key} is defined twice, differently");
                    }
                }
            }
            for (path, item) in area["paths"].as_object().into_iter().flatten() {
                for method in item
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(method, _)| method)
                {
                    let route = format!("{method} {path}");
                    assert!(!routes.contains(&route), "{route} is declared by two areas");
                    routes.push(route);
                }
            }
        }
    }

    #[test]
    fn this_components_own_document_lists_only_its_own_routes() {
        let own = serde_json::to_value(openapi()).unwrap();
        let paths: Vec<_> = own["paths"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            paths,
            ["/v1/health", "/v1/ready", "/v1/openapi.json", "/docs"]
        );
    }
}
