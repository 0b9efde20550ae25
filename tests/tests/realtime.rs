//! The realtime hub end to end (issue 7; the contract is /work/spec-realtime.md):
//! `arena up` on the real spin.toml with a database of its own and a fake Ollama,
//! `arena sidecar` processes on the same database, and clients speaking the hub's
//! WebSocket ([`arena_e2e::ws`]) and server-sent events as a browser would.
//!
//! Events come from two places: discussions driven over the API (turns streamed by
//! the fake Ollama, messages posted), and rows inserted into `events` with SQL in
//! transactions of the test's own, as any writer does (the hub reads rows, so a
//! row is an event whoever wrote it). What the database holds is the truth every
//! client's events are compared with: the positions of the rows of a channel, in
//! order, none missing and none twice. Waiting is polling with a deadline.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arena_e2e::api::{self, ADMIN, ADMIN_PASSWORD, Account, Client, PASSWORD, Response, id_of};
use arena_e2e::poll::{DEADLINE, POLL, wait_for};
use arena_e2e::sse::{self, Event};
use arena_e2e::ws::{self, Frame, Options, Ws};
use arena_e2e::{Arena, TestDatabase};
use arena_fake_ollama::{FakeOllama, Model, Reply};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// The harness of this file
// ---------------------------------------------------------------------------

/// `arena up` on spin.toml with a database of its own, pointed at a fake Ollama of
/// its own. Fields drop in order: the arena is killed before the database goes.
struct Stack {
    arena: Arena,
    db: TestDatabase,
    fake: FakeOllama,
    api: Client,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Stack {
    fn start(env: &[(&str, &str)]) -> Stack {
        Self::start_with_args(env, &[])
    }

    fn start_with_args(env: &[(&str, &str)], args: &[&str]) -> Stack {
        let fake = FakeOllama::start();
        let db = TestDatabase::create();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let arena = launch(&db, &fake, &env, &args);
        let api = Client::new(&arena);
        Stack {
            arena,
            db,
            fake,
            api,
            env,
            args,
        }
    }

    /// SIGKILL, then the host again on the same database, Ollama and settings.
    fn crash_and_restart(&mut self) {
        self.arena.kill();
        self.relaunch();
    }

    fn relaunch(&mut self) {
        self.arena = launch(&self.db, &self.fake, &self.env, &self.args);
        self.api = Client::new(&self.arena);
    }

    /// A draft discussion of `who` with `settings`; its id.
    #[track_caller]
    fn discussion(&self, who: &Account, settings: Value) -> String {
        let mut body = json!({ "title": "Tea or coffee", "topic": "Which is better?" });
        for (key, value) in settings.as_object().unwrap() {
            body[key] = value.clone();
        }
        let discussion = self
            .api
            .post("/v1/discussions", Some(&who.token), &body)
            .expect(201);
        id_of(&discussion, "discussion_id")
    }

    /// A started discussion of `who` with two agents, Alpha (model `alpha:1b`) and
    /// Beta (`beta:1b`), each scripted to a short reply; its id.
    #[track_caller]
    fn panel(&self, who: &Account, settings: Value) -> String {
        let d = self.discussion(who, settings);
        for (name, model) in [("Alpha", ALPHA), ("Beta", BETA)] {
            self.fake.add_model(Model::chat(model));
            self.fake
                .script(model, Reply::from_text(&format!("{name} agrees.")));
            let agent = self
                .api
                .post(
                    "/v1/agents",
                    Some(&who.token),
                    &json!({ "name": name, "persona": "Brief.", "model": model, "parameters": {} }),
                )
                .expect(201);
            self.api
                .post(
                    &format!("/v1/discussions/{d}/participants"),
                    Some(&who.token),
                    &json!({ "agent_id": agent["agent_id"] }),
                )
                .expect(201);
        }
        self.api
            .send(
                Method::POST,
                &format!("/v1/discussions/{d}/start"),
                Some(&who.token),
                None,
                &[],
            )
            .expect(200);
        d
    }

    /// `POST /turns` on a thread of its own: its status and body, or the
    /// transport error (the host may be killed meanwhile).
    fn advance_in_background(&self, who: &Account, d: &str) -> Running {
        let http = self.arena.client().clone();
        let url = format!("{}/v1/discussions/{d}/turns", self.arena.url);
        let token = who.token.clone();
        std::thread::spawn(move || {
            let response = http
                .post(url)
                .bearer_auth(token)
                .send()
                .map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let text = response.text().map_err(|error| error.to_string())?;
            Ok((status, text))
        })
    }

    fn advance(&self, who: &Account, d: &str) -> Response {
        self.api.send(
            Method::POST,
            &format!("/v1/discussions/{d}/turns"),
            Some(&who.token),
            None,
            &[],
        )
    }

    #[track_caller]
    fn message(&self, who: &Account, d: &str, m: &str) -> Value {
        self.api
            .get(
                &format!("/v1/discussions/{d}/messages/{m}"),
                Some(&who.token),
            )
            .expect(200)
    }

    /// A WebSocket to `arena up`, authenticated by `who`'s access token.
    #[track_caller]
    fn ws(&self, who: &Account) -> Ws {
        Ws::open(&self.arena.url, &who.token)
    }

    /// Inserts `count` events of type `kind` on `stream` in one transaction of the
    /// test's own, their payloads `{"n": first.., "pad": <pad characters>}`.
    fn insert_events(&self, stream: &str, kind: &str, first: i32, count: i32, pad: i32) {
        insert_events(&self.db, stream, kind, first, count, pad);
    }

    /// Waits until every event row has its position; the largest position then.
    #[track_caller]
    fn sequenced(&self) -> i64 {
        sequenced(&self.db)
    }

    /// The events of `streams` after position `after`, as the database holds
    /// them: (position, stream, type, payload), by position.
    fn stored_events(&self, streams: &[&str], after: i64) -> Vec<(i64, String, String, Value)> {
        stored_events(&self.db, streams, after)
    }

    /// `GET /metrics` (Prometheus text).
    #[track_caller]
    fn metrics(&self) -> String {
        metrics_of(&self.arena)
    }

    /// The session id of an access token (`sid`, read from `/v1/auth/sessions`).
    #[track_caller]
    fn session_of(&self, token: &str) -> String {
        let sessions = self.api.get("/v1/auth/sessions", Some(token)).expect(200);
        let current = api::items(&sessions)
            .into_iter()
            .find(|s| s["current"] == true)
            .unwrap_or_else(|| panic!("no current session: {sessions:#}"));
        id_of(&current, "session_id")
    }

    /// `POST /v1/realtime/tickets` as `who`: the ticket.
    #[track_caller]
    fn ticket(&self, who: &Account) -> String {
        let answer = self
            .api
            .send(
                Method::POST,
                "/v1/realtime/tickets",
                Some(&who.token),
                None,
                &[],
            )
            .expect(201);
        let ticket = id_of(&answer, "ticket");
        assert!(ticket.starts_with("arena_wt_"), "{answer}");
        let expires_in = answer["expires_in"].as_i64().unwrap_or(0);
        assert!(
            (1..=30).contains(&expires_in),
            "a ticket lives 30 s at most: {answer}"
        );
        ticket
    }
}

const ALPHA: &str = "alpha:1b";
const BETA: &str = "beta:1b";

/// `arena up` on spin.toml against `db`, pointed at `fake`, with limits far above
/// what the tests reach, then `env`; `args` for `arena up` itself.
fn launch(
    db: &TestDatabase,
    fake: &FakeOllama,
    env: &[(String, String)],
    args: &[String],
) -> Arena {
    let url = fake.url();
    let ollama_host = fake.address().to_string();
    let database_host = db.address();
    let mut all: Vec<(&str, &str)> = vec![
        ("SPIN_VARIABLE_ADMIN_USERNAME", ADMIN),
        ("SPIN_VARIABLE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SPIN_VARIABLE_DATABASE_HOST", database_host.as_str()),
        ("SPIN_VARIABLE_OLLAMA_URL", url.as_str()),
        ("SPIN_VARIABLE_OLLAMA_HOST", ollama_host.as_str()),
        ("SPIN_VARIABLE_OLLAMA_TIMEOUT_SECONDS", "5"),
        ("SPIN_VARIABLE_RATE_LIMIT_PER_USER", "1000000"),
        ("SPIN_VARIABLE_RATE_LIMIT_PER_ADDRESS", "1000000"),
        ("SPIN_VARIABLE_RATE_LIMIT_TOKEN_PER_ADDRESS", "1000000"),
    ];
    all.retain(|(key, _)| !env.iter().any(|(k, _)| k == key));
    all.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Arena::start_with_database_and_env(api::MANIFEST, &db.url(), &args, &all)
}

type Running = JoinHandle<Result<(u16, String), String>>;

fn insert_events(db: &TestDatabase, stream: &str, kind: &str, first: i32, count: i32, pad: i32) {
    db.connect()
        .execute(
            "insert into events (stream, type, payload)
             select $1, $2, jsonb_build_object('n', n, 'pad', repeat('x', $4::int))
             from generate_series($3::int, $3::int + $5::int - 1) n",
            &[&stream, &kind, &first, &pad, &count],
        )
        .unwrap_or_else(|error| panic!("inserting events on {stream}: {error}"));
}

#[track_caller]
fn sequenced(db: &TestDatabase) -> i64 {
    let mut client = db.connect();
    let started = Instant::now();
    loop {
        let row = client
            .query_one(
                "select count(*) filter (where position is null),
                        coalesce(max(position), 0)
                 from events",
                &[],
            )
            .unwrap_or_else(|error| panic!("reading events.position: {error}"));
        let (unsequenced, max): (i64, i64) = (row.get(0), row.get(1));
        if unsequenced == 0 {
            return max;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{unsequenced} events still without a position after {DEADLINE:?}"
        );
        std::thread::sleep(POLL);
    }
}

fn stored_events(
    db: &TestDatabase,
    streams: &[&str],
    after: i64,
) -> Vec<(i64, String, String, Value)> {
    let streams: Vec<String> = streams.iter().map(|s| (*s).to_owned()).collect();
    db.connect()
        .query(
            "select position, stream, type, payload::text from events
             where stream = any($1) and position > $2 order by position",
            &[&streams, &after],
        )
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                serde_json::from_str(row.get::<_, &str>(3)).unwrap(),
            )
        })
        .collect()
}

