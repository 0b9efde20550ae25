//! The `realtime` scenario: the hub of `arena up` (`/v1/realtime/ws`) under many
//! WebSocket clients, all on loopback, the clients in this process and the host in
//! its own.
//!
//! - Connections: [`CLIENTS`] WebSockets (fewer if the file-descriptor limit
//!   cannot be raised that far: each side needs one per socket), each
//!   authenticated by the admin's access token and subscribed to one of
//!   [`CHANNELS`] discussions, round-robin; the time they took.
//! - Memory per connection: the host's resident memory (`VmRSS`) before the
//!   clients connect and once all are subscribed, the difference divided by the
//!   number connected (user-space memory only: the kernel's socket buffers are not
//!   in it).
//! - Fan-out latency: a writer inserts [`RATE`] events a second into `events`
//!   with SQL, spread over the channels, in transactions of [`TICK`]'s worth,
//!   each event's payload carrying its number; the time from just after its
//!   `COMMIT` returned to each client's receipt of it (both clocks are this
//!   process's). [`LOAD`] of load per round; then the deliveries still on the way
//!   are waited for, up to [`DRAIN`].
//!
//! Bounded in time: every phase has a deadline, and the whole runs in well under
//! three minutes. `ARENA_BENCH_REALTIME_CLIENTS=N` connects N clients instead.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{ADMIN, ADMIN_PASSWORD, DATABASE_URL, arena, native};

/// The database the scenario migrates and fills, made afresh each run.
const DATABASE: &str = "arena_bench_realtime";

/// Clients wanted.
const CLIENTS: usize = 10_000;
/// Channels (discussions) the clients and the events are spread over.
const CHANNELS: usize = 100;
/// Events per second the writer commits.
const RATE: u64 = 1_000;
/// How often the writer commits a transaction (of `RATE × TICK` events).
const TICK: Duration = Duration::from_millis(10);
/// Load per round.
const LOAD: Duration = Duration::from_secs(10);
/// How long deliveries still on the way are waited for after a round.
const DRAIN: Duration = Duration::from_secs(15);
/// Handshakes in flight at once.
const CONNECTING: usize = 256;
/// How long connecting every client may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// File descriptors kept for everything but the sockets (each side).
const SPARE_FDS: u64 = 300;

/// When the scenario started: every time stamp is microseconds since.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

