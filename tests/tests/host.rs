//! The `arena` host, driven over HTTP: routing, failures, request ids,
//! logging and shutdown.

use std::time::{Duration, Instant};

use arena_e2e::Arena;
use serde_json::Value;

const FIXTURES: &str = "tests/fixtures/spin.toml";

fn problem(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    (status, response.json().unwrap())
}

#[test]
fn health_answers_200_with_status_and_version() {
    let arena = Arena::start(FIXTURES, &[]);
    let response = arena.get("/v1/health");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()));
}

#[test]
fn an_unknown_path_under_a_component_route_is_a_404_problem() {
    let arena = Arena::start(FIXTURES, &[]);
    let (status, body) = problem(arena.get("/v1/no-such-thing"));
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["instance"], "/v1/no-such-thing");
}

#[test]
fn a_path_no_route_matches_is_a_404_problem_from_the_host() {
    let arena = Arena::start(FIXTURES, &[]);
    let response = arena.get("/nowhere");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, body) = problem(response);
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["instance"], "/nowhere");
    assert_eq!(body["request_id"], request_id.as_str());
}

#[test]
fn a_trapping_component_gives_a_500_problem_and_the_next_request_succeeds() {
    let arena = Arena::start(FIXTURES, &[]);
    let (status, body) = problem(arena.get("/faulty/trap"));
    assert_eq!(status, 500);
    assert_eq!(body["code"], "internal");
    assert!(
        !body["detail"]
            .as_str()
            .unwrap()
            .contains("trapping on purpose"),
        "trap details leak: {body}"
    );
    assert_eq!(arena.get("/faulty/echo").status(), 200);
    assert_eq!(arena.get("/v1/health").status(), 200);
    let logged = arena.wait_for_log(Duration::from_secs(5), |entry| {
        entry["message"]
            .as_str()
            .is_some_and(|m| m.contains("component failed"))
    });
    assert!(logged.is_some(), "the trap is not logged");
}

