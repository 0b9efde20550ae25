//! Server-sent events (`text/event-stream`): token streams and progress.
//!
//! [`channel`] makes the response at once and hands back a [`Sender`] that a task
//! spawned with `spin_sdk::wasip3::spawn` writes events to as they happen. When the
//! client goes away, the response body is dropped and [`Sender::send`] fails: the
//! task stops, and drops what it was reading from (an Ollama stream), which stops
//! the work upstream.
//!
//! ```no_run
//! # async fn tokens() -> http::Response<impl http_body::Body> {
//! let (mut events, response) = arena_common::sse::channel();
//! spin_sdk::wasip3::spawn(async move {
//!     for token in ["Hel", "lo"] {
//!         if events.send("token", &serde_json::json!({ "content": token })).await.is_err() {
//!             return; // the client left
//!         }
//!     }
//!     let _ = events.send("done", &serde_json::json!({})).await;
//! });
//! response
//! # }
//! ```

use bytes::Bytes;
use futures::SinkExt as _;
use futures::channel::mpsc;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// The media type of an event stream.
pub const TEXT_EVENT_STREAM: &str = "text/event-stream";

/// Writes events to a streamed response.
pub struct Sender {
    inner: mpsc::Sender<Bytes>,
    next_id: u64,
}

/// The client has gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl Sender {
    /// Sends one event: `event: <name>`, an `id:` counting from 1 (for
    /// `Last-Event-ID`), and `data` as one line of JSON.
    pub async fn send(&mut self, name: &str, data: &impl Serialize) -> Result<(), Disconnected> {
        self.next_id += 1;
        let frame = frame(name, self.next_id, data);
        self.inner.send(frame).await.map_err(|_| Disconnected)
    }
}

/// One event as it goes on the wire. JSON has no raw newlines, so the data fits
/// one `data:` line.
fn frame(name: &str, id: u64, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|error| {
        serde_json::json!({ "error": format!("the event could not be encoded: {error}") })
            .to_string()
    });
    Bytes::from(format!("event: {name}\nid: {id}\ndata: {data}\n\n"))
}

/// A `200 text/event-stream` response, and the [`Sender`] that feeds it.
pub fn channel() -> (
    Sender,
    http::Response<impl http_body::Body<Data = Bytes, Error = anyhow::Error>>,
) {
    let (inner, body) = spin_sdk::http::body::stream::<Bytes>();
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_EVENT_STREAM));
    // Proxies must pass each event on as it comes, not cache or buffer the stream.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (Sender { inner, next_id: 0 }, response)
}

/// Whether the request asks for an event stream (`Accept: text/event-stream`).
pub fn wanted<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(TEXT_EVENT_STREAM))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_named_numbered_and_one_line_of_json() {
        let frame = frame("token", 7, &serde_json::json!({ "content": "a\nb" }));
        assert_eq!(
            frame,
            "event: token\nid: 7\ndata: {\"content\":\"a\\nb\"}\n\n"
        );
    }

    #[test]
    fn an_accept_header_listing_event_streams_wants_one() {
        let with = |accept: &str| {
            wanted(
                &http::Request::builder()
                    .header("accept", accept)
                    .body(())
                    .unwrap(),
            )
        };
        assert!(with("text/event-stream"));
        assert!(with("application/json, Text/Event-Stream;q=0.9"));
        assert!(!with("application/json"));
        assert!(!wanted(&http::Request::builder().body(()).unwrap()));
    }
}