pub fn run(rounds: usize, cache: &Path) -> anyhow::Result<()> {
    epoch();
    let limit = raise_fd_limit()?;
    // `ARENA_BENCH_REALTIME_CLIENTS` asks for another number (e.g. few, to see the
    // latency of the pipeline alone).
    let wanted = match std::env::var("ARENA_BENCH_REALTIME_CLIENTS") {
        Ok(n) => n.parse().context("ARENA_BENCH_REALTIME_CLIENTS")?,
        Err(_) => CLIENTS,
    };
    let clients = wanted.min(limit.saturating_sub(SPARE_FDS) as usize);
    if clients < wanted {
        eprintln!(
            "realtime: the file-descriptor limit is {limit} (hard), so {clients} clients instead of {wanted}"
        );
    }

    native::recreate_database(DATABASE_URL, DATABASE)?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{DATABASE}?sslmode=disable");
    let unlimited = "1000000000";
    let per_user = (clients + 100).to_string();
    let (running, _) = arena::start_with(
        "spin.toml",
        cache,
        "/v1/health",
        &[
            "--database-url",
            &url,
            "--realtime-max-connections-per-user",
            &per_user,
        ],
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
    let channels = discussions(&base, &token)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rss_before = rss_kib(running.pid())?;
    let fleet = runtime.block_on(connect_all(&running.address, &token, &channels, clients))?;
    // Let the host settle (allocations of the last handshakes, its tasks parked).
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kib(running.pid())?;
    let connected = fleet.receivers.len();
    let metrics = fetch(&format!("{base}/metrics")).unwrap_or_default();
    let host_connections = metric(&metrics, "arena_realtime_connections");

    let mut round_results = Vec::new();
    let mut next_key = 0u64;
    for round in 1..=rounds {
        eprintln!("realtime: fan-out, round {round}/{rounds}");
        round_results.push(load_round(&url, &channels, &fleet, &mut next_key)?);
    }
    let rss_loaded = rss_kib(running.pid())?;
    let metrics = fetch(&format!("{base}/metrics")).unwrap_or_default();
    let slow = metric(&metrics, "arena_realtime_slow_consumers_total");
    let dropped = fleet.closed.load(Ordering::Relaxed);
    drop(fleet);
    runtime.shutdown_timeout(Duration::from_secs(5));

    println!("### Realtime hub: {connected} WebSocket clients on `arena up`\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| clients connected and subscribed | {connected} of {clients} |");
    if let Some(n) = host_connections {
        println!("| `arena_realtime_connections` then | {n:.0} |");
    }
    println!(
        "| time to connect and subscribe them all ({CONNECTING} handshakes in flight) | {:.1} s |",
        fleet_connect_secs()
    );
    println!(
        "| host RSS before → after connecting | {:.1} MiB → {:.1} MiB |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    if connected > 0 {
        println!(
            "| host memory per connection (RSS difference / connections) | {:.1} KiB |",
            rss_after.saturating_sub(rss_before) as f64 / connected as f64
        );
    }
    println!(
        "| host RSS after the load | {:.1} MiB |",
        rss_loaded as f64 / 1024.0
    );
    println!("| connections closed by the host during the run | {dropped} |");
    if let Some(n) = slow {
        println!("| `arena_realtime_slow_consumers_total` | {n:.0} |");
    }
    println!();
    println!(
        "#### Fan-out: {RATE} events/s over {CHANNELS} channels ({} subscribers each), commit → client receipt\n",
        connected / CHANNELS
    );
    println!(
        "| round | events committed | deliveries expected | delivered | p50 | p90 | p99 | max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, r) in round_results.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} ({:.2} %) | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            n + 1,
            r.events,
            r.expected,
            r.delivered,
            100.0 * r.delivered as f64 / r.expected.max(1) as f64,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    println!(
        "\n({:.0} events/s committed on average; each round {LOAD:?} of load, then up to {DRAIN:?} for deliveries on the way)\n",
        round_results
            .iter()
            .map(|r| r.events as f64 / r.load_secs)
            .sum::<f64>()
            / round_results.len().max(1) as f64
    );
    Ok(())
}

/// Raises the soft limit of open files to the hard one (children inherit it);
/// the hard limit.
fn raise_fd_limit() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            bail!("setrlimit: {}", std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_max)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// [`CHANNELS`] discussions of the admin's: their channels.
fn discussions(base: &str, token: &str) -> anyhow::Result<Vec<String>> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    (0..CHANNELS)
        .map(|n| {
            let response = http
                .post(format!("{base}/v1/discussions"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "title": format!("Channel {n}"), "topic": "Fan-out." }))
                .send()?;
            let status = response.status();
            let body: serde_json::Value = response.json()?;
            if status != 201 {
                bail!("creating a discussion: {status} {body}");
            }
            let id = body["discussion_id"].as_str().context("no discussion_id")?;
            Ok(format!("discussion:{id}"))
        })
        .collect()
}

fn fetch(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::blocking::get(url)?.text()?)
}

/// A Prometheus metric's value (summed over its label sets).
fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            line.rsplit(' ').next()?.parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// One client's receipts: `(event key, µs since the epoch)`.
type Receipts = Arc<Mutex<Vec<(u32, u32)>>>;

/// The connected clients.
struct Fleet {
    /// Per client: its channel's index, and its receipts `(event key, µs)`.
    receivers: Vec<(usize, Receipts)>,
    /// Events received by all clients.
    delivered: Arc<AtomicU64>,
    /// Clients whose connection ended (closed by the host or failed).
    closed: Arc<AtomicU64>,
    /// Subscribers per channel.
    per_channel: Vec<u64>,
}

