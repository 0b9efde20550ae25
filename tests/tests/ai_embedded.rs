//! The AI component, agents and discussions against the embedded models: `arena
//! up` pointed at a local Ollama address where nothing answers serves the
//! embedded models there itself, and the components use them as they use
//! Ollama. The same flows as the AI suite's, with a real model instead of the
//! fake: the answers are not scripted, so the checks are on what any sensible
//! answer shows.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use arena_e2e::api::{self, Account, Client, Response};
use arena_e2e::poll::wait_for;
use arena_e2e::sse;
use arena_e2e::{Arena, NO_EMBEDDED_MODELS_ENV, TestDatabase};
use arena_fake_ollama::FakeOllama;
use reqwest::Method;
use serde_json::{Value, json};

const CHAT_MODEL: &str = "smollm2:135m";
const EMBEDDING_MODEL: &str = "all-minilm:l6-v2";

/// `arena up` with its Ollama address on a local port nothing listens on.
struct Stack {
    arena: Arena,
    db: TestDatabase,
    api: Client,
    ollama_url: String,
}

impl Stack {
    fn start(extra: &[(&str, &str)]) -> Stack {
        let address = free_local_address();
        Self::start_at(&address, extra)
    }

    fn start_at(address: &str, extra: &[(&str, &str)]) -> Stack {
        let db = TestDatabase::create();
        let ollama_url = format!("http://{address}");
        let mut env = vec![
            ("SPIN_VARIABLE_OLLAMA_URL", ollama_url.as_str()),
            ("SPIN_VARIABLE_OLLAMA_HOST", address),
            (NO_EMBEDDED_MODELS_ENV, "false"),
        ];
        env.extend_from_slice(extra);
        let arena = api::start(&db, &[], &env);
        let api = Client::new(&arena);
        Stack {
            arena,
            db,
            api,
            ollama_url,
        }
    }

    /// The `model_calls` rows: status, prompt and completion tokens, oldest first.
    fn calls(&self) -> Vec<(String, i32, i32)> {
        self.db
            .connect()
            .query(
                "select status, prompt_tokens, completion_tokens from model_calls
                 order by started_at, model_call_id",
                &[],
            )
            .unwrap()
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    }

    fn said_it_serves_the_models(&self) -> bool {
        self.arena.logs().iter().any(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|message| message.contains("serving the embedded models there"))
        })
    }
}

/// A loopback address free a moment ago.
fn free_local_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn capital_of_france(stream: bool) -> Value {
    json!({
        "model": CHAT_MODEL,
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "options": {"temperature": 0, "num_predict": 48},
    })
}

fn models_named(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .or_else(|| list["models"].as_array())
        .unwrap_or_else(|| panic!("no models in {list}"))
        .iter()
        .map(|model| model["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn arena_up_serves_the_embedded_models_where_no_ollama_answers() {
    let stack = Stack::start(&[]);
    assert!(
        stack.said_it_serves_the_models(),
        "{:#?}",
        stack.arena.logs()
    );
    let admin = stack.api.admin();

    let status = stack
        .api
        .get("/v1/ai/status", Some(&admin.token))
        .expect(200);
    assert_eq!(status["reachable"], true, "{status}");
    assert_eq!(status["url"], stack.ollama_url.as_str(), "{status}");

    let models = stack
        .api
        .get("/v1/ai/models", Some(&admin.token))
        .expect(200);
    let mut names = models_named(&models);
    names.sort();
    assert_eq!(names, [EMBEDDING_MODEL, CHAT_MODEL], "{models}");
    let one = stack
        .api
        .get(&format!("/v1/ai/models/{CHAT_MODEL}"), Some(&admin.token))
        .expect(200);
    assert_eq!(one["name"], CHAT_MODEL, "{one}");
}

#[test]
fn a_streamed_chat_answers_from_the_model_and_its_usage_is_recorded() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let member = stack.api.new_user(&admin, "member");

    let events = sse::post(
        &stack.api,
        "/v1/ai/chat",
        Some(&member.token),
        &capital_of_france(true),
    )
    .rest();
    let text: String = events
        .iter()
        .filter(|event| event.name == "token")
        .map(|event| event.data["content"].as_str().unwrap())
        .collect();
    assert!(text.contains("Paris"), "{text:?}");
    let done = events.last().unwrap();
    assert_eq!(done.name, "done", "{events:#?}");
    let usage = &done.data["usage"];
    let completion_tokens = usage["completion_tokens"].as_i64().unwrap();
    assert!(completion_tokens > 0 && completion_tokens <= 48, "{usage}");
    assert!(usage["prompt_tokens"].as_i64().unwrap() > 10, "{usage}");

    let calls = stack.calls();
    let (status, prompt, completion) = calls.last().unwrap();
    assert_eq!(status, "succeeded");
    assert_eq!(i64::from(*prompt), usage["prompt_tokens"].as_i64().unwrap());
    assert_eq!(i64::from(*completion), completion_tokens);

    // Not streamed: the same answer, temperature 0 being greedy.
    let whole = stack
        .api
        .post(
            "/v1/ai/chat",
            Some(&member.token),
            &capital_of_france(false),
        )
        .expect(200);
    assert_eq!(whole["message"]["content"], text.as_str(), "{whole}");
}

#[test]
fn embeddings_are_384_dimensional_and_paraphrases_score_closest() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let texts = [
        "The weather is lovely today.",
        "It is a beautiful sunny day.",
        "The invoice is overdue by three weeks.",
    ];
    let body = stack
        .api
        .post(
            "/v1/ai/embeddings",
            Some(&admin.token),
            &json!({"model": EMBEDDING_MODEL, "input": texts}),
        )
        .expect(200);
    assert_eq!(body["dimensions"], 384, "{body}");
    let vectors: Vec<Vec<f64>> = serde_json::from_value(body["embeddings"].clone()).unwrap();
    let cosine = |a: usize, b: usize| -> f64 {
        vectors[a].iter().zip(&vectors[b]).map(|(x, y)| x * y).sum()
    };
    assert!(cosine(0, 1) > cosine(0, 2) && cosine(0, 1) > cosine(1, 2));
}

