use arena_fake_ollama::FakeOllama;
use serde_json::{Value, json};

use super::{json, post};

fn vectors(body: &Value) -> Vec<Vec<f64>> {
    body["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn length(vector: &[f64]) -> f64 {
    vector.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn embed_returns_a_unit_vector_per_input_the_same_every_time() {
    let fake = FakeOllama::start();
    let request = json!({ "model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"] });
    let (status, body) = json(post(&fake, "/api/embed", &request));
    assert_eq!(status, 200);
    assert_eq!(body["model"], "all-minilm");
    assert_eq!(body["prompt_eval_count"], 10);
    assert!(body["total_duration"].as_u64().unwrap() > 0);
    let first = vectors(&body);
    assert_eq!(first.len(), 2);
    assert!(
        first
            .iter()
            .all(|v| v.len() == 384 && (length(v) - 1.0).abs() < 1e-4)
    );
    assert_ne!(first[0], first[1]);

    let again = FakeOllama::start();
    let (_, body) = json(post(&again, "/api/embed", &request));
    assert_eq!(vectors(&body), first, "deterministic across servers");
}

#[test]
fn embed_takes_one_string_and_can_shorten_the_vectors() {
    let fake = FakeOllama::start();
    let (_, body) = json(post(
        &fake,
        "/api/embed",
        &json!({ "model": "all-minilm", "input": "llamas", "dimensions": 64 }),
    ));
    let vectors = vectors(&body);
    assert_eq!((vectors.len(), vectors[0].len()), (1, 64));
    assert!((length(&vectors[0]) - 1.0).abs() < 1e-4);

    let (_, empty) = json(post(
        &fake,
        "/api/embed",
        &json!({ "model": "all-minilm", "input": "" }),
    ));
    assert_eq!(empty, json!({ "model": "all-minilm", "embeddings": [] }));
    let (status, bad) = json(post(
        &fake,
        "/api/embed",
        &json!({ "model": "all-minilm", "input": [1] }),
    ));
    assert_eq!(
        (status, bad),
        (400, json!({ "error": "invalid input type" }))
    );
}

#[test]
fn a_chat_model_embeds_with_its_own_embedding_length() {
    let fake = FakeOllama::start();
    let (status, body) = json(post(
        &fake,
        "/api/embed",
        &json!({ "model": "llama3.2:1b", "input": "hi" }),
    ));
    assert_eq!(status, 200);
    assert_eq!(vectors(&body)[0].len(), 2048);
}

#[test]
fn an_input_longer_than_the_context_is_truncated_unless_truncate_is_false() {
    let fake = FakeOllama::start();
    let long = "word ".repeat(600);
    let (status, body) = json(post(
        &fake,
        "/api/embed",
        &json!({ "model": "all-minilm", "input": long }),
    ));
    assert_eq!((status, &body["prompt_eval_count"]), (200, &json!(512)));
    let refused = json!({ "model": "all-minilm", "input": long, "truncate": false });
    assert_eq!(
        json(post(&fake, "/api/embed", &refused)),
        (
            400,
            json!({ "error": "the input length exceeds the context length" })
        )
    );
}
