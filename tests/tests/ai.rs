//! The AI component end to end: the `ai` component and the auth middleware of the real
//! `spin.toml`, run by `arena up` against a fresh database per test and a fake Ollama
//! (`arena-fake-ollama`, Ollama's real HTTP API with deterministic replies, delays and
//! faults), driven over HTTP as a client would.
//!
//! Without a script the fake answers `"You said: <last user message>"` in word tokens
//! and reports the words of every message as `prompt_eval_count`, so each test can
//! predict the reply and its token counts; usage is checked in `model_calls` directly.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arena_e2e::api::{
    self, ADMIN, ADMIN_PASSWORD, Client, PASSWORD, Response, field_errors, items,
};
use arena_e2e::sse::{self, Event, Events};
use arena_e2e::{Arena, TestDatabase};
use arena_fake_ollama::{
    DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, FakeOllama, Fault, Model, Reply,
};
use reqwest::Method;
use serde_json::{Value, json};

/// `ollama_timeout_seconds` for every test: a stalled Ollama fails fast.
const OLLAMA_TIMEOUT_SECS: u64 = 2;

/// What the fake's embedding model returns.
const EMBEDDING_DIMENSIONS: usize = 384;

// ---------------------------------------------------------------------------
// The harness of this file
// ---------------------------------------------------------------------------

/// `arena up` on spin.toml with a database of its own, pointed at a fake Ollama of its
/// own. Fields drop in order: the arena is killed before the database and the fake go.
struct Stack {
    arena: Arena,
    db: TestDatabase,
    fake: FakeOllama,
    api: Client,
}

/// A user the test created, logged in.
struct Account {
    id: String,
    token: String,
}

impl Stack {
    /// A fake Ollama, and `arena up` pointed at it with the standard settings of
    /// [`api::start`], then `env` (which may override any of it).
    fn start(env: &[(&str, &str)]) -> Stack {
        let fake = FakeOllama::start();
        let db = TestDatabase::create();
        let url = fake.url();
        let host = fake.address().to_string();
        let timeout = OLLAMA_TIMEOUT_SECS.to_string();
        let ollama = [
            ("SPIN_VARIABLE_OLLAMA_URL", url.as_str()),
            ("SPIN_VARIABLE_OLLAMA_HOST", host.as_str()),
            ("SPIN_VARIABLE_OLLAMA_TIMEOUT_SECONDS", timeout.as_str()),
        ];
        let arena = api::start(&db, &ollama, env);
        let api = Client::new(&arena);
        Stack {
            arena,
            db,
            fake,
            api,
        }
    }

    fn get(&self, path: &str, bearer: &str) -> Response {
        self.api.get(path, Some(bearer))
    }

    fn delete(&self, path: &str, bearer: &str) -> Response {
        self.api.delete(path, Some(bearer))
    }

    fn post(&self, path: &str, bearer: &str, body: &Value) -> Response {
        self.api.post(path, Some(bearer), body)
    }

    /// `POST path` asking for an event stream; the stream, once the status is 200.
    #[track_caller]
    fn events(&self, path: &str, bearer: &str, body: &Value) -> Events {
        sse::post(&self.api, path, Some(bearer), body)
    }