static CONNECT_SECS: OnceLock<f64> = OnceLock::new();

fn fleet_connect_secs() -> f64 {
    CONNECT_SECS.get().copied().unwrap_or(0.0)
}

/// The one message of the hub's the clients look into.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    payload: Option<Key>,
}

#[derive(Deserialize)]
struct Key {
    k: u64,
}

/// Connects `clients` WebSockets to the hub at `address`, each subscribed to a
/// channel (round-robin); the ones that made it.
async fn connect_all(
    address: &str,
    token: &str,
    channels: &[String],
    clients: usize,
) -> anyhow::Result<Fleet> {
    let started = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let url = format!("ws://{address}/v1/realtime/ws");
    let mut pending = Vec::with_capacity(clients);
    for n in 0..clients {
        let channel_index = n % channels.len();
        let channel = channels[channel_index].clone();
        let (url, token, gate) = (url.clone(), token.to_owned(), gate.clone());
        let (delivered, closed) = (delivered.clone(), closed.clone());
        let receipts = Arc::new(Mutex::new(Vec::new()));
        let mine = receipts.clone();
        pending.push((
            channel_index,
            receipts,
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await.expect("the gate stays open");
                let socket =
                    tokio::time::timeout(CONNECT_DEADLINE, subscribe(&url, &token, &channel))
                        .await
                        .map_err(|_| "timed out connecting".to_owned())
                        .and_then(|socket| socket);
                drop(permit);
                let socket = socket?;
                tokio::spawn(receive(socket, mine, delivered, closed));
                Ok::<(), String>(())
            }),
        ));
    }
    let mut receivers = Vec::new();
    let mut per_channel = vec![0u64; channels.len()];
    let mut failures: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + CONNECT_DEADLINE;
    for (channel_index, receipts, task) in pending {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(()))) => {
                per_channel[channel_index] += 1;
                receivers.push((channel_index, receipts));
            }
            Ok(Ok(Err(error))) => failures.push(error),
            Ok(Err(error)) => failures.push(error.to_string()),
            Err(_) => failures.push("the connect phase's deadline passed".into()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = CONNECT_SECS.set(secs);
    eprintln!(
        "realtime: {} of {clients} clients connected and subscribed in {secs:.1} s",
        receivers.len()
    );
    if !failures.is_empty() {
        failures.sort();
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for failure in failures {
            match kinds.last_mut() {
                Some((kind, count)) if *kind == failure => *count += 1,
                _ => kinds.push((failure, 1)),
            }
        }
        eprintln!("realtime: failures: {kinds:?}");
    }
    if receivers.is_empty() {
        bail!("no client could connect");
    }
    Ok(Fleet {
        receivers,
        delivered,
        closed,
        per_channel,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One client: the handshake with the access token, `subscribe`, and its answer.
async fn subscribe(url: &str, token: &str, channel: &str) -> Result<Socket, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a valid header"),
    );
    // Small buffers: this process holds thousands of sockets.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|error| match error {
            tungstenite::Error::Http(response) => format!("HTTP {}", response.status()),
            tungstenite::Error::Io(error) => format!("io: {}", error.kind()),
            other => other.to_string(),
        })?;
    let subscribe = serde_json::json!({ "type": "subscribe", "channel": channel }).to_string();
    socket
        .send(Message::text(subscribe))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let reply: serde_json::Value =
                    serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                match reply["type"].as_str() {
                    Some("subscribed") => return Ok(socket),
                    Some("error") => return Err(format!("subscribe: {}", reply["code"])),
                    _ => continue,
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(format!(
                    "closed: {}",
                    frame.map_or(0, |f| u16::from(f.code))
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("ended".into()),
        }
    }
}

