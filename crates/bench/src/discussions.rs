//! The `discussions` scenario: what a turn costs Arena beyond the model call, and
//! how fast a long discussion's messages are listed.
//!
//! - Per turn: a non-streamed `POST /v1/discussions/{id}/turns` timed by the client,
//!   minus the message's `latency_ms` (the model call as Arena measured it), against
//!   the fake Ollama with no token delay. What is left is Arena's own work: the
//!   middleware, the turn's claim, choosing the speaker, building and fitting the
//!   prompt from the history, the flushes, the usage row and the end of the turn.
//!   Every round is a fresh discussion of two agents, so the history grows from 0 to
//!   [`TURNS_PER_ROUND`] messages, all of which fit the context window.
//! - Listing: a discussion of [`LISTED_MESSAGES`] messages (inserted with SQL), its
//!   first page, its latest page and a page from deep inside it (the cursor after
//!   message [`DEEP_SEQ`]), each loaded by `wrk`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use arena_fake_ollama::{DEFAULT_CHAT_MODEL, FakeOllama, Reply};
use serde_json::{Value, json};

use crate::wrk::Load;
use crate::{ADMIN, ADMIN_PASSWORD, DATABASE_URL, arena, native};

/// The database the scenario migrates and fills, made afresh each run.
const DATABASE: &str = "arena_bench_discussions";

/// Turns timed per round (a fresh discussion each round), after [`WARM_UP_TURNS`].
const TURNS_PER_ROUND: usize = 200;
/// Turns run and not timed first, so compiled code and pooled connections are warm.
const WARM_UP_TURNS: usize = 5;
/// Tokens in each reply.
const REPLY_TOKENS: usize = 20;

/// Messages in the listed discussion, and where the deep page starts.
const LISTED_MESSAGES: i64 = 10_000;
const DEEP_SEQ: i64 = 9_000;
/// The page size the list loads ask for (the API's default).
const PAGE: usize = 50;

pub fn run(rounds: usize, cache: &std::path::Path) -> anyhow::Result<()> {
    let fake = FakeOllama::start();
    fake.script(
        DEFAULT_CHAT_MODEL,
        Reply::from_tokens((0..REPLY_TOKENS).map(|n| format!(" t{n}"))),
    );
    native::recreate_database(DATABASE_URL, DATABASE)?;
    let url = format!("postgres://postgres@127.0.0.1:5432/{DATABASE}?sslmode=disable");
    let (fake_url, fake_address) = (fake.url(), fake.address().to_string());
    // Limits far above what the loads reach: this measures the work, not refusals.
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
            ("ollama_url", &fake_url),
            ("ollama_host", &fake_address),
            ("rate_limit_per_user", unlimited),
            ("rate_limit_per_address", unlimited),
            ("rate_limit_token_per_address", unlimited),
        ],
    )?;
    let api = Api::login(&format!("http://{}", running.address))?;

    per_turn(&api, rounds)?;
    listing(&api, &url, rounds)
}

/// Arena's HTTP API as the admin calls it.
struct Api {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn login(base: &str) -> anyhow::Result<Api> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let answer: Value = http
            .post(format!("{base}/v1/auth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", ADMIN),
                ("password", ADMIN_PASSWORD),
            ])
            .send()?
            .error_for_status()
            .context("logging in")?
            .json()?;
        let token = answer["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned();
        Ok(Api {
            base: base.to_owned(),
            token,
            http,
        })
    }

    /// `method path` with `body` (JSON, if any); the answer, which must have `status`.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send()?;
        let got = response.status().as_u16();
        let text = response.text()?;
        ensure!(got == status, "{method} {path} answered {got}: {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn post(&self, path: &str, body: &Value, status: u16) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body), status)
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None, 200)
    }

    /// A started discussion of `agents` new agents on the fake's model, with a
    /// window every turn fits; its id and its participants.
    fn discussion(&self, title: &str, agents: usize) -> anyhow::Result<(String, Vec<Value>)> {
        let discussion = self.post(
            "/v1/discussions",
            &json!({
                "title": title,
                "topic": "Whether benchmarks tell the truth.",
                "context_policy": { "summarize": false },
            }),
            201,
        )?;
        let id = text(&discussion, "discussion_id")?;
        let mut seats = Vec::new();
        for n in 0..agents {
            let agent = self.post(
                "/v1/agents",
                &json!({
                    "name": format!("Speaker {n}"),
                    "persona": "You answer in twenty words.",
                    "model": DEFAULT_CHAT_MODEL,
                    "parameters": { "num_ctx": 32768 },
                }),
                201,
            )?;
            seats.push(self.post(
                &format!("/v1/discussions/{id}/participants"),
                &json!({ "agent_id": agent["agent_id"] }),
                201,
            )?);
        }
        self.call(
            reqwest::Method::POST,
            &format!("/v1/discussions/{id}/start"),
            None,
            200,
        )?;
        Ok((id, seats))
    }
}

