//! Discussions end to end: the discussions component (with agents, auth and the
//! middleware) of the real `spin.toml`, run by `arena up` against a fresh database
//! per test and a fake Ollama of its own (`arena-fake-ollama`), driven over HTTP as
//! a client would; the contract is the discussions API (issue 6).
//!
//! Each agent speaks with a model of its own, scripted to a reply of its own, so a
//! message's text says who wrote it and the fake's recorded requests say who was
//! prompted with what. Waiting is polling with a deadline, never a fixed sleep.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arena_e2e::api::{self, Account, Client, PASSWORD, Response, field_errors, id_of, items};
use arena_e2e::poll::{DEADLINE, POLL, wait_for};
use arena_e2e::sse::{self, Event};
use arena_e2e::{Arena, TestDatabase};
use arena_fake_ollama::{FakeOllama, Model, Recorded, Reply};
use reqwest::Method;
use serde_json::{Value, json};

/// `ollama_timeout_seconds`: a stalled fake fails a turn fast.
const OLLAMA_TIMEOUT_SECS: &str = "5";

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
    /// What the arena was started with, to start it again the same way.
    env: Vec<(String, String)>,
}

impl Stack {
    fn start(env: &[(&str, &str)]) -> Stack {
        let fake = FakeOllama::start();
        let db = TestDatabase::create();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let arena = launch(&db, &fake, &env);
        let api = Client::new(&arena);
        Stack {
            arena,
            db,
            fake,
            api,
            env,
        }
    }

    /// Kills the host with SIGKILL (a crash: nothing is finished or cleaned up) and
    /// starts it again on the same database, Ollama and settings.
    fn crash_and_restart(&mut self) {
        self.arena.kill();
        self.arena = launch(&self.db, &self.fake, &self.env);
        self.api = Client::new(&self.arena);
    }

    fn get(&self, path: &str, who: &Account) -> Response {
        self.api.get(path, Some(&who.token))
    }

    fn post(&self, path: &str, who: &Account, body: &Value) -> Response {
        self.api.post(path, Some(&who.token), body)
    }

    fn patch(&self, path: &str, who: &Account, body: &Value) -> Response {
        self.api.patch(path, Some(&who.token), body)
    }

    fn delete(&self, path: &str, who: &Account) -> Response {
        self.api.delete(path, Some(&who.token))
    }

    /// A POST with no body at all.
    fn post_empty(&self, path: &str, who: &Account) -> Response {
        self.api
            .send(Method::POST, path, Some(&who.token), None, &[])
    }