/// Asserts that `events` (as a client got them) are exactly `stored` (as the
/// database holds them): same ids in the same order, channels, types, payloads.
#[track_caller]
fn assert_same_events(who: &str, events: &[Value], stored: &[(i64, String, String, Value)]) {
    let got: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let want: Vec<i64> = stored.iter().map(|(id, ..)| *id).collect();
    if got != want {
        let missing: Vec<&i64> = want.iter().filter(|id| !got.contains(id)).collect();
        let extra: Vec<&i64> = got.iter().filter(|id| !want.contains(id)).collect();
        panic!(
            "{who}: got {} events, the database has {}; missing {missing:?}, not in the database {extra:?}",
            got.len(),
            want.len()
        );
    }
    for (event, (id, stream, kind, payload)) in events.iter().zip(stored) {
        assert_eq!(
            event["channel"],
            stream.as_str(),
            "{who}: event {id}: {event}"
        );
        assert_eq!(event["event"], kind.as_str(), "{who}: event {id}: {event}");
        assert_eq!(&event["payload"], payload, "{who}: event {id}");
    }
}

#[track_caller]
fn metrics_of(arena: &Arena) -> String {
    let response = arena.get("/metrics");
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "GET /metrics: {text}");
    text
}

/// The value of the Prometheus metric `name` (summed over its label sets).
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

/// A reply of `n` numbered word tokens.
fn long_reply(who: &str, n: usize) -> Reply {
    Reply::from_tokens(
        std::iter::once(format!("{who} says:")).chain((0..n).map(|i| format!(" w{i}"))),
    )
}

/// The events of type `kind` among `events`.
fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Whether `events` hold a `message.created` for message `m`.
fn created(events: &[Value], m: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == "message.created" && e["payload"]["message"]["message_id"] == m)
}

/// The reply to a subscription that must be refused: its error code.
#[track_caller]
fn refused_code(frame: Frame, channel: &str) -> String {
    match frame {
        Frame::Reply(reply) if reply["type"] == "error" => {
            if !reply["channel"].is_null() {
                assert_eq!(reply["channel"], channel, "{reply}");
            }
            reply["code"].as_str().unwrap_or_default().to_owned()
        }
        other => panic!("subscribing to {channel} should be refused: {other:?}"),
    }
}

