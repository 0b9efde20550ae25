//! `arena-bench`: `GET /v1/health` through `arena up` beside a native
//! hello-world server answering the same JSON, both loaded by `wrk` in the
//! same run, plus the time from `arena up` to its first answer, cold (empty
//! compile cache) and warm.
//!
//! Machines here are noisy: every figure is the median of several rounds,
//! and the two servers alternate so drift hits both alike.
//!
//! Usage: `arena-bench [ROUNDS]` (default 3) from the repository root, with
//! `target/release/arena` and the components built (`./dev bench` does it).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

/// wrk settings: one load thread (the machine has two cores, and the servers
/// need them), 32 keep-alive connections, 10 s per round.
const WRK_ARGS: &[&str] = &["-t1", "-c32", "-d10s", "--latency"];
const ARENA: &str = "target/release/arena";

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(3), |n| n.parse())?;

    let native = start_native_server()?;
    let cache = std::env::temp_dir().join(format!("arena-bench-cache-{}", std::process::id()));

    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..rounds {
        let _ = std::fs::remove_dir_all(&cache);
        let (arena, elapsed) = start_arena(&cache)?;
        cold.push(elapsed);
        drop(arena);
        let (arena, elapsed) = start_arena(&cache)?;
        warm.push(elapsed);
        drop(arena);
    }

    let (mut arena, _) = start_arena(&cache)?;
    let arena_url = format!("http://{}/v1/health", arena.address);
    let native_url = format!("http://{native}/v1/health");
    let mut arena_runs = Vec::new();
    let mut native_runs = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        native_runs.push(wrk(&native_url)?);
        arena_runs.push(wrk(&arena_url)?);
    }
    arena.child.kill()?;
    let _ = std::fs::remove_dir_all(&cache);

    let arena = Summary::of(&arena_runs);
    let native = Summary::of(&native_runs);
    println!("| server | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    println!(
        "| native hyper hello-world | {:.0} | {:.2} ms | {:.2} ms |",
        native.rps, native.p50_ms, native.p99_ms
    );
    println!(
        "| `arena up` → meta component | {:.0} | {:.2} ms | {:.2} ms |",
        arena.rps, arena.p50_ms, arena.p99_ms
    );
    println!();
    println!(
        "arena/native: throughput {:.2}×, p50 {:.1}×, p99 {:.1}× (medians of {rounds} rounds)",
        arena.rps / native.rps,
        arena.p50_ms / native.p50_ms,
        arena.p99_ms / native.p99_ms
    );
    println!(
        "start-up to first answer: cold {:.0} ms, warm {:.0} ms (medians of {rounds})",
        median(&cold).as_secs_f64() * 1000.0,
        median(&warm).as_secs_f64() * 1000.0
    );
    Ok(())
}

/// A native server answering `/v1/health` with the same body as meta.
fn start_native_server() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        let body = Bytes::from_static(br#"{"status":"ok","version":"0.1.0"}"#);
                        let response = hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .expect("static response");
                        Ok::<_, Infallible>(response)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Ok(address)
}

struct RunningArena {
    child: Child,
    address: String,
}

impl Drop for RunningArena {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `arena up` and measures the time until `/v1/health` answers.
fn start_arena(cache: &std::path::Path) -> anyhow::Result<(RunningArena, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(ARENA)
        .args([
            "--log-format",
            "json",
            "up",
            "--listen",
            "127.0.0.1:0",
            "--cache-dir",
        ])
        .arg(cache)
        .env("RUST_LOG", "warn,arena::commands::up=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {ARENA}; run `./dev build` first"))?;
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut address = None;
    for line in stderr.lines() {
        let entry: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if entry["message"] == "listening" {
            address = entry["address"].as_str().map(str::to_owned);
            break;
        }
    }
    let Some(address) = address else {
        bail!("arena up exited before listening");
    };
    while !health_ok(&address) {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("arena up never answered");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((RunningArena { child, address }, started.elapsed()))
}

fn health_ok(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let request =
        format!("GET /v1/health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(url: &str) -> anyhow::Result<Run> {
    let output = Command::new("wrk")
        .args(WRK_ARGS)
        .arg(url)
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("Non-2xx") {
        bail!("wrk against {url} failed:\n{text}");
    }
    let field = |prefix: &str| -> anyhow::Result<&str> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk output:\n{text}"))
    };
    Ok(Run {
        rps: field("Requests/sec:")?.parse()?,
        p50_ms: millis(field("50%")?)?,
        p99_ms: millis(field("99%")?)?,
    })
}

/// Parses wrk's latency figures (`812.00us`, `1.52ms`, `2.01s`).
fn millis(value: &str) -> anyhow::Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .context("latency without unit")?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        other => bail!("unknown latency unit `{other}`"),
    })
}

struct Summary {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Summary {
    fn of(runs: &[Run]) -> Summary {
        let median_of = |f: fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Summary {
            rps: median_of(|r| r.rps),
            p50_ms: median_of(|r| r.p50_ms),
            p99_ms: median_of(|r| r.p99_ms),
        }
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
