//! Test harness: starts the real `arena` binary on a free port and talks to
//! it over HTTP, the way a client would.
//!
//! The binary and the components must be built first (`./dev test` does it),
//! and PostgreSQL must be running for the tests that use a database (`./dev
//! test` starts it): each such test gets a [`TestDatabase`] of its own.
//!
//! Every `arena up` gets the signing key [`TEST_SIGNING_KEYS`] (spin.toml requires
//! one), so tests can also sign access tokens of their own.
//!
//! The suites of the HTTP API build on [`api`] (the real spin.toml started with a
//! deployment's settings, a client keeping every exchange, responses and their
//! checks) and [`sse`] (event streams, each event timed on arrival).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod api;
pub mod poll;
pub mod sse;
pub mod upstream;
pub mod ws;

/// How long `arena up` may take to start listening (cold compiles included).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The PostgreSQL server the tests use when `$ARENA_TEST_POSTGRES` names none:
/// the one `./dev` starts (trust authentication on the loopback address).
const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// `arena up`'s switch for the embedded models (`--no-embedded-models`).
pub const NO_EMBEDDED_MODELS_ENV: &str = "ARENA_NO_EMBEDDED_MODELS";

/// The environment variable that sets the Spin variable `database_url`.
const DATABASE_URL_ENV: &str = "SPIN_VARIABLE_DATABASE_URL";

/// The environment variable that sets the Spin variable `jwt_signing_keys`,
/// which spin.toml requires.
pub const SIGNING_KEYS_ENV: &str = "SPIN_VARIABLE_JWT_SIGNING_KEYS";

// Literals, so `concat!` can join them into [`TEST_SIGNING_KEYS`].
macro_rules! test_kid {
    () => {
        "test-1"
    };
}
macro_rules! test_secret {
    () => {
        "arena-e2e-signing-secret-0123456789abcde"
    };
}

/// The key id of the one signing key every [`Arena`] gets.
pub const TEST_SIGNING_KID: &str = test_kid!();
/// That key's secret (40 bytes; HS256 needs 32 or more): tests sign their own
/// access tokens with it.
pub const TEST_SIGNING_SECRET: &str = test_secret!();
/// `jwt_signing_keys` (`kid:secret`) as every [`Arena`] starts with unless the
/// caller's env list sets [`SIGNING_KEYS_ENV`] itself.
pub const TEST_SIGNING_KEYS: &str = concat!(test_kid!(), ":", test_secret!());

