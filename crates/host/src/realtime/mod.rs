//! The realtime hub: WebSocket and SSE clients subscribed to channels, fed from
//! the durable event log in PostgreSQL (`/v1/realtime/...`), and `GET /metrics`.
//!
//! `arena up` runs it beside the components on the same listener; `arena sidecar`
//! runs it alone (several replicas on one database each read the whole log).
//!
//! | Module | What |
//! |---|---|
//! | [`log`] | the sequencer (gapless positions, across replicas) and the per-process log reader (`LISTEN arena_events`) |
//! | [`hub`] | channels → subscribers, fan-out, bounded per-connection queues, replay, the subscribe/replay seam |
//! | [`retention`] | pruning old events and token chunks, one replica at a time |
//! | [`metrics`] | the counters, and `GET /metrics` in Prometheus' text format |
//! | [`http`] | the routes under `/v1/realtime`, and what the protocols share |
//! | [`ws`], [`sse`] | the two protocols: JSON messages over a WebSocket, `text/event-stream` |
//! | [`tickets`] | single-use tickets for clients that cannot set headers |
//! | [`auth`] | credentials (access tokens, API keys, tickets) and the revocation watch |
//! | [`channels`] | channel names, and who may subscribe to each |
//!
//! [`Realtime`] is what a request handler gets: the hub, a pool for its queries,
//! the configuration, the shutdown signal, and the connection registry (limits
//! per user, the connections gauge, the drain at shutdown).

pub mod auth;
pub mod channels;
pub mod http;
pub mod hub;
pub mod log;
pub mod metrics;
pub mod retention;
pub mod sse;
pub mod tickets;
pub mod ws;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio::sync::watch;
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

use hub::{Hub, PgStore};

/// The paths the hub serves (besides [`METRICS_PATH`]).
pub const PATH_PREFIX: &str = "/v1/realtime";

/// Where the host's metrics are scraped.
pub const METRICS_PATH: &str = "/metrics";

/// Whether `path` is the hub's (`/v1/realtime` and below).
pub fn handles(path: &str) -> bool {
    path.strip_prefix(PATH_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Connections in the hub's pool (authentication, authorization, tickets, replay).
const POOL_SIZE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shown in `pg_stat_activity`, unless the URL sets `application_name`.
const APPLICATION_NAME: &str = "arena realtime";

/// The hub's settings.
#[derive(Clone)]
pub struct Config {
    /// The `jwt_signing_keys` variable's text (`kid:secret` pairs): what access
    /// tokens are verified with. `None`: access tokens are refused (API keys and
    /// tickets from them still work).
    pub jwt_signing_keys: Option<String>,
    /// Connections one user may hold at once; more get 4029 (WebSocket) or 429.
    pub max_connections_per_user: usize,
    /// Events a connection's queue holds before it counts as a slow consumer.
    pub queue_capacity: usize,
    /// A connection with no subscription for this long is closed.
    pub idle_timeout: Duration,
    /// How long events are kept.
    pub retention: retention::Policy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            jwt_signing_keys: None,
            max_connections_per_user: 20,
            queue_capacity: hub::QUEUE_CAPACITY,
            idle_timeout: Duration::from_secs(5 * 60),
            retention: retention::Policy::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field(
                "jwt_signing_keys",
                &self.jwt_signing_keys.as_ref().map(|_| "***"),
            )
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("queue_capacity", &self.queue_capacity)
            .field("idle_timeout", &self.idle_timeout)
            .field("retention", &self.retention)
            .finish()
    }
}

/// The hub's flags, shared by `arena up` and `arena sidecar`.
#[derive(clap::Args, Debug, Clone)]
pub struct RealtimeArgs {
    /// Realtime connections (WebSocket and SSE) one user may hold at once.
    #[arg(
        long,
        env = "ARENA_REALTIME_MAX_CONNECTIONS_PER_USER",
        default_value_t = 20
    )]
    pub realtime_max_connections_per_user: usize,

    /// How long events are kept for clients to resume from (token chunks go 10
    /// minutes after their message is stored).
    #[arg(long, env = "ARENA_EVENT_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub event_retention: Duration,

    /// A realtime connection with no subscription for this long is closed.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub realtime_idle_timeout: Duration,
}

impl RealtimeArgs {
    pub fn config(&self, jwt_signing_keys: Option<String>) -> anyhow::Result<Config> {
        if self.realtime_max_connections_per_user == 0 {
            anyhow::bail!("--realtime-max-connections-per-user must be at least 1");
        }
        let defaults = Config::default();
        Ok(Config {
            jwt_signing_keys,
            max_connections_per_user: self.realtime_max_connections_per_user,
            idle_timeout: self.realtime_idle_timeout,
            retention: retention::Policy {
                events: self.event_retention,
                ..defaults.retention
            },
            ..defaults
        })
    }
}