    /// A POST of `body` as JSON with extra `headers`.
    fn post_with(
        &self,
        path: &str,
        who: &Account,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Response {
        let bytes = serde_json::to_vec(body).unwrap();
        self.api.send(
            Method::POST,
            path,
            Some(&who.token),
            Some(("application/json", bytes)),
            headers,
        )
    }

    /// Creates an agent named `name` speaking with `model` (installed in the fake)
    /// as `who`; the agent.
    #[track_caller]
    fn agent(
        &self,
        who: &Account,
        name: &str,
        model: &str,
        persona: &str,
        parameters: Value,
    ) -> Value {
        self.fake.add_model(Model::chat(model));
        self.post(
            "/v1/agents",
            who,
            &json!({
                "name": name, "persona": persona, "model": model,
                "parameters": parameters,
            }),
        )
        .expect(201)
    }

    /// Creates a discussion as `who` with a title and topic and `settings` over
    /// them; the discussion (a draft).
    #[track_caller]
    fn discussion(&self, who: &Account, settings: Value) -> Value {
        let mut body = json!({
            "title": "Tea or coffee",
            "topic": "Which is the better morning drink, tea or coffee?",
        });
        for (key, value) in settings.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = self.post("/v1/discussions", who, &body);
        let discussion = response.expect(201);
        assert_eq!(discussion["status"], "draft", "{discussion}");
        let id = id_of(&discussion, "discussion_id");
        assert_eq!(
            response.header("location").as_deref(),
            Some(format!("/v1/discussions/{id}").as_str()),
            "{}",
            response.context()
        );
        discussion
    }

    /// Adds the agent `agent` to the discussion `d` as `who`; the participant.
    #[track_caller]
    fn join_agent(&self, who: &Account, d: &str, agent: &Value) -> Value {
        let participant = self
            .post(
                &format!("/v1/discussions/{d}/participants"),
                who,
                &json!({ "agent_id": agent["agent_id"] }),
            )
            .expect(201);
        assert_eq!(participant["kind"], "agent", "{participant}");
        assert_eq!(participant["agent_id"], agent["agent_id"], "{participant}");
        assert_eq!(participant["model"], agent["model"], "{participant}");
        participant
    }

    /// Adds the user `user` to the discussion `d` as `who`; the participant.
    #[track_caller]
    fn join_user(&self, who: &Account, d: &str, user: &Account) -> Value {
        let participant = self
            .post(
                &format!("/v1/discussions/{d}/participants"),
                who,
                &json!({ "user_id": user.id }),
            )
            .expect(201);
        assert_eq!(participant["kind"], "user", "{participant}");
        assert_eq!(participant["user_id"], user.id.as_str(), "{participant}");
        participant
    }

    /// Starts the discussion `d`; it is active then.
    #[track_caller]
    fn start_discussion(&self, who: &Account, d: &str) -> Value {
        let started = self
            .post_empty(&format!("/v1/discussions/{d}/start"), who)
            .expect(200);
        assert_eq!(started["status"], "active", "{started}");
        started
    }

    /// `POST /turns` with no body, not streamed.
    fn advance(&self, who: &Account, d: &str) -> Response {
        self.post_empty(&format!("/v1/discussions/{d}/turns"), who)
    }

    /// One turn that must complete; its message.
    #[track_caller]
    fn turn(&self, who: &Account, d: &str) -> Value {
        let message = self.advance(who, d).expect(201);
        assert_eq!(message["status"], "completed", "{message}");
        message
    }

    /// The discussion as `who` reads it now.
    #[track_caller]
    fn now(&self, who: &Account, d: &str) -> Value {
        self.get(&format!("/v1/discussions/{d}"), who).expect(200)
    }

    /// One message as `who` reads it now.
    #[track_caller]
    fn message(&self, who: &Account, d: &str, m: &str) -> Value {
        self.get(&format!("/v1/discussions/{d}/messages/{m}"), who)
            .expect(200)
    }

    /// Every message of `d`, oldest first, page after page.
    #[track_caller]
    fn messages(&self, who: &Account, d: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/discussions/{d}/messages?order=asc&limit=200");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get(&path, who).expect(200);
            all.extend(items(&page));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }

    /// Waits until the message `m` satisfies `done`; the message then.
    #[track_caller]
    fn wait_message(
        &self,
        who: &Account,
        d: &str,
        m: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let started = Instant::now();
        loop {
            let response = self.get(&format!("/v1/discussions/{d}/messages/{m}"), who);
            if response.status == 200 {
                last = response.json();
                if done(&last) {
                    return last;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{what}: not within {DEADLINE:?}; the message last seen: {last:#}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until a turn of `d` is generating and its message holds some text; the
    /// discussion and that message.
    #[track_caller]
    fn wait_generating(&self, who: &Account, d: &str) -> (Value, Value) {
        let started = Instant::now();
        loop {
            let discussion = self.now(who, d);
            if let Some(m) = discussion["turn"]["message_id"].as_str() {
                let message = self.message(who, d, m);
                if message["status"] == "generating"
                    && message["content"].as_str().is_some_and(|c| !c.is_empty())
                {
                    return (discussion, message);
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no turn generating text within {DEADLINE:?}: {discussion:#}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// `POST /turns` (not streamed) on a thread of its own, as `who`: its status and
    /// body, or the transport error (the host may be killed meanwhile).
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

    /// The chat and generate requests the fake received for any of `models`.
    fn generations(&self, models: &[&str]) -> Vec<Recorded> {
        self.fake
            .requests()
            .into_iter()
            .filter(|request| request.path == "/api/chat" || request.path == "/api/generate")
            .filter(|request| {
                models
                    .iter()
                    .any(|model| request.body["model"].as_str() == Some(model))
            })
            .collect()
    }

    /// The payloads of the events of `type_` on the stream of discussion `d`, in order.
    fn events(&self, d: &str, type_: &str) -> Vec<Value> {
        let stream = format!("discussion:{d}");
        self.db
            .connect()
            .query(
                "select payload::text from events where stream = $1 and type = $2
                 order by event_id",
                &[&stream, &type_],
            )
            .unwrap()
            .iter()
            .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
            .collect()
    }

    /// One SQL count.
    fn count(&self, sql: &str, d: &str) -> i64 {
        let id: String = d.to_owned();
        self.db
            .connect()
            .query_one(&format!("select count(*) from ({sql}) counted"), &[&id])
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .get(0)
    }
}

/// `arena up` on spin.toml against `db`, pointed at `fake`, with limits far above
/// what the tests reach (they poll), then `env`.
fn launch(db: &TestDatabase, fake: &FakeOllama, env: &[(String, String)]) -> Arena {
    let url = fake.url();
    let host = fake.address().to_string();
    let defaults = [
        ("SPIN_VARIABLE_OLLAMA_URL", url.as_str()),
        ("SPIN_VARIABLE_OLLAMA_HOST", host.as_str()),
        ("SPIN_VARIABLE_OLLAMA_TIMEOUT_SECONDS", OLLAMA_TIMEOUT_SECS),
        ("SPIN_VARIABLE_RATE_LIMIT_PER_USER", "1000000"),
        ("SPIN_VARIABLE_RATE_LIMIT_PER_ADDRESS", "1000000"),
        ("SPIN_VARIABLE_RATE_LIMIT_TOKEN_PER_ADDRESS", "1000000"),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    api::start(db, &defaults, &env)
}

/// A request on a thread of its own: its status and body, or the transport error.
type Running = JoinHandle<Result<(u16, String), String>>;

/// A reply of `n` numbered word tokens, `" w0 w1 ..."` with a prefix naming `who`.
fn long_reply(who: &str, n: usize) -> Reply {
    Reply::from_tokens(
        std::iter::once(format!("{who} says:")).chain((0..n).map(|i| format!(" w{i}"))),
    )
}

/// Three agents taking turns on a topic, each on a model of its own scripted to a
/// reply of its own, in a discussion already started.
struct Panel {
    owner: Account,
    /// Alpha, Beta, Gamma, as agents.
    agents: Vec<Value>,
    /// Their participants, in speaking order.
    seats: Vec<Value>,
    /// The discussion's id.
    id: String,
}

const NAMES: [&str; 3] = ["Alpha", "Beta", "Gamma"];
const MODELS: [&str; 3] = ["alpha:1b", "beta:1b", "gamma:1b"];

fn persona(name: &str) -> String {
    format!("PERSONA-{name}: you argue briefly and politely.")
}

fn said(name: &str) -> String {
    format!("{name} thinks the answer is obvious.")
}

impl Panel {
    /// A new member (made by `admin`) owning three agents and a discussion with
    /// `settings`, joined in order and started.
    #[track_caller]
    fn new(stack: &Stack, admin: &Account, settings: Value) -> Panel {
        let owner = stack.api.new_user(admin, "member");
        let agents: Vec<Value> = NAMES
            .iter()
            .zip(MODELS)
            .map(|(name, model)| {
                stack.fake.script(model, Reply::from_text(&said(name)));
                stack.agent(&owner, name, model, &persona(name), json!({}))
            })
            .collect();
        let discussion = stack.discussion(&owner, settings);
        let id = id_of(&discussion, "discussion_id");
        let seats: Vec<Value> = agents
            .iter()
            .map(|agent| stack.join_agent(&owner, &id, agent))
            .collect();
        for (position, seat) in seats.iter().enumerate() {
            assert_eq!(seat["position"], position, "{seat}");
        }
        stack.start_discussion(&owner, &id);
        Panel {
            owner,
            agents,
            seats,
            id,
        }
    }

    fn seat(&self, n: usize) -> String {
        id_of(&self.seats[n], "participant_id")
    }
}

/// The tokens of a chat request's messages, counted as Arena's token counter counts
/// a chat (cl100k: each message's role and content plus 3 framing tokens, and 3
/// priming the reply), and of a generate request's system and prompt.
fn prompt_tokens(request: &Recorded) -> usize {
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    let count = |text: &str| bpe.encode_with_special_tokens(text).len();
    let body = &request.body;
    match body["messages"].as_array() {
        Some(messages) => {
            messages
                .iter()
                .map(|message| {
                    count(message["role"].as_str().unwrap_or_default())
                        + count(message["content"].as_str().unwrap_or_default())
                        + 3
                })
                .sum::<usize>()
                + 3
        }
        None => {
            count(body["system"].as_str().unwrap_or_default())
                + count(body["prompt"].as_str().unwrap_or_default())
        }
    }
}

/// The messages of a recorded chat request.
fn chat_messages(request: &Recorded) -> Vec<Value> {
    request.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Turns in order, and what the model is told
// ---------------------------------------------------------------------------

#[test]
fn three_agents_take_ten_round_robin_turns_in_order_and_each_prompt_holds_the_persona_and_history()
{
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({ "turn_strategy": "round_robin" }));
    let d = &panel.id;

    let before = stack.now(&panel.owner, d);
    assert_eq!(before["turn"]["index"], 0, "{before}");
    assert_eq!(before["turn"]["status"], "idle", "{before}");
    assert_eq!(
        before["turn"]["next_speaker_id"],
        panel.seats[0]["participant_id"]
    );

    let mut answered = Vec::new();
    for index in 0..10 {
        let speaker = index % 3;
        let message = stack.turn(&panel.owner, d);
        let author = &message["author"];
        assert_eq!(author["kind"], "agent", "turn {index}: {message:#}");
        assert_eq!(
            author["participant_id"], panel.seats[speaker]["participant_id"],
            "turn {index} should be {}'s: {message:#}",
            NAMES[speaker]
        );
        assert_eq!(author["agent_id"], panel.agents[speaker]["agent_id"]);
        assert_eq!(author["agent_version"], 1, "{message:#}");
        assert_eq!(author["name"], NAMES[speaker], "{message:#}");
        assert_eq!(message["turn_index"], index, "{message:#}");
        assert_eq!(message["seq"], index + 1, "{message:#}");
        assert_eq!(message["content"], said(NAMES[speaker]), "{message:#}");
        assert_eq!(message["model"], MODELS[speaker], "{message:#}");
        let reply_tokens = Reply::from_text(&said(NAMES[speaker])).tokens.len();
        assert_eq!(
            message["usage"]["completion_tokens"], reply_tokens,
            "{message:#}"
        );
        assert!(
            message["usage"]["prompt_tokens"].as_i64().unwrap() > 0,
            "{message:#}"
        );
        assert!(message["latency_ms"].as_f64().is_some(), "{message:#}");
        assert!(message["completed_at"].is_string(), "{message:#}");
        // Who speaks next is known, and it is the next in order.
        let now = stack.now(&panel.owner, d);
        assert_eq!(now["turn"]["index"], index + 1, "{now:#}");
        assert_eq!(now["turn"]["status"], "idle", "{now:#}");
        assert_eq!(
            now["turn"]["next_speaker_id"],
            panel.seats[(index + 1) % 3]["participant_id"],
            "{now:#}"
        );
        answered.push(message);
    }

    // The stored history is what the turns answered, in order.
    let stored = stack.messages(&panel.owner, d);
    assert_eq!(stored.len(), 10, "{stored:#?}");
    for (stored, answered) in stored.iter().zip(&answered) {
        for key in [
            "message_id",
            "seq",
            "turn_index",
            "author",
            "content",
            "status",
            "model",
            "usage",
        ] {
            assert_eq!(
                stored[key], answered[key],
                "{key}: {stored:#} vs {answered:#}"
            );
        }
    }
    // Newest first on request.
    let latest = stack
        .get(
            &format!("/v1/discussions/{d}/messages?order=desc&limit=2"),
            &panel.owner,
        )
        .expect(200);
    let latest = items(&latest);
    assert_eq!(latest[0]["seq"], 10);
    assert_eq!(latest[1]["seq"], 9);
    let discussion = stack.now(&panel.owner, d);
    let used: i64 = answered
        .iter()
        .map(|m| {
            m["usage"]["prompt_tokens"].as_i64().unwrap()
                + m["usage"]["completion_tokens"].as_i64().unwrap()
        })
        .sum();
    assert_eq!(discussion["tokens_used"], used, "{discussion:#}");

    // What each speaker was told: its persona, the title and topic, every earlier
    // message (its own as the assistant, others' as the user, named), and a last
    // line asking it to speak.
    let requests = stack.generations(&MODELS);
    assert_eq!(requests.len(), 10, "{requests:#?}");
    for (index, request) in requests.iter().enumerate() {
        let speaker = index % 3;
        assert_eq!(request.body["model"], MODELS[speaker], "turn {index}");
        let messages = chat_messages(request);
        let system = &messages[0];
        assert_eq!(system["role"], "system", "turn {index}: {messages:#?}");
        let system = system["content"].as_str().unwrap();
        assert!(
            system.contains(&persona(NAMES[speaker])),
            "turn {index}: {system}"
        );
        assert!(system.contains("Tea or coffee"), "turn {index}: {system}");
        assert!(
            system.contains("Which is the better morning drink, tea or coffee?"),
            "turn {index}: {system}"
        );
        for earlier in 0..index {
            let author = earlier % 3;
            let text = said(NAMES[author]);
            let found = if author == speaker {
                messages.iter().any(|m| {
                    m["role"] == "assistant"
                        && m["content"].as_str().is_some_and(|c| c.contains(&text))
                })
            } else {
                let named = format!("{}: {text}", NAMES[author]);
                messages.iter().any(|m| {
                    m["role"] == "user" && m["content"].as_str().is_some_and(|c| c.contains(&named))
                })
            };
            assert!(found, "turn {index} lacks turn {earlier}: {messages:#?}");
        }
        let last = messages.last().unwrap();
        assert_eq!(last["role"], "user", "turn {index}: {messages:#?}");
        assert!(
            last["content"].as_str().unwrap().contains(NAMES[speaker]),
            "turn {index}: {last}"
        );
    }

    // A turn speaks with the agent as it is now: a new persona is a new version.
    let beta = &panel.agents[1];
    let changed = stack
        .patch(
            &format!("/v1/agents/{}", id_of(beta, "agent_id")),
            &panel.owner,
            &json!({ "version": 1, "persona": "PERSONA-Beta-2: you changed your mind." }),
        )
        .expect(200);
    assert_eq!(changed["version"], 2);
    let eleventh = stack.turn(&panel.owner, d);
    assert_eq!(
        eleventh["author"]["participant_id"],
        panel.seats[1]["participant_id"]
    );
    assert_eq!(eleventh["author"]["agent_version"], 2, "{eleventh:#}");
    let request = stack.generations(&["beta:1b"]).pop().unwrap();
    let system = chat_messages(&request)[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.contains("PERSONA-Beta-2"), "{system}");
    // The old messages keep the version that spoke them.
    assert_eq!(
        stack.messages(&panel.owner, d)[1]["author"]["agent_version"],
        1
    );

    // Every turn was announced and its model call recorded against the discussion.
    assert_eq!(stack.events(d, "turn.started").len(), 11);
    assert_eq!(stack.events(d, "turn.completed").len(), 11);
    assert_eq!(
        stack.count(
            "select 1 from model_calls where discussion_id = $1::text::uuid",
            d
        ),
        11
    );
}

#[test]
fn a_directed_turn_goes_to_the_named_agent_and_a_missing_or_wrong_speaker_is_400() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({ "turn_strategy": "directed" }));
    let d = &panel.id;
    let turns = format!("/v1/discussions/{d}/turns");

    let gamma = stack
        .post(
            &turns,
            &panel.owner,
            &json!({ "speaker_id": panel.seat(2) }),
        )
        .expect(201);
    assert_eq!(
        gamma["author"]["participant_id"],
        panel.seats[2]["participant_id"]
    );
    assert_eq!(gamma["content"], said("Gamma"));
    // The same agent twice in a row, if that is what is asked.
    let again = stack
        .post(
            &turns,
            &panel.owner,
            &json!({ "speaker_id": panel.seat(2) }),
        )
        .expect(201);
    assert_eq!(
        again["author"]["participant_id"],
        panel.seats[2]["participant_id"]
    );
    let beta = stack
        .post(
            &turns,
            &panel.owner,
            &json!({ "speaker_id": panel.seat(1) }),
        )
        .expect(201);
    assert_eq!(
        beta["author"]["participant_id"],
        panel.seats[1]["participant_id"]
    );
    assert_eq!(beta["turn_index"], 2);

    // No speaker, an unknown one, a person, a malformed id: 400 naming `speaker_id`.
    let human = stack.api.new_user(&admin, "member");
    let seat = stack.join_user(&panel.owner, d, &human);
    let missing = stack
        .advance(&panel.owner, d)
        .expect_problem(400, "validation_failed");
    assert_eq!(field_errors(&missing), ["speaker_id"], "{missing}");
    for speaker in [
        json!("01936c4e-7c1a-7d2b-8e3f-4a5b6c7d8e9f"),
        seat["participant_id"].clone(),
        json!("not-a-uuid"),
        json!(null),
    ] {
        let problem = stack
            .post(&turns, &panel.owner, &json!({ "speaker_id": speaker }))
            .expect_problem(400, "validation_failed");
        assert_eq!(
            field_errors(&problem),
            ["speaker_id"],
            "{speaker}: {problem}"
        );
    }
    // None of it started a turn.
    assert_eq!(stack.messages(&panel.owner, d).len(), 3);
    assert_eq!(stack.generations(&MODELS).len(), 3);
    assert_eq!(stack.now(&panel.owner, d)["turn"]["index"], 3);

    // Other strategies refuse a speaker.
    let round = Panel::new(&stack, &admin, json!({}));
    let problem = stack
        .post(
            &format!("/v1/discussions/{}/turns", round.id),
            &round.owner,
            &json!({ "speaker_id": round.seat(1) }),
        )
        .expect_problem(400, "validation_failed");
    assert_eq!(field_errors(&problem), ["speaker_id"], "{problem}");
    assert!(stack.messages(&round.owner, &round.id).is_empty());
}

#[test]
fn a_moderator_names_who_speaks_and_nonsense_or_the_previous_speaker_falls_back_to_another() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let moderator_model = "moderator:1b";
    let moderator = stack.agent(
        &owner,
        "Moderator",
        moderator_model,
        "You chair the debate.",
        json!({ "temperature": 0.9 }),
    );
    let agents: Vec<Value> = NAMES
        .iter()
        .zip(MODELS)
        .map(|(name, model)| {
            stack.fake.script(model, Reply::from_text(&said(name)));
            stack.agent(&owner, name, model, &persona(name), json!({}))
        })
        .collect();
    let discussion = stack.discussion(&owner, json!({ "turn_strategy": "moderator" }));
    let d = id_of(&discussion, "discussion_id");
    let chair = stack.join_agent(&owner, &d, &moderator);
    let seats: Vec<Value> = agents
        .iter()
        .map(|agent| stack.join_agent(&owner, &d, agent))
        .collect();
    let version = stack.now(&owner, &d)["version"].clone();
    let patched = stack
        .patch(
            &format!("/v1/discussions/{d}"),
            &owner,
            &json!({ "version": version, "moderator_id": chair["participant_id"] }),
        )
        .expect(200);
    assert_eq!(
        patched["moderator_id"], chair["participant_id"],
        "{patched}"
    );
    stack.start_discussion(&owner, &d);
    let seat_of = |message: &Value| -> usize {
        seats
            .iter()
            .position(|seat| seat["participant_id"] == message["author"]["participant_id"])
            .unwrap_or(usize::MAX)
    };

    // It names Beta: Beta speaks.
    stack.fake.script(
        moderator_model,
        Reply::from_text("I think Beta should speak next."),
    );
    let first = stack.turn(&owner, &d);
    assert_eq!(seat_of(&first), 1, "{first:#}");
    assert_eq!(first["content"], said("Beta"));
    // The moderator was asked briefly and deterministically, about the others.
    let asked = stack.generations(&[moderator_model]);
    assert_eq!(asked.len(), 1, "{asked:#?}");
    let options = &asked[0].body["options"];
    assert!(
        options["num_predict"]
            .as_i64()
            .is_some_and(|n| (1..=20).contains(&n)),
        "{options}"
    );
    assert_eq!(options["temperature"].as_f64(), Some(0.0), "{options}");
    let question = asked[0].body.to_string();
    for name in NAMES {
        assert!(question.contains(name), "{name} not offered: {question}");
    }

    // It names the previous speaker again: someone else speaks.
    stack
        .fake
        .script(moderator_model, Reply::from_text("Beta, again please."));
    let second = stack.turn(&owner, &d);
    assert_ne!(
        second["author"]["participant_id"], first["author"]["participant_id"],
        "{second:#}"
    );
    // It answers nonsense: a valid agent who is not the previous speaker.
    stack
        .fake
        .script(moderator_model, Reply::from_text("The weather is lovely."));
    let third = stack.turn(&owner, &d);
    assert_ne!(
        third["author"]["participant_id"], second["author"]["participant_id"],
        "{third:#}"
    );
    let present: Vec<Value> = std::iter::once(&chair)
        .chain(&seats)
        .map(|seat| seat["participant_id"].clone())
        .collect();
    for message in [&second, &third] {
        assert!(
            present.contains(&message["author"]["participant_id"]),
            "{message:#}"
        );
        assert_eq!(message["author"]["kind"], "agent", "{message:#}");
    }
    // A moderator strategy is no directed one.
    stack
        .post(
            &format!("/v1/discussions/{d}/turns"),
            &owner,
            &json!({ "speaker_id": seats[0]["participant_id"] }),
        )
        .expect_problem(400, "validation_failed");
    assert_eq!(stack.messages(&owner, &d).len(), 3);
}

// ---------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------

/// A transition of `d` that must be refused with `409 invalid_transition` naming
/// `state`, changing nothing.
#[track_caller]
fn refused(stack: &Stack, who: &Account, d: &str, action: &str, state: &str) {
    let before = stack.now(who, d);
    let path = if action == "turns" {
        format!("/v1/discussions/{d}/turns")
    } else {
        format!("/v1/discussions/{d}/{action}")
    };
    let problem = stack
        .post_empty(&path, who)
        .expect_problem(409, "invalid_transition");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(state), "{action} in {state}: {problem}");
    let after = stack.now(who, d);
    assert_eq!(after["status"], state, "{after:#}");
    assert_eq!(
        after["version"], before["version"],
        "{action} changed it: {after:#}"
    );
}

#[test]
fn a_paused_discussion_takes_no_turns_until_resumed_and_invalid_transitions_name_the_state() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    stack
        .fake
        .script(MODELS[0], Reply::from_text(&said("Alpha")));
    let alpha = stack.agent(&owner, "Alpha", MODELS[0], &persona("Alpha"), json!({}));
    let discussion = stack.discussion(&owner, json!({}));
    let d = id_of(&discussion, "discussion_id");

    // A draft takes no turns, cannot pause, resume or... start without an agent.
    refused(&stack, &owner, &d, "pause", "draft");
    refused(&stack, &owner, &d, "resume", "draft");
    refused(&stack, &owner, &d, "turns", "draft");
    let problem = stack
        .post_empty(&format!("/v1/discussions/{d}/start"), &owner)
        .expect_problem(409, "invalid_transition");
    assert!(
        problem["detail"].as_str().unwrap().contains("agent"),
        "the detail should say an agent is needed: {problem}"
    );
    assert_eq!(stack.now(&owner, &d)["status"], "draft");

    stack.join_agent(&owner, &d, &alpha);
    stack.start_discussion(&owner, &d);
    refused(&stack, &owner, &d, "start", "active");
    refused(&stack, &owner, &d, "resume", "active");
    stack.turn(&owner, &d);

    let paused = stack
        .post_empty(&format!("/v1/discussions/{d}/pause"), &owner)
        .expect(200);
    assert_eq!(paused["status"], "paused", "{paused}");
    refused(&stack, &owner, &d, "turns", "paused");
    refused(&stack, &owner, &d, "pause", "paused");
    // People may still post while it is paused.
    let note = stack
        .post(
            &format!("/v1/discussions/{d}/messages"),
            &owner,
            &json!({ "content": "A note while paused." }),
        )
        .expect(201);
    assert_eq!(note["author"]["kind"], "user", "{note}");
    assert_eq!(stack.generations(&MODELS).len(), 1);

    let resumed = stack
        .post_empty(&format!("/v1/discussions/{d}/resume"), &owner)
        .expect(200);
    assert_eq!(resumed["status"], "active", "{resumed}");
    // A person's message is a turn too (the schema's `turn_count`): this is the third.
    let second = stack.turn(&owner, &d);
    assert_eq!(second["turn_index"], 2, "{second}");

    let completed = stack
        .post_empty(&format!("/v1/discussions/{d}/complete"), &owner)
        .expect(200);
    assert_eq!(completed["status"], "completed", "{completed}");
    assert_eq!(completed["completed_reason"], "manual", "{completed}");
    for action in ["turns", "pause", "resume", "start", "complete"] {
        refused(&stack, &owner, &d, action, "completed");
    }
    let archived = stack
        .post_empty(&format!("/v1/discussions/{d}/archive"), &owner)
        .expect(200);
    assert_eq!(archived["status"], "archived", "{archived}");
    refused(&stack, &owner, &d, "archive", "archived");
    refused(&stack, &owner, &d, "turns", "archived");
    stack
        .post(
            &format!("/v1/discussions/{d}/messages"),
            &owner,
            &json!({ "content": "Too late." }),
        )
        .expect_problem(409, "invalid_transition");

    // Each change of state was announced with the one before it.
    let changes = stack.events(&d, "discussion.status_changed");
    let statuses: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["previous"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("draft", "active"),
            ("active", "paused"),
            ("paused", "active"),
            ("active", "completed"),
            ("completed", "archived"),
        ],
        "{changes:#?}"
    );
    assert_eq!(stack.messages(&owner, &d).len(), 3);
}

// ---------------------------------------------------------------------------
// One turn at a time, cancelled, abandoned by its client
// ---------------------------------------------------------------------------

#[test]
fn of_two_concurrent_advances_exactly_one_runs_and_the_other_is_409_turn_in_progress() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    for (name, model) in NAMES.iter().zip(MODELS) {
        stack.fake.script(model, long_reply(name, 15));
    }
    stack.fake.set_token_delay(Duration::from_millis(40));

    let barrier = std::sync::Barrier::new(2);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let response = stack.advance(&panel.owner, d);
                    (response.status, response.json())
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{answers:#?}");
    let (_, refused) = answers.iter().find(|(status, _)| *status == 409).unwrap();
    assert_eq!(refused["code"], "turn_in_progress", "{refused}");
    let (_, message) = answers.iter().find(|(status, _)| *status == 201).unwrap();
    assert_eq!(message["status"], "completed", "{message}");
    assert_eq!(message["content"], long_reply("Alpha", 15).content());

    assert_eq!(stack.messages(&panel.owner, d).len(), 1);
    assert_eq!(stack.generations(&MODELS).len(), 1);
    let now = stack.now(&panel.owner, d);
    assert_eq!(now["turn"]["index"], 1, "{now:#}");
    assert_eq!(now["turn"]["status"], "idle", "{now:#}");

    // While a turn runs, the roster and the discussion itself must wait too.
    let running = stack.advance_in_background(&panel.owner, d);
    stack.wait_generating(&panel.owner, d);
    stack
        .advance(&panel.owner, d)
        .expect_problem(409, "turn_in_progress");
    stack
        .delete(&format!("/v1/discussions/{d}"), &panel.owner)
        .expect_problem(409, "turn_in_progress");
    stack
        .delete(
            &format!("/v1/discussions/{d}/participants/{}", panel.seat(2)),
            &panel.owner,
        )
        .expect_problem(409, "turn_in_progress");
    let (status, body) = running.join().unwrap().unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(stack.messages(&panel.owner, d).len(), 2);
}

#[test]
fn a_cancelled_turn_keeps_its_partial_text_as_cancelled_and_ollama_sees_the_generation_stop() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    let reply = long_reply("Alpha", 60);
    stack.fake.script(MODELS[0], reply.clone());
    stack.fake.set_token_delay(Duration::from_millis(50));

    // Streamed, on a thread of its own; cancelled from here.
    let streaming = {
        let events = sse::post(
            &stack.api,
            &format!("/v1/discussions/{d}/turns"),
            Some(&panel.owner.token),
            &json!({}),
        );
        std::thread::spawn(move || events.rest())
    };
    let (discussion, partial) = stack.wait_generating(&panel.owner, d);
    let message_id = id_of(&discussion["turn"], "message_id");
    let cancelling = stack
        .post_empty(
            &format!("/v1/discussions/{d}/turns/current/cancel"),
            &panel.owner,
        )
        .expect(202);
    assert_eq!(cancelling["turn"]["status"], "cancelling", "{cancelling:#}");

    let events: Vec<Event> = streaming.join().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"turn.started"), "{names:?}");
    assert_eq!(names.last(), Some(&"turn.cancelled"), "{names:?}");
    assert!(names.contains(&"token"), "{names:?}");
    let streamed: String = events
        .iter()
        .filter(|e| e.name == "token")
        .map(|e| e.data["content"].as_str().unwrap())
        .collect();

    let message = stack.message(&panel.owner, d, &message_id);
    assert_eq!(message["status"], "cancelled", "{message:#}");
    let content = message["content"].as_str().unwrap();
    let full = reply.content();
    assert!(
        content.starts_with(partial["content"].as_str().unwrap()),
        "the text seen while generating was lost: {content:?} vs {partial:#}"
    );
    assert!(
        full.starts_with(content) && content.len() < full.len(),
        "not a partial of the reply: {content:?}"
    );
    assert!(
        content.starts_with(&streamed),
        "the stream sent what was not stored: {streamed:?} vs {content:?}"
    );
    let last = &events.last().unwrap().data["message"];
    assert_eq!(last["status"], "cancelled", "{last:#}");
    assert_eq!(last["content"], content, "{last:#}");

    // Ollama's generation was abandoned, not run to its end.
    wait_for("Ollama to see the generation cancelled", || {
        (stack.fake.cancelled_generations() >= 1).then_some(())
    });
    assert_eq!(stack.fake.completed_generations(), 0);
    // The cancelled turn counts; the next goes to the next agent.
    let now = stack.now(&panel.owner, d);
    assert_eq!(now["turn"]["status"], "idle", "{now:#}");
    assert_eq!(now["turn"]["index"], 1, "{now:#}");
    stack
        .post_empty(
            &format!("/v1/discussions/{d}/turns/current/cancel"),
            &panel.owner,
        )
        .expect_problem(409, "no_turn_in_progress");
    stack.fake.set_token_delay(Duration::ZERO);
    let next = stack.turn(&panel.owner, d);
    assert_eq!(
        next["author"]["participant_id"],
        panel.seats[1]["participant_id"]
    );
    assert_eq!(stack.events(d, "turn.cancelled").len(), 1);
}

#[test]
fn a_client_that_drops_the_stream_mid_turn_does_not_stop_it_and_the_whole_message_is_stored() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    let reply = long_reply("Alpha", 30);
    stack.fake.script(MODELS[0], reply.clone());
    stack.fake.set_token_delay(Duration::from_millis(40));

    let mut events = sse::post(
        &stack.api,
        &format!("/v1/discussions/{d}/turns"),
        Some(&panel.owner.token),
        &json!({ "stream": true }),
    );
    let started = events.next().expect("a first event");
    assert_eq!(started.name, "turn.started", "{started:?}");
    let message_id = id_of(&started.data["message"], "message_id");
    assert_eq!(
        started.data["message"]["status"], "generating",
        "{started:?}"
    );
    let token = events.next().expect("a token");
    assert_eq!(token.name, "token", "{token:?}");
    drop(events);

    let message = stack.wait_message(&panel.owner, d, &message_id, "the turn to complete", |m| {
        m["status"] != "generating"
    });
    assert_eq!(message["status"], "completed", "{message:#}");
    assert_eq!(message["content"], reply.content(), "{message:#}");
    assert_eq!(stack.fake.completed_generations(), 1);
    assert_eq!(stack.fake.cancelled_generations(), 0);
    let now = stack.now(&panel.owner, d);
    assert_eq!(now["turn"]["index"], 1, "{now:#}");
    assert_eq!(now["turn"]["status"], "idle", "{now:#}");
}

// ---------------------------------------------------------------------------
// People speaking during a turn, and raised hands
// ---------------------------------------------------------------------------

/// A panel whose first turn is generating slowly, with `policy` for human input;
/// the panel, the running advance, and the generating message.
fn mid_turn(stack: &Stack, admin: &Account, policy: &str) -> (Panel, Running, Value) {
    let panel = Panel::new(stack, admin, json!({ "mid_turn_input": policy }));
    assert_eq!(stack.now(&panel.owner, &panel.id)["mid_turn_input"], policy);
    stack.fake.script(MODELS[0], long_reply("Alpha", 40));
    stack.fake.set_token_delay(Duration::from_millis(50));
    let running = stack.advance_in_background(&panel.owner, &panel.id);
    let (_, message) = stack.wait_generating(&panel.owner, &panel.id);
    (panel, running, message)
}

fn post_message(stack: &Stack, who: &Account, d: &str, content: &str) -> Response {
    stack.post(
        &format!("/v1/discussions/{d}/messages"),
        who,
        &json!({ "content": content }),
    )
}

#[test]
fn a_message_posted_mid_turn_under_enqueue_lands_after_the_turns_message() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let (panel, running, generating) = mid_turn(&stack, &admin, "enqueue");
    let d = &panel.id;

    let human = post_message(&stack, &panel.owner, d, "Hold on, I have a point.").expect(201);
    assert_eq!(human["status"], "completed", "{human}");
    assert_eq!(human["author"]["kind"], "user", "{human}");
    assert_eq!(
        human["author"]["user_id"],
        panel.owner.id.as_str(),
        "{human}"
    );
    assert_eq!(
        human["author"]["name"],
        panel.owner.username.as_str(),
        "{human}"
    );

    let (status, body) = running.join().unwrap().unwrap();
    assert_eq!(status, 201, "{body}");
    let stored = stack.messages(&panel.owner, d);
    let order: Vec<(&Value, &Value)> = stored
        .iter()
        .map(|m| (&m["message_id"], &m["status"]))
        .collect();
    assert_eq!(
        order,
        [
            (&generating["message_id"], &json!("completed")),
            (&human["message_id"], &json!("completed")),
        ],
        "{stored:#?}"
    );
    assert_eq!(stored[0]["content"], long_reply("Alpha", 40).content());
    assert_eq!(stack.fake.cancelled_generations(), 0);
}

#[test]
fn a_message_posted_mid_turn_under_interrupt_cancels_the_turn_keeping_its_partial_text() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let (panel, running, generating) = mid_turn(&stack, &admin, "interrupt");
    let d = &panel.id;

