use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use arena_fake_ollama::{FakeOllama, Fault, Model, Recorded, Reply};
use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::{client, get, json, ndjson, post};

fn chat() -> Value {
    json!({ "model": "llama3.2:1b", "messages": [{ "role": "user", "content": "go" }] })
}

/// Waits until `condition` holds, failing the test after a few seconds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_token_delay_spreads_the_chunks_over_time() {
    let fake = FakeOllama::start();
    fake.script("llama3.2:1b", Reply::from_tokens(["a", "b", "c", "d"]));
    let delay = Duration::from_millis(100);
    fake.set_token_delay(delay);
    let mut lines = BufReader::new(post(&fake, "/api/chat", &chat())).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let first_at = Instant::now();
    assert_eq!(first["message"]["content"], "a");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let ended_at = Instant::now();
    assert_eq!(rest.len(), 4, "three tokens and the final object");
    assert!(
        ended_at - first_at >= 3 * delay,
        "the first chunk came well before the end"
    );
}

#[test]
fn cut_after_drops_the_connection_without_a_done_object() {
    let fake = FakeOllama::start();
    fake.script("llama3.2:1b", Reply::from_tokens(["a", "b", "c", "d"]));
    fake.set_fault(Fault::CutAfter(2));
    let mut reader = BufReader::new(post(&fake, "/api/chat", &chat()));
    let mut received = Vec::new();
    let ended = loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => received.push(serde_json::from_str::<Value>(&line).unwrap()),
            Err(error) => break Err(error),
        }
    };
    assert!(ended.is_err(), "the body ends in an error, not a clean end");
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|chunk| chunk["done"] == false));

    let whole = client()
        .post(format!("{}/api/chat", fake.url()))
        .json(&json!({ "model": "llama3.2:1b", "messages": [{ "role": "user", "content": "go" }], "stream": false }))
        .send();
    assert!(whole.is_err(), "a non-streamed reply is dropped unanswered");
    assert_eq!(
        (fake.completed_generations(), fake.cancelled_generations()),
        (0, 0)
    );

    fake.clear_fault();
    assert_eq!(ndjson(post(&fake, "/api/chat", &chat())).len(), 5);
}

#[test]
fn cut_after_cuts_a_pull_too_and_nothing_is_installed() {
    let fake = FakeOllama::start();
    fake.add_pullable(Model::chat("qwen2.5:0.5b"));
    fake.set_fault(Fault::CutAfter(2));
    let pull = post(&fake, "/api/pull", &json!({ "model": "qwen2.5:0.5b" }));
    let mut lines = BufReader::new(pull).lines();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        r#"{"status":"pulling manifest"}"#
    );
    assert!(lines.next().unwrap().unwrap().contains("\"digest\""));
    assert!(lines.next().unwrap().is_err());
    fake.clear_fault();
    assert_eq!(
        json(post(
            &fake,
            "/api/show",
            &json!({ "model": "qwen2.5:0.5b" })
        ))
        .0,
        404
    );
}

#[test]
fn a_client_leaving_mid_stream_counts_as_a_cancelled_generation() {
    let fake = FakeOllama::start();
    fake.script("llama3.2:1b", Reply::from_text(&"word ".repeat(300)));
    fake.set_token_delay(Duration::from_millis(10));
    let body = chat().to_string();
    let mut stream = TcpStream::connect(fake.address()).unwrap();
    write!(
        stream,
        "POST /api/chat HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        fake.address(),
        body.len()
    )
    .unwrap();
    let mut first_chunk = [0; 512];
    let read = stream.read(&mut first_chunk).unwrap();
    assert!(String::from_utf8_lossy(&first_chunk[..read]).starts_with("HTTP/1.1 200 OK"));
    drop(stream);
    eventually("the abandoned stream is noticed", || {
        fake.cancelled_generations() == 1
    });
    assert_eq!(fake.completed_generations(), 0);
}

#[test]
fn refuse_makes_connecting_fail_until_the_fault_is_cleared() {
    let fake = FakeOllama::start();
    let kept_alive = Client::new();
    assert_eq!(
        kept_alive
            .get(format!("{}/api/tags", fake.url()))
            .send()
            .unwrap()
            .status(),
        200
    );
    fake.set_fault(Fault::Refuse);
    let error = client()
        .get(format!("{}/api/tags", fake.url()))
        .send()
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert!(
        kept_alive
            .get(format!("{}/api/tags", fake.url()))
            .send()
            .is_err(),
        "an open connection is dropped too"
    );
    fake.clear_fault();
    assert_eq!(get(&fake, "/api/tags").status(), 200);
    assert!(fake.requests().iter().all(|r| r.path == "/api/tags"));
    assert_eq!(fake.requests().len(), 2, "refused requests never arrive");
}

#[test]
fn stall_accepts_but_never_answers() {
    let fake = FakeOllama::start();
    fake.set_fault(Fault::Stall);
    let impatient = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = impatient
        .get(format!("{}/api/version", fake.url()))
        .send()
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(fake.requests().len(), 1, "the stalled request was received");
    fake.clear_fault();
    assert_eq!(get(&fake, "/api/version").status(), 200);
}

#[test]
fn an_error_fault_answers_every_endpoint_with_its_status_and_message() {
    let fake = FakeOllama::start();
    fake.set_fault(Fault::error(503, "server busy, please try again"));
    let expected = (503, json!({ "error": "server busy, please try again" }));
    assert_eq!(json(get(&fake, "/api/tags")), expected);
    assert_eq!(json(post(&fake, "/api/chat", &chat())), expected);
    fake.clear_fault();
    assert_eq!(get(&fake, "/api/tags").status(), 200);
}

#[test]
fn every_request_is_recorded_with_its_json_body() {
    let fake = FakeOllama::start();
    let body = json!({
        "model": "llama3.2:1b", "stream": false, "format": "json",
        "messages": [{ "role": "user", "content": "hi" }],
        "options": { "temperature": 0.2, "top_p": 0.9, "seed": 7 }
    });
    post(&fake, "/api/chat", &body);
    get(&fake, "/api/tags");
    assert_eq!(
        fake.requests(),
        [
            Recorded {
                method: "POST".into(),
                path: "/api/chat".into(),
                body
            },
            Recorded {
                method: "GET".into(),
                path: "/api/tags".into(),
                body: Value::Null
            },
        ]
    );
}
