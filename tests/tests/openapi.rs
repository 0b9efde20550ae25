//! The OpenAPI document describes every route `spin.toml` serves.

use arena_e2e::{Arena, repo_root};
use serde_json::Value;

/// The public routes of Arena's own manifest.
fn manifest_routes() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest["trigger"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|trigger| trigger["route"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a documented path is served by `route` (a Spin route pattern).
fn served_by(route: &str, path: &str) -> bool {
    match route.strip_suffix("/...") {
        Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
        None => path == route,
    }
}

#[test]
fn every_route_in_spin_toml_is_in_the_openapi_document() {
    let arena = Arena::start("spin.toml", &[]);
    let response = arena.get("/v1/openapi.json");
    assert_eq!(response.status(), 200);
    let document: Value = response.json().unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();

    let routes = manifest_routes();
    assert!(!routes.is_empty());
    for route in &routes {
        assert!(
            paths.iter().any(|path| served_by(route, path)),
            "route `{route}` from spin.toml has no path in the OpenAPI document ({paths:?})"
        );
    }
}

#[test]
fn the_api_reference_page_lists_the_documented_operations() {
    let arena = Arena::start("spin.toml", &[]);
    let response = arena.get("/docs");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().unwrap();
    let document: Value = arena.get("/v1/openapi.json").json().unwrap();
    for path in document["paths"].as_object().unwrap().keys() {
        assert!(
            page.contains(path.as_str()),
            "/docs does not mention {path}"
        );
    }
}