    let human = post_message(&stack, &panel.owner, d, "Stop right there.").expect(201);
    assert_eq!(human["author"]["kind"], "user", "{human}");
    let _ = running.join().unwrap();
    let message_id = id_of(&generating, "message_id");
    let cut = stack.wait_message(&panel.owner, d, &message_id, "the turn to stop", |m| {
        m["status"] != "generating"
    });
    assert_eq!(cut["status"], "cancelled", "{cut:#}");
    let content = cut["content"].as_str().unwrap();
    let full = long_reply("Alpha", 40).content();
    assert!(
        content.starts_with(generating["content"].as_str().unwrap())
            && full.starts_with(content)
            && content.len() < full.len(),
        "not the partial text: {content:?}"
    );
    let stored = stack.messages(&panel.owner, d);
    let ids: Vec<&Value> = stored.iter().map(|m| &m["message_id"]).collect();
    assert_eq!(
        ids,
        [&generating["message_id"], &human["message_id"]],
        "{stored:#?}"
    );
    wait_for("Ollama to see the generation cancelled", || {
        (stack.fake.cancelled_generations() >= 1).then_some(())
    });
    let now = stack.now(&panel.owner, d);
    assert_eq!(now["turn"]["status"], "idle", "{now:#}");
}

#[test]
fn a_message_posted_mid_turn_under_reject_is_409_and_stored_nowhere() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let (panel, running, generating) = mid_turn(&stack, &admin, "reject");
    let d = &panel.id;

    post_message(&stack, &panel.owner, d, "May I?").expect_problem(409, "turn_in_progress");
    let (status, body) = running.join().unwrap().unwrap();
    assert_eq!(status, 201, "{body}");
    let stored = stack.messages(&panel.owner, d);
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stored[0]["message_id"], generating["message_id"]);
    assert_eq!(stored[0]["status"], "completed");
    // Between turns, the same message is welcome.
    post_message(&stack, &panel.owner, d, "May I?").expect(201);
    assert_eq!(stack.messages(&panel.owner, d).len(), 2);
}