/// The repository root.
///
/// Read at run time first (`cargo test` sets `CARGO_MANIFEST_DIR` for the test
/// binary): this library is built once per target directory, and worktrees of
/// the repository sharing one would otherwise all see the root of whichever
/// built it last.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().unwrap().to_path_buf()
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
    /// Starts `arena up` for `manifest` (relative to the repository root),
    /// with no database: migrations are skipped (`--no-migrate`).
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
        Self::launch(manifest, args, &default_cache_dir(), None, env)
    }

    pub fn try_start_with_cache(
        manifest: &str,
        args: &[&str],
        cache: &Path,
    ) -> Result<Arena, StartFailure> {
        Self::launch(manifest, args, cache, None, &[])
    }

    /// Starts `arena up` against the database at `database_url`, which it
    /// migrates with the repository's `migrations/` before listening.
    pub fn start_with_database(manifest: &str, database_url: &str, args: &[&str]) -> Arena {
        Self::try_start_with_database(manifest, database_url, args)
            .unwrap_or_else(|failure| panic!("arena up failed to start:\n{}", failure.messages()))
    }

    /// The URL reaches `arena` as a deployer sets it, through the Spin
    /// variable's environment variable; the migrations folder is given
    /// explicitly, since the default is the one beside the manifest.
    pub fn try_start_with_database(
        manifest: &str,
        database_url: &str,
        args: &[&str],
    ) -> Result<Arena, StartFailure> {
        Self::launch(
            manifest,
            args,
            &default_cache_dir(),
            Some(database_url),
            &[],
        )
    }

    /// [`Self::start_with_database`] with extra environment variables
    /// (`SPIN_VARIABLE_*`).
    pub fn start_with_database_and_env(
        manifest: &str,
        database_url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Arena {
        Self::launch(
            manifest,
            args,
            &default_cache_dir(),
            Some(database_url),
            env,
        )
        .unwrap_or_else(|failure| panic!("arena up failed to start:\n{}", failure.messages()))
    }

    fn launch(
        manifest: &str,
        args: &[&str],
        cache: &Path,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Arena, StartFailure> {
        let mut command = Command::new(arena_bin());
        command
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
            .arg(cache);
        match database_url {
            Some(url) => command
                .env(DATABASE_URL_ENV, url)
                .arg("--migrations")
                .arg(repo_root().join("migrations")),
            None => command.env_remove(DATABASE_URL_ENV).arg("--no-migrate"),
        };
        // spin.toml requires a signing key; other manifests ignore it.
        if !env.iter().any(|(key, _)| *key == SIGNING_KEYS_ENV) {
            command.env(SIGNING_KEYS_ENV, TEST_SIGNING_KEYS);
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            // The suites choose their Ollama (a fake, or none to test its absence):
            // the embedded models stay off unless a test turns them on.
            .env(NO_EMBEDDED_MODELS_ENV, "true")
            .envs(env.iter().copied());
        Self::spawn(command)
    }

    /// Starts `arena models serve` (the embedded models' Ollama API alone) on a
    /// free port, with the models of `$ARENA_MODELS_DIR` (or the default
    /// directory) unless `env` says otherwise.
    pub fn start_models(env: &[(&str, &str)]) -> Arena {
        let mut command = Command::new(arena_bin());
        command
            .current_dir(repo_root())
            .args([
                "--log-format",
                "json",
                "models",
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        Self::spawn(command).unwrap_or_else(|failure| {
            panic!(
                "arena models serve failed to start:\n{}",
                failure.messages()
            )
        })
    }

    /// Starts `arena sidecar` (the realtime hub alone, as production runs it
    /// beside a Spin host) on a free port against `database_url`, which must
    /// already be migrated (an [`Arena`] started on it does that), with the
    /// signing key [`TEST_SIGNING_KEYS`] unless `env` sets one.
    pub fn start_sidecar(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Arena {
        let mut command = Command::new(arena_bin());
        command
            .current_dir(repo_root())
            .args(["--log-format", "json", "sidecar", "--listen", "127.0.0.1:0"])
            .args(["--database-url", database_url])
            .env(DATABASE_URL_ENV, database_url);
        if !env.iter().any(|(key, _)| *key == SIGNING_KEYS_ENV) {
            command.env(SIGNING_KEYS_ENV, TEST_SIGNING_KEYS);
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        Self::spawn(command).unwrap_or_else(|failure| {
            panic!("arena sidecar failed to start:\n{}", failure.messages())
        })
    }

    /// Spawns `command` (an `arena` with `--log-format json`), keeps its log, and
    /// waits until it logs `listening`.
    fn spawn(mut command: Command) -> Result<Arena, StartFailure> {
        let mut child = command
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
                .map(|entry| match entry["url"].as_str() {
                    Some(url) => url.to_owned(),
                    None => format!("http://{}", entry["address"].as_str().unwrap()),
                });
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

    /// Sends SIGKILL and waits for the process to be gone: a crash, with no chance
    /// to finish what it was doing (what a test of recovery wants). Its database
    /// connections are cut by the kernel like its other sockets.
    pub fn kill(&mut self) {
        // `Child::kill` is SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The compile cache the tests share: `$ARENA_TEST_CACHE_DIR`, else beside the binary.
fn default_cache_dir() -> PathBuf {
    std::env::var_os("ARENA_TEST_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| arena_bin().parent().unwrap().join("arena-test-cache"))
}

/// A PostgreSQL database of one test's own, dropped when the value is.
///
/// The server is `$ARENA_TEST_POSTGRES` (a URL without a database), else the
/// local one `./dev` starts.
pub struct TestDatabase {
    pub name: String,
    server: String,
}

impl TestDatabase {
    /// Creates an empty database with a name no other test uses.
    pub fn create() -> TestDatabase {
        let database = Self::unique();
        database
            .admin()
            .batch_execute(&format!("create database {}", database.name))
            .unwrap_or_else(|error| panic!("cannot create database {}: {error}", database.name));
        database
    }

    /// A name no other test uses and no database has yet (for tests of
    /// creating it); whatever creates it, it is dropped afterwards.
    pub fn unique() -> TestDatabase {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = std::env::var("ARENA_TEST_POSTGRES")
            .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let name = format!(
            "arena_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let database = TestDatabase { name, server };
        // Left over from an earlier run killed before it cleaned up.
        database
            .drop_database()
            .unwrap_or_else(|error| panic!("{error}"));
        database
    }

    /// The URL `arena` and components use.
    pub fn url(&self) -> String {
        format!("{}/{}?sslmode=disable", self.server, self.name)
    }

    /// The server's `host:port`, as `allowed_outbound_hosts` names it
    /// (`postgres://{address}`).
    pub fn address(&self) -> String {
        let authority = self
            .server
            .split_once("://")
            .map_or(self.server.as_str(), |(_, rest)| rest);
        let authority = authority.split(['/', '?']).next().unwrap_or_default();
        let host_port = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host_port)| host_port);
        match host_port.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => host_port.to_owned(),
            _ => format!("{host_port}:5432"),
        }
    }

    pub fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls)
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.url()))
    }

    /// Whether the database exists on the server.
    pub fn exists(&self) -> bool {
        self.admin()
            .query_one(
                "select exists (select from pg_database where datname = $1)",
                &[&self.name],
            )
            .unwrap()
            .get(0)
    }

    /// A connection to the server's `postgres` database, to create and drop others.
    fn admin(&self) -> postgres::Client {
        self.try_admin().unwrap_or_else(|error| panic!("{error}"))
    }

    fn try_admin(&self) -> Result<postgres::Client, String> {
        let url = format!("{}/postgres?sslmode=disable", self.server);
        postgres::Client::connect(&url, postgres::NoTls).map_err(|error| {
            format!("cannot connect to PostgreSQL at {url} (is it running? `./dev test` starts it): {error}")
        })
    }

    fn drop_database(&self) -> Result<(), String> {
        // `with (force)` ends sessions a killed `arena` may have left behind.
        self.try_admin()?
            .batch_execute(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .map_err(|error| format!("cannot drop database {}: {error}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // No panic here: during a failing test's unwinding it would abort.
        if let Err(error) = self.drop_database() {
            eprintln!("{error}");
        }
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