    /// A password grant that must succeed; the access token.
    #[track_caller]
    fn login(&self, username: &str, password: &str) -> String {
        self.api.login(username, password)["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The configured admin, logged in.
    #[track_caller]
    fn admin(&self) -> Account {
        let token = self.login(ADMIN, ADMIN_PASSWORD);
        let me = self.get("/v1/auth/me", &token).expect(200);
        let id = me["user"]["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no user_id in /v1/auth/me: {me}"))
            .to_owned();
        Account { id, token }
    }

    /// A new user with `role`, created by `admin`, logged in.
    #[track_caller]
    fn new_user(&self, admin: &Account, role: &str) -> Account {
        let (username, user) = self.api.create_user(&admin.token, role);
        Account {
            id: user["user_id"].as_str().unwrap().to_owned(),
            token: self.login(&username, PASSWORD),
        }
    }

    /// `POST /v1/ai/chat` (not streamed).
    fn chat(&self, bearer: &str, body: &Value) -> Response {
        self.post("/v1/ai/chat", bearer, body)
    }

    /// Every row of `model_calls`, oldest first.
    fn calls(&self) -> Vec<Call> {
        self.db
            .connect()
            .query(
                "select status, kind, model, user_id::text, agent_id::text,
                        discussion_id::text, prompt_tokens, completion_tokens,
                        first_token_ms, duration_ms, error, finished_at is not null
                 from model_calls order by started_at, model_call_id",
                &[],
            )
            .unwrap()
            .into_iter()
            .map(|row| Call {
                status: row.get(0),
                kind: row.get(1),
                model: row.get(2),
                user_id: row.get(3),
                agent_id: row.get(4),
                discussion_id: row.get(5),
                prompt_tokens: row.get(6),
                completion_tokens: row.get(7),
                first_token_ms: row.get(8),
                duration_ms: row.get(9),
                error: row.get(10),
                finished: row.get(11),
            })
            .collect()
    }

    /// Waits up to `timeout` for `model_calls` to satisfy `predicate`; the rows then,
    /// or a panic naming `what` and the rows last seen.
    #[track_caller]
    fn wait_for_calls(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&[Call]) -> bool,
    ) -> Vec<Call> {
        let started = Instant::now();
        loop {
            let calls = self.calls();
            if predicate(&calls) {
                return calls;
            }
            if started.elapsed() > timeout {
                panic!("{what}: not within {timeout:?}; model_calls: {calls:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A row of `model_calls`.
#[derive(Debug, Clone)]
#[allow(dead_code, reason = "every column is shown when an assertion fails")]
struct Call {
    status: String,
    kind: String,
    model: String,
    user_id: String,
    agent_id: Option<String>,
    discussion_id: Option<String>,
    prompt_tokens: i32,
    completion_tokens: i32,
    first_token_ms: Option<f64>,
    duration_ms: Option<f64>,
    error: Option<String>,
    finished: bool,
}

/// A chat body of one user message for the fake's chat model.
fn say(text: &str) -> Value {
    json!({
        "model": DEFAULT_CHAT_MODEL,
        "messages": [{ "role": "user", "content": text }],
    })
}

/// The fake's word count, which is also its `prompt_eval_count` for a prompt.
fn words(text: &str) -> i64 {
    text.split_whitespace().count() as i64
}

/// The model named `name` among `models`.
#[track_caller]
fn named<'a>(models: &'a [Value], name: &str) -> &'a Value {
    models
        .iter()
        .find(|model| model["name"] == name)
        .unwrap_or_else(|| panic!("no model {name} among {models:#?}"))
}

/// How many chat requests reached the fake.
fn chats_received(fake: &FakeOllama) -> usize {
    fake.requests()
        .iter()
        .filter(|request| request.path == "/api/chat")
        .count()
}

/// Today's UTC date plus `days`, as `YYYY-MM-DD`, and the seconds until its midnight.
fn utc_date_in(days: u64) -> (String, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = now / 86_400 + days;
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        (day * 86_400).saturating_sub(now),
    )
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

#[test]
fn the_model_list_shows_ollamas_models_with_their_details_and_one_is_found_by_name() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let viewer = stack.new_user(&admin, "viewer");

    // Nobody unknown may look; anyone signed in may, a viewer too.
    for path in ["/v1/ai/models", "/v1/ai/status", "/v1/ai/usage"] {
        let answer = stack.arena.get(path);
        assert_eq!(answer.status(), 401, "{path}");
    }
    let list = stack.get("/v1/ai/models", &viewer.token).expect(200);
    let models = items(&list);
    assert_eq!(models.len(), 2, "{list}");
    let chat = named(&models, DEFAULT_CHAT_MODEL);
    assert_eq!(chat["family"], "llama", "{chat}");
    assert_eq!(chat["parameter_size"], "1.2B", "{chat}");
    assert_eq!(chat["quantization"], "Q8_0", "{chat}");
    assert_eq!(chat["context_length"], 131_072, "{chat}");
    assert_eq!(chat["capabilities"], json!(["completion"]), "{chat}");
    assert_eq!(chat["size"], 1_321_098_329u64, "{chat}");
    let embedding = named(&models, DEFAULT_EMBEDDING_MODEL);
    assert_eq!(embedding["family"], "bert", "{embedding}");
    assert_eq!(embedding["parameter_size"], "23M", "{embedding}");
    assert_eq!(embedding["quantization"], "F16", "{embedding}");
    assert_eq!(embedding["context_length"], 512, "{embedding}");
    assert_eq!(
        embedding["capabilities"],
        json!(["embedding"]),
        "{embedding}"
    );

    // One by name: the same details; the colon may come percent-encoded, and a name
    // without a tag means `:latest`.
    let one = stack
        .get(
            &format!("/v1/ai/models/{DEFAULT_CHAT_MODEL}"),
            &viewer.token,
        )
        .expect(200);
    assert_eq!(&one, chat);
    let encoded = stack
        .get("/v1/ai/models/llama3.2%3A1b", &viewer.token)
        .expect(200);
    assert_eq!(encoded["name"], DEFAULT_CHAT_MODEL, "{encoded}");
    let untagged = stack
        .get("/v1/ai/models/all-minilm", &viewer.token)
        .expect(200);
    assert_eq!(untagged["name"], DEFAULT_EMBEDDING_MODEL, "{untagged}");
    assert_eq!(untagged["context_length"], 512, "{untagged}");

    // A model Ollama lacks: 404 naming it.
    let missing = stack
        .get("/v1/ai/models/nosuch:7b", &viewer.token)
        .expect_problem(404, "not_found");
    assert!(
        missing["detail"].as_str().unwrap().contains("nosuch:7b"),
        "{missing}"
    );

    // A model installed meanwhile shows up at once: the list is Ollama's, not a copy.
    stack.fake.add_model(Model::chat("qwen3:0.6b"));
    let list = stack.get("/v1/ai/models", &viewer.token).expect(200);
    assert_eq!(items(&list).len(), 3, "{list}");
    named(&items(&list), "qwen3:0.6b");
}

#[test]
fn a_viewer_cannot_pull_or_delete_models_or_chat_but_an_admin_pulls_and_deletes() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let viewer = stack.new_user(&admin, "viewer");
    let member = stack.new_user(&admin, "member");
    stack.fake.add_pullable(Model::chat("qwen3:0.6b"));
    let pull = json!({ "model": "qwen3:0.6b" });

    for who in [&viewer, &member] {
        stack
            .post("/v1/ai/models/pull", &who.token, &pull)
            .expect_problem(403, "forbidden");
        stack
            .delete(&format!("/v1/ai/models/{DEFAULT_CHAT_MODEL}"), &who.token)
            .expect_problem(403, "forbidden");
    }
    stack
        .chat(&viewer.token, &say("hello"))
        .expect_problem(403, "forbidden");
    stack
        .post(
            "/v1/ai/embeddings",
            &viewer.token,
            &json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": "hello" }),
        )
        .expect_problem(403, "forbidden");
    // None of it reached Ollama, and nothing changed there.
    let reached: Vec<String> = stack
        .fake
        .requests()
        .iter()
        .map(|request| request.path.clone())
        .collect();
    assert!(
        !reached.iter().any(
            |path| ["/api/pull", "/api/delete", "/api/chat", "/api/embed"].contains(&path.as_str())
        ),
        "{reached:?}"
    );
    assert!(stack.calls().is_empty(), "{:#?}", stack.calls());

    // The admin pulls: progress events as Ollama reports them, then done.
    let events = stack
        .events("/v1/ai/models/pull", &admin.token, &pull)
        .rest();
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{events:#?}");
    assert_eq!(
        events.last().unwrap().data["model"],
        "qwen3:0.6b",
        "{events:#?}"
    );
    let progress: Vec<&Event> = events
        .iter()
        .filter(|event| event.name == "progress")
        .collect();
    assert_eq!(progress.len(), events.len() - 1, "{events:#?}");
    assert!(progress.len() >= 3, "{events:#?}");
    assert_eq!(
        progress[0].data["status"], "pulling manifest",
        "{events:#?}"
    );
    assert!(
        progress
            .iter()
            .any(|event| event.data["completed"].as_u64().is_some()
                && event.data["total"].as_u64().is_some()),
        "no byte counts: {events:#?}"
    );
    assert_eq!(
        progress.last().unwrap().data["status"],
        "success",
        "{events:#?}"
    );
    let ids: Vec<u64> = events
        .iter()
        .map(|event| {
            event
                .id
                .as_deref()
                .expect("every event has an id")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let list = stack.get("/v1/ai/models", &viewer.token).expect(200);
    let pulled = named(&items(&list), "qwen3:0.6b").clone();
    assert_eq!(pulled["family"], "llama", "{pulled}");

    // A pull of what the registry lacks ends with an error event.
    let events = stack
        .events(
            "/v1/ai/models/pull",
            &admin.token,
            &json!({ "model": "nosuch:1b" }),
        )
        .rest();
    let last = events.last().unwrap_or_else(|| panic!("no events"));
    assert_eq!(last.name, "error", "{events:#?}");
    assert_eq!(last.data["code"], "upstream_unavailable", "{events:#?}");
    assert!(
        last.data["detail"].as_str().unwrap().contains("nosuch:1b"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|event| event.name == "done"),
        "{events:#?}"
    );

    // The admin deletes: 204, then it is gone from the list and from Ollama.
    stack
        .delete("/v1/ai/models/qwen3:0.6b", &admin.token)
        .expect(204);
    let list = stack.get("/v1/ai/models", &viewer.token).expect(200);
    assert!(
        !items(&list)
            .iter()
            .any(|model| model["name"] == "qwen3:0.6b"),
        "{list}"
    );
    stack
        .get("/v1/ai/models/qwen3:0.6b", &viewer.token)
        .expect_problem(404, "not_found");
    let again = stack
        .delete("/v1/ai/models/qwen3:0.6b", &admin.token)
        .expect_problem(404, "not_found");
    assert!(
        again["detail"].as_str().unwrap().contains("qwen3:0.6b"),
        "{again}"
    );
}

// ---------------------------------------------------------------------------
// Chat
// ---------------------------------------------------------------------------

#[test]
fn a_streamed_chat_sends_each_token_as_the_model_produces_it() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    // A first call, so what follows times the stream rather than a cold start.
    stack.chat(&member.token, &say("warm up")).expect(200);

    let reply = Reply::from_text("one two three four five six seven eight");
    let delay = Duration::from_millis(200);
    let produced_in = delay * reply.tokens.len() as u32;
    stack.fake.script(DEFAULT_CHAT_MODEL, reply.clone());
    stack.fake.set_token_delay(delay);
    let question = "Count to eight, please";
    let body = json!({
        "model": DEFAULT_CHAT_MODEL,
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": question },
        ],
        "stream": true,
    });
    let events = stack.events("/v1/ai/chat", &member.token, &body).rest();

    let tokens: Vec<&Event> = events
        .iter()
        .filter(|event| event.name == "token")
        .collect();
    assert_eq!(tokens.len(), reply.tokens.len(), "{events:#?}");
    let text: String = tokens
        .iter()
        .map(|event| event.data["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, reply.content());
    // Real streaming: the first token came long before the model could have finished,
    // and the tokens came spread out at the model's pace, not all at once at the end.
    let first = tokens[0].at;
    let last = tokens.last().unwrap().at;
    assert!(
        first + 3 * delay < produced_in,
        "the first token came after {first:?}; the whole reply takes {produced_in:?}"
    );
    assert!(
        last - first >= delay * (reply.tokens.len() as u32 - 3),
        "the tokens came within {:?} of each other",
        last - first
    );

    // Then `done`, once and last, with Ollama's counts.
    let done = events.last().unwrap();
    assert_eq!(done.name, "done", "{events:#?}");
    assert_eq!(
        events.iter().filter(|event| event.name == "done").count(),
        1
    );
    assert!(done.data.get("message").is_none(), "{done:?}");
    assert_eq!(done.data["model"], DEFAULT_CHAT_MODEL);
    assert_eq!(done.data["done_reason"], "stop");
    let prompt_tokens = words("You are terse.") + words(question);
    let usage = &done.data["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_tokens, "{usage}");
    assert_eq!(usage["completion_tokens"], reply.tokens.len(), "{usage}");
    assert_eq!(
        usage["total_tokens"],
        prompt_tokens + reply.tokens.len() as i64,
        "{usage}"
    );
    let timings = &done.data["timings"];
    let first_token_ms = timings["first_token_ms"].as_f64().unwrap();
    let total_ms = timings["total_ms"].as_f64().unwrap();
    assert!(
        first_token_ms > 0.0 && first_token_ms < total_ms,
        "{timings}"
    );
    assert!(
        total_ms >= produced_in.as_millis() as f64 * 0.9,
        "{timings}"
    );
    assert!(
        timings["tokens_per_second"].as_f64().unwrap() > 0.0,
        "{timings}"
    );

    // Every event has an id, counting up.
    let ids: Vec<u64> = events
        .iter()
        .map(|event| {
            event
                .id
                .as_deref()
                .expect("every event has an id")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    // Recorded: the member's call, succeeded with the same counts.
    let calls = stack.calls();
    let call = calls.last().unwrap();
    assert_eq!(call.status, "succeeded", "{call:?}");
    assert_eq!(call.user_id, member.id);
    assert_eq!(i64::from(call.prompt_tokens), prompt_tokens, "{call:?}");
    assert_eq!(
        call.completion_tokens as usize,
        reply.tokens.len(),
        "{call:?}"
    );
}

#[test]
fn a_chat_not_streamed_answers_the_whole_message_and_records_its_usage() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    let agent_id = "01936c4e-7c1a-7d2b-8e3f-4a5b6c7d8e9f";
    let body = json!({
        "model": DEFAULT_CHAT_MODEL,
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": "hello there friend" },
        ],
        "options": { "temperature": 0.2, "top_p": 0.9, "seed": 7, "stop": ["zzz"] },
        "agent_id": agent_id,
    });
    let answer = stack.chat(&member.token, &body).expect(200);
    assert_eq!(answer["model"], DEFAULT_CHAT_MODEL, "{answer}");
    assert_eq!(
        answer["message"],
        json!({ "role": "assistant", "content": "You said: hello there friend" })
    );
    assert_eq!(answer["done_reason"], "stop", "{answer}");
    let prompt_tokens = words("Be brief.") + words("hello there friend");
    let completion_tokens = words("You said: hello there friend");
    assert_eq!(
        answer["usage"],
        json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        })
    );
    let timings = &answer["timings"];
    for field in [
        "first_token_ms",
        "total_ms",
        "load_ms",
        "prompt_eval_ms",
        "eval_ms",
    ] {
        assert!(
            timings[field].as_f64().is_some_and(|ms| ms >= 0.0),
            "{field}: {timings}"
        );
    }

    // The options reached Ollama, with the deployment's token bound added.
    let sent = stack
        .fake
        .requests()
        .into_iter()
        .rfind(|request| request.path == "/api/chat")
        .unwrap();
    let options = &sent.body["options"];
    assert_eq!(options["seed"], 7, "{options}");
    assert_eq!(options["stop"], json!(["zzz"]), "{options}");
    assert_eq!(options["num_predict"], 4096, "{options}");

    // `Accept: application/json` is no stream either.
    let plain = stack.api.send(
        Method::POST,
        "/v1/ai/chat",
        Some(&member.token),
        Some((
            "application/json",
            serde_json::to_vec(&say("again")).unwrap(),
        )),
        &[("accept", "application/json")],
    );
    assert_eq!(plain.expect(200)["message"]["content"], "You said: again");

    let calls = stack.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.status, "succeeded", "{call:?}");
    assert_eq!(call.kind, "chat");
    assert_eq!(call.model, DEFAULT_CHAT_MODEL);
    assert_eq!(call.user_id, member.id);
    assert_eq!(call.agent_id.as_deref(), Some(agent_id));
    assert_eq!(call.discussion_id, None);
    assert_eq!(i64::from(call.prompt_tokens), prompt_tokens, "{call:?}");
    assert_eq!(
        i64::from(call.completion_tokens),
        completion_tokens,
        "{call:?}"
    );
    assert!(
        call.finished && call.duration_ms.is_some() && call.error.is_none(),
        "{call:?}"
    );
    assert!(call.first_token_ms.is_some(), "{call:?}");

    // An admin may chat too.
    stack.chat(&admin.token, &say("hi")).expect(200);
    assert_eq!(stack.calls().last().unwrap().user_id, admin.id);
}

#[test]
fn a_chat_with_a_model_ollama_lacks_is_404_naming_it() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    let mut body = say("hello");
    body["model"] = json!("nosuch:13b");
    let problem = stack
        .chat(&member.token, &body)
        .expect_problem(404, "not_found");
    assert!(
        problem["detail"].as_str().unwrap().contains("nosuch:13b"),
        "{problem}"
    );
    body["stream"] = json!(true);
    let problem = stack
        .chat(&member.token, &body)
        .expect_problem(404, "not_found");
    assert!(
        problem["detail"].as_str().unwrap().contains("nosuch:13b"),
        "{problem}"
    );
    let calls = stack.calls();
    assert!(
        calls.iter().all(|call| call.status == "failed"),
        "{calls:#?}"
    );
}

#[test]
fn ollama_down_is_503_at_once_and_ollama_stalled_is_503_after_the_timeout() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    stack.chat(&member.token, &say("warm up")).expect(200);