#[test]
fn a_raised_hand_holds_the_next_turn_until_that_person_posts_or_it_is_lowered() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    let human = stack.api.new_user(&admin, "member");
    let seat = stack.join_user(&panel.owner, d, &human);
    let seat_id = id_of(&seat, "participant_id");
    stack.turn(&panel.owner, d);

    let raised = stack
        .post_empty(&format!("/v1/discussions/{d}/hands"), &human)
        .expect(200);
    assert_eq!(raised["raised_hands"], json!([seat_id]), "{raised:#}");
    assert_eq!(
        raised["turn"]["next_speaker_id"],
        seat_id.as_str(),
        "{raised:#}"
    );
    // Raising it again changes nothing.
    let again = stack
        .post_empty(&format!("/v1/discussions/{d}/hands"), &human)
        .expect(200);
    assert_eq!(again["raised_hands"], json!([seat_id]), "{again:#}");

    let waiting = stack
        .advance(&panel.owner, d)
        .expect_problem(409, "awaiting_participant");
    let detail = waiting["detail"].as_str().unwrap();
    assert!(
        detail.contains(&human.username) || detail.contains(&seat_id),
        "the detail should name who is awaited: {waiting}"
    );
    assert_eq!(stack.generations(&MODELS).len(), 1);

    let spoken = post_message(&stack, &human, d, "Thank you, my point is this.").expect(201);
    assert_eq!(
        spoken["author"]["participant_id"],
        seat_id.as_str(),
        "{spoken}"
    );
    let now = stack.now(&panel.owner, d);
    assert_eq!(now["raised_hands"], json!([]), "{now:#}");
    let next = stack.turn(&panel.owner, d);
    assert_eq!(
        next["author"]["participant_id"],
        panel.seats[1]["participant_id"]
    );

    // Lowered by the owner instead: the turns go on.
    stack
        .post_empty(&format!("/v1/discussions/{d}/hands"), &human)
        .expect(200);
    stack
        .advance(&panel.owner, d)
        .expect_problem(409, "awaiting_participant");
    let lowered = stack
        .delete(
            &format!("/v1/discussions/{d}/hands/{seat_id}"),
            &panel.owner,
        )
        .expect(200);
    assert_eq!(lowered["raised_hands"], json!([]), "{lowered:#}");
    stack.turn(&panel.owner, d);
    assert_eq!(stack.events(d, "hand.raised").len(), 2);
    assert!(stack.events(d, "hand.lowered").len() >= 2);
}

