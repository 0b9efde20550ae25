//! Test harness: starts the real `arena` binary on a free port and talks to
//! it over HTTP, the way a client would.
//!
//! The binary and the components must be built first (`./dev test` does it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod upstream;

/// How long `arena up` may take to start listening (cold compiles included).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `arena` binary: `$ARENA_BIN`, else the one beside this test's own
/// build profile (`target/release/arena` for `cargo test --release`).
pub fn arena_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ARENA_BIN") {
        return bin.into();
    }
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("arena");
    assert!(
        bin.exists(),
        "{} is missing: build it with `./dev build` first",
        bin.display()
    );
    bin
}

/// A running `arena up`, killed when dropped.
pub struct Arena {
    child: Child,
    pub url: String,
    logs: Arc<Mutex<Vec<Value>>>,
    client: reqwest::blocking::Client,
}

/// `arena up` exited before it listened.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub logs: Vec<Value>,
}

impl StartFailure {
    /// Every log message, one per line, for assertions and failure output.
    pub fn messages(&self) -> String {
        messages(&self.logs)
    }
}

impl Arena {
    /// Starts `arena up` for `manifest` (relative to the repository root).
    pub fn start(manifest: &str, args: &[&str]) -> Arena {
        Self::try_start(manifest, args)
            .unwrap_or_else(|failure| panic!("arena up failed to start:\n{}", failure.messages()))
    }

    pub fn try_start(manifest: &str, args: &[&str]) -> Result<Arena, StartFailure> {
        Self::try_start_with_env(manifest, args, &[])
    }

    /// Starts `arena up` with extra environment variables (`SPIN_VARIABLE_*`).
    pub fn start_with_env(manifest: &str, args: &[&str], env: &[(&str, &str)]) -> Arena {
        Self::try_start_with_env(manifest, args, env)
            .unwrap_or_else(|failure| panic!("arena up failed to start:\n{}", failure.messages()))
    }

    pub fn try_start_with_env(
        manifest: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Arena, StartFailure> {
        Self::spawn(manifest, args, &default_cache(), env)
    }

    pub fn try_start_with_cache(
        manifest: &str,
        args: &[&str],
        cache: &Path,
    ) -> Result<Arena, StartFailure> {
        Self::spawn(manifest, args, cache, &[])
    }

    fn spawn(
        manifest: &str,
        args: &[&str],
        cache: &Path,
        env: &[(&str, &str)],
    ) -> Result<Arena, StartFailure> {
        let mut child = Command::new(arena_bin())
            .current_dir(repo_root())
            .args([
                "--log-format",
                "json",
                "up",
                "--listen",
                "127.0.0.1:0",
                "--manifest",
                manifest,
            ])
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start arena");

        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn({
            let logs = logs.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let entry = serde_json::from_str(&line).unwrap_or(Value::String(line));
                    logs.lock().unwrap().push(entry);
                }
            }
        });

        let started = Instant::now();
        loop {
            let listening = logs
                .lock()
                .unwrap()
                .iter()
                .find(|entry| entry["message"] == "listening")
                .map(|entry| entry["url"].as_str().unwrap().to_owned());
            if let Some(url) = listening {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                return Ok(Arena {
                    child,
                    url,
                    logs,
                    client,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(200));
                let logs = logs.lock().unwrap().clone();
                return Err(StartFailure {
                    status: Some(status),
                    logs,
                });
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let logs = logs.lock().unwrap().clone();
                return Err(StartFailure { status: None, logs });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap()
    }

    /// Every log entry so far (JSON objects; non-JSON lines as strings).
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a log entry matching `predicate`.
    pub fn wait_for_log(
        &self,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(entry) = self.logs().into_iter().find(&predicate) {
                return Some(entry);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, for at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$ARENA_TEST_CACHE_DIR`, else a compile cache beside the binary, shared
/// by every test.
fn default_cache() -> PathBuf {
    match std::env::var_os("ARENA_TEST_CACHE_DIR") {
        Some(dir) => dir.into(),
        None => arena_bin().parent().unwrap().join("arena-test-cache"),
    }
}

fn messages(logs: &[Value]) -> String {
    logs.iter()
        .map(|entry| match entry {
            Value::String(line) => line.clone(),
            entry => entry.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