/// A WebSocket attempt that must be refused as unauthorized: 401 at the
/// handshake, or the upgrade and then close 4001 (after `subscribe`, which an
/// unauthenticated socket may not do).
#[track_caller]
fn assert_unauthorized(base: &str, options: &Options, what: &str) {
    match Ws::connect(base, options) {
        Err(refused) => assert_eq!(refused.status, 401, "{what}: {refused:?}"),
        Ok(mut socket) => {
            socket.subscribe("user:00000000-0000-0000-0000-000000000000", None);
            let ended = socket.wait_closed(DEADLINE);
            assert!(
                matches!(&ended, Some(Frame::Close(4001, _))),
                "{what}: expected close 4001, got {ended:?}; events {:?}",
                socket.events
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Live delivery
// ---------------------------------------------------------------------------

#[test]
fn a_subscriber_sees_a_discussions_turn_and_message_events_as_they_happen() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let d = stack.panel(&owner, json!({}));
    let channel = format!("discussion:{d}");
    let reply = long_reply("Alpha", 40);
    stack.fake.script(ALPHA, reply.clone());
    stack.fake.set_token_delay(Duration::from_millis(50));

    // State sync: the REST read names the latest event it reflects.
    let read = stack
        .api
        .get(&format!("/v1/discussions/{d}"), Some(&owner.token))
        .expect(200);
    let synced = read["last_event_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no last_event_id in {read:#}"));
    let mut socket = stack.ws(&owner);
    socket.subscribed(&channel, Some(synced));

    let running = stack.advance_in_background(&owner, &d);
    socket.expect_events("a first token", DEADLINE, |events| {
        !of_type(events, "turn.token").is_empty()
    });
    // The turn is still generating: the events came as it happened, not at its end.
    let started = of_type(&socket.events, "turn.started");
    assert_eq!(started.len(), 1, "{:#?}", socket.events);
    let m = id_of(&started[0]["payload"]["message"], "message_id");
    let message = stack.message(&owner, &d, &m);
    assert_eq!(
        message["status"], "generating",
        "the first token arrived only after the turn: {message:#}"
    );
    assert!(
        !running.is_finished(),
        "the first token arrived only after the turn"
    );

    socket.expect_events("the turn's message.created", DEADLINE, |events| {
        created(events, &m)
    });
    let (status, body) = running.join().unwrap().unwrap();
    assert_eq!(status, 201, "{body}");
    let stored = stack.message(&owner, &d, &m);
    assert_eq!(stored["content"], reply.content(), "{stored:#}");
    // Tokens put together by offset are the stored text, and several came.
    assert!(
        of_type(&socket.events, "turn.token").len() >= 3,
        "{:#?}",
        socket.events
    );
    assert_eq!(ws::reassemble(&socket.events, &m), reply.content());
    // In order: started, tokens, completed, message.created.
    let kinds: Vec<&str> = socket
        .events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|k| k.starts_with("turn.") || *k == "message.created")
        .collect();
    let completed = kinds.iter().position(|k| *k == "turn.completed").unwrap();
    let last_token = kinds.iter().rposition(|k| *k == "turn.token").unwrap();
    assert_eq!(kinds[0], "turn.started", "{kinds:?}");
    assert!(last_token < completed, "{kinds:?}");
    assert!(kinds[completed..].contains(&"message.created"), "{kinds:?}");

    // A person's message is an event too.
    let posted = stack
        .api
        .post(
            &format!("/v1/discussions/{d}/messages"),
            Some(&owner.token),
            &json!({ "content": "And what about mate?" }),
        )
        .expect(201);
    let posted_id = id_of(&posted, "message_id");
    socket.expect_events("the posted message.created", DEADLINE, |events| {
        created(events, &posted_id)
    });
    let event = socket
        .events
        .iter()
        .find(|e| {
            e["event"] == "message.created"
                && e["payload"]["message"]["message_id"] == posted_id.as_str()
        })
        .unwrap();
    assert_eq!(
        event["payload"]["message"]["content"],
        "And what about mate?"
    );
    assert_eq!(event["channel"], channel.as_str());
    assert!(event["created_at"].is_string(), "{event}");

    // Everything on the channel since the REST read, exactly, and the REST read
    // now names the last of it.
    stack.sequenced();
    let stored = stack.stored_events(&[&channel], synced);
    assert_same_events("the subscriber", &socket.events, &stored);
    let read = stack
        .api
        .get(&format!("/v1/discussions/{d}"), Some(&owner.token))
        .expect(200);
    assert_eq!(read["last_event_id"], socket.last_id(), "{read:#}");

    // A client that loads the state later and subscribes `since` the id its read
    // named gets the same events.
    let mut late = stack.ws(&owner);
    late.subscribed(&channel, Some(synced));
    let expected = socket.events.len();
    late.expect_events("the replay", DEADLINE, |events| events.len() >= expected);
    assert_same_events("the late subscriber", &late.events, &stored);
}

// ---------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------

#[test]
fn a_socket_killed_mid_turn_resumes_with_since_and_the_tokens_make_the_stored_message() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let d = stack.panel(&owner, json!({}));
    let channel = format!("discussion:{d}");
    let reply = long_reply("Alpha", 60);
    stack.fake.script(ALPHA, reply.clone());
    stack.fake.set_token_delay(Duration::from_millis(50));
    let from = stack.sequenced();

    let mut first = stack.ws(&owner);
    first.subscribed(&channel, Some(from));
    let running = stack.advance_in_background(&owner, &d);
    first.expect_events("three token chunks", DEADLINE, |events| {
        of_type(events, "turn.token").len() >= 3
    });
    let m = id_of(
        &of_type(&first.events, "turn.started")[0]["payload"]["message"],
        "message_id",
    );
    let seen = first.last_id();
    let before = first.events.clone();
    first.kill();

    // The turn goes on while nobody listens: more chunks are written meanwhile.
    wait_for("more chunks while disconnected", || {
        stack.sequenced();
        (stack.stored_events(&[&channel], seen).len() >= 3).then_some(())
    });
    let mut second = stack.ws(&owner);
    second.subscribed(&channel, Some(seen));
    second.expect_events("the turn's message.created", DEADLINE, |events| {
        created(events, &m)
    });
    assert!(
        second.events[0]["id"].as_i64().unwrap() > seen,
        "resume repeated an event: {} after {seen}",
        second.events[0]
    );
    let (status, body) = running.join().unwrap().unwrap();
    assert_eq!(status, 201, "{body}");

    let all: Vec<Value> = before.into_iter().chain(second.events.clone()).collect();
    stack.sequenced();
    assert_same_events(
        "both sockets",
        &all,
        &stack.stored_events(&[&channel], from),
    );
    let stored = stack.message(&owner, &d, &m);
    assert_eq!(stored["status"], "completed", "{stored:#}");
    assert_eq!(
        ws::reassemble(&all, &m),
        stored["content"].as_str().unwrap()
    );
    assert_eq!(stored["content"], reply.content());
}