// ---------------------------------------------------------------------------
// A crash mid-turn
// ---------------------------------------------------------------------------

#[test]
fn a_host_killed_mid_turn_leaves_the_turn_interrupted_after_its_lease_and_the_speaker_retries() {
    let lease_seconds = 2;
    let lease = lease_seconds.to_string();
    let mut stack = Stack::start(&[("SPIN_VARIABLE_TURN_LEASE_SECONDS", lease.as_str())]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = panel.id.clone();
    let reply = long_reply("Alpha", 60);
    stack.fake.script(MODELS[0], reply.clone());
    stack.fake.set_token_delay(Duration::from_millis(100));

    let running = stack.advance_in_background(&panel.owner, &d);
    let (discussion, partial) = stack.wait_generating(&panel.owner, &d);
    let lease_expires = discussion["turn"]["lease_expires_at"].clone();
    assert!(lease_expires.is_string(), "{discussion:#}");
    let first_id = id_of(&partial, "message_id");

    stack.crash_and_restart();
    // The crash cut Ollama's connection: the generation was abandoned.
    wait_for("Ollama to see the generation abandoned", || {
        (stack.fake.cancelled_generations() >= 1).then_some(())
    });
    assert!(running.join().unwrap().is_err(), "the killed host answered");
    stack.fake.set_token_delay(Duration::ZERO);

    // Until the lease runs out the turn still holds; then the same speaker retries.
    let owner = Account {
        token: id_of(
            &stack.api.login(&panel.owner.username, PASSWORD),
            "access_token",
        ),
        ..panel.owner.clone()
    };
    let started = Instant::now();
    let retried = loop {
        let answer = stack.advance(&owner, &d);
        if answer.status == 201 {
            break answer.json();
        }
        answer.expect_problem(409, "turn_in_progress");
        assert!(
            started.elapsed() < Duration::from_secs(lease_seconds) + DEADLINE,
            "the dead turn's lease never ran out"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(retried["status"], "completed", "{retried:#}");
    assert_eq!(retried["turn_index"], 0, "{retried:#}");
    assert_eq!(
        retried["author"]["participant_id"], panel.seats[0]["participant_id"],
        "{retried:#}"
    );
    assert_eq!(retried["content"], reply.content());

    // The dead turn's message: interrupted, with the text it had.
    let first = stack.message(&owner, &d, &first_id);
    assert_eq!(first["status"], "interrupted", "{first:#}");
    let content = first["content"].as_str().unwrap();
    assert!(
        content.starts_with(partial["content"].as_str().unwrap())
            && reply.content().starts_with(content),
        "the partial text was not kept: {content:?}"
    );
    let stored = stack.messages(&owner, &d);
    let of_turn_0: Vec<&Value> = stored.iter().filter(|m| m["turn_index"] == 0).collect();
    assert_eq!(of_turn_0.len(), 2, "{stored:#?}");
    assert_eq!(
        of_turn_0
            .iter()
            .filter(|m| m["status"] == "completed")
            .count(),
        1,
        "{stored:#?}"
    );
    assert_eq!(stack.events(&d, "turn.interrupted").len(), 1);
    let now = stack.now(&owner, &d);
    assert_eq!(now["turn"]["index"], 1, "{now:#}");
    assert_eq!(now["turn"]["status"], "idle", "{now:#}");
    // And round-robin goes on after Alpha.
    let next = stack.turn(&owner, &d);
    assert_eq!(
        next["author"]["participant_id"],
        panel.seats[1]["participant_id"]
    );
}

// ---------------------------------------------------------------------------
// Stop conditions
// ---------------------------------------------------------------------------

#[test]
fn max_turns_token_budget_and_stop_phrase_each_complete_the_discussion_with_their_reason() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();

    let check_completed = |panel: &Panel, reason: &str| {
        let now = stack.now(&panel.owner, &panel.id);
        assert_eq!(now["status"], "completed", "{reason}: {now:#}");
        assert_eq!(now["completed_reason"], reason, "{now:#}");
        refused(&stack, &panel.owner, &panel.id, "turns", "completed");
        let changed = stack.events(&panel.id, "discussion.status_changed");
        let last = changed.last().unwrap();
        assert_eq!(last["status"], "completed", "{changed:#?}");
        assert_eq!(last["reason"], reason, "{changed:#?}");
    };

    // max_turns: 2.
    let panel = Panel::new(&stack, &admin, json!({ "stop": { "max_turns": 2 } }));
    stack.turn(&panel.owner, &panel.id);
    assert_eq!(stack.now(&panel.owner, &panel.id)["status"], "active");
    stack.turn(&panel.owner, &panel.id);
    check_completed(&panel, "max_turns");
    assert_eq!(stack.messages(&panel.owner, &panel.id).len(), 2);

    // token_budget: each turn uses 100 prompt and 5 completion tokens; 200 is
    // reached with the second turn.
    let panel = Panel::new(&stack, &admin, json!({ "stop": { "token_budget": 200 } }));
    for model in MODELS {
        stack.fake.script(
            model,
            Reply::from_text("one two three four five").with_prompt_eval_count(100),
        );
    }
    stack.turn(&panel.owner, &panel.id);
    let now = stack.now(&panel.owner, &panel.id);
    assert_eq!(
        (now["status"].clone(), now["tokens_used"].clone()),
        (json!("active"), json!(105))
    );
    stack.turn(&panel.owner, &panel.id);
    check_completed(&panel, "token_budget");
    assert_eq!(stack.now(&panel.owner, &panel.id)["tokens_used"], 210);

    // stop_phrase, ignoring case: Alpha does not say it, Beta does.
    let panel = Panel::new(
        &stack,
        &admin,
        json!({ "stop": { "stop_phrase": "The End" } }),
    );
    stack
        .fake
        .script(MODELS[1], Reply::from_text("And that is THE END of it."));
    let alpha = stack.turn(&panel.owner, &panel.id);
    assert_eq!(alpha["content"], said("Alpha"));
    assert_eq!(stack.now(&panel.owner, &panel.id)["status"], "active");
    stack.turn(&panel.owner, &panel.id);
    check_completed(&panel, "stop_phrase");
}

// ---------------------------------------------------------------------------
// The context window
// ---------------------------------------------------------------------------

#[test]
fn every_prompt_fits_the_speakers_num_ctx_and_num_ctx_is_sent() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let num_ctx = 512;
    // Replies of about a hundred cl100k tokens each (each word is one): ten of them
    // are twice the window.
    let vocabulary = [
        " the", " cat", " sat", " on", " a", " warm", " red", " mat", " and", " slept",
    ];
    let words: Vec<String> = (0..100)
        .map(|n| vocabulary[n % vocabulary.len()].to_owned())
        .collect();
    let models = ["small-a:1b", "small-b:1b"];
    let agents: Vec<Value> = ["Ann", "Bob"]
        .iter()
        .zip(models)
        .map(|(name, model)| {
            stack.fake.script(
                model,
                Reply::from_tokens(std::iter::once(format!("{name} argues:")).chain(words.clone())),
            );
            stack.agent(
                &owner,
                name,
                model,
                &format!("You are {name}, concise and clear."),
                json!({ "num_ctx": num_ctx }),
            )
        })
        .collect();
    let discussion = stack.discussion(
        &owner,
        json!({ "context_policy": { "reserve_tokens": 128 } }),
    );
    let d = id_of(&discussion, "discussion_id");
    assert_eq!(
        discussion["context_policy"],
        json!({ "max_context_tokens": null, "reserve_tokens": 128,
                "keep_recent_messages": 4, "summarize": true }),
        "{discussion:#}"
    );
    for agent in &agents {
        stack.join_agent(&owner, &d, agent);
    }
    stack.start_discussion(&owner, &d);
    let mut last = Value::Null;
    for _ in 0..10 {
        last = stack.turn(&owner, &d);
    }

    let requests = stack.generations(&models);
    assert!(requests.len() >= 10, "{requests:#?}");
    for request in &requests {
        let tokens = prompt_tokens(request);
        assert!(
            tokens <= num_ctx,
            "a prompt of {tokens} tokens for a window of {num_ctx}: {:#}",
            request.body
        );
        assert_eq!(
            request.body["options"]["num_ctx"], num_ctx,
            "{:#}",
            request.body["options"]
        );
    }
    // The last turn still heard the turn just before it. Turn prompts are those
    // with a persona whose last line is no transcript (a summary request's is).
    let turns: Vec<&Recorded> = requests
        .iter()
        .filter(|r| {
            let messages = chat_messages(r);
            let persona = messages.first().is_some_and(|m| {
                m["content"]
                    .as_str()
                    .is_some_and(|c| c.contains("concise and clear"))
            });
            let transcript = messages
                .last()
                .is_some_and(|m| m["content"].as_str().is_some_and(|c| c.contains("argues:")));
            persona && !transcript
        })
        .collect();
    assert!(
        turns.len() >= 10,
        "{} turn prompts: {requests:#?}",
        turns.len()
    );
    let final_prompt = turns.last().unwrap();
    let previous = &stack.messages(&owner, &d)[8];
    let previous_text = previous["content"].as_str().unwrap();
    assert!(
        chat_messages(final_prompt).iter().any(|m| m["content"]
            .as_str()
            .is_some_and(|c| c.contains(previous_text))),
        "the last prompt lacks the message before it: {:#}",
        final_prompt.body
    );
    assert_eq!(last["status"], "completed");
    // What no longer fits was condensed into the rolling summary.
    let context = stack
        .get(&format!("/v1/discussions/{d}/context"), &owner)
        .expect(200);
    assert!(
        context["summary"]["through_seq"]
            .as_i64()
            .is_some_and(|seq| seq > 0),
        "{context:#}"
    );
    assert!(
        context["summary"]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{context:#}"
    );
}

// ---------------------------------------------------------------------------
// Forks and exports
// ---------------------------------------------------------------------------

#[test]
fn a_fork_copies_the_history_up_to_its_message_and_exports_match_the_stored_messages() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    for _ in 0..5 {
        stack.turn(&panel.owner, d);
    }
    let original = stack.messages(&panel.owner, d);
    assert_eq!(original.len(), 5);

    let fork = stack
        .post(
            &format!("/v1/discussions/{d}/fork"),
            &panel.owner,
            &json!({ "message_id": original[2]["message_id"], "title": "What if" }),
        )
        .expect(201);
    assert_eq!(fork["status"], "draft", "{fork:#}");
    assert_eq!(fork["title"], "What if", "{fork:#}");
    assert_eq!(fork["parent_discussion_id"], d.as_str(), "{fork:#}");
    assert_eq!(
        fork["forked_from_message_id"], original[2]["message_id"],
        "{fork:#}"
    );
    assert_ne!(fork["discussion_id"], d.as_str());
    let f = id_of(&fork, "discussion_id");
    let copied = stack.messages(&panel.owner, &f);
    assert_eq!(copied.len(), 3, "{copied:#?}");
    for (copy, original) in copied.iter().zip(&original) {
        assert_ne!(copy["message_id"], original["message_id"]);
        assert_eq!(copy["discussion_id"], f.as_str());
        for key in ["seq", "content", "status", "turn_index"] {
            assert_eq!(copy[key], original[key], "{key}: {copy:#} vs {original:#}");
        }
        for key in ["kind", "agent_id", "agent_version", "name"] {
            assert_eq!(copy["author"][key], original["author"][key], "{key}");
        }
    }
    // The original is untouched.
    assert_eq!(stack.messages(&panel.owner, d), original);

    // Export as JSON: the discussion and every message, as the API shows them.
    let export = stack
        .get(
            &format!("/v1/discussions/{d}/export?format=json"),
            &panel.owner,
        )
        .expect(200);
    assert_eq!(export["messages"], json!(original));
    let discussion = stack.now(&panel.owner, d);
    assert_eq!(
        export["discussion"]["discussion_id"],
        discussion["discussion_id"]
    );
    assert_eq!(export["discussion"]["version"], discussion["version"]);
    assert_eq!(
        export["discussion"]["participants"],
        discussion["participants"]
    );

    // As Markdown: the title, the topic, then each message in order under its author.
    let markdown = stack.get(
        &format!("/v1/discussions/{d}/export?format=markdown"),
        &panel.owner,
    );
    assert_eq!(markdown.status, 200, "{}", markdown.context());
    let content_type = markdown.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/markdown"), "{content_type}");
    let text = &markdown.text;
    assert!(text.starts_with("# Tea or coffee"), "{text}");
    assert!(
        text.contains("Which is the better morning drink, tea or coffee?"),
        "{text}"
    );
    let mut at = 0;
    for message in &original {
        let heading = format!("### {} (turn ", message["author"]["name"].as_str().unwrap());
        let found = text[at..]
            .find(&heading)
            .unwrap_or_else(|| panic!("no {heading:?} after byte {at}: {text}"));
        at += found + heading.len();
        let content = message["content"].as_str().unwrap();
        let found = text[at..]
            .find(content)
            .unwrap_or_else(|| panic!("no {content:?} after byte {at}: {text}"));
        at += found + content.len();
    }
    stack
        .get(
            &format!("/v1/discussions/{d}/export?format=pdf"),
            &panel.owner,
        )
        .expect_problem(400, "validation_failed");
}

// ---------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------

#[test]
fn a_retried_create_or_turn_with_the_same_idempotency_key_does_the_work_once() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let owner = stack.api.new_user(&admin, "member");
    let body = json!({ "title": "Once", "topic": "Only once." });
    let key = [("idempotency-key", "create-once-1")];

    let first = stack.post_with("/v1/discussions", &owner, &body, &key);
    let created = first.expect(201);
    let retried = stack.post_with("/v1/discussions", &owner, &body, &key);
    assert!(
        retried.status == 201 || retried.status == 200,
        "{}",
        retried.context()
    );
    assert_eq!(retried.json()["discussion_id"], created["discussion_id"]);
    let listed = stack.get("/v1/discussions", &owner).expect(200);
    assert_eq!(items(&listed).len(), 1, "{listed:#}");
    // The same key on another request is refused.
    stack
        .post_with(
            "/v1/discussions",
            &owner,
            &json!({ "title": "Other", "topic": "Another." }),
            &key,
        )
        .expect_problem(422, "idempotency_key_reused");
    assert_eq!(
        items(&stack.get("/v1/discussions", &owner).expect(200)).len(),
        1
    );

    // A turn advanced twice with one key: one turn, the retry answers its message.
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    let turns = format!("/v1/discussions/{d}/turns");
    let key = [("idempotency-key", "turn-1")];
    let message = stack
        .post_with(&turns, &panel.owner, &json!({}), &key)
        .expect(201);
    let again = stack
        .post_with(&turns, &panel.owner, &json!({}), &key)
        .expect(200);
    assert_eq!(again["message_id"], message["message_id"], "{again:#}");
    assert_eq!(again["status"], "completed", "{again:#}");
    assert_eq!(stack.generations(&MODELS).len(), 1);
    assert_eq!(stack.messages(&panel.owner, d).len(), 1);
    assert_eq!(stack.now(&panel.owner, d)["turn"]["index"], 1);

    // A retry while the turn still runs answers the message as it is now.
    stack.fake.script(MODELS[1], long_reply("Beta", 40));
    stack.fake.set_token_delay(Duration::from_millis(50));
    let slow_key = [("idempotency-key", "turn-2")];
    let running = std::thread::scope(|scope| {
        let running = scope.spawn(|| stack.post_with(&turns, &panel.owner, &json!({}), &slow_key));
        let (_, generating) = stack.wait_generating(&panel.owner, d);
        let during = stack
            .post_with(&turns, &panel.owner, &json!({}), &slow_key)
            .expect(200);
        assert_eq!(during["message_id"], generating["message_id"], "{during:#}");
        assert_eq!(during["status"], "generating", "{during:#}");
        running.join().unwrap()
    });
    let finished = running.expect(201);
    assert_eq!(finished["status"], "completed");
    assert_eq!(stack.generations(&MODELS).len(), 2);
    assert_eq!(stack.messages(&panel.owner, d).len(), 2);

    // A human message posted twice with one key is stored once.
    stack.fake.set_token_delay(Duration::ZERO);
    let messages = format!("/v1/discussions/{d}/messages");
    let note = json!({ "content": "Just once." });
    let key = [("idempotency-key", "note-1")];
    let posted = stack
        .post_with(&messages, &panel.owner, &note, &key)
        .expect(201);
    let reposted = stack.post_with(&messages, &panel.owner, &note, &key);
    assert!(
        reposted.status == 200 || reposted.status == 201,
        "{}",
        reposted.context()
    );
    assert_eq!(reposted.json()["message_id"], posted["message_id"]);
    assert_eq!(stack.messages(&panel.owner, d).len(), 3);
}