#[test]
fn a_component_that_overruns_the_time_limit_gets_a_504_and_the_host_carries_on() {
    let arena = Arena::start(FIXTURES, &["--request-timeout", "500ms"]);
    let started = Instant::now();
    let (status, body) = problem(arena.get("/faulty/stall"));
    assert_eq!(status, 504);
    assert_eq!(body["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(arena.get("/v1/health").status(), 200);
}

#[test]
fn a_component_importing_an_unsupported_interface_is_refused_at_start() {
    let failure = Arena::try_start("tests/fixtures/unsupported.toml", &[])
        .err()
        .expect("arena up must refuse the component");
    assert!(!failure.status.unwrap().success());
    let messages = failure.messages();
    assert!(messages.contains("`unsupported`"), "{messages}");
    assert!(
        messages.contains("spin:key-value/key-value@3.0.0"),
        "{messages}"
    );
    assert!(!messages.contains("\"listening\""), "{messages}");
}

#[test]
fn a_well_formed_request_id_is_echoed_and_a_bad_one_replaced() {
    let arena = Arena::start(FIXTURES, &[]);
    let url = format!("{}/v1/health", arena.url);
    let response = arena
        .client()
        .get(&url)
        .header("x-request-id", "client-123")
        .send()
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-123");

    let response = arena
        .client()
        .get(&url)
        .header("x-request-id", "bad id!")
        .send()
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "bad id!");
    assert_eq!(id.len(), 36, "expected a UUID, got {id}");
}

#[test]
fn the_component_sees_spin_headers_and_the_request_id_but_not_spoofed_ones() {
    let arena = Arena::start(FIXTURES, &[]);
    let response = arena
        .client()
        .get(format!("{}/faulty/echo/deeper?x=1", arena.url))
        .header("x-request-id", "echo-1")
        .header("spin-path-info", "/spoofed")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    let headers = &body["headers"];
    assert_eq!(headers["spin-path-info"], "/echo/deeper");
    assert_eq!(headers["spin-matched-route"], "/faulty/...");
    assert_eq!(headers["spin-component-route"], "/faulty");
    assert_eq!(
        headers["spin-full-url"],
        format!("{}/faulty/echo/deeper?x=1", arena.url)
    );
    assert!(
        headers["spin-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(headers["x-request-id"], "echo-1");
    assert!(
        body["uri"]
            .as_str()
            .unwrap()
            .ends_with("/faulty/echo/deeper?x=1")
    );
}

#[test]
fn every_request_is_logged_as_one_json_line() {
    let arena = Arena::start(FIXTURES, &[]);
    let response = arena
        .client()
        .get(format!("{}/v1/health", arena.url))
        .header("x-request-id", "log-me")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let entry = arena
        .wait_for_log(Duration::from_secs(5), |e| {
            e["request_id"] == "log-me" && e["status"].is_number()
        })
        .expect("no request log line");
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/v1/health");
    assert_eq!(entry["route"], "/v1/...");
    assert_eq!(entry["component"], "meta");
    assert_eq!(entry["status"], 200);
    assert!(entry["duration_ms"].as_f64().is_some());
    assert!(entry["timestamp"].is_string());
}

#[test]
fn component_output_is_logged_with_the_component_name_and_request_id() {
    let arena = Arena::start(FIXTURES, &[]);
    let response = arena
        .client()
        .get(format!("{}/faulty/log", arena.url))
        .header("x-request-id", "output-1")
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    for (stream, text) in [
        ("stdout", "to stdout from the fixture"),
        ("stderr", "to stderr from the fixture"),
    ] {
        let entry = arena
            .wait_for_log(Duration::from_secs(5), |e| e["message"] == text)
            .unwrap_or_else(|| panic!("{stream} line not logged"));
        assert_eq!(entry["component"], "faulty");
        assert_eq!(entry["request_id"], "output-1");
        assert_eq!(entry["stream"], stream);
    }
}

#[test]
fn many_requests_at_once_all_succeed() {
    let arena = Arena::start(FIXTURES, &[]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|_| scope.spawn(|| arena.get("/faulty/sleep?ms=200").status().as_u16()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
}

#[test]
fn in_flight_requests_finish_on_sigterm_and_the_host_then_exits() {
    let mut arena = Arena::start(FIXTURES, &[]);
    let url = format!("{}/faulty/sleep?ms=1500", arena.url);
    let in_flight = std::thread::spawn(move || {
        let response = reqwest::blocking::get(url).unwrap();
        (response.status().as_u16(), response.text().unwrap())
    });
    // Let the request reach the component before the signal.
    std::thread::sleep(Duration::from_millis(300));
    arena.terminate();
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slept 1500 ms");
    let exit = arena
        .wait(Duration::from_secs(10))
        .expect("arena did not exit after SIGTERM");
    assert!(exit.success(), "{exit}");
    assert!(reqwest::blocking::get(format!("{}/v1/health", arena.url)).is_err());
}

#[test]
fn a_second_start_loads_components_from_the_compile_cache() {
    let cache = std::env::temp_dir().join(format!("arena-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let origins = |arena: &Arena| -> Vec<String> {
        arena
            .logs()
            .iter()
            .filter(|e| e["message"] == "component ready")
            .map(|e| e["origin"].as_str().unwrap().to_owned())
            .collect()
    };
    let cold = Arena::try_start_with_cache(FIXTURES, &[], &cache).unwrap();
    assert_eq!(origins(&cold), ["Compiled", "Compiled"]);
    drop(cold);
    let warm = Arena::try_start_with_cache(FIXTURES, &[], &cache).unwrap();
    assert_eq!(origins(&warm), ["Cached", "Cached"]);
    assert_eq!(warm.get("/v1/health").status(), 200);
    let _ = std::fs::remove_dir_all(&cache);
}
