//! `/v1/ready` end to end: the meta component probes the real PostgreSQL through
//! the host, as a load balancer would see it; `/v1/health` stays up regardless.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use arena_e2e::{Arena, TestDatabase, arena_bin, repo_root};
use serde_json::Value;

const MANIFEST: &str = "spin.toml";

/// A password that must never appear in a response or a log line.
const PASSWORD: &str = "pw-never-shown-4711";

/// The probe's time limit (`PROBE_TIMEOUT` in components/meta/src/ready.rs).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A port on 127.0.0.1 where nothing listens: one the kernel just handed out
/// and took back.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `arena up` with `database_url` pointing at `127.0.0.1:{port}`, with a
/// password, and `database_host` allowing exactly that address.
fn start_against_port(port: u16) -> Arena {
    let url = format!("postgres://arena:{PASSWORD}@127.0.0.1:{port}/arena?sslmode=disable");
    let host = format!("127.0.0.1:{port}");
    Arena::start_with_env(
        MANIFEST,
        &[],
        &[
            ("SPIN_VARIABLE_DATABASE_URL", &url),
            ("SPIN_VARIABLE_DATABASE_HOST", &host),
        ],
    )
}

/// `GET /v1/ready`: the status, the `Retry-After` header if any, the document.
fn ready(arena: &Arena) -> (u16, Option<String>, Value) {
    let response = arena.get("/v1/ready");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    let retry_after = headers
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, retry_after, response.json().unwrap())
}

fn assert_health_is_200(arena: &Arena) {
    let response = arena.get("/v1/health");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["status"], "ok");
}

fn assert_no_password_anywhere(arena: &Arena, body: &Value) {
    assert!(!body.to_string().contains(PASSWORD), "{body}");
    let logs = serde_json::to_string(&arena.logs()).unwrap();
    assert!(!logs.contains(PASSWORD), "the password is in the log");
}

#[test]
fn ready_is_200_with_postgres_up_and_its_latency() {
    // Not created: the migration step creates it, as `./dev up` does on a fresh machine.
    let database = TestDatabase::unique();
    let address = database.address();
    let arena = Arena::start_with_database_and_env(
        MANIFEST,
        &database.url(),
        &[],
        &[("SPIN_VARIABLE_DATABASE_HOST", &address)],
    );
    assert!(database.exists());

    let (status, retry_after, body) = ready(&arena);
    assert_eq!(status, 200, "{body}");
    assert_eq!(retry_after, None);
    assert_eq!(body["status"], "ready");
    let postgres = &body["dependencies"]["postgres"];
    assert_eq!(postgres["status"], "up", "{body}");
    assert_eq!(postgres["required"], true);
    let latency = postgres["latency_ms"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 2000.0, "{body}");
    assert!(postgres.get("reason").is_none(), "{body}");
    // No Ollama runs here: reported down, but it is optional, so still ready.
    let ollama = &body["dependencies"]["ollama"];
    assert_eq!(ollama["status"], "down", "{body}");
    assert_eq!(ollama["required"], false);
    assert!(
        ollama["reason"].as_str().unwrap().contains("not reachable"),
        "{body}"
    );
    assert_eq!(body["dependencies"].as_object().unwrap().len(), 2);
}

#[test]
fn head_ready_answers_the_status_without_a_body() {
    let database = TestDatabase::create();
    let address = database.address();
    let arena = Arena::start_with_database_and_env(
        MANIFEST,
        &database.url(),
        &[],
        &[("SPIN_VARIABLE_DATABASE_HOST", &address)],
    );
    let response = arena
        .client()
        .head(format!("{}/v1/ready", arena.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "");
}

#[test]
fn an_unreachable_database_is_503_at_once_with_the_reason_and_no_password() {
    let arena = start_against_port(closed_port());

    let started = Instant::now();
    let (status, retry_after, body) = ready(&arena);
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert_eq!(body["status"], "not_ready");
    let postgres = &body["dependencies"]["postgres"];
    assert_eq!(postgres["status"], "down", "{body}");
    assert_eq!(postgres["required"], true);
    let reason = postgres["reason"].as_str().unwrap();
    // Refused, not timed out: a closed port is reported without waiting for the limit.
    assert!(reason.contains("Connection refused"), "{reason}");
    assert!(elapsed < PROBE_TIMEOUT, "took {elapsed:?}");
    assert!(postgres["latency_ms"].as_f64().unwrap() < 2000.0, "{body}");
    assert_no_password_anywhere(&arena, &body);

    // Liveness checks nothing else: the API is up, only not ready.
    assert_health_is_200(&arena);
}

#[test]
fn a_database_that_never_answers_is_down_once_the_probe_times_out() {
    // Accepts connections (the kernel completes the handshake) and never says a
    // word: a hung server. The host would wait 5 s to connect; the probe waits 2.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let arena = start_against_port(hung.local_addr().unwrap().port());

    for _ in 0..2 {
        let started = Instant::now();
        let (status, retry_after, body) = ready(&arena);
        let elapsed = started.elapsed();
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry_after.as_deref(), Some("5"));
        let postgres = &body["dependencies"]["postgres"];
        assert_eq!(postgres["status"], "down", "{body}");
        assert_eq!(postgres["reason"], "no answer within 2000 ms", "{body}");
        let latency = postgres["latency_ms"].as_f64().unwrap();
        assert!(latency >= 2000.0, "{body}");
        // Well before the host's own 5 s connect timeout would have answered.
        assert!(elapsed < Duration::from_millis(4500), "took {elapsed:?}");
        assert_no_password_anywhere(&arena, &body);
    }
    assert_health_is_200(&arena);
    drop(hung);
}

#[test]
fn a_database_outside_allowed_outbound_hosts_is_down_saying_so() {
    // database_url moved, database_host left behind: a deployment mistake the
    // reason should name.
    let port = closed_port();
    let url = format!("postgres://arena:{PASSWORD}@127.0.0.1:{port}/arena?sslmode=disable");
    let arena = Arena::start_with_env(MANIFEST, &[], &[("SPIN_VARIABLE_DATABASE_URL", &url)]);
    let (status, _, body) = ready(&arena);
    assert_eq!(status, 503, "{body}");
    let reason = body["dependencies"]["postgres"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "disallowed destination postgres://127.0.0.1:{port}"
        )),
        "{reason}"
    );
    assert_no_password_anywhere(&arena, &body);
}

#[test]
fn the_manifest_defaults_name_the_database_the_host_migrates() {
    let text = std::fs::read_to_string(repo_root().join(MANIFEST)).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    let variables = &manifest["variables"];
    let url = variables["database_url"]["default"].as_str().unwrap();
    let host = variables["database_host"]["default"].as_str().unwrap();
    assert_eq!(variables["database_url"]["secret"].as_bool(), Some(true));

    // `arena up` migrates its own default when SPIN_VARIABLE_DATABASE_URL is unset;
    // components read the manifest's. They must be the same database.
    let help = Command::new(arena_bin())
        .args(["migrate", "--help"])
        .env_remove("SPIN_VARIABLE_DATABASE_URL")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains(&format!("[default: {url}]")), "{help}");

    // And database_host is the address in that URL, so components may reach it.
    assert!(url.contains(&format!("@{host}/")), "{url} vs {host}");
    let meta = &manifest["component"]["meta"];
    assert_eq!(
        meta["allowed_outbound_hosts"][0],
        toml::Value::from("postgres://{{ database_host }}")
    );
    assert_eq!(
        meta["variables"]["database_url"].as_str(),
        Some("{{ database_url }}")
    );
}