// ---------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------

#[test]
fn who_may_read_post_and_advance_follows_ownership_visibility_and_participation() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    let path = format!("/v1/discussions/{d}");
    let bob = stack.api.new_user(&admin, "member");
    let vic = stack.api.new_user(&admin, "viewer");

    // Private: another member and a viewer see nothing of it.
    for who in [&bob, &vic] {
        stack.get(&path, who).expect_problem(404, "not_found");
        stack
            .get(&format!("{path}/messages"), who)
            .expect_problem(404, "not_found");
        stack.advance(who, d).expect_problem(404, "not_found");
        let listed = stack.get("/v1/discussions", who).expect(200);
        assert!(items(&listed).is_empty(), "{listed:#}");
    }
    // An agent the owner may not read cannot join.
    let bobs = stack.agent(&bob, "Private", "bobs:1b", "Bob's own.", json!({}));
    let problem = stack.post(
        &format!("{path}/participants"),
        &panel.owner,
        &json!({ "agent_id": bobs["agent_id"] }),
    );
    assert!(
        (400..500).contains(&problem.status),
        "{}",
        problem.context()
    );
    assert_eq!(
        stack.now(&panel.owner, d)["participants"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Shared: everyone reads it; only the owner and admins advance it.
    let version = stack.now(&panel.owner, d)["version"].clone();
    let shared = stack
        .patch(
            &path,
            &panel.owner,
            &json!({ "version": version, "visibility": "shared" }),
        )
        .expect(200);
    assert_eq!(shared["visibility"], "shared");
    for who in [&bob, &vic] {
        stack.get(&path, who).expect(200);
        assert_eq!(
            items(&stack.get("/v1/discussions", who).expect(200)).len(),
            1
        );
        stack.advance(who, d).expect_problem(403, "forbidden");
        stack
            .post_empty(&format!("{path}/pause"), who)
            .expect_problem(403, "forbidden");
        post_message(&stack, who, d, "Not mine to say.").expect_problem(403, "forbidden");
    }
    // A viewer may not fork, a member may (the agents shared, so he may use them).
    for agent in &panel.agents {
        stack
            .patch(
                &format!("/v1/agents/{}", id_of(agent, "agent_id")),
                &panel.owner,
                &json!({ "version": 1, "visibility": "shared" }),
            )
            .expect(200);
    }
    let first = stack.turn(&panel.owner, d);
    let fork = json!({ "message_id": first["message_id"] });
    stack
        .post(&format!("{path}/fork"), &vic, &fork)
        .expect_problem(403, "forbidden");
    let forked = stack.post(&format!("{path}/fork"), &bob, &fork).expect(201);
    assert_eq!(forked["owner_id"], bob.id.as_str(), "{forked:#}");

    // Private again, with Bob taking part: he reads it and posts, but does not advance.
    let version = stack.now(&panel.owner, d)["version"].clone();
    stack
        .patch(
            &path,
            &panel.owner,
            &json!({ "version": version, "visibility": "private" }),
        )
        .expect(200);
    stack.join_user(&panel.owner, d, &bob);
    stack.get(&path, &bob).expect(200);
    let posted = post_message(&stack, &bob, d, "I take part.").expect(201);
    assert_eq!(posted["author"]["user_id"], bob.id.as_str());
    stack.advance(&bob, d).expect_problem(403, "forbidden");
    stack
        .post_empty(&format!("{path}/turns/current/cancel"), &bob)
        .expect_problem(403, "forbidden");
    stack.get(&path, &vic).expect_problem(404, "not_found");
    // An admin advances anyone's discussion.
    let by_admin = stack.advance(&admin, d).expect(201);
    assert_eq!(
        by_admin["turn_index"], 2,
        "after a turn and Bob's message: {by_admin}"
    );
    assert_eq!(stack.messages(&panel.owner, d).len(), 3);
    // Viewers create nothing.
    stack
        .post(
            "/v1/discussions",
            &vic,
            &json!({ "title": "t", "topic": "t" }),
        )
        .expect_problem(403, "forbidden");
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_input_is_4xx_naming_the_field_and_changes_nothing() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let panel = Panel::new(&stack, &admin, json!({}));
    let d = &panel.id;
    let owner = &panel.owner;
    let before = stack.now(owner, d);
    let events_before = stack.count("select 1 from events where stream = 'discussion:' || $1", d);

    // Creating: unknown fields, out-of-range settings, bad names.
    let base = json!({ "title": "t", "topic": "t" });
    for (extra, field) in [
        (json!({ "colour": "red" }), "colour"),
        (json!({ "title": "" }), "title"),
        (json!({ "turn_strategy": "random" }), "turn_strategy"),
        (json!({ "mid_turn_input": "shout" }), "mid_turn_input"),
        (json!({ "visibility": "public" }), "visibility"),
        (json!({ "stop": { "max_turns": 0 } }), "stop.max_turns"),
        (
            json!({ "stop": { "token_budget": 0 } }),
            "stop.token_budget",
        ),
        (json!({ "stop": { "stop_phrase": "" } }), "stop.stop_phrase"),
        (
            json!({ "stop": { "max_turns": 1, "turns": 2 } }),
            "stop.turns",
        ),
        (
            json!({ "context_policy": { "reserve_tokens": 70000 } }),
            "context_policy.reserve_tokens",
        ),
        (
            json!({ "context_policy": { "max_context_tokens": 100 } }),
            "context_policy.max_context_tokens",
        ),
        (
            json!({ "context_policy": { "keep_recent_messages": 101 } }),
            "context_policy.keep_recent_messages",
        ),
    ] {
        let mut body = base.clone();
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let problem = stack
            .post("/v1/discussions", owner, &body)
            .expect_problem(400, "validation_failed");
        assert_eq!(field_errors(&problem), [field], "{body}: {problem}");
    }
    let listed = stack.get("/v1/discussions", owner).expect(200);
    assert_eq!(
        items(&listed).len(),
        1,
        "a bad create made something: {listed:#}"
    );

    // Bad ids in paths and bodies.
    stack
        .get("/v1/discussions/not-a-uuid", owner)
        .expect_problem(400, "validation_failed");
    stack
        .get(&format!("/v1/discussions/{d}/messages/nope"), owner)
        .expect_problem(400, "validation_failed");
    stack
        .get(
            "/v1/discussions/01936c4e-7c1a-7d2b-8e3f-4a5b6c7d8e9f",
            owner,
        )
        .expect_problem(404, "not_found");
    let problem = stack
        .post(
            &format!("/v1/discussions/{d}/participants"),
            owner,
            &json!({ "agent_id": "x" }),
        )
        .expect_problem(400, "validation_failed");
    assert_eq!(field_errors(&problem), ["agent_id"], "{problem}");
    let problem = stack
        .post(
            &format!("/v1/discussions/{d}/fork"),
            owner,
            &json!({ "message_id": "x" }),
        )
        .expect_problem(400, "validation_failed");
    assert_eq!(field_errors(&problem), ["message_id"], "{problem}");
    for (query, field) in [
        ("?status=bogus", "status"),
        ("?limit=0", "limit"),
        ("?owner_id=x", "owner_id"),
    ] {
        let problem = stack
            .get(&format!("/v1/discussions{query}"), owner)
            .expect_problem(400, "validation_failed");
        assert_eq!(field_errors(&problem), [field], "{query}: {problem}");
    }

    // Generation parameters out of range: 422 naming them.
    let extra = stack.agent(owner, "Delta", "delta:1b", "Delta.", json!({}));
    let problem = stack
        .post(
            &format!("/v1/discussions/{d}/participants"),
            owner,
            &json!({ "agent_id": extra["agent_id"], "parameters": { "temperature": 5, "top_p": 0.5 } }),
        )
        .expect_problem(422, "invalid_parameters");
    let fields = field_errors(&problem);
    assert!(
        fields.len() == 1 && fields[0].ends_with("temperature"),
        "{problem}"
    );
    // The same agent twice.
    stack
        .post(
            &format!("/v1/discussions/{d}/participants"),
            owner,
            &json!({ "agent_id": panel.agents[0]["agent_id"] }),
        )
        .expect_problem(409, "conflict");

    // Updates: a version is required, a stale one is 409 naming the current one.
    let path = format!("/v1/discussions/{d}");
    stack
        .patch(&path, owner, &json!({ "title": "No version" }))
        .expect_problem(400, "validation_failed");
    let problem = stack
        .patch(&path, owner, &json!({ "version": 99, "title": "Stale" }))
        .expect_problem(409, "conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&before["version"].to_string()),
        "{problem}"
    );
    let problem = stack
        .patch(
            &path,
            owner,
            &json!({ "version": before["version"], "stop": { "max_turns": -1 } }),
        )
        .expect_problem(400, "validation_failed");
    assert_eq!(field_errors(&problem), ["stop.max_turns"], "{problem}");
    // Messages: empty content, unknown fields.
    let problem = post_message(&stack, owner, d, "").expect_problem(400, "validation_failed");
    assert_eq!(field_errors(&problem), ["content"], "{problem}");
    stack
        .post(
            &format!("/v1/discussions/{d}/messages"),
            owner,
            &json!({ "content": "x", "role": "system" }),
        )
        .expect_problem(400, "validation_failed");
    // The context: a stale version.
    let context = stack.get(&format!("{path}/context"), owner).expect(200);
    let stale = context["version"].as_i64().unwrap() + 1;
    stack
        .api
        .json(
            Method::PUT,
            &format!("{path}/context"),
            Some(&owner.token),
            &json!({ "version": stale, "document": { "x": 1 } }),
        )
        .expect_problem(409, "conflict");
    // Turns: unknown fields.
    stack
        .post(
            &format!("{path}/turns"),
            owner,
            &json!({ "speaker": "Alpha" }),
        )
        .expect_problem(400, "validation_failed");

    // None of it changed anything.
    let after = stack.now(owner, d);
    assert_eq!(after, before);
    assert!(stack.messages(owner, d).is_empty());
    assert_eq!(
        stack.get(&format!("{path}/context"), owner).expect(200),
        context
    );
    assert_eq!(
        stack.count("select 1 from events where stream = 'discussion:' || $1", d),
        events_before
    );
    assert!(stack.generations(&MODELS).is_empty());
}