fn text(value: &Value, key: &str) -> anyhow::Result<String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {key} in {value}"))
}

/// One timed turn: the client's wall time and the message's `latency_ms`.
struct Turn {
    /// Messages the discussion held before it.
    history: usize,
    wall_ms: f64,
    model_ms: f64,
}

fn per_turn(api: &Api, rounds: usize) -> anyhow::Result<()> {
    let mut turns: Vec<Turn> = Vec::new();
    for round in 1..=rounds {
        eprintln!("discussion turns: round {round}/{rounds}");
        let (id, _) = api.discussion(&format!("Turns, round {round}"), 2)?;
        let path = format!("/v1/discussions/{id}/turns");
        for n in 0..WARM_UP_TURNS + TURNS_PER_ROUND {
            let started = Instant::now();
            let message = api.call(reqwest::Method::POST, &path, None, 201)?;
            let wall = started.elapsed();
            ensure!(message["status"] == "completed", "turn {n}: {message}");
            let model_ms = message["latency_ms"]
                .as_f64()
                .with_context(|| format!("no latency_ms: {message}"))?;
            if n >= WARM_UP_TURNS {
                turns.push(Turn {
                    history: n,
                    wall_ms: wall.as_secs_f64() * 1000.0,
                    model_ms,
                });
            }
        }
    }
    let summary = |values: Vec<f64>| percentiles(values);
    let wall = summary(turns.iter().map(|t| t.wall_ms).collect());
    let model = summary(turns.iter().map(|t| t.model_ms).collect());
    let overhead = summary(turns.iter().map(|t| t.wall_ms - t.model_ms).collect());
    // Whether it grows with the history the prompt is built from.
    let overhead_within = |range: std::ops::Range<usize>| {
        summary(
            turns
                .iter()
                .filter(|t| range.contains(&t.history))
                .map(|t| t.wall_ms - t.model_ms)
                .collect(),
        )
    };
    let last = WARM_UP_TURNS + TURNS_PER_ROUND;
    let early = overhead_within(WARM_UP_TURNS..WARM_UP_TURNS + 20);
    let late = overhead_within(last - 20..last);
    println!("### A discussion turn: what Arena adds to the model call\n");
    println!("| per turn | p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, (p50, p99)) in [
        (
            "`POST /turns` (not streamed), wall time at the client",
            wall,
        ),
        ("the model call, as Arena measured it (`latency_ms`)", model),
        ("Arena's overhead (wall time − `latency_ms`)", overhead),
    ] {
        println!("| {name} | {p50:.2} ms | {p99:.2} ms |");
    }
    println!(
        "| Arena's overhead, turns with {WARM_UP_TURNS}–{} messages before them | {:.2} ms | {:.2} ms |",
        WARM_UP_TURNS + 19,
        early.0,
        early.1
    );
    println!(
        "| Arena's overhead, turns with {}–{} messages before them | {:.2} ms | {:.2} ms |",
        last - 20,
        last - 1,
        late.0,
        late.1
    );
    println!(
        "\n({} turns in {rounds} rounds, each a fresh discussion of two agents: \
         {TURNS_PER_ROUND} turns after {WARM_UP_TURNS} untimed; replies of {REPLY_TOKENS} \
         tokens, no token delay)\n",
        turns.len()
    );
    Ok(())
}

/// The median and the 99th percentile.
fn percentiles(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: usize| values[(values.len() * q / 100).min(values.len() - 1)];
    (at(50), at(99))
}