#[test]
fn resume_works_across_a_host_crash_mid_turn_and_the_tokens_make_the_interrupted_message() {
    let mut stack = Stack::start(&[("SPIN_VARIABLE_TURN_LEASE_SECONDS", "2")]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let d = stack.panel(&owner, json!({}));
    let channel = format!("discussion:{d}");
    let reply = long_reply("Alpha", 60);
    stack.fake.script(ALPHA, reply.clone());
    stack.fake.set_token_delay(Duration::from_millis(100));
    let from = stack.sequenced();

    let mut first = stack.ws(&owner);
    first.subscribed(&channel, Some(from));
    let running = stack.advance_in_background(&owner, &d);
    first.expect_events("three token chunks", DEADLINE, |events| {
        of_type(events, "turn.token").len() >= 3
    });
    let interrupted = id_of(
        &of_type(&first.events, "turn.started")[0]["payload"]["message"],
        "message_id",
    );

    stack.crash_and_restart();
    let ended = first.wait_closed(DEADLINE);
    assert!(
        matches!(ended, Some(Frame::Gone(_) | Frame::Close(..))),
        "the socket outlived its host: {ended:?}"
    );
    assert!(running.join().unwrap().is_err(), "the killed host answered");
    stack.fake.set_token_delay(Duration::ZERO);

    // The same access token works on the new process: sessions live in PostgreSQL.
    let mut second = stack.ws(&owner);
    second.subscribed(&channel, Some(first.last_id()));
    let started = Instant::now();
    let retried = loop {
        let answer = stack.advance(&owner, &d);
        if answer.status == 201 {
            break answer.json();
        }
        answer.expect_problem(409, "turn_in_progress");
        assert!(
            started.elapsed() < DEADLINE,
            "the dead turn's lease never ran out"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let retried_id = id_of(&retried, "message_id");
    second.expect_events("the retried turn's message.created", DEADLINE, |events| {
        created(events, &retried_id)
    });
    assert!(
        !of_type(&second.events, "turn.interrupted").is_empty(),
        "no turn.interrupted: {:#?}",
        second.events
    );

    let all: Vec<Value> = first.events.iter().chain(&second.events).cloned().collect();
    stack.sequenced();
    assert_same_events(
        "both sockets",
        &all,
        &stack.stored_events(&[&channel], from),
    );
    let dead = stack.message(&owner, &d, &interrupted);
    assert_eq!(dead["status"], "interrupted", "{dead:#}");
    assert_eq!(
        ws::reassemble(&all, &interrupted),
        dead["content"].as_str().unwrap()
    );
    assert_eq!(ws::reassemble(&all, &retried_id), reply.content());
}

#[test]
fn a_graceful_shutdown_closes_sockets_with_1001_tells_sse_to_reconnect_and_events_written_meanwhile_are_replayed()
 {
    let mut stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let d = stack.discussion(&owner, json!({}));
    let channel = format!("discussion:{d}");
    let from = stack.sequenced();

    let mut socket = stack.ws(&owner);
    socket.subscribed(&channel, Some(from));
    stack.insert_events(&channel, "test.before", 1, 3, 10);
    socket.expect_events("three events", DEADLINE, |events| events.len() == 3);

    let stream = sse::get(
        &stack.api,
        &format!("/v1/realtime/sse?channels={channel}&since={from}"),
        Some(&owner.token),
        &[],
    )
    .unwrap_or_else(|response| panic!("{}", response.context()))
    .in_background();
    for _ in 0..3 {
        match stream.next_within(DEADLINE) {
            sse::Next::Event(event) => assert_eq!(event.name, "test.before", "{event:?}"),
            other => panic!("SSE before the shutdown: {other:?}"),
        }
    }

    stack.arena.terminate();
    let (code, reason) = socket.expect_close(DEADLINE);
    assert_eq!(code, 1001, "closed with {code} {reason:?}");
    // The event stream is told to reconnect, and ends.
    match stream.next_within(DEADLINE) {
        sse::Next::Event(event) => assert_eq!(event.name, "reconnect", "{event:?}"),
        other => panic!("SSE at shutdown: {other:?}"),
    }
    assert!(
        matches!(stream.next_within(DEADLINE), sse::Next::Ended),
        "the event stream outlived the shutdown"
    );
    assert!(
        stack.arena.wait(DEADLINE).is_some(),
        "arena up did not exit on SIGTERM"
    );
    // Written while no hub runs: nothing is lost.
    stack.insert_events(&channel, "test.meanwhile", 4, 5, 10);
    stack.relaunch();
    let mut again = stack.ws(&owner);
    again.subscribed(&channel, Some(socket.last_id()));
    again.expect_events("the five written meanwhile", DEADLINE, |events| {
        events.len() >= 5
    });
    stack.insert_events(&channel, "test.after", 9, 2, 10);
    again.expect_events("two more, live", DEADLINE, |events| events.len() >= 7);

    let all: Vec<Value> = socket.events.iter().chain(&again.events).cloned().collect();
    stack.sequenced();
    assert_same_events(
        "both sockets",
        &all,
        &stack.stored_events(&[&channel], from),
    );
    let ns: Vec<i64> = all
        .iter()
        .map(|e| e["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (1..=10).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// Replicas
// ---------------------------------------------------------------------------

#[test]
fn two_sidecars_on_one_database_both_deliver_every_event_once_in_order() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let d = stack.panel(&owner, json!({}));
    let discussion = format!("discussion:{d}");
    let personal = format!("user:{}", owner.id);
    let one = Arena::start_sidecar(&stack.db.url(), &[], &[]);
    let two = Arena::start_sidecar(&stack.db.url(), &[], &[]);
    let from = stack.sequenced();

    let mut sockets: Vec<(&str, Ws)> = vec![
        ("sidecar one", Ws::open(&one.url, &owner.token)),
        ("sidecar two", Ws::open(&two.url, &owner.token)),
        ("arena up", stack.ws(&owner)),
    ];
    for (_, socket) in &mut sockets {
        socket.subscribed(&discussion, Some(from));
        socket.subscribed(&personal, Some(from));
    }

    // Writers committing out of the order their ids were handed out: each
    // writer's transactions interleave with the others', and one transaction in
    // three holds its rows for a while before it commits.
    let writers: Vec<JoinHandle<()>> = (0..4)
        .map(|writer| {
            let url = stack.db.url();
            let (discussion, personal) = (discussion.clone(), personal.clone());
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                for batch in 0..15 {
                    let mut tx = client.transaction().unwrap();
                    for i in 0..(1 + (writer + batch) % 4) {
                        let stream = if i % 3 == 2 { &personal } else { &discussion };
                        tx.execute(
                            "insert into events (stream, type, payload)
                             values ($1, 'test.written', jsonb_build_object('writer', $2::int, 'batch', $3::int, 'i', $4::int))",
                            &[stream, &writer, &batch, &i],
                        )
                        .unwrap();
                    }
                    if batch % 3 == writer % 3 {
                        std::thread::sleep(Duration::from_millis(150));
                    }
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    // And a real turn meanwhile.
    let turn = stack.advance(&owner, &d).expect(201);
    let m = id_of(&turn, "message_id");
    for writer in writers {
        writer.join().unwrap();
    }

    stack.sequenced();
    let stored = stack.stored_events(&[&discussion, &personal], from);
    assert!(stored.len() > 100, "{}", stored.len());
    let expected = stored.len();
    for (name, socket) in &mut sockets {
        socket.expect_events(&format!("{name}: every event"), DEADLINE, |events| {
            events.len() >= expected
        });
        assert_same_events(name, &socket.events, &stored);
        assert!(created(&socket.events, &m), "{name}: no message.created");
    }
    // Nothing more comes after (no duplicate delivered late).
    for (name, socket) in &mut sockets {
        assert!(socket.pings(DEADLINE), "{name}: no pong");
        assert_eq!(
            socket.events.len(),
            expected,
            "{name}: more events than rows"
        );
    }
    // Each sidecar counts its own client and what it delivered to it.
    for (name, sidecar) in [("sidecar one", &one), ("sidecar two", &two)] {
        let metrics = metrics_of(sidecar);
        assert_eq!(
            metric(&metrics, "arena_realtime_connections"),
            Some(1.0),
            "{name}:\n{metrics}"
        );
        let delivered = metric(&metrics, "arena_realtime_events_delivered_total").unwrap_or(0.0);
        assert!(delivered >= expected as f64, "{name}:\n{metrics}");
    }
}

// ---------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------

#[test]
fn a_user_cannot_subscribe_to_another_users_private_discussion_and_gets_none_of_its_events() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let bob = stack.api.new_user(&admin, "member");
    let private = format!("discussion:{}", stack.discussion(&alice, json!({})));
    let shared = format!(
        "discussion:{}",
        stack.discussion(&alice, json!({ "visibility": "shared" }))
    );
    let alice_personal = format!("user:{}", alice.id);
    let from = stack.sequenced();

    let mut snoop = stack.ws(&bob);
    for channel in [&private, &alice_personal] {
        let code = refused_code(snoop.subscribe(channel, Some(from)), channel);
        assert!(
            code == "forbidden" || code == "not_found",
            "{channel}: refused with {code:?}"
        );
    }
    let missing = "discussion:0190aaaa-0000-7000-8000-000000000000";
    assert_eq!(
        refused_code(snoop.subscribe(missing, None), missing),
        "not_found"
    );
    let job = "job:0190aaaa-0000-7000-8000-000000000000";
    assert_eq!(refused_code(snoop.subscribe(job, None), job), "not_found");
    for channel in ["bogus:1", "discussion:not-a-uuid", "", "user:"] {
        let code = refused_code(snoop.subscribe(channel, None), channel);
        assert!(
            code == "validation_failed" || code == "not_found",
            "{channel:?}: refused with {code:?}"
        );
    }
    // What Bob may read, he may subscribe to.
    snoop.subscribed(&shared, Some(from));
    snoop.subscribed(&format!("user:{}", bob.id), Some(from));

    let mut owner = stack.ws(&alice);
    owner.subscribed(&private, Some(from));
    owner.subscribed(&alice_personal, Some(from));
    let mut admin_socket = stack.ws(&admin);
    admin_socket.subscribed(&private, Some(from));

    stack.insert_events(&private, "test.secret", 1, 3, 10);
    stack.insert_events(&alice_personal, "test.secret", 4, 1, 10);
    stack.insert_events(&shared, "test.public", 5, 1, 10);
    owner.expect_events("Alice's four", DEADLINE, |events| events.len() == 4);
    admin_socket.expect_events("the admin's three", DEADLINE, |events| events.len() == 3);
    // Events come in id order: once Bob has the shared event (written last),
    // anything of Alice's would have come before it.
    snoop.expect_events("the shared event", DEADLINE, |events| {
        events.iter().any(|e| e["channel"] == shared.as_str())
    });
    assert_eq!(snoop.events.len(), 1, "Bob got more: {:#?}", snoop.events);
    assert!(snoop.pings(DEADLINE));
    assert_eq!(snoop.events.len(), 1, "Bob got more: {:#?}", snoop.events);

    // SSE refuses the same channel.
    let refused = sse::get(
        &stack.api,
        &format!("/v1/realtime/sse?channels={private}"),
        Some(&bob.token),
        &[],
    );
    match refused {
        Ok(_) => panic!("Bob's SSE stream of Alice's private discussion was opened"),
        Err(response) => assert!(
            response.status == 403 || response.status == 404,
            "{}",
            response.context()
        ),
    }
}

#[test]
fn a_revoked_session_is_cut_off_with_4003_and_its_token_no_longer_connects() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let other = Account {
        token: id_of(&stack.api.login(&alice.username, PASSWORD), "access_token"),
        ..alice.clone()
    };
    let personal = format!("user:{}", alice.id);
    let revoked_sid = stack.session_of(&alice.token);
    assert_ne!(revoked_sid, stack.session_of(&other.token));

    let mut doomed = stack.ws(&alice);
    doomed.subscribed(&personal, None);
    let mut idle = stack.ws(&alice); // subscribed to nothing: closed all the same
    assert!(idle.pings(DEADLINE));
    let mut kept = stack.ws(&other);
    kept.subscribed(&personal, None);

    let revoked_at = Instant::now();
    stack
        .api
        .delete(
            &format!("/v1/auth/sessions/{revoked_sid}"),
            Some(&other.token),
        )
        .expect(204);
    for (name, socket) in [("subscribed", &mut doomed), ("idle", &mut idle)] {
        let (code, reason) = socket.expect_close(DEADLINE);
        assert_eq!(code, 4003, "{name}: closed with {code} {reason:?}");
    }
    let took = revoked_at.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the revoked session's sockets were closed only after {took:?}"
    );
    // The other session is unaffected and heard about it.
    kept.expect_events("session.revoked", DEADLINE, |events| {
        events.iter().any(|e| {
            e["event"] == "session.revoked"
                && e["payload"]["session_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == revoked_sid.as_str()))
        })
    });
    assert!(
        kept.pings(DEADLINE),
        "the other session's socket was closed"
    );

    // The revoked token opens nothing any more.
    let options = Options {
        bearer: Some(alice.token.clone()),
        ..Options::default()
    };
    assert_unauthorized(&stack.arena.url, &options, "the revoked token");
    let refused = sse::get(
        &stack.api,
        &format!("/v1/realtime/sse?channels={personal}"),
        Some(&alice.token),
        &[],
    );
    assert_eq!(refused.err().map(|r| r.status), Some(401));

    // Logging out cuts the other one off too.
    stack
        .api
        .send(
            Method::POST,
            "/v1/auth/logout",
            Some(&other.token),
            None,
            &[],
        )
        .expect(204);
    let (code, reason) = kept.expect_close(DEADLINE);
    assert_eq!(code, 4003, "after logout: closed with {code} {reason:?}");
}

#[test]
fn a_flood_on_a_users_channel_neither_drops_that_users_sockets_nor_hides_a_later_revocation() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let other = id_of(&stack.api.login(&alice.username, PASSWORD), "access_token");
    let d = format!("discussion:{}", stack.discussion(&alice, json!({})));
    let personal = format!("user:{}", alice.id);
    let from = stack.sequenced();

    // Subscribed to a discussion only: the user's channel is none of its business.
    let mut socket = stack.ws(&alice);
    socket.subscribed(&d, Some(from));
    stack.insert_events(&personal, "test.flood", 1, 3_000, 10);
    stack.insert_events(&d, "test.after", 3_001, 1, 10);
    socket.expect_events(
        "the discussion's event after the flood",
        DEADLINE,
        |events| events.len() == 1,
    );
    assert!(
        socket.pings(DEADLINE),
        "the socket was closed by a flood it did not ask for"
    );
    // Its session revoked after the flood: still cut off.
    let sid = stack.session_of(&alice.token);
    stack
        .api
        .delete(&format!("/v1/auth/sessions/{sid}"), Some(&other))
        .expect(204);
    let (code, reason) = socket.expect_close(DEADLINE);
    assert_eq!(code, 4003, "closed with {code} {reason:?}");
    let metrics = stack.metrics();
    assert_eq!(
        metric(&metrics, "arena_realtime_slow_consumers_total"),
        Some(0.0),
        "no connection was dropped for slowness, yet:\n{metrics}"
    );
}

#[test]
fn unauthenticated_websockets_are_refused_with_4001_and_every_credential_kind_works() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let personal = format!("user:{}", alice.id);
    let base = &stack.arena.url;

    // No credentials at all: the upgrade may happen (the token may come in the
    // first message), but anything other than `auth` first closes with 4001.
    match Ws::connect(base, &Options::default()) {
        Err(refused) => panic!(
            "a socket without credentials must be upgraded (auth by first message): {refused:?}"
        ),
        Ok(mut socket) => {
            socket.subscribe(&personal, None);
            let ended = socket.wait_closed(DEADLINE);
            assert!(matches!(&ended, Some(Frame::Close(4001, _))), "{ended:?}");
            assert!(socket.events.is_empty());
        }
    }
    // A wrong token in the first message.
    let mut socket = Ws::connect(base, &Options::default()).unwrap();
    socket.send(&json!({ "type": "auth", "token": "not-a-token" }));
    let ended = socket.wait_closed(DEADLINE);
    assert!(matches!(&ended, Some(Frame::Close(4001, _))), "{ended:?}");
    // A garbage bearer, and a token signed with another key.
    assert_unauthorized(
        base,
        &Options {
            bearer: Some("garbage".into()),
            ..Options::default()
        },
        "a garbage bearer",
    );
    let forged = {
        let mut parts: Vec<String> = alice.token.split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".repeat(10);
        parts.join(".")
    };
    assert_unauthorized(
        base,
        &Options {
            bearer: Some(forged),
            ..Options::default()
        },
        "a forged token",
    );

    // The token in the first message works.
    let mut socket = Ws::connect(base, &Options::default()).unwrap();
    socket.send(&json!({ "type": "auth", "token": alice.token }));
    socket.subscribed(&personal, None);
    // An API key in the Authorization header works.
    let key = stack
        .api
        .post(
            "/v1/auth/api-keys",
            Some(&alice.token),
            &json!({ "name": "realtime" }),
        )
        .expect(201);
    let mut by_key = Ws::open(base, key["key"].as_str().unwrap());
    by_key.subscribed(&personal, None);
    stack.insert_events(&personal, "test.hello", 1, 1, 1);
    for (name, s) in [
        ("first-message auth", &mut socket),
        ("API key", &mut by_key),
    ] {
        let ok = s.wait_events(DEADLINE, |events| events.len() == 1);
        assert!(ok, "{name}: no event");
    }
}

// ---------------------------------------------------------------------------
// Tickets
// ---------------------------------------------------------------------------

#[test]
fn tickets_are_single_use_stored_as_digests_and_expire() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let personal = format!("user:{}", alice.id);
    let base = &stack.arena.url;
    let with_ticket = |ticket: &str| Options {
        query: Some(format!("ticket={ticket}")),
        ..Options::default()
    };

    // No credentials, no ticket.
    stack
        .api
        .send(Method::POST, "/v1/realtime/tickets", None, None, &[])
        .expect_problem(401, "unauthorized");

    let ticket = stack.ticket(&alice);
    let stored: i64 = stack
        .db
        .connect()
        .query_one(
            "select count(*) from realtime_tickets where ticket_digest = $1",
            &[&ticket],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "the ticket is stored in clear");
    let mut socket = Ws::connect(base, &with_ticket(&ticket))
        .unwrap_or_else(|refused| panic!("a fresh ticket was refused: {refused:?}"));
    socket.subscribed(&personal, None);
    // Used once: never again.
    assert_unauthorized(base, &with_ticket(&ticket), "a used ticket");
    assert!(
        socket.pings(DEADLINE),
        "the ticket's first socket was closed"
    );

    // Expired (as if 30 s had passed).
    let expiring = stack.ticket(&alice);
    stack
        .db
        .connect()
        .execute(
            "update realtime_tickets set expires_at = now() - interval '1 second' where used_at is null",
            &[],
        )
        .unwrap();
    assert_unauthorized(base, &with_ticket(&expiring), "an expired ticket");
    assert_unauthorized(base, &with_ticket("arena_wt_made-up"), "a made-up ticket");

    // SSE takes tickets too, once.
    let sse_ticket = stack.ticket(&alice);
    let path = format!("/v1/realtime/sse?channels={personal}&ticket={sse_ticket}");
    let stream = sse::get(&stack.api, &path, None, &[])
        .unwrap_or_else(|response| panic!("{}", response.context()));
    let again = sse::get(&stack.api, &path, None, &[]);
    assert_eq!(
        again.err().map(|r| r.status),
        Some(401),
        "a used ticket opened SSE"
    );
    drop(stream);
}

// ---------------------------------------------------------------------------
// Protocol
// ---------------------------------------------------------------------------

#[test]
fn bad_messages_are_answered_with_validation_errors_or_closed_with_1008() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let d = format!("discussion:{}", stack.discussion(&alice, json!({})));
    let personal = format!("user:{}", alice.id);

    // Well-formed JSON that asks for nothing sensible: an error, and the socket
    // goes on.
    let mut socket = stack.ws(&alice);
    for bad in [
        json!({ "type": "subscribe" }),
        json!({ "type": "subscribe", "channel": d, "since": "yesterday" }),
        json!({ "type": "subscribe", "channel": 42 }),
    ] {
        socket.send(&bad);
        match socket.next_reply(DEADLINE) {
            Some(Frame::Reply(reply)) if reply["type"] == "error" => {
                assert_eq!(reply["code"], "validation_failed", "{bad}: {reply}");
            }
            other => panic!("{bad}: expected an error reply, got {other:?}"),
        }
        assert!(socket.pings(DEADLINE), "{bad}: the socket was closed");
    }
    // An unknown message type: an error reply or close 1008.
    socket.send(&json!({ "type": "fly" }));
    match socket.next_reply(DEADLINE) {
        Some(Frame::Reply(reply)) if reply["type"] == "error" => {
            assert_eq!(reply["code"], "validation_failed", "{reply}");
            assert!(socket.pings(DEADLINE));
        }
        Some(Frame::Close(1008, _)) => socket = stack.ws(&alice),
        other => panic!("an unknown type: got {other:?}"),
    }

    // Unsubscribing stops delivery.
    socket.subscribed(&d, None);
    socket.subscribed(&personal, None);
    socket.send(&json!({ "type": "unsubscribe", "channel": d }));
    let answer = socket.reply_where(DEADLINE, |reply| reply["type"] == "unsubscribed");
    assert!(matches!(answer, Frame::Reply(_)), "{answer:?}");
    stack.insert_events(&d, "test.unheard", 1, 2, 1);
    stack.insert_events(&personal, "test.heard", 3, 1, 1);
    socket.expect_events("the personal event", DEADLINE, |events| !events.is_empty());
    assert_eq!(socket.events.len(), 1, "{:#?}", socket.events);
    assert_eq!(socket.events[0]["channel"], personal.as_str());

    // Not JSON: closed with 1008.
    socket.send_message(tungstenite::Message::text("this is not JSON"));
    let (code, reason) = socket.expect_close(DEADLINE);
    assert_eq!(code, 1008, "not JSON: closed with {code} {reason:?}");
    // A binary frame: closed with 1008.
    let mut binary = stack.ws(&alice);
    binary.send_message(tungstenite::Message::binary(vec![1u8, 2, 3]));
    let (code, reason) = binary.expect_close(DEADLINE);
    assert_eq!(code, 1008, "binary: closed with {code} {reason:?}");
}

#[test]
fn connections_over_the_per_user_limit_are_refused_with_4029() {
    let stack = Stack::start_with_args(&[], &["--realtime-max-connections-per-user", "2"]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let mut allowed = vec![stack.ws(&alice), stack.ws(&alice)];
    for socket in &mut allowed {
        assert!(socket.pings(DEADLINE));
    }
    let options = Options {
        bearer: Some(alice.token.clone()),
        ..Options::default()
    };
    match Ws::connect(&stack.arena.url, &options) {
        Err(refused) => assert_eq!(refused.status, 429, "{refused:?}"),
        Ok(mut third) => {
            third.pings(Duration::from_secs(2));
            let (code, reason) = third.expect_close(DEADLINE);
            assert_eq!(code, 4029, "{reason}");
        }
    }
    // Another user is not counted against Alice.
    let bob = stack.api.new_user(&admin, "member");
    assert!(stack.ws(&bob).pings(DEADLINE));
    // A slot freed is a slot again.
    allowed.pop().unwrap().close();
    let mut again = wait_for("a freed slot", || {
        let mut socket = Ws::connect(&stack.arena.url, &options).ok()?;
        socket.pings(Duration::from_secs(2)).then_some(socket)
    });
    assert!(again.pings(DEADLINE));
}

// ---------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------

#[test]
fn a_slow_client_is_dropped_with_4008_while_another_gets_every_event_and_it_resumes() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let d = format!("discussion:{}", stack.discussion(&alice, json!({})));
    let from = stack.sequenced();

    let mut fast = stack.ws(&alice);
    fast.subscribed(&d, Some(from));
    let mut slow = Ws::connect(
        &stack.arena.url,
        &Options {
            bearer: Some(alice.token.clone()),
            receive_buffer: Some(4096),
            ..Options::default()
        },
    )
    .unwrap();
    slow.subscribed(&d, Some(from));

    // ~16 MB of events: far more than the socket buffers and a queue of 1024
    // events hold, so a client that does not read falls behind; written at
    // ~2,000 events (4 MB) a second, a pace any reading client keeps up with (a
    // burst of all of them at once outruns a queue of 1024 events on a busy
    // machine however fast the client reads).
    const TOTAL: i32 = 8_000;
    const BATCH: i32 = 100;
    let writer = {
        let url = stack.db.url();
        let d = d.clone();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            for first in (1..=TOTAL).step_by(BATCH as usize) {
                client
                    .execute(
                        "insert into events (stream, type, payload)
                         select $1, 'test.bulk', jsonb_build_object('n', n, 'pad', repeat('x', 2000))
                         from generate_series($2::int, $2::int + $3::int - 1) n",
                        &[&d, &first, &BATCH],
                    )
                    .unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    fast.expect_events("every event", Duration::from_secs(60), |events| {
        events.len() >= TOTAL as usize
    });
    writer.join().unwrap();
    stack.sequenced();
    let stored = stack.stored_events(&[&d], from);
    assert_same_events("the fast client", &fast.events, &stored);

    wait_for("a slow consumer counted", || {
        let metrics = stack.metrics();
        (metric(&metrics, "arena_realtime_slow_consumers_total")? >= 1.0).then_some(())
    });
    // The slow one reads what was buffered for it, then the close.
    let ended = slow.wait_closed(Duration::from_secs(60));
    assert!(
        matches!(&ended, Some(Frame::Close(4008, _))),
        "the slow client ended with {ended:?} after {} events",
        slow.events.len()
    );
    assert!(
        slow.events.len() < TOTAL as usize,
        "the slow client got everything"
    );
    // It resumes from its last id and gets the rest, none twice.
    let mut resumed = stack.ws(&alice);
    resumed.subscribed(&d, Some(slow.last_id()));
    let missing = stored.len() - slow.events.len();
    resumed.expect_events("the rest", Duration::from_secs(60), |events| {
        events.len() >= missing
    });
    let all: Vec<Value> = slow.events.iter().chain(&resumed.events).cloned().collect();
    assert_same_events("the slow client and its resume", &all, &stored);
}

// ---------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------

/// Reads `n` events from `stream` (blocking; the client's 60 s timeout bounds it).
#[track_caller]
fn read_sse(stream: &mut sse::Events, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < n {
        match stream.next() {
            Some(event) => events.push(event),
            None => panic!(
                "the stream ended after {} of {n} events: {events:#?}",
                events.len()
            ),
        }
    }
    events
}

/// SSE events checked against the database's rows.
#[track_caller]
fn assert_same_sse(who: &str, events: &[Event], stored: &[(i64, String, String, Value)]) {
    let ids: Vec<i64> = events
        .iter()
        .map(|e| {
            e.id.as_deref()
                .unwrap_or_else(|| panic!("{who}: no id: {e:?}"))
                .parse()
                .unwrap()
        })
        .collect();
    let want: Vec<i64> = stored.iter().map(|(id, ..)| *id).collect();
    assert_eq!(ids, want, "{who}: ids");
    for (event, (id, stream, kind, payload)) in events.iter().zip(stored) {
        assert_eq!(event.name, *kind, "{who}: {id}");
        assert_eq!(
            event.data["channel"],
            stream.as_str(),
            "{who}: {id}: {:?}",
            event.data
        );
        assert_eq!(&event.data["payload"], payload, "{who}: {id}");
    }
}

#[test]
fn sse_resumes_with_last_event_id_without_gap_or_duplicate() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let d = format!("discussion:{}", stack.discussion(&alice, json!({})));
    let personal = format!("user:{}", alice.id);
    let from = stack.sequenced();
    let path = format!("/v1/realtime/sse?channels={d},{personal}");

    stack.insert_events(&d, "test.one", 1, 6, 10);
    stack.insert_events(&personal, "test.two", 7, 4, 10);
    let mut first = sse::get(
        &stack.api,
        &path,
        Some(&alice.token),
        &[("last-event-id", &from.to_string())],
    )
    .unwrap_or_else(|response| panic!("{}", response.context()));
    // Six read, four more in flight, then the client goes away.
    let before = read_sse(&mut first, 6);
    drop(first);
    stack.insert_events(&d, "test.three", 11, 5, 10);
    let last = before.last().unwrap().id.clone().unwrap();
    let mut second = sse::get(
        &stack.api,
        &path,
        Some(&alice.token),
        &[("last-event-id", &last)],
    )
    .unwrap_or_else(|response| panic!("{}", response.context()));
    let mut after = read_sse(&mut second, 9);
    // And live after the replay.
    stack.insert_events(&personal, "test.four", 20, 1, 10);
    after.extend(read_sse(&mut second, 1));
    drop(second);

    stack.sequenced();
    let stored = stack.stored_events(&[&d, &personal], from);
    let all: Vec<Event> = before.into_iter().chain(after).collect();
    assert_same_sse("Last-Event-ID", &all, &stored);

    // `?since=` resumes the same way.
    let mut third = sse::get(
        &stack.api,
        &format!("{path}&since={last}"),
        Some(&alice.token),
        &[],
    )
    .unwrap_or_else(|response| panic!("{}", response.context()));
    let replayed = read_sse(&mut third, stored.len() - 6);
    assert_same_sse("?since=", &replayed, &stored[6..]);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[test]
fn metrics_show_connections_subscriptions_and_events_delivered() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let alice = stack.api.new_user(&admin, "member");
    let d = format!("discussion:{}", stack.discussion(&alice, json!({})));
    let personal = format!("user:{}", alice.id);
    let from = stack.sequenced();

    let metrics = stack.metrics();
    for name in [
        "arena_realtime_connections",
        "arena_realtime_subscriptions",
        "arena_realtime_events_delivered_total",
        "arena_realtime_slow_consumers_total",
        "arena_realtime_events_sequenced_total",
    ] {
        assert!(metric(&metrics, name).is_some(), "no {name} in:\n{metrics}");
    }
    assert_eq!(
        metric(&metrics, "arena_realtime_connections"),
        Some(0.0),
        "{metrics}"
    );
    let delivered_before = metric(&metrics, "arena_realtime_events_delivered_total").unwrap();

    let mut sockets = vec![stack.ws(&alice), stack.ws(&alice), stack.ws(&alice)];
    for socket in &mut sockets {
        socket.subscribed(&d, Some(from));
    }
    sockets[2].subscribed(&personal, Some(from));
    let wait_metric = |name: &str, value: f64| {
        wait_for(&format!("{name} = {value}"), || {
            let metrics = stack.metrics();
            (metric(&metrics, name) == Some(value)).then_some(())
        })
    };
    wait_metric("arena_realtime_connections", 3.0);
    wait_metric("arena_realtime_subscriptions", 4.0);

    stack.insert_events(&d, "test.counted", 1, 5, 10);
    for socket in &mut sockets {
        socket.expect_events("five events", DEADLINE, |events| events.len() == 5);
    }
    wait_metric(
        "arena_realtime_events_delivered_total",
        delivered_before + 15.0,
    );
    // Events on a user's own channel count once per socket that got them, like
    // any other (not once more per socket of that user's).
    stack.insert_events(&personal, "test.counted", 6, 2, 10);
    sockets[2].expect_events("two personal events", DEADLINE, |events| events.len() == 7);
    let target = delivered_before + 17.0;
    let delivered = wait_for("the personal events counted", || {
        let delivered = metric(&stack.metrics(), "arena_realtime_events_delivered_total")?;
        (delivered >= target).then_some(delivered)
    });
    assert_eq!(
        delivered,
        target,
        "arena_realtime_events_delivered_total counts {} deliveries of 2 personal events that 1 socket received",
        delivered - delivered_before - 15.0
    );
    let metrics = stack.metrics();
    assert!(
        metric(&metrics, "arena_realtime_events_sequenced_total").unwrap() >= 5.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "arena_realtime_slow_consumers_total"),
        Some(0.0)
    );

    // Gone sockets are no longer counted, however they went.
    sockets.pop().unwrap().kill();
    sockets.pop().unwrap().close();
    wait_metric("arena_realtime_connections", 1.0);
    wait_metric("arena_realtime_subscriptions", 1.0);
}
