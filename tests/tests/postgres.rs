//! `spin:postgres` end to end: a component (tests/fixtures/components/pg)
//! talks to the real PostgreSQL on 127.0.0.1:5432 through the host.

use arena_e2e::Arena;
use serde_json::Value;

const MANIFEST: &str = "tests/fixtures/postgres.toml";

fn json(arena: &Arena, path: &str) -> Value {
    let response = arena.get(path);
    assert_eq!(response.status(), 200, "{path}");
    response.json().unwrap()
}

#[test]
fn every_postgres_type_round_trips_through_a_component() {
    let arena = Arena::start(MANIFEST, &[]);
    let results = json(&arena, "/pg/types");
    let results = results.as_array().unwrap();
    assert!(results.len() >= 27, "{results:?}");
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(failed.is_empty(), "values changed on the way: {failed:#?}");
}

#[test]
fn a_failing_statement_returns_its_sqlstate() {
    let arena = Arena::start(MANIFEST, &[]);
    let body = json(&arena, "/pg/sqlstate");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("code: \"42P01\""), "{error}");
    assert!(error.contains("no_such_table"), "{error}");
}

#[test]
fn a_rolled_back_transaction_leaves_no_row_and_a_committed_one_stays() {
    let arena = Arena::start(MANIFEST, &[]);
    let body = json(&arena, "/pg/transactions");
    assert_eq!(body["after_rollback"], 0);
    assert_eq!(body["after_commit"], 1);
}

#[test]
fn temp_tables_do_not_outlive_the_request_that_made_them() {
    let arena = Arena::start(MANIFEST, &[]);
    // Each request takes a pooled connection; the temp table from the last
    // request must be gone, or CREATE TEMP TABLE would fail the second time.
    // (A transaction left open: see the test below.)
    for _ in 0..3 {
        let body = json(&arena, "/pg/transactions");
        assert_eq!(body["after_commit"], 1);
    }
}

#[test]
fn a_transaction_or_setting_left_behind_never_reaches_the_next_request() {
    let arena = Arena::start(MANIFEST, &[]);
    for _ in 0..5 {
        assert_eq!(json(&arena, "/pg/leave-open")["left_open"], true);
        let fresh = json(&arena, "/pg/fresh");
        assert_eq!(fresh["inside_transaction"], false, "{fresh}");
        assert_ne!(fresh["search_path"], "nowhere", "{fresh}");
    }
}

#[test]
fn a_million_rows_stream_through_with_bounded_host_memory() {
    let arena = Arena::start(MANIFEST, &[]);
    json(&arena, "/pg/stream?n=1000"); // warm the pool and the instance slots
    let before = peak_rss_kib(arena.pid());
    let body = json(&arena, "/pg/stream?n=1000000");
    assert_eq!(body["rows"], 1_000_000);
    assert_eq!(body["sum"], 500_000_500_000i64);
    let growth = peak_rss_kib(arena.pid()) - before;
    eprintln!("peak RSS grew by {growth} KiB streaming 1,000,000 rows (~110 MB of row data)");
    // Buffering the rows would take well over 100 MiB.
    assert!(growth < 32 * 1024, "peak RSS grew by {growth} KiB");
}

#[test]
fn a_destination_missing_from_allowed_outbound_hosts_is_refused() {
    let arena = Arena::start(MANIFEST, &[]);
    let body = json(
        &arena,
        "/pg/open?address=postgres://127.0.0.2:5432/postgres",
    );
    assert_eq!(body["opened"], false);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("connection to disallowed destination postgres://127.0.0.2:5432"),
        "{error}"
    );
    assert!(
        arena
            .wait_for_log(std::time::Duration::from_secs(5), |e| {
                e["message"] == "connection to disallowed destination" && e["component"] == "pg"
            })
            .is_some()
    );
}

#[test]
fn an_allowed_address_opens() {
    let arena = Arena::start(MANIFEST, &[]);
    let body = json(
        &arena,
        "/pg/open?address=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
    );
    assert_eq!(body["opened"], true, "{body}");
}

fn peak_rss_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
