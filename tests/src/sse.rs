//! Server-sent events as a client reads them: [`post`] opens a stream, and
//! [`Events`] yields each [`Event`] as it arrives, stamped with when it did, so a
//! test can tell a stream that trickles from one sent all at once at the end.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::api::{Client, Response};

/// A server-sent event, and when it arrived (since the request was sent).
#[derive(Debug, Clone)]
pub struct Event {
    /// `event:`, `message` if the event names none.
    pub name: String,
    pub id: Option<String>,
    /// `data:` (its lines joined), which must be JSON.
    pub data: Value,
    pub at: Duration,
}

/// An event stream, read event by event as it arrives.
pub struct Events {
    reader: BufReader<reqwest::blocking::Response>,
    started: Instant,
}

/// `POST path` with the JSON `body`, asking for an event stream; the stream, once
/// the status is 200 and the content type `text/event-stream` (else a panic).
#[track_caller]
pub fn post(api: &Client, path: &str, bearer: Option<&str>, body: &Value) -> Events {
    let started = Instant::now();
    let response = api
        .request(Method::POST, path, bearer)
        .header("accept", "text/event-stream")
        .json(body)
        .send()
        .unwrap_or_else(|error| panic!("POST {path}: {error}"));
    if response.status() != 200 {
        panic!("{}", Response::read(Method::POST, path, response).context());
    }
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "POST {path}: content-type {content_type:?}"
    );
    Events {
        reader: BufReader::new(response),
        started,
    }
}

impl Iterator for Events {
    type Item = Event;

    /// The next event; `None` once the stream has ended (not inside an event).
    fn next(&mut self) -> Option<Event> {
        let mut name = None;
        let mut id = None;
        let mut data: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            let read = self
                .reader
                .read_line(&mut line)
                .unwrap_or_else(|error| panic!("reading the event stream: {error}"));
            if read == 0 {
                assert!(
                    name.is_none() && data.is_empty(),
                    "the stream ended inside an event: {name:?} {data:?}"
                );
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if name.is_none() && data.is_empty() {
                    continue;
                }
                let data = data.join("\n");
                return Some(Event {
                    name: name.unwrap_or_else(|| "message".to_owned()),
                    id,
                    data: serde_json::from_str(&data)
                        .unwrap_or_else(|error| panic!("event data is not JSON ({error}): {data}")),
                    at: self.started.elapsed(),
                });
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => name = Some(value),
                "id" => id = Some(value),
                "data" => data.push(value),
                _ => {}
            }
        }
    }
}

impl Events {
    /// Every event left, to the end of the stream.
    pub fn rest(self) -> Vec<Event> {
        self.collect()
    }
}
