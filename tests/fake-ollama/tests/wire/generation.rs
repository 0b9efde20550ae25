use arena_fake_ollama::{FakeOllama, Reply};
use serde_json::{Value, json};

use super::{json, ndjson, post};

fn chat(content: &str) -> Value {
    json!({
        "model": "llama3.2:1b",
        "messages": [
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": content }
        ]
    })
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// The streamed chunks' contents, concatenated.
fn streamed_content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .map(|chunk| chunk["message"]["content"].as_str().unwrap())
        .collect()
}

#[test]
fn chat_streams_token_chunks_then_a_final_object_with_stats() {
    let fake = FakeOllama::start();
    let response = post(&fake, "/api/chat", &chat("why is the sky blue?"));
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let lines = ndjson(response);
    let (last, chunks) = lines.split_last().unwrap();
    let expected = Reply::echo("why is the sky blue?");
    assert_eq!(chunks.len(), expected.tokens.len());
    for chunk in chunks {
        assert_eq!(chunk["model"], "llama3.2:1b");
        assert_eq!(chunk["message"]["role"], "assistant");
        assert_eq!(chunk["done"], false);
        assert!(chunk["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(
            chunk.get("eval_count").is_none(),
            "stats come only at the end"
        );
    }
    assert_eq!(streamed_content(chunks), "You said: why is the sky blue?");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(
        last["message"],
        json!({ "role": "assistant", "content": "" })
    );
    assert_eq!(last["eval_count"], chunks.len());
    assert_eq!(
        last["prompt_eval_count"],
        2 + 5,
        "the words of every message"
    );
    for duration in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(last[duration].as_u64().unwrap() > 0, "{duration} in {last}");
    }
    assert!(last["total_duration"].as_u64() >= last["eval_duration"].as_u64());
    assert_eq!(fake.completed_generations(), 1);
}

#[test]
fn chat_without_streaming_answers_one_object_with_the_whole_reply() {
    let fake = FakeOllama::start();
    let (status, body) = json(post(
        &fake,
        "/api/chat",
        &with(chat("hello"), "stream", json!(false)),
    ));
    assert_eq!(status, 200);
    assert_eq!(
        body["message"],
        json!({ "role": "assistant", "content": "You said: hello" })
    );
    assert_eq!(
        (&body["done"], &body["done_reason"]),
        (&json!(true), &json!("stop"))
    );
    assert_eq!(body["eval_count"], 3);
}

#[test]
fn a_scripted_reply_replaces_the_echo_for_its_model() {
    let fake = FakeOllama::start();
    fake.script(
        "llama3.2:1b",
        Reply::from_tokens(["Hello", ",", " world"]).with_prompt_eval_count(42),
    );
    let lines = ndjson(post(&fake, "/api/chat", &chat("anything")));
    let (last, chunks) = lines.split_last().unwrap();
    let tokens: Vec<&str> = chunks
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["Hello", ",", " world"]);
    assert_eq!(
        (&last["prompt_eval_count"], &last["eval_count"]),
        (&json!(42), &json!(3))
    );
}

#[test]
fn num_predict_stops_the_reply_with_reason_length() {
    let fake = FakeOllama::start();
    let body = with(
        chat("one two three four"),
        "options",
        json!({ "num_predict": 2, "temperature": 0 }),
    );
    let lines = ndjson(post(&fake, "/api/chat", &body));
    let (last, chunks) = lines.split_last().unwrap();
    assert_eq!(streamed_content(chunks), "You said:");
    assert_eq!(
        (&last["done_reason"], &last["eval_count"]),
        (&json!("length"), &json!(2))
    );
}

#[test]
fn a_stop_string_ends_the_reply_before_it() {
    let fake = FakeOllama::start();
    let body = with(
        chat("apples and pears"),
        "options",
        json!({ "stop": [" and", "zzz"] }),
    );
    let lines = ndjson(post(&fake, "/api/chat", &body));
    let (last, chunks) = lines.split_last().unwrap();
    assert_eq!(streamed_content(chunks), "You said: apples");
    assert_eq!(
        (&last["done_reason"], &last["eval_count"]),
        (&json!("stop"), &json!(3))
    );
}

#[test]
fn generate_streams_response_tokens_and_ends_with_a_context() {
    let fake = FakeOllama::start();
    let body = json!({ "model": "llama3.2", "prompt": "Why?", "system": "Be brief." });
    // `llama3.2` means `llama3.2:latest`, which is not installed.
    assert_eq!(json(post(&fake, "/api/generate", &body)).0, 404);
    let body = with(body, "model", json!("llama3.2:1b"));
    let lines = ndjson(post(&fake, "/api/generate", &body));
    let (last, chunks) = lines.split_last().unwrap();
    let text: String = chunks
        .iter()
        .map(|c| c["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, "You said: Why?");
    assert!(
        chunks
            .iter()
            .all(|c| c["done"] == false && c.get("message").is_none())
    );
    assert_eq!(
        (&last["response"], &last["done"], &last["done_reason"]),
        (&json!(""), &json!(true), &json!("stop"))
    );
    assert_eq!(last["prompt_eval_count"], 3);
    assert_eq!(
        last["context"].as_array().unwrap().len(),
        1 + 3,
        "prompt and reply tokens"
    );

    let whole = with(body, "stream", json!(false));
    let (_, body) = json(post(&fake, "/api/generate", &whole));
    assert_eq!(body["response"], "You said: Why?");
}

#[test]
fn an_embedding_model_cannot_chat_or_generate() {
    let fake = FakeOllama::start();
    let chat = with(chat("hi"), "model", json!("all-minilm"));
    assert_eq!(
        json(post(&fake, "/api/chat", &chat)),
        (
            400,
            json!({ "error": "\"all-minilm\" does not support chat" })
        )
    );
    let generate = json!({ "model": "all-minilm", "prompt": "hi" });
    assert_eq!(
        json(post(&fake, "/api/generate", &generate)),
        (
            400,
            json!({ "error": "\"all-minilm\" does not support generate" })
        )
    );
    assert_eq!(
        json(post(&fake, "/api/chat", &json!({ "messages": [] }))),
        (400, json!({ "error": "model is required" }))
    );
}

#[test]
fn no_messages_or_prompt_loads_the_model() {
    let fake = FakeOllama::start();
    let (status, chat) = json(post(
        &fake,
        "/api/chat",
        &json!({ "model": "llama3.2:1b", "messages": [] }),
    ));
    assert_eq!(status, 200);
    assert_eq!(chat["done_reason"], "load");
    assert_eq!(
        chat["message"],
        json!({ "role": "assistant", "content": "" })
    );
    let (_, generate) = json(post(
        &fake,
        "/api/generate",
        &json!({ "model": "llama3.2:1b" }),
    ));
    assert_eq!(
        (&generate["done_reason"], &generate["response"]),
        (&json!("load"), &json!(""))
    );
    assert_eq!(fake.completed_generations(), 0, "loading is not generating");
}
