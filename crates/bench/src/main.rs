//! `arena-bench`: the host against native servers doing the same work, both
//! loaded by `wrk` in the same run, alternating, so drift hits both alike;
//! every figure is the median of several rounds (machines here are noisy).
//!
//! - `health`: `GET /v1/health` through `arena up` (the meta component, a
//!   fresh instance per request) vs a hyper hello-world; plus the time from
//!   `arena up` to its first answer, cold (empty compile cache) and warm.
//! - `postgres`: a single-row `SELECT` through a component (`spin:postgres`,
//!   tests/fixtures/postgres.toml) vs the same query from native
//!   tokio-postgres with a pool like the host's.
//!
//! Usage, from the repository root once `./dev build` has run:
//! `arena-bench [health|postgres|all] [ROUNDS]` (default `all 3`).

mod arena;
mod native;
mod wrk;

use std::time::Duration;

use wrk::{Run, Summary};

/// The database the `postgres` scenario queries (the fixture's own).
const DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "all".into());
    let rounds: usize = args.next().map_or(Ok(3), |n| n.parse())?;
    let cache = std::env::temp_dir().join(format!("arena-bench-cache-{}", std::process::id()));
    if matches!(scenario.as_str(), "health" | "all") {
        health(rounds, &cache)?;
    }
    if matches!(scenario.as_str(), "postgres" | "all") {
        postgres(rounds, &cache)?;
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

fn health(rounds: usize, cache: &std::path::Path) -> anyhow::Result<()> {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..rounds {
        let _ = std::fs::remove_dir_all(cache);
        cold.push(arena::start("spin.toml", cache, "/v1/health")?.1);
        warm.push(arena::start("spin.toml", cache, "/v1/health")?.1);
    }
    let native = native::serve(native::Answer::Health)?;
    let (running, _) = arena::start("spin.toml", cache, "/v1/health")?;
    compare(
        "GET /v1/health",
        (
            "native hyper hello-world",
            &format!("http://{native}/v1/health"),
        ),
        (
            "`arena up` → meta component",
            &format!("http://{}/v1/health", running.address),
        ),
        rounds,
    )?;
    println!(
        "start-up to first answer: cold {:.0} ms, warm {:.0} ms (medians of {rounds})\n",
        millis(median(&cold)),
        millis(median(&warm))
    );
    Ok(())
}

fn postgres(rounds: usize, cache: &std::path::Path) -> anyhow::Result<()> {
    let native = native::serve(native::Answer::Select(native::pool(DATABASE_URL)?))?;
    let (running, _) = arena::start("tests/fixtures/postgres.toml", cache, "/pg/select")?;
    compare(
        "single-row SELECT",
        (
            "native tokio-postgres (pooled)",
            &format!("http://{native}/"),
        ),
        (
            "`arena up` → component → spin:postgres",
            &format!("http://{}/pg/select", running.address),
        ),
        rounds,
    )
}

/// Loads both URLs `rounds` times, alternating, and prints the medians.
fn compare(
    title: &str,
    native: (&str, &str),
    arena: (&str, &str),
    rounds: usize,
) -> anyhow::Result<()> {
    let mut native_runs: Vec<Run> = Vec::new();
    let mut arena_runs: Vec<Run> = Vec::new();
    for round in 1..=rounds {
        eprintln!("{title}: round {round}/{rounds}");
        native_runs.push(wrk::run(native.1)?);
        arena_runs.push(wrk::run(arena.1)?);
    }
    let (n, a) = (Summary::of(&native_runs), Summary::of(&arena_runs));
    println!("### {title}\n");
    println!("| server | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {:.2} ms | {:.2} ms |",
        native.0, n.rps, n.p50_ms, n.p99_ms
    );
    println!(
        "| {} | {:.0} | {:.2} ms | {:.2} ms |",
        arena.0, a.rps, a.p50_ms, a.p99_ms
    );
    println!(
        "\narena/native: throughput {:.2}×, p50 {:.1}×, p99 {:.1}× (medians of {rounds} rounds)\n",
        a.rps / n.rps,
        a.p50_ms / n.p50_ms,
        a.p99_ms / n.p99_ms
    );
    Ok(())
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