    stack.fake.set_fault(Fault::Refuse);
    let started = Instant::now();
    let answer = stack.chat(&member.token, &say("anyone there?"));
    let took = started.elapsed();
    answer.expect_problem(503, "upstream_unavailable");
    assert!(
        answer.header("retry-after").is_some(),
        "{}",
        answer.context()
    );
    assert!(
        took < Duration::from_secs(OLLAMA_TIMEOUT_SECS),
        "took {took:?}"
    );
    let mut streamed = say("anyone there?");
    streamed["stream"] = json!(true);
    stack
        .chat(&member.token, &streamed)
        .expect_problem(503, "upstream_unavailable");

    stack.fake.set_fault(Fault::Stall);
    let started = Instant::now();
    let answer = stack.chat(&member.token, &say("still there?"));
    let took = started.elapsed();
    answer.expect_problem(503, "upstream_unavailable");
    let timeout = Duration::from_secs(OLLAMA_TIMEOUT_SECS);
    assert!(
        took >= timeout - Duration::from_millis(100) && took < timeout * 4,
        "took {took:?}"
    );
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{}",
        answer.context()
    );

    // Ollama back: chats work again.
    stack.fake.clear_fault();
    stack.chat(&member.token, &say("back?")).expect(200);

    let calls = stack.calls();
    let statuses: Vec<&str> = calls.iter().map(|call| call.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["succeeded", "failed", "failed", "failed", "succeeded"],
        "{calls:#?}"
    );
    assert!(
        calls
            .iter()
            .filter(|call| call.status == "failed")
            .all(|call| call.error.is_some() && call.finished),
        "{calls:#?}"
    );
}

