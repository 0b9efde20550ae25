//! Server-sent events as a client reads them: [`post`] opens a stream, and
//! [`Events`] yields each [`Event`] as it arrives, stamped with when it did, so a
//! test can tell a stream that trickles from one sent all at once at the end.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
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

/// `GET path` asking for an event stream, with `headers`: the stream once the
/// status is 200 and the content type `text/event-stream`, else the response.
pub fn get(
    api: &Client,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Events, Box<Response>> {
    let started = Instant::now();
    let mut request = api
        .request(Method::GET, path, bearer)
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    if response.status() != 200 {
        return Err(Box::new(Response::read(Method::GET, path, response)));
    }
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "GET {path}: content-type {content_type:?}"
    );
    Ok(Events {
        reader: BufReader::new(response),
        started,
    })
}

/// What [`Background::next_within`] got.
#[derive(Debug)]
pub enum Next {
    Event(Event),
    /// The stream ended (or could not be read any more).
    Ended,
    /// Nothing came in time.
    Timeout,
}

/// An event stream read on a thread of its own, so a test can wait for the next
/// event with a deadline. Dropping it does not close the stream; dropping the
/// [`Client`]'s connection does (or the server ending it).
pub struct Background {
    events: mpsc::Receiver<Event>,
}

impl Background {
    /// The next event, if one comes within `timeout`.
    pub fn next_within(&self, timeout: Duration) -> Next {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Next::Event(event),
            Err(mpsc::RecvTimeoutError::Timeout) => Next::Timeout,
            Err(mpsc::RecvTimeoutError::Disconnected) => Next::Ended,
        }
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
    /// Reads the stream on a thread of its own; a read error ends it there.
    pub fn in_background(self) -> Background {
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for event in self {
                if sender.send(event).is_err() {
                    return;
                }
            }
        });
        Background { events }
    }

    /// Every event left, to the end of the stream.
    pub fn rest(self) -> Vec<Event> {
        self.collect()
    }
}