/// Reads one client's socket until it ends, noting when each event arrived.
async fn receive(
    mut socket: Socket,
    receipts: Receipts,
    delivered: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
) {
    while let Some(message) = socket.next().await {
        let at = now_us() as u32;
        match message {
            Ok(Message::Text(text)) => {
                let Ok(incoming) = serde_json::from_str::<Incoming>(text.as_str()) else {
                    continue;
                };
                if incoming.kind != "event" {
                    continue;
                }
                if let Some(key) = incoming.payload {
                    receipts.lock().unwrap().push((key.k as u32, at));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    closed.fetch_add(1, Ordering::Relaxed);
}

/// What one round measured.
struct Round {
    events: u64,
    expected: u64,
    delivered: u64,
    load_secs: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Commits [`RATE`] events a second for [`LOAD`] (on a thread and a connection of
/// its own), waits for the deliveries, and reads the latencies.
fn load_round(
    database_url: &str,
    channels: &[String],
    fleet: &Fleet,
    next_key: &mut u64,
) -> anyhow::Result<Round> {
    let first_key = *next_key;
    let delivered_before = fleet.delivered.load(Ordering::Relaxed);
    let writer = {
        let url = database_url.to_owned();
        let channels = channels.to_vec();
        std::thread::spawn(move || write_events(&url, &channels, first_key))
    };
    let (commits, load_secs) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    let events = commits.len() as u64;
    *next_key += events;
    let expected: u64 = (0..events)
        .map(|n| fleet.per_channel[channel_of(first_key + n, channels.len())])
        .sum();
    let drained = Instant::now();
    while fleet.delivered.load(Ordering::Relaxed) - delivered_before < expected
        && drained.elapsed() < DRAIN
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut latencies: Vec<u32> = Vec::with_capacity(expected as usize);
    let mut delivered = 0u64;
    for (_, receipts) in &fleet.receivers {
        let receipts = std::mem::take(&mut *receipts.lock().unwrap());
        for (key, at) in receipts {
            let Some(index) = (key as u64).checked_sub(first_key) else {
                continue;
            };
            let Some(&committed) = commits.get(index as usize) else {
                continue;
            };
            delivered += 1;
            latencies.push(at.saturating_sub(committed));
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[i] as f64 / 1000.0
    };
    Ok(Round {
        events,
        expected,
        delivered,
        load_secs,
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: latencies.last().map_or(f64::NAN, |&l| l as f64 / 1000.0),
    })
}

/// Which channel event `key` goes to: spread evenly, not in runs.
fn channel_of(key: u64, channels: usize) -> usize {
    ((key * 37) % channels as u64) as usize
}

/// Commits events keyed from `first_key` at [`RATE`] for [`LOAD`]: each one's
/// commit time (µs, indexed by key − `first_key`), and the seconds it took.
fn write_events(url: &str, channels: &[String], first_key: u64) -> anyhow::Result<(Vec<u32>, f64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let insert = client
            .prepare(
                "insert into events (stream, type, payload)
                 select s, 'bench.tick', jsonb_build_object('k', k)
                 from unnest($1::text[], $2::int8[]) as t(s, k)",
            )
            .await?;
        let mut commits: Vec<u32> = Vec::new();
        let started = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while started.elapsed() < LOAD {
            ticks.tick().await;
            // Catch up to the rate, whatever the ticks' jitter.
            let due = (started.elapsed().as_secs_f64() * RATE as f64) as u64;
            let written = commits.len() as u64;
            if due <= written {
                continue;
            }
            let keys: Vec<i64> = (written..due).map(|n| (first_key + n) as i64).collect();
            let streams: Vec<&str> = keys
                .iter()
                .map(|&k| channels[channel_of(k as u64, channels.len())].as_str())
                .collect();
            let tx = client.transaction().await?;
            tx.execute(&insert, &[&streams, &keys]).await?;
            tx.commit().await?;
            let at = now_us() as u32;
            commits.extend(std::iter::repeat_n(at, keys.len()));
        }
        Ok((commits, started.elapsed().as_secs_f64()))
    })
}