#[test]
fn a_stream_cut_midway_ends_with_an_error_event_and_is_recorded_as_failed() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    stack
        .fake
        .script(DEFAULT_CHAT_MODEL, Reply::from_text("a b c d e f g h"));
    stack.fake.set_fault(Fault::CutAfter(3));
    // Streamed because the client accepts `text/event-stream` (no `"stream": true`).
    let events = stack
        .events("/v1/ai/chat", &member.token, &say("tell me"))
        .rest();
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    assert_eq!(names, ["token", "token", "token", "error"], "{events:#?}");
    let text: String = events[..3]
        .iter()
        .map(|event| event.data["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "a b c");
    let error = &events[3].data;
    assert_eq!(error["code"], "upstream_unavailable", "{error}");
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()),
        "{error}"
    );

    let calls = stack.wait_for_calls("the cut call recorded", Duration::from_secs(5), |calls| {
        calls.iter().any(|call| call.finished)
    });
    let call = &calls[0];
    assert_eq!(call.status, "failed", "{call:?}");
    assert_eq!(call.completion_tokens, 3, "{call:?}");
    assert!(call.error.is_some(), "{call:?}");

    // Not streamed, a cut answer is a 503, also recorded as failed.
    let answer = stack.chat(&member.token, &say("tell me"));
    answer.expect_problem(503, "upstream_unavailable");
    let calls = stack.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[1].status, "failed", "{calls:#?}");
}

