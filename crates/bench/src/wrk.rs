//! Load from `wrk`, and the figures it prints.

use std::process::Command;

use anyhow::{Context, bail};

/// One load thread (the machine has two cores, and the servers need them),
/// 10 s per round; connections are the load's own (32 keep-alive by default).
const WRK_ARGS: &[&str] = &["-t1", "-d10s", "--latency"];

/// Keep-alive connections when a load does not say.
const DEFAULT_CONNECTIONS: u32 = 32;

pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What `wrk` sends: a GET of `url` by default.
#[derive(Clone)]
pub struct Load<'a> {
    pub url: &'a str,
    /// An extra request header, `Name: value`.
    pub header: Option<&'a str>,
    /// A form to POST instead of the GET.
    pub form: Option<&'a str>,
    /// The one status every answer must have when it is not a 2xx.
    pub expect_status: Option<u16>,
    /// Concurrent connections; 1 measures latency without queueing.
    pub connections: u32,
}

impl<'a> Load<'a> {
    pub fn get(url: &'a str) -> Self {
        Self {
            url,
            header: None,
            form: None,
            expect_status: None,
            connections: DEFAULT_CONNECTIONS,
        }
    }

    /// Sends `header` (`Name: value`) with each request.
    pub fn with_header(self, header: &'a str) -> Self {
        Self {
            header: Some(header),
            ..self
        }
    }

    /// POSTs `form` instead of the GET.
    pub fn posting(self, form: &'a str) -> Self {
        Self {
            form: Some(form),
            ..self
        }
    }

    /// Accepts `status` as every answer's.
    pub fn expecting(self, status: u16) -> Self {
        Self {
            expect_status: Some(status),
            ..self
        }
    }

    /// Holds `connections` concurrent connections.
    pub fn over(self, connections: u32) -> Self {
        Self {
            connections,
            ..self
        }
    }
}

pub fn run(load: &Load) -> anyhow::Result<Run> {
    let mut command = Command::new("wrk");
    command
        .args(WRK_ARGS)
        .arg(format!("-c{}", load.connections));
    if let Some(header) = load.header {
        command.args(["-H", header]);
    }
    // wrk sends a body only from a Lua script.
    let script = std::env::temp_dir().join(format!("arena-bench-{}.lua", std::process::id()));
    if let Some(form) = load.form {
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = {form:?}\n\
                 wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n"
            ),
        )?;
        command.arg("-s").arg(&script);
    }
    let output = command.arg(load.url).output().context("cannot run wrk")?;
    let _ = std::fs::remove_file(&script);
    let url = load.url;
    let text = String::from_utf8_lossy(&output.stdout);
    // wrk counts anything but 2xx and 3xx as an error: an expected 404 passes only
    // when every answer was one (checked before the load by the caller's probe).
    let non_2xx_ok = load.expect_status.is_some();
    if !output.status.success()
        || (text.contains("Non-2xx") && !non_2xx_ok)
        || text.contains("Socket errors")
    {
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