fn listing(api: &Api, database_url: &str, rounds: usize) -> anyhow::Result<()> {
    let (id, seats) = api.discussion("Ten thousand messages", 1)?;
    let seat = &seats[0];
    fill(database_url, &id, seat)?;

    // The cursor after message DEEP_SEQ, found the way a client would: page by page.
    let mut cursor: Option<String> = None;
    let mut seen = 0i64;
    while seen < DEEP_SEQ {
        let mut path = format!("/v1/discussions/{id}/messages?order=asc&limit=200");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = api.get(&path)?;
        let items = page["items"].as_array().context("no items")?;
        seen = items
            .last()
            .and_then(|m| m["seq"].as_i64())
            .context("an empty page before the end")?;
        cursor = Some(text(&page, "next_cursor")?);
    }
    ensure!(seen == DEEP_SEQ, "pages of 200 ended at {seen}");
    let cursor = cursor.context("no cursor")?;
    let base = format!("{}/v1/discussions/{id}/messages", api.base);
    let first = format!("{base}?order=asc&limit={PAGE}");
    let latest = format!("{base}?order=desc&limit={PAGE}");
    let deep = format!("{base}?order=asc&limit={PAGE}&cursor={cursor}");
    // Each page is what it should be before it is loaded.
    for (url, first_seq) in [
        (&first, 1),
        (&latest, LISTED_MESSAGES),
        (&deep, DEEP_SEQ + 1),
    ] {
        let path = url.strip_prefix(&api.base).unwrap();
        let page = api.get(path)?;
        let items = page["items"].as_array().context("no items")?;
        if items.len() != PAGE || items[0]["seq"] != first_seq {
            bail!("{path}: {} items from seq {}", items.len(), items[0]["seq"]);
        }
    }
    let bearer = format!("Authorization: Bearer {}", api.token);
    let page = |url| Load::get(url).with_header(&bearer);
    const FIRST: &str = "first page (`order=asc`)";
    const LATEST: &str = "latest page (`order=desc`)";
    const DEEP: &str = "deep page (`order=asc`, cursor after message 9,000)";
    crate::table(
        &format!(
            "Listing {PAGE} messages of a discussion of 10,000, one request at a time (`-c1`)"
        ),
        &[
            (FIRST, page(&first).over(1)),
            (LATEST, page(&latest).over(1)),
            (DEEP, page(&deep).over(1)),
        ],
        rounds,
    )?;
    crate::table(
        &format!("Listing {PAGE} messages of a discussion of 10,000, under load (`-c32`)"),
        &[
            (FIRST, page(&first)),
            (LATEST, page(&latest)),
            (DEEP, page(&deep)),
        ],
        rounds,
    )
}

/// Inserts [`LISTED_MESSAGES`] completed messages by `seat` into the discussion `id`,
/// with UUID v7-like ids in `seq` order, as turns would have left them.
fn fill(database_url: &str, id: &str, seat: &Value) -> anyhow::Result<()> {
    let mut db = postgres::Client::connect(database_url, postgres::NoTls)?;
    let participant = text(seat, "participant_id")?;
    let agent = text(seat, "agent_id")?;
    let started = Instant::now();
    let inserted = db.execute(
        "insert into messages (message_id, discussion_id, seq, turn_index, participant_id,
             agent_id, agent_version, content, model, prompt_tokens, completion_tokens,
             first_token_ms, latency_ms, status, created_at, completed_at)
         select (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-'
                 || substr(h, 17, 4) || '-' || substr(h, 21, 12))::uuid,
                $1::text::uuid, g, g - 1, $2::text::uuid, $3::text::uuid, 1,
                'Message ' || g || ': ' || repeat('a sentence of a benchmark reply, ', 8),
                $4::text, 400, 60, 5.0, 80.0, 'completed',
                now() - (($5::int8 - g) * interval '1 second'),
                now() - (($5::int8 - g) * interval '1 second')
         from generate_series(1::int8, $5::int8) g,
              lateral (select lpad(to_hex((extract(epoch from now()) * 1000)::int8 - $5::int8 + g), 12, '0')
                              || '7000' || '8' || lpad(to_hex(g), 15, '0') as h) id",
        &[&id, &participant, &agent, &DEFAULT_CHAT_MODEL, &LISTED_MESSAGES],
    )?;
    ensure!(inserted as i64 == LISTED_MESSAGES, "inserted {inserted}");
    db.execute(
        "update discussions set turn_count = $2 where discussion_id = $1::text::uuid",
        &[&id, &(LISTED_MESSAGES as i32)],
    )?;
    db.batch_execute("analyze messages")?;
    eprintln!(
        "inserted {LISTED_MESSAGES} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
