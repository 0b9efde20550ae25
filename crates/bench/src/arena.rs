//! Starting `arena up` and timing its first answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const ARENA: &str = "target/release/arena";

pub struct RunningArena {
    child: Child,
    pub address: String,
}

impl RunningArena {
    /// The process id, to read its resident memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RunningArena {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The access-token signing key spin.toml requires; any will do here.
const SIGNING_KEYS: &str = "bench-1:an-access-token-signing-secret-for-benchmarks";

/// Starts `arena up` for `manifest` without migrating, and measures the time
/// until `probe` answers 200.
pub fn start(
    manifest: &str,
    cache: &Path,
    probe: &str,
) -> anyhow::Result<(RunningArena, Duration)> {
    start_with(manifest, cache, probe, &["--no-migrate"], &[])
}

/// [`start`] with more `arena up` arguments and Spin variables (`NAME`, value).
pub fn start_with(
    manifest: &str,
    cache: &Path,
    probe: &str,
    args: &[&str],
    variables: &[(&str, &str)],
) -> anyhow::Result<(RunningArena, Duration)> {
    let started = Instant::now();
    let mut command = Command::new(std::env::var("ARENA_BIN").unwrap_or_else(|_| ARENA.into()));
    command
        .args(["--log-format", "json", "up", "--listen", "127.0.0.1:0"])
        .args(args)
        .args(["--manifest", manifest, "--cache-dir"])
        .arg(cache)
        .env("SPIN_VARIABLE_JWT_SIGNING_KEYS", SIGNING_KEYS);
    for (name, value) in variables {
        command.env(
            format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            value,
        );
    }
    let mut child = command
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
    while !answers_ok(&address, probe) {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("arena up never answered {probe}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok((RunningArena { child, address }, started.elapsed()))
}

fn answers_ok(address: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

/// Logs in with `form` at `url` and returns the access token (curl does the HTTP).
pub fn access_token(url: &str, form: &str) -> anyhow::Result<String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "-X", "POST", "--data", form, url])
        .output()
        .context("cannot run curl")?;
    if !output.status.success() {
        bail!(
            "logging in at {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the token answer has no access_token")
}