#[test]
fn a_client_that_disconnects_mid_stream_stops_the_generation() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    let long: Vec<String> = (0..40).map(|n| format!(" w{n}")).collect();
    stack
        .fake
        .script(DEFAULT_CHAT_MODEL, Reply::from_tokens(long));
    stack.fake.set_token_delay(Duration::from_millis(200));
    let mut body = say("go on and on");
    body["stream"] = json!(true);
    let mut events = stack.events("/v1/ai/chat", &member.token, &body);
    let first = events.next().expect("a first event");
    assert_eq!(first.name, "token", "{first:?}");
    drop(events);

    // Ollama is told (its connection closes) well before the 8 s the reply would take.
    let started = Instant::now();
    while stack.fake.cancelled_generations() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the generation went on after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stack.fake.completed_generations(), 0);
    let calls = stack.wait_for_calls(
        "the call recorded as cancelled",
        Duration::from_secs(5),
        |calls| calls.iter().any(|call| call.status != "running"),
    );
    let call = &calls[0];
    assert_eq!(call.status, "cancelled", "{call:?}");
    assert!(
        call.completion_tokens >= 1 && call.completion_tokens < 40,
        "{call:?}"
    );
}

#[test]
fn out_of_range_parameters_and_the_deployments_policy_are_422_naming_the_field() {
    let stack = Stack::start(&[
        ("SPIN_VARIABLE_ALLOWED_MODELS", "llama3.2:1b, all-minilm"),
        ("SPIN_VARIABLE_MAX_TOKENS_PER_REQUEST", "64"),
    ]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    let with_options = |options: Value| {
        let mut body = say("hi");
        body["options"] = options;
        body
    };

    let problem = stack
        .chat(&member.token, &with_options(json!({ "temperature": 2.5 })))
        .expect_problem(422, "invalid_parameters");
    assert_eq!(field_errors(&problem), ["options.temperature"], "{problem}");
    let problem = stack
        .chat(
            &member.token,
            &with_options(json!({
                "temperature": -0.1, "top_p": 1.5, "top_k": 5000, "repeat_penalty": 3.0,
                "num_ctx": 16,
            })),
        )
        .expect_problem(422, "invalid_parameters");
    let mut fields = field_errors(&problem);
    fields.sort();
    assert_eq!(
        fields,
        [
            "options.num_ctx",
            "options.repeat_penalty",
            "options.temperature",
            "options.top_k",
            "options.top_p",
        ],
        "{problem}"
    );
    // Streamed or not, the checks come first.
    let mut streamed = with_options(json!({ "top_p": 2.0 }));
    streamed["stream"] = json!(true);
    let problem = stack
        .chat(&member.token, &streamed)
        .expect_problem(422, "invalid_parameters");
    assert_eq!(field_errors(&problem), ["options.top_p"], "{problem}");

    // The policy: the token ceiling and the allowed models.
    let problem = stack
        .chat(&member.token, &with_options(json!({ "num_predict": 65 })))
        .expect_problem(422, "invalid_parameters");
    assert_eq!(field_errors(&problem), ["options.num_predict"], "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("64"),
        "{problem}"
    );
    let mut other_model = say("hi");
    other_model["model"] = json!("qwen3:8b");
    let problem = stack
        .chat(&member.token, &other_model)
        .expect_problem(422, "invalid_parameters");
    assert_eq!(field_errors(&problem), ["model"], "{problem}");
    let problem = stack
        .post(
            "/v1/ai/embeddings",
            &member.token,
            &json!({ "model": "nomic-embed-text", "input": "hi" }),
        )
        .expect_problem(422, "invalid_parameters");
    assert_eq!(field_errors(&problem), ["model"], "{problem}");

    // A body of the wrong shape is 400.
    let bad_shapes = [
        (
            json!({ "messages": [{ "role": "user", "content": "hi" }] }),
            None,
        ),
        (
            json!({ "model": DEFAULT_CHAT_MODEL, "messages": [{ "role": "user", "content": "hi" }], "temprature": 1 }),
            None,
        ),
        (
            json!({ "model": DEFAULT_CHAT_MODEL, "messages": [{ "role": "wizard", "content": "hi" }] }),
            Some("messages[0].role"),
        ),
        (
            json!({ "model": DEFAULT_CHAT_MODEL, "messages": [] }),
            Some("messages"),
        ),
        (with_options(json!({ "temperature": "hot" })), None),
        (with_options(json!({ "creativity": 11 })), None),
    ];
    for (body, field) in bad_shapes {
        let problem = stack
            .chat(&member.token, &body)
            .expect_problem(400, "validation_failed");
        if let Some(field) = field {
            assert_eq!(field_errors(&problem), [field], "{body}: {problem}");
        }
    }

    // None of it reached Ollama or was recorded.
    assert_eq!(
        chats_received(&stack.fake),
        0,
        "{:?}",
        stack.fake.requests()
    );
    assert!(stack.calls().is_empty(), "{:#?}", stack.calls());

    // Within the policy: allowed, bounded by the ceiling when no bound is asked.
    stack
        .chat(
            &member.token,
            &with_options(json!({ "num_predict": 64, "temperature": 2.0, "top_p": 0.0 })),
        )
        .expect(200);
    stack.chat(&member.token, &say("hi")).expect(200);
    let sent: Vec<Value> = stack
        .fake
        .requests()
        .into_iter()
        .filter(|request| request.path == "/api/chat")
        .map(|request| request.body)
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["options"]["num_predict"], 64, "{}", sent[0]);
    assert_eq!(sent[1]["options"]["num_predict"], 64, "{}", sent[1]);
    stack
        .post(
            "/v1/ai/embeddings",
            &member.token,
            &json!({ "model": "all-minilm:latest", "input": "hi" }),
        )
        .expect(200);
}

