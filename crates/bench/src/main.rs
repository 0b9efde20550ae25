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
//! - `auth`: logins per second (`POST /v1/auth/token`, an Argon2id check and a
//!   new session each), and what the auth middleware costs: a public request
//!   it passes on untouched vs authenticated ones (token verified, session
//!   looked up, rate limit counted).
//! - `ai`: a streamed chat through `arena up` (auth middleware, the AI component,
//!   usage recorded) vs the same chat straight from the fake Ollama it calls: the
//!   time to the first token Arena adds, and tokens per second through the stack.
//! - `discussions`: what a discussion turn costs Arena beyond its model call (a
//!   non-streamed turn's wall time minus the model call's own `latency_ms`), and
//!   listing pages of a discussion of 10,000 messages (first, latest, deep).
//! - `models`: the embedded models (`arena models serve`): generation tokens
//!   per second and time to the first token for a 200-token prompt, embeddings
//!   one per request vs 32 per request, and memory once both are loaded.
//! - `realtime`: 10,000 WebSocket clients on the hub of `arena up`, memory per
//!   connection, and fan-out latency from an event's commit to its receipt at
//!   1,000 events/s over 100 channels (not part of `all`: it wants a raised
//!   file-descriptor limit and a quiet machine).
//!
//! Usage, from the repository root once `./dev build` has run:
//! `arena-bench [health|postgres|auth|ai|discussions|models|realtime|all] [ROUNDS]`
//! (default `all 3`).

mod arena;
mod discussions;
mod models;
mod native;
mod realtime;
mod stream;
mod wrk;

use std::time::Duration;