/// Set once when the process starts shutting down; connections then close
/// (WebSocket 1001 "reconnect", SSE `event: reconnect`) and tasks stop.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown(Arc::new(watch::Sender::new(false)))
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [triggered](Self::trigger) (at once if it was).
    pub async fn triggered(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives in `self`: this cannot fail.
        let _ = receiver.wait_for(|triggered| *triggered).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

/// What the front door adds to a request it hands to [`http::serve`] (an
/// extension): the client's address and the request id it answers with.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    #[allow(dead_code, reason = "for the protocols' logs")]
    pub peer: SocketAddr,
    pub request_id: Arc<str>,
}

/// Everything a realtime request handler needs, shared by all of them.
pub struct Realtime {
    pub hub: Arc<Hub>,
    /// For authentication, channel authorization, tickets (replay goes through
    /// the hub, which has a handle on the same pool).
    pub db: Pool,
    pub config: Config,
    pub shutdown: Shutdown,
    connections: Connections,
}

#[derive(Default)]
struct Connections {
    per_user: Mutex<HashMap<Uuid, usize>>,
    /// Open connections, watched by [`Realtime::drained`].
    open: watch::Sender<usize>,
}

impl Realtime {
    /// Builds the hub for the database at `database_url` and starts its log
    /// reader and retention in the background (the hub is
    /// [ready](Hub::is_ready) once the reader has connected). Connects to
    /// nothing itself, so a database that is down delays the hub, not the host.
    pub fn start(database_url: &str, config: Config) -> anyhow::Result<Arc<Realtime>> {
        let database = database_config(database_url)?;
        let tls = tls();
        let db = pool(database.clone(), tls.clone())?;
        let hub = Arc::new(Hub::new(PgStore { pool: db.clone() }));
        let shutdown = Shutdown::new();
        tokio::spawn(
            log::LogReader {
                hub: hub.clone(),
                config: database,
                tls,
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        tokio::spawn(retention::run(
            db.clone(),
            config.retention,
            shutdown.clone(),
        ));
        tracing::info!(
            database = %crate::commands::migrate::redact(database_url),
            "realtime hub starting"
        );
        Ok(Arc::new(Realtime {
            hub,
            db,
            config,
            shutdown,
            connections: Connections::default(),
        }))
    }

    /// Registers a connection (WebSocket or SSE) for the connections gauge and
    /// the drain at shutdown; it counts until the guard is dropped. Its user is
    /// counted against the per-user limit by [`ConnectionGuard::authenticate`].
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.open.send_modify(|open| *open += 1);
        self.hub
            .metrics()
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ConnectionGuard {
            realtime: self.clone(),
            user: None,
        }
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn open_connections(&self) -> usize {
        *self.connections.open.borrow()
    }

    /// Resolves once every connection has closed (after shutdown, the drain).
    pub async fn drained(&self) {
        let mut open = self.connections.open.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    }
}

/// One open realtime connection; see [`Realtime::connection`].
pub struct ConnectionGuard {
    realtime: Arc<Realtime>,
    user: Option<Uuid>,
}

/// The user already holds [`Config::max_connections_per_user`] connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyConnections {
    pub limit: usize,
}

impl fmt::Display for TooManyConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a user may hold at most {} realtime connections at once",
            self.limit
        )
    }
}

impl std::error::Error for TooManyConnections {}

impl ConnectionGuard {
    /// Counts the connection as `user`'s, unless they hold the most allowed.
    /// Calling it again moves the connection to another user.
    pub fn authenticate(&mut self, user: Uuid) -> Result<(), TooManyConnections> {
        let limit = self.realtime.config.max_connections_per_user;
        let mut per_user = self
            .realtime
            .connections
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.user == Some(user) {
            return Ok(());
        }
        let count = per_user.entry(user).or_default();
        if *count >= limit {
            if *count == 0 {
                per_user.remove(&user);
            }
            return Err(TooManyConnections { limit });
        }
        *count += 1;
        if let Some(previous) = self.user.replace(user) {
            release(&mut per_user, previous);
        }
        Ok(())
    }
}

fn release(per_user: &mut HashMap<Uuid, usize>, user: Uuid) {
    if let Some(count) = per_user.get_mut(&user) {
        *count -= 1;
        if *count == 0 {
            per_user.remove(&user);
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let mut per_user = self
                .realtime
                .connections
                .per_user
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            release(&mut per_user, user);
        }
        self.realtime
            .hub
            .metrics()
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.realtime
            .connections
            .open
            .send_modify(|open| *open = open.saturating_sub(1));
    }
}