#[test]
fn a_used_up_quota_is_429_naming_the_quota_and_when_it_resets() {
    let stack = Stack::start(&[
        ("SPIN_VARIABLE_QUOTA_TOKENS_PER_USER_PER_DAY", "40"),
        ("SPIN_VARIABLE_QUOTA_TOKENS_PER_DISCUSSION", "10"),
    ]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");
    let other = stack.new_user(&admin, "member");
    let discussion_id = "01936c4e-7c1a-7d2b-8e3f-000000000001";
    let question = "one two three four five six";
    // 6 prompt tokens + 8 completion tokens ("You said: one two three four five six").
    let cost = words(question) + words(&format!("You said: {question}"));
    assert_eq!(cost, 14);
    let mut in_discussion = say(question);
    in_discussion["discussion_id"] = json!(discussion_id);

    // The discussion's quota: the call that crosses it completes, the next is refused,
    // and it never resets.
    stack.chat(&member.token, &in_discussion).expect(200);
    let refused = stack.chat(&member.token, &in_discussion);
    let problem = refused.expect_problem(429, "quota_exceeded");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("tokens per discussion"), "{problem}");
    assert!(detail.contains("does not reset"), "{problem}");
    // The same discussion for someone else: still the discussion's quota.
    stack
        .chat(&other.token, &in_discussion)
        .expect_problem(429, "quota_exceeded");

    // The user's daily quota: 14, 28, 42 ≥ 40.
    stack.chat(&member.token, &say(question)).expect(200);
    stack.chat(&member.token, &say(question)).expect(200);
    let refused = stack.chat(&member.token, &say(question));
    let problem = refused.expect_problem(429, "quota_exceeded");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("40 tokens per user per day"), "{problem}");
    let (tomorrow, until_midnight) = utc_date_in(1);
    assert!(
        detail.contains(&format!("resets at {tomorrow}T00:00:00")),
        "{problem}"
    );
    let retry_after: u64 = refused
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", refused.context()))
        .parse()
        .unwrap();
    assert!(
        retry_after.abs_diff(until_midnight) <= 5,
        "Retry-After {retry_after}, midnight in {until_midnight} s"
    );
    // Streamed and embeddings calls count against it too, and are refused alike.
    let mut streamed = say(question);
    streamed["stream"] = json!(true);
    stack
        .chat(&member.token, &streamed)
        .expect_problem(429, "quota_exceeded");
    stack
        .post(
            "/v1/ai/embeddings",
            &member.token,
            &json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": "hi" }),
        )
        .expect_problem(429, "quota_exceeded");

    // Another user has their own quota.
    stack.chat(&other.token, &say(question)).expect(200);

    // Refused calls never reached Ollama: 4 calls made it, all recorded.
    assert_eq!(chats_received(&stack.fake), 4);
    let calls = stack.calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert!(
        calls.iter().all(|call| call.status == "succeeded"),
        "{calls:#?}"
    );
    let used: i64 = calls
        .iter()
        .filter(|call| call.user_id == member.id)
        .map(|call| i64::from(call.prompt_tokens + call.completion_tokens))
        .sum();
    assert_eq!(used, 3 * cost);
}

// ---------------------------------------------------------------------------
// Embeddings, token counts, usage, status
// ---------------------------------------------------------------------------