use wrk::{Load, Run, Summary};

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
    if matches!(scenario.as_str(), "auth" | "all") {
        auth(rounds, &cache)?;
    }
    if matches!(scenario.as_str(), "ai" | "all") {
        ai(rounds, &cache)?;
    }
    if matches!(scenario.as_str(), "discussions" | "all") {
        discussions::run(rounds, &cache)?;
    }
    if matches!(scenario.as_str(), "models" | "all") {
        models::run(rounds)?;
    }
    if scenario == "realtime" {
        realtime::run(rounds, &cache)?;
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
        native_runs.push(wrk::run(&Load::get(native.1))?);
        arena_runs.push(wrk::run(&Load::get(arena.1))?);
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

/// The database the `auth` scenario migrates and fills, made afresh each run.
const AUTH_DATABASE: &str = "arena_bench_auth";
const ADMIN: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "a benchmark admin's passphrase";

fn auth(rounds: usize, cache: &std::path::Path) -> anyhow::Result<()> {
    native::recreate_database(DATABASE_URL, AUTH_DATABASE)?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{AUTH_DATABASE}?sslmode=disable");
    // Limits far above what the load reaches: this measures the checks, not refusals.
    let unlimited = "1000000000";
    let (running, _) = arena::start_with(
        "spin.toml",
        cache,
        "/v1/health",
        &["--database-url", &url],
        &[
            ("database_url", &url),
            ("admin_username", ADMIN),
            ("admin_password", ADMIN_PASSWORD),
            ("rate_limit_per_user", unlimited),
            ("rate_limit_per_address", unlimited),
            ("rate_limit_token_per_address", unlimited),
        ],
    )?;
    let base = format!("http://{}", running.address);
    let login = format!(
        "grant_type=password&username={ADMIN}&password={}",
        ADMIN_PASSWORD.replace(' ', "+")
    );
    let token = arena::access_token(&format!("{base}/v1/auth/token"), &login)?;
    let bearer = format!("Authorization: Bearer {token}");
    let (health, me, missing, token_url) = (
        format!("{base}/v1/health"),
        format!("{base}/v1/auth/me"),
        format!("{base}/v1/no-such-route"),
        format!("{base}/v1/auth/token"),
    );
    let public = Load::get(&health);
    let authenticated = Load::get(&missing).with_header(&bearer).expecting(404);
    let me = Load::get(&me).with_header(&bearer);
    table(
        "The auth middleware's cost, one request at a time (`-c1`)",
        &[
            (PUBLIC, public.clone().over(1)),
            (AUTHENTICATED_404, authenticated.clone().over(1)),
            (AUTHENTICATED_ME, me.clone().over(1)),
        ],
        rounds,
    )?;
    table(
        "The auth middleware's cost under load (`-c32`)",
        &[
            (PUBLIC, public),
            (AUTHENTICATED_404, authenticated),
            (AUTHENTICATED_ME, me),
            (
                "`POST /v1/auth/token` (a password login)",
                Load::get(&token_url).posting(&login),
            ),
        ],
        rounds,
    )
}

const PUBLIC: &str = "public `GET /v1/health` (passed on untouched)";
const AUTHENTICATED_404: &str =
    "authenticated `GET /v1/no-such-route` (all of the middleware, then meta's 404, no query)";
const AUTHENTICATED_ME: &str =
    "authenticated `GET /v1/auth/me` (all of the middleware, then the handler's own query)";

/// Chats per round and path in the `ai` scenario.
const CHATS_PER_ROUND: usize = 100;
/// Tokens in each reply.
const REPLY_TOKENS: usize = 200;

fn ai(rounds: usize, cache: &std::path::Path) -> anyhow::Result<()> {
    use arena_fake_ollama::{DEFAULT_CHAT_MODEL, FakeOllama, Reply};

    let fake = FakeOllama::start();
    fake.script(
        DEFAULT_CHAT_MODEL,
        Reply::from_tokens((0..REPLY_TOKENS).map(|n| format!(" t{n}"))),
    );
    native::recreate_database(DATABASE_URL, AUTH_DATABASE)?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{AUTH_DATABASE}?sslmode=disable");
    let (fake_url, fake_address) = (fake.url(), fake.address().to_string());
    let (running, _) = arena::start_with(
        "spin.toml",
        cache,
        "/v1/health",
        &["--database-url", &url],
        &[
            ("database_url", &url),
            ("admin_username", ADMIN),
            ("admin_password", ADMIN_PASSWORD),
            ("ollama_url", &fake_url),
            ("ollama_host", &fake_address),
        ],
    )?;
    let login = format!(
        "grant_type=password&username={ADMIN}&password={}",
        ADMIN_PASSWORD.replace(' ', "+")
    );
    let token = arena::access_token(&format!("http://{}/v1/auth/token", running.address), &login)?;
    let bearer = format!("Bearer {token}");
    let chat = serde_json::json!({
        "model": DEFAULT_CHAT_MODEL,
        "messages": [{ "role": "user", "content": "Count." }],
        "stream": true,
    })
    .to_string();

    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        eprintln!("streamed chat: round {round}/{rounds}");
        for _ in 0..CHATS_PER_ROUND {
            direct.push(stream::time(
                &fake_address,
                "/api/chat",
                &[],
                &chat,
                b"\"content\":\" t0\"",
            )?);
            through.push(stream::time(
                &running.address,
                "/v1/ai/chat",
                &[("Authorization", &bearer)],
                &chat,
                b"event: token",
            )?);
        }
    }
    let summary = |timings: &[stream::Timing]| {
        let mut first: Vec<Duration> = timings.iter().map(|t| t.first_token).collect();
        first.sort();
        let mut rates: Vec<f64> = timings
            .iter()
            .map(|t| REPLY_TOKENS as f64 / (t.total - t.first_token).as_secs_f64().max(1e-6))
            .collect();
        rates.sort_by(f64::total_cmp);
        let p99 = first[(first.len() * 99 / 100).min(first.len() - 1)];
        (first[first.len() / 2], p99, rates[rates.len() / 2])
    };
    let (d50, d99, d_rate) = summary(&direct);
    let (a50, a99, a_rate) = summary(&through);
    println!("### A streamed chat: through Arena vs straight from the fake Ollama\n");
    println!("| path | first token p50 | first token p99 | tokens/s (median) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| fake Ollama `/api/chat` (NDJSON) | {:.2} ms | {:.2} ms | {d_rate:.0} |",
        millis(d50),
        millis(d99)
    );
    println!(
        "| `arena up` `/v1/ai/chat` (SSE) | {:.2} ms | {:.2} ms | {a_rate:.0} |",
        millis(a50),
        millis(a99)
    );
    println!(
        "\nArena adds {:.2} ms to the first token at the median ({:.2} ms at p99); \
         streams at {:.2}× the fake's rate ({} chats of {REPLY_TOKENS} tokens a path)\n",
        millis(a50) - millis(d50),
        millis(a99) - millis(d99),
        a_rate / d_rate,
        direct.len()
    );
    Ok(())
}

/// Loads each of `loads` `rounds` times, alternating, and prints the medians.
fn table(title: &str, loads: &[(&str, Load)], rounds: usize) -> anyhow::Result<()> {
    let mut runs: Vec<Vec<Run>> = loads.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        eprintln!("{title}: round {round}/{rounds}");
        for ((_, load), runs) in loads.iter().zip(&mut runs) {
            runs.push(wrk::run(load)?);
        }
    }
    println!("### {title}\n");
    println!("| request | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for ((name, _), runs) in loads.iter().zip(&runs) {
        let summary = Summary::of(runs);
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms |",
            summary.rps, summary.p50_ms, summary.p99_ms
        );
    }
    println!("\n(medians of {rounds} rounds)\n");
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
