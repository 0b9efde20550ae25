//! The fake driven over real HTTP, as the code under test will drive it: one test binary,
//! one module per API area.

mod embed;
mod faults;
mod generation;
mod models;

use std::time::Duration;

use arena_fake_ollama::FakeOllama;
use reqwest::blocking::{Client, Response};
use serde_json::Value;

/// A client that fails a test rather than hang it.
fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build an HTTP client")
}

fn get(fake: &FakeOllama, path: &str) -> Response {
    client()
        .get(format!("{}{path}", fake.url()))
        .send()
        .expect("GET the fake")
}

fn post(fake: &FakeOllama, path: &str, body: &Value) -> Response {
    client()
        .post(format!("{}{path}", fake.url()))
        .json(body)
        .send()
        .expect("POST to the fake")
}

/// A whole NDJSON body as its objects.
fn ndjson(response: Response) -> Vec<Value> {
    let text = response.text().expect("read the stream");
    assert!(
        text.ends_with('\n'),
        "every line ends with a newline: {text:?}"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is a JSON object"))
        .collect()
}

/// The status and JSON body of an answer.
fn json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().expect("a JSON body"))
}