#[test]
fn embeddings_are_one_vector_per_text_of_the_models_dimensions() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let member = stack.new_user(&admin, "member");

    let one = stack
        .post(
            "/v1/ai/embeddings",
            &member.token,
            &json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": "hello world" }),
        )
        .expect(200);
    assert_eq!(one["model"], DEFAULT_EMBEDDING_MODEL, "{one}");
    assert_eq!(one["dimensions"], EMBEDDING_DIMENSIONS, "{one}");
    assert_eq!(one["prompt_tokens"], 2, "{one}");
    let vectors = one["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), 1);
    assert_eq!(vectors[0].as_array().unwrap().len(), EMBEDDING_DIMENSIONS);

    let texts = ["the cat sat", "on the mat", "hello world"];
    let many = stack
        .post(
            "/v1/ai/embeddings",
            &member.token,
            &json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": texts, "discussion_id": "01936c4e-7c1a-7d2b-8e3f-000000000002" }),
        )
        .expect(200);
    assert_eq!(many["prompt_tokens"], 3 + 3 + 2, "{many}");
    let vectors: Vec<Vec<f64>> = many["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vector| {
            vector
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(vectors.len(), texts.len());
    assert!(
        vectors
            .iter()
            .all(|vector| vector.len() == EMBEDDING_DIMENSIONS)
    );
    // In the order of the texts: the third is the one text embedded before.
    let first: Vec<f64> = one["embeddings"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&vectors[2], &first));
    assert!(!close(&vectors[0], &vectors[1]));

    // Bad input is 400 and never reaches Ollama.
    for body in [
        json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": "" }),
        json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": [] }),
        json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": ["a", ""] }),
        json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": 42 }),
        json!({ "model": DEFAULT_EMBEDDING_MODEL }),
        json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": "a", "dims": 3 }),
    ] {
        stack
            .post("/v1/ai/embeddings", &member.token, &body)
            .expect_problem(400, "validation_failed");
    }
    let embeds = stack
        .fake
        .requests()
        .iter()
        .filter(|request| request.path == "/api/embed")
        .count();
    assert_eq!(embeds, 2);

    // A model Ollama lacks: 404 naming it.
    let problem = stack
        .post(
            "/v1/ai/embeddings",
            &member.token,
            &json!({ "model": "nosuch-embed", "input": "hi" }),
        )
        .expect_problem(404, "not_found");
    assert!(
        problem["detail"].as_str().unwrap().contains("nosuch-embed"),
        "{problem}"
    );

    let calls = stack.calls();
    let succeeded: Vec<&Call> = calls
        .iter()
        .filter(|call| call.status == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 2, "{calls:#?}");
    assert!(
        succeeded
            .iter()
            .all(|call| call.kind == "embed" && call.user_id == member.id)
    );
    assert_eq!(succeeded[0].prompt_tokens, 2);
    assert_eq!(succeeded[1].prompt_tokens, 8);
    assert_eq!(
        succeeded[1].discussion_id.as_deref(),
        Some("01936c4e-7c1a-7d2b-8e3f-000000000002")
    );
}

#[test]
fn a_token_count_is_positive_and_names_its_encoding() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let viewer = stack.new_user(&admin, "viewer");

    // Anyone signed in may count, a viewer too.
    let exact = stack
        .post(
            "/v1/ai/tokens/count",
            &viewer.token,
            &json!({ "model": "gpt-4o", "text": "Hello, world!" }),
        )
        .expect(200);
    assert_eq!(
        exact,
        json!({ "tokens": 4, "encoding": "o200k_base", "approximate": false })
    );
    let estimate = stack
        .post(
            "/v1/ai/tokens/count",
            &viewer.token,
            &json!({ "model": DEFAULT_CHAT_MODEL, "text": "tiktoken is great!" }),
        )
        .expect(200);
    assert_eq!(
        estimate,
        json!({ "tokens": 6, "encoding": "cl100k_base", "approximate": true })
    );
    let chat = stack
        .post(
            "/v1/ai/tokens/count",
            &viewer.token,
            &json!({
                "model": "gpt-4o",
                "messages": [
                    { "role": "system", "content": "You are a helpful assistant." },
                    { "role": "user", "content": "Say this is a test." },
                ],
            }),
        )
        .expect(200);
    // A chat is its roles and contents, 3 framing tokens a message and 3 priming the
    // reply, as OpenAI counts chat prompts.
    let text_tokens = |text: &str| {
        stack
            .post(
                "/v1/ai/tokens/count",
                &viewer.token,
                &json!({ "model": "gpt-4o", "text": text }),
            )
            .expect(200)["tokens"]
            .as_i64()
            .unwrap()
    };
    let parts: i64 = [
        "system",
        "You are a helpful assistant.",
        "user",
        "Say this is a test.",
    ]
    .into_iter()
    .map(text_tokens)
    .sum();
    assert_eq!(parts, 1 + 6 + 1 + 6);
    assert_eq!(chat["tokens"], parts + 2 * 3 + 3, "{chat}");
    assert_eq!(chat["encoding"], "o200k_base", "{chat}");

    let problem = stack
        .post(
            "/v1/ai/tokens/count",
            &viewer.token,
            &json!({ "model": "gpt-4o" }),
        )
        .expect_problem(400, "validation_failed");
    let mut fields = field_errors(&problem);
    fields.sort();
    assert_eq!(fields, ["messages", "text"], "{problem}");
    // Counting needs no model call: Ollama saw nothing, nothing was recorded.
    assert!(
        stack.fake.requests().is_empty(),
        "{:?}",
        stack.fake.requests()
    );
    assert!(stack.calls().is_empty());
}