/// The connection settings in `url` (a `postgres://` URL, `sslmode` as Spin reads it).
pub(crate) fn database_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|error| {
        anyhow!(
            "invalid database URL `{}`: {error}",
            crate::commands::migrate::redact(url)
        )
    })?;
    if config.get_application_name().is_none() {
        config.application_name(APPLICATION_NAME);
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    // A dead peer is noticed in about a minute, not the kernel's two hours:
    // the log reader then reconnects.
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// TLS as the components' client does it: attempted unless the URL says
/// `sslmode=disable`, verified against the web's roots.
pub(crate) fn tls() -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

fn pool(config: tokio_postgres::Config, tls: MakeRustlsConnect) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            // The hub's own code: it leaves no transaction open or setting changed.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(CHECKOUT_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        })
        .build()?)
}

/// A fresh database with every migration applied, for tests against the real
/// PostgreSQL (`$ARENA_TEST_POSTGRES`, else the local server `./dev` starts);
/// dropped with the value.
#[cfg(test)]
pub(crate) mod test_db {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio_postgres::{Client, NoTls};

    pub struct TestDb {
        server: String,
        name: String,
    }

    async fn connect_to(url: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
        tokio::spawn(connection);
        client
    }

    impl TestDb {
        pub async fn create() -> TestDb {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let server = std::env::var("ARENA_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
                .trim_end_matches('/')
                .to_owned();
            let name = format!(
                "arena_host_test_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let db = TestDb { server, name };
            let admin = connect_to(&format!("{}/postgres", db.server)).await;
            // Two messages: one would be an implicit transaction, which
            // neither statement may run in.
            for sql in [
                "drop database if exists {0} with (force)",
                "create database {0}",
            ] {
                admin
                    .batch_execute(&sql.replace("{0}", &db.name))
                    .await
                    .unwrap();
            }
            let client = db.connect().await;
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
                .collect();
            files.sort();
            for file in files {
                let sql = std::fs::read_to_string(&file).unwrap();
                client
                    .batch_execute(&sql)
                    .await
                    .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            }
            db
        }

        pub fn url(&self) -> String {
            format!("{}/{}?sslmode=disable", self.server, self.name)
        }

        pub async fn connect(&self) -> Client {
            connect_to(&self.url()).await
        }

        pub fn pool(&self) -> deadpool_postgres::Pool {
            let config = super::database_config(&self.url()).unwrap();
            super::pool(config, super::tls()).unwrap()
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let admin = format!("{}/postgres", self.server);
            let sql = format!("drop database if exists {} with (force)", self.name);
            // Its own thread and runtime: a test's runtime may be shutting down.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                    tokio::spawn(connection);
                    client.batch_execute(&sql).await
                })
            })
            .join();
            if let Ok(Err(error)) = dropped {
                eprintln!("cannot drop the test database: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_serves_its_prefix_only() {
        assert!(handles("/v1/realtime"));
        assert!(handles("/v1/realtime/ws"));
        assert!(handles("/v1/realtime/tickets"));
        assert!(!handles("/v1/realtimes"));
        assert!(!handles("/v1/discussions"));
        assert!(!handles("/metrics"));
    }

    #[tokio::test]
    async fn connections_are_counted_per_user_and_drained() {
        let config = Config {
            max_connections_per_user: 2,
            ..Config::default()
        };
        // A URL nobody listens on: nothing here needs the database.
        let realtime = Realtime::start(
            "postgres://postgres@127.0.0.1:1/none?sslmode=disable",
            config,
        )
        .unwrap();
        let ada = Uuid::now_v7();
        let bob = Uuid::now_v7();
        let mut first = realtime.connection();
        let mut second = realtime.connection();
        let mut third = realtime.connection();
        first.authenticate(ada).unwrap();
        second.authenticate(ada).unwrap();
        assert_eq!(
            third.authenticate(ada),
            Err(TooManyConnections { limit: 2 })
        );
        third.authenticate(bob).unwrap();
        assert_eq!(realtime.open_connections(), 3);
        assert_eq!(
            realtime
                .hub
                .metrics()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        drop(first);
        let mut fourth = realtime.connection();
        fourth.authenticate(ada).unwrap();

        let drained = tokio::spawn({
            let realtime = realtime.clone();
            async move { realtime.drained().await }
        });
        drop((second, third, fourth));
        tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            realtime
                .hub
                .metrics()
                .connections
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        realtime.shutdown.trigger();
    }
}
