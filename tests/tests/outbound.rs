//! Outbound HTTP through the `arena` host: `allowed_outbound_hosts`
//! enforced, requests to the application itself, and quick failures.

use std::time::{Duration, Instant};

use arena_e2e::Arena;
use arena_e2e::upstream::{Upstream, closed_port};
use serde_json::Value;

const MANIFEST: &str = "tests/fixtures/outbound.toml";

/// Starts the fixture; `upstream_port` fills the templated
/// `http://localhost:{{ upstream_port }}` entry.
fn start(upstream_port: u16) -> Arena {
    Arena::start_with_env(
        MANIFEST,
        &[],
        &[
            ("SPIN_VARIABLE_API_TOKEN", "unused"),
            ("SPIN_VARIABLE_UPSTREAM_PORT", &upstream_port.to_string()),
        ],
    )
}

/// Asks the fixture to `GET url`; answers its status and JSON report.
fn fetch(arena: &Arena, url: &str, request_id: &str) -> (u16, Value) {
    let response = arena
        .client()
        .get(format!("{}/outbound/fetch", arena.url))
        .query(&[("url", url)])
        .header("x-request-id", request_id)
        .send()
        .unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

#[test]
fn an_allowed_destination_is_reached() {
    let upstream = Upstream::start("hello from upstream");
    let arena = start(upstream.port);
    // Allowed by the templated entry `http://localhost:{{ upstream_port }}`.
    let url = format!("http://localhost:{}/anything", upstream.port);
    let (status, body) = fetch(&arena, &url, "allowed-1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "hello from upstream");
    // And by the wildcard-port entry `http://127.0.0.1:*`.
    let url = format!("http://127.0.0.1:{}/", upstream.port);
    let (status, body) = fetch(&arena, &url, "allowed-2");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "hello from upstream");
}

#[test]
fn a_disallowed_destination_is_refused_with_a_warning() {
    let allowed = Upstream::start("allowed");
    let other = Upstream::start("must not be reached");
    let arena = start(allowed.port);
    // `localhost` is allowed on the upstream port only.
    let url = format!("http://localhost:{}/secret-path", other.port);
    let (status, body) = fetch(&arena, &url, "denied-1");
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{body}"
    );
    assert_eq!(other.requests(), 0);
    let warning = arena
        .wait_for_log(Duration::from_secs(5), |entry| {
            entry["message"]
                .as_str()
                .is_some_and(|m| m.contains("connection to disallowed destination"))
        })
        .expect("no warning logged");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["component"], "outbound");
    assert_eq!(warning["url"], url);
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("http://localhost:{}", other.port)),
        "{message}"
    );
}

#[test]
fn self_reaches_another_component_of_the_same_app() {
    let arena = start(1);
    let (status, body) = fetch(&arena, "http://self.alt/faulty/echo?from=self", "chain-1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    let echo: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["headers"]["spin-path-info"], "/echo");
    assert_eq!(echo["headers"]["spin-matched-route"], "/faulty/...");
    // The chained request keeps the request id of the request it serves.
    assert_eq!(echo["headers"]["x-request-id"], "chain-1");
    let line = arena
        .wait_for_log(Duration::from_secs(5), |entry| {
            entry["request_id"] == "chain-1" && entry["component"] == "faulty"
        })
        .expect("the chained request is not logged");
    assert_eq!(line["caller"], "outbound");
    assert_eq!(line["path"], "/faulty/echo");
}

#[test]
fn service_chaining_reaches_a_component_by_name() {
    let arena = start(1);
    let (status, body) = fetch(&arena, "http://faulty.spin.internal/echo/x", "chain-2");
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["headers"]["spin-path-info"], "/echo/x");
}

#[test]
fn outbound_to_a_closed_port_fails_quickly() {
    let arena = start(1);
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let (status, body) = fetch(&arena, &url, "closed-1");
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ConnectionRefused"),
        "{body}"
    );
    // Far below the 30 s request time limit: the error is immediate.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(arena.get("/outbound/variable/greeting").status(), 200);
}