#[test]
fn a_model_the_embedded_server_lacks_is_404_naming_it() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let mut body = capital_of_france(false);
    body["model"] = json!("llama3.2:1b");
    let problem = stack
        .api
        .post("/v1/ai/chat", Some(&admin.token), &body)
        .expect_problem(404, "not_found");
    assert!(
        problem["detail"].as_str().unwrap().contains("llama3.2:1b"),
        "{problem}"
    );
}

#[test]
fn a_client_that_disconnects_stops_the_generation() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let body = json!({
        "model": CHAT_MODEL,
        "stream": true,
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "options": {"num_predict": 4000},
    });
    let mut events = sse::post(&stack.api, "/v1/ai/chat", Some(&admin.token), &body);
    let first = events.next().expect("a first event");
    assert_eq!(first.name, "token", "{first:?}");
    drop(events);

    let started = Instant::now();
    let (status, _, completion) = wait_for("the call recorded as ended", || {
        stack
            .calls()
            .into_iter()
            .find(|(status, _, _)| status != "running")
    });
    assert_eq!(status, "cancelled");
    assert!(completion < 4000, "{completion}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn two_agents_hold_a_discussion_on_the_embedded_model() {
    let stack = Stack::start(&[]);
    let admin = stack.api.admin();
    let agent = |name: &str, persona: &str| -> Value {
        stack
            .api
            .post(
                "/v1/agents",
                Some(&admin.token),
                &json!({"name": name, "persona": persona, "model": CHAT_MODEL,
                        "parameters": {"temperature": 0, "num_predict": 40}}),
            )
            .expect(201)
    };
    let tea = agent("Tea", "You love tea. Answer in one short sentence.");
    let coffee = agent("Coffee", "You love coffee. Answer in one short sentence.");
    let discussion = stack
        .api
        .post(
            "/v1/discussions",
            Some(&admin.token),
            &json!({"title": "Tea or coffee", "topic": "Which is the better morning drink?",
                    "participants": [{"agent_id": tea["agent_id"]}, {"agent_id": coffee["agent_id"]}]}),
        )
        .expect(201);
    let d = api::id_of(&discussion, "discussion_id");
    post_empty(&stack.api, &admin, &format!("/v1/discussions/{d}/start")).expect(200);

    let mut speakers = Vec::new();
    for _ in 0..2 {
        let message =
            post_empty(&stack.api, &admin, &format!("/v1/discussions/{d}/turns")).expect(201);
        assert_eq!(message["status"], "completed", "{message}");
        assert!(
            !message["content"].as_str().unwrap().trim().is_empty(),
            "{message}"
        );
        assert!(
            message["usage"]["completion_tokens"].as_i64().unwrap() > 0,
            "{message}"
        );
        speakers.push(message["author"]["agent_id"].clone());
    }
    assert_eq!(
        speakers,
        [tea["agent_id"].clone(), coffee["agent_id"].clone()]
    );
}

#[test]
fn with_an_ollama_answering_or_the_flag_set_the_embedded_models_stay_off() {
    let fake = FakeOllama::start();
    let stack = Stack::start_at(&fake.address().to_string(), &[]);
    assert!(!stack.said_it_serves_the_models());
    let admin = stack.api.admin();
    let models = stack
        .api
        .get("/v1/ai/models", Some(&admin.token))
        .expect(200);
    assert!(
        !models_named(&models).contains(&CHAT_MODEL.to_owned()),
        "{models}"
    );

    let stack = Stack::start(&[(NO_EMBEDDED_MODELS_ENV, "true")]);
    assert!(!stack.said_it_serves_the_models());
    let admin = stack.api.admin();
    let status = stack
        .api
        .get("/v1/ai/status", Some(&admin.token))
        .expect(200);
    assert_eq!(status["reachable"], false, "{status}");
}

fn post_empty(api: &Client, who: &Account, path: &str) -> Response {
    api.send(Method::POST, path, Some(&who.token), None, &[])
}
