//! Response plumbing: bodies that are whole or streamed from a task, and the ways a request
//! can end without success (an Ollama error answer, or no answer at all).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

pub(crate) type HttpResponse = Response<ResponseBody>;

/// Gin's content type for `c.JSON`.
const JSON: &str = "application/json; charset=utf-8";

/// Ollama's content type for streams of JSON objects, one per line.
const NDJSON: &str = "application/x-ndjson";

/// The sending side of a streamed body. `Err(Cut)` makes hyper drop the connection.
pub(crate) type Lines = mpsc::Sender<Result<Bytes, Cut>>;

/// A response body: all at once, or lines sent by a task as they are produced.
pub(crate) enum ResponseBody {
    Whole(Option<Bytes>),
    Streamed {
        lines: mpsc::Receiver<Result<Bytes, Cut>>,
        /// A cut was received and is due on the next poll (see `poll_frame`).
        cutting: bool,
    },
}

impl ResponseBody {
    /// A streamed body and its sender. A capacity of one keeps the producer at most a line
    /// ahead of the socket, so a client that went away is noticed on the next line.
    fn streamed() -> (Lines, ResponseBody) {
        let (sender, lines) = mpsc::channel(1);
        let body = ResponseBody::Streamed {
            lines,
            cutting: false,
        };
        (sender, body)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Cut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Cut>>> {
        match self.get_mut() {
            ResponseBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Streamed { cutting: true, .. } => Poll::Ready(Some(Err(Cut))),
            ResponseBody::Streamed { lines, cutting } => match ready!(lines.poll_recv(cx)) {
                // Hyper discards what it has buffered when a body fails, and only flushes
                // when the body is pending: so be pending once (waking at once) before
                // failing, and the lines sent before the cut reach the client.
                Some(Err(Cut)) => {
                    *cutting = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                line => Poll::Ready(line.map(|line| line.map(Frame::data))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Streamed { .. } => SizeHint::default(),
        }
    }
}

/// The fault that ends a stream early ([`crate::Fault::CutAfter`]).
#[derive(Debug)]
pub(crate) struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stream cut by the fake's CutAfter fault")
    }
}

impl std::error::Error for Cut {}

/// A request the fake closes the connection on instead of answering.
#[derive(Debug)]
pub(crate) struct Hangup;

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a fault of the fake")
    }
}

impl std::error::Error for Hangup {}

/// How a handler fails.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// `{"error": message}` with this status, as Ollama answers errors.
    Status(StatusCode, String),
    /// No answer at all: the connection is dropped.
    Hangup,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::BAD_REQUEST, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::Status(StatusCode::NOT_FOUND, message.into())
    }
}

/// Malformed or mistyped JSON is the client's fault: 400, as Gin's `ShouldBindJSON`.
impl From<serde_json::Error> for ApiError {
    fn from(error: serde_json::Error) -> ApiError {
        ApiError::bad_request(error.to_string())
    }
}

/// `value` as JSON with `status`.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(value).expect("wire types serialise to JSON");
    json_bytes(status, bytes)
}

/// Bytes already serialised as JSON, with `status`.
pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> HttpResponse {
    respond(status, JSON, ResponseBody::Whole(Some(bytes.into())))
}

/// Ollama's error answer: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message }))
}

/// A plain-text answer, as Gin gives for `404 page not found`.
pub(crate) fn text(status: StatusCode, text: &'static str) -> HttpResponse {
    respond(
        status,
        "text/plain",
        ResponseBody::Whole(Some(Bytes::from_static(text.as_bytes()))),
    )
}

/// 200 with no body (how `DELETE /api/delete` succeeds).
pub(crate) fn empty() -> HttpResponse {
    Response::new(ResponseBody::Whole(None))
}

/// An NDJSON stream and the sender its producer writes lines to.
pub(crate) fn ndjson() -> (Lines, HttpResponse) {
    let (lines, body) = ResponseBody::streamed();
    (lines, respond(StatusCode::OK, NDJSON, body))
}

fn respond(status: StatusCode, content_type: &'static str, body: ResponseBody) -> HttpResponse {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// One NDJSON line: `value` and a newline.
pub(crate) fn line(value: &impl Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("wire types serialise to JSON");
    bytes.push(b'\n');
    bytes.into()
}
