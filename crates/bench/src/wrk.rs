//! Load from `wrk`, and the figures it prints.

use std::process::Command;

use anyhow::{Context, bail};

/// One load thread (the machine has two cores, and the servers need them),
/// 32 keep-alive connections, 10 s per round.
const WRK_ARGS: &[&str] = &["-t1", "-c32", "-d10s", "--latency"];

pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub fn run(url: &str) -> anyhow::Result<Run> {
    let output = Command::new("wrk")
        .args(WRK_ARGS)
        .arg(url)
        .output()
        .context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk against {url} failed or saw errors:\n{text}");
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

/// Medians of several runs.
pub struct Summary {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Summary {
    pub fn of(runs: &[Run]) -> Summary {
        let median = |f: fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Summary {
            rps: median(|r| r.rps),
            p50_ms: median(|r| r.p50_ms),
            p99_ms: median(|r| r.p99_ms),
        }
    }
}