#[test]
fn the_usage_report_groups_tokens_by_model_and_members_see_only_their_own() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let alice = stack.new_user(&admin, "member");
    let bob = stack.new_user(&admin, "member");

    // alice: two chats, an embedding and a call that fails; bob: one chat.
    let question = "how are you";
    let chat_cost = words(question) + words(&format!("You said: {question}"));
    stack.chat(&alice.token, &say(question)).expect(200);
    stack.chat(&alice.token, &say(question)).expect(200);
    stack
        .post(
            "/v1/ai/embeddings",
            &alice.token,
            &json!({ "model": DEFAULT_EMBEDDING_MODEL, "input": ["a b", "c d e"] }),
        )
        .expect(200);
    let mut missing = say(question);
    missing["model"] = json!("nosuch:1b");
    stack
        .chat(&alice.token, &missing)
        .expect_problem(404, "not_found");
    stack.chat(&bob.token, &say("hi")).expect(200);
    let bob_cost = words("hi") + words("You said: hi");

    // A member sees their own, per model by default, largest first.
    let report = stack.get("/v1/ai/usage", &alice.token).expect(200);
    assert_eq!(report["group_by"], "model", "{report}");
    let groups = usage_groups(&report);
    let keys: Vec<&str> = groups.iter().map(|group| group.key.as_str()).collect();
    assert_eq!(
        keys,
        [DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, "nosuch:1b"],
        "{report}"
    );
    assert_eq!(
        (groups[0].requests, groups[0].total_tokens),
        (2, 2 * chat_cost),
        "{report}"
    );
    assert_eq!(groups[0].failed, 0, "{report}");
    assert_eq!(
        (groups[1].requests, groups[1].total_tokens),
        (1, 5),
        "{report}"
    );
    assert_eq!(
        (groups[2].requests, groups[2].failed, groups[2].total_tokens),
        (1, 1, 0),
        "{report}"
    );
    assert_eq!(
        report["totals"]["total_tokens"],
        2 * chat_cost + 5,
        "{report}"
    );
    assert_eq!(report["totals"]["requests"], 4, "{report}");

    let report = stack.get("/v1/ai/usage", &bob.token).expect(200);
    let groups = usage_groups(&report);
    assert_eq!(groups.len(), 1, "{report}");
    assert_eq!(groups[0].key, DEFAULT_CHAT_MODEL, "{report}");
    assert_eq!(groups[0].total_tokens, bob_cost, "{report}");
    // Nobody but an admin may name another user.
    stack
        .get(&format!("/v1/ai/usage?user_id={}", alice.id), &bob.token)
        .expect_problem(403, "forbidden");

    // An admin sees everyone's, or one user's, and per user.
    let report = stack.get("/v1/ai/usage", &admin.token).expect(200);
    let groups = usage_groups(&report);
    assert_eq!(groups[0].key, DEFAULT_CHAT_MODEL, "{report}");
    assert_eq!(groups[0].requests, 3, "{report}");
    assert_eq!(groups[0].total_tokens, 2 * chat_cost + bob_cost, "{report}");
    let report = stack
        .get(&format!("/v1/ai/usage?user_id={}", bob.id), &admin.token)
        .expect(200);
    assert_eq!(report["totals"]["total_tokens"], bob_cost, "{report}");
    let report = stack
        .get("/v1/ai/usage?group_by=user", &admin.token)
        .expect(200);
    let groups = usage_groups(&report);
    let alice_group = groups.iter().find(|group| group.key == alice.id).unwrap();
    let bob_group = groups.iter().find(|group| group.key == bob.id).unwrap();
    assert_eq!(alice_group.total_tokens, 2 * chat_cost + 5, "{report}");
    assert_eq!(bob_group.total_tokens, bob_cost, "{report}");

    // A range before the calls holds none of them.
    let report = stack
        .get(
            "/v1/ai/usage?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
            &admin.token,
        )
        .expect(200);
    assert!(usage_groups(&report).is_empty(), "{report}");
    stack
        .get("/v1/ai/usage?group_by=week", &admin.token)
        .expect_problem(400, "validation_failed");
}

/// One group of a usage report.
#[derive(Debug)]
struct UsageGroup {
    key: String,
    requests: i64,
    failed: i64,
    total_tokens: i64,
}

/// A usage report's groups, in order.
fn usage_groups(report: &Value) -> Vec<UsageGroup> {
    items(report)
        .iter()
        .map(|group| UsageGroup {
            key: group["key"].as_str().unwrap_or("null").to_owned(),
            requests: group["requests"].as_i64().unwrap(),
            failed: group["failed"].as_i64().unwrap(),
            total_tokens: group["total_tokens"].as_i64().unwrap(),
        })
        .collect()
}

#[test]
fn the_status_reports_ollama_reachable_with_its_version_or_unreachable() {
    let stack = Stack::start(&[]);
    let admin = stack.admin();
    let viewer = stack.new_user(&admin, "viewer");

    let status = stack.get("/v1/ai/status", &viewer.token).expect(200);
    assert_eq!(status["reachable"], true, "{status}");
    assert_eq!(
        status["version"],
        arena_fake_ollama::OLLAMA_VERSION,
        "{status}"
    );
    assert_eq!(status["url"], stack.fake.url(), "{status}");
    assert!(
        status["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{status}"
    );
    assert_eq!(status["error"], Value::Null, "{status}");
    assert_eq!(status["loaded_models"], json!([]), "{status}");

    // A chat loads its model, which the status then lists.
    let member = stack.new_user(&admin, "member");
    stack.chat(&member.token, &say("hello")).expect(200);
    let status = stack.get("/v1/ai/status", &viewer.token).expect(200);
    let loaded = status["loaded_models"].as_array().unwrap();
    assert_eq!(loaded.len(), 1, "{status}");
    assert_eq!(loaded[0]["name"], DEFAULT_CHAT_MODEL, "{status}");

    // Ollama down: still 200, saying so, quickly.
    stack.fake.set_fault(Fault::Refuse);
    let started = Instant::now();
    let status = stack.get("/v1/ai/status", &viewer.token).expect(200);
    assert!(
        started.elapsed() < Duration::from_secs(OLLAMA_TIMEOUT_SECS),
        "{status}"
    );
    assert_eq!(status["reachable"], false, "{status}");
    assert_eq!(status["version"], Value::Null, "{status}");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "{status}"
    );

    // Ollama stalled: 200 after the timeout, unreachable.
    stack.fake.set_fault(Fault::Stall);
    let status = stack.get("/v1/ai/status", &viewer.token).expect(200);
    assert_eq!(status["reachable"], false, "{status}");

    stack.fake.clear_fault();
    let status = stack.get("/v1/ai/status", &viewer.token).expect(200);
    assert_eq!(status["reachable"], true, "{status}");
}
