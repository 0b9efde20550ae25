//! The realtime hub's WebSocket as a client speaks it (`GET /v1/realtime/ws`):
//! [`Ws::connect`] opens a socket (optionally with a tiny receive buffer, to play a
//! slow reader), and every read has a deadline, so a test polls instead of sleeping
//! and a hub that says nothing fails the test instead of hanging it.
//!
//! Every event a [`Ws`] reads is checked on arrival: it names its channel, type and
//! payload, and its id is larger than any before it on this connection (events are
//! ordered by id, whatever channel they are on). Events are kept in
//! [`Ws::events`]; replies (`subscribed`, `error`, `pong`, ...) are handed to the
//! caller.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, handshake::client::Response as HandshakeResponse};

/// The hub's WebSocket path.
pub const PATH: &str = "/v1/realtime/ws";

/// What a socket read: a JSON message, the server's close frame, or the end of
/// the connection without one.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A text message, parsed (not an event: those go to [`Ws::events`]).
    Reply(Value),
    /// The server closed with this code and reason.
    Close(u16, String),
    /// The connection ended with no close frame (reset, EOF), or the read failed.
    Gone(String),
    /// An event was read (and kept in [`Ws::events`]); internal to the reads.
    #[doc(hidden)]
    Event,
}

/// The handshake was refused: an HTTP answer instead of `101`, or no connection.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status (0: no HTTP answer at all).
    pub status: u16,
    pub body: String,
}

/// How to open a socket.
#[derive(Default, Clone)]
pub struct Options {
    /// The query string, without `?` (e.g. `ticket=...`).
    pub query: Option<String>,
    /// `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// `SO_RCVBUF` set before connecting: small, the kernel advertises a small
    /// window and a client that never reads backs the server up quickly.
    pub receive_buffer: Option<usize>,
}

/// An open WebSocket to the hub.
pub struct Ws {
    socket: WebSocket<TcpStream>,
    /// Every event read so far, in order of arrival.
    pub events: Vec<Value>,
    /// Replies read while waiting for something else (kept for later `next_reply`).
    pending: Vec<Value>,
    /// Set once the connection ended: how.
    ended: Option<Frame>,
    /// What this socket is, for failure messages.
    pub name: String,
}

impl Ws {
    /// Opens `ws://` at the server whose base URL is `base` (`http://host:port`).
    pub fn connect(base: &str, options: &Options) -> Result<Ws, Refused> {
        let authority = base
            .strip_prefix("http://")
            .unwrap_or(base)
            .trim_end_matches('/');
        let mut url = format!("ws://{authority}{PATH}");
        if let Some(query) = &options.query {
            url.push('?');
            url.push_str(query);
        }
        let mut request = url.as_str().into_client_request().unwrap();
        if let Some(token) = &options.bearer {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let address: SocketAddr = authority.to_socket_addrs().unwrap().next().unwrap();
        let stream = open(address, options.receive_buffer).map_err(|error| Refused {
            status: 0,
            body: error.to_string(),
        })?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        match tungstenite::client(request, stream) {
            Ok((socket, _)) => Ok(Ws {
                socket,
                events: Vec::new(),
                pending: Vec::new(),
                ended: None,
                name: url,
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(refused(&response))
            }
            Err(error) => Err(Refused {
                status: 0,
                body: error.to_string(),
            }),
        }
    }

    /// [`Self::connect`] that must succeed, authenticated by `bearer`.
    #[track_caller]
    pub fn open(base: &str, bearer: &str) -> Ws {
        Self::connect(
            base,
            &Options {
                bearer: Some(bearer.to_owned()),
                ..Options::default()
            },
        )
        .unwrap_or_else(|refused| panic!("the WebSocket was refused: {refused:?}"))
    }

    /// Sends a JSON message.
    pub fn send(&mut self, message: &Value) {
        self.send_message(Message::text(message.to_string()));
    }

    /// Sends any frame; a failure to send is ignored (the server may have closed:
    /// the next read tells).
    pub fn send_message(&mut self, message: Message) {
        let _ = self.socket.send(message);
    }

    /// `{"type":"subscribe","channel":...,"since":...}`, and the answer to it: the
    /// `subscribed` or `error` reply naming `channel` (events read meanwhile are
    /// kept), or how the connection ended.
    pub fn subscribe(&mut self, channel: &str, since: Option<i64>) -> Frame {
        let mut message = json!({ "type": "subscribe", "channel": channel });
        if let Some(since) = since {
            message["since"] = json!(since);
        }
        self.send(&message);
        self.reply_where(Duration::from_secs(20), |reply| {
            matches!(reply["type"].as_str(), Some("subscribed" | "error"))
                && (reply["channel"] == channel || reply["channel"].is_null())
        })
    }

    /// Subscribes to `channel`, which must succeed; the `subscribed` reply's cursor.
    #[track_caller]
    pub fn subscribed(&mut self, channel: &str, since: Option<i64>) -> i64 {
        match self.subscribe(channel, since) {
            Frame::Reply(reply) if reply["type"] == "subscribed" => {
                reply["cursor"].as_i64().unwrap_or_else(|| {
                    panic!(
                        "{}: `subscribed` without a numeric cursor: {reply}",
                        self.name
                    )
                })
            }
            other => panic!("{}: subscribing to {channel}: {other:?}", self.name),
        }
    }

    /// Reads until a reply satisfies `wanted` (other replies are kept for later),
    /// the connection ends, or `timeout` passes (a panic).
    #[track_caller]
    pub fn reply_where(&mut self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> Frame {
        if let Some(at) = self.pending.iter().position(&wanted) {
            return Frame::Reply(self.pending.remove(at));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_until(deadline) {
                Some(Frame::Event) => {}
                Some(Frame::Reply(reply)) if wanted(&reply) => return Frame::Reply(reply),
                Some(Frame::Reply(reply)) => self.pending.push(reply),
                Some(ended) => return ended,
                None => panic!(
                    "{}: no reply wanted within {timeout:?}; replies: {:?}, events: {}",
                    self.name,
                    self.pending,
                    self.events.len()
                ),
            }
        }
    }

    /// The next reply (not an event) or the end, within `timeout`; `None` if
    /// nothing came.
    pub fn next_reply(&mut self, timeout: Duration) -> Option<Frame> {
        if !self.pending.is_empty() {
            return Some(Frame::Reply(self.pending.remove(0)));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_until(deadline) {
                Some(Frame::Event) => {}
                other => return other,
            }
        }
    }

    /// Reads (events into [`Self::events`]) until `done` holds of the events, the
    /// connection ends or `timeout` passes; whether `done` held.
    pub fn wait_events(&mut self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.events) {
                return true;
            }
            match self.read_until(deadline) {
                Some(Frame::Event) => {}
                Some(Frame::Reply(reply)) => self.pending.push(reply),
                Some(_) | None => return done(&self.events),
            }
        }
    }

    /// [`Self::wait_events`] that must succeed.
    #[track_caller]
    pub fn expect_events(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) {
        if !self.wait_events(timeout, done) {
            panic!(
                "{}: {what}: not within {timeout:?} (ended: {:?}); {} events, the last: {:#?}",
                self.name,
                self.ended,
                self.events.len(),
                self.events.iter().rev().take(3).collect::<Vec<_>>()
            );
        }
    }

    /// Reads until the server closes or the connection ends, within `timeout`,
    /// keeping events and replies; how it ended, or `None` if still open.
    pub fn wait_closed(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_until(deadline) {
                Some(Frame::Event) => {}
                Some(Frame::Reply(reply)) => self.pending.push(reply),
                Some(ended) => return Some(ended),
                None => return None,
            }
        }
    }

    /// The close code the server ended with, which it must do within `timeout`.
    #[track_caller]
    pub fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        match self.wait_closed(timeout) {
            Some(Frame::Close(code, reason)) => (code, reason),
            other => panic!(
                "{}: expected a close frame within {timeout:?}, got {other:?}; replies {:?}",
                self.name, self.pending
            ),
        }
    }

    /// A `ping` message answered by `pong` within `timeout`: the socket is alive.
    pub fn pings(&mut self, timeout: Duration) -> bool {
        self.send(&json!({ "type": "ping" }));
        matches!(
            self.reply_where_or_end(timeout, |reply| reply["type"] == "pong"),
            Some(Frame::Reply(_))
        )
    }

    /// [`Self::reply_where`] returning `None` at the deadline instead of panicking.
    pub fn reply_where_or_end(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Frame> {
        if let Some(at) = self.pending.iter().position(&wanted) {
            return Some(Frame::Reply(self.pending.remove(at)));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_until(deadline)? {
                Frame::Event => {}
                Frame::Reply(reply) if wanted(&reply) => return Some(Frame::Reply(reply)),
                Frame::Reply(reply) => self.pending.push(reply),
                ended => return Some(ended),
            }
        }
    }

    /// The ids of the events read, in order of arrival.
    pub fn ids(&self) -> Vec<i64> {
        self.events
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    }

    /// The id of the last event read (0 if none).
    pub fn last_id(&self) -> i64 {
        self.events.last().map_or(0, |e| e["id"].as_i64().unwrap())
    }

    /// Replies received and not yet taken.
    pub fn pending(&self) -> &[Value] {
        &self.pending
    }

    /// Drops the TCP connection with no close frame, by a reset (a client that
    /// vanished).
    pub fn kill(self) {
        let stream = self.socket.get_ref();
        let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
        // Dropped here: closing a socket lingering zero seconds sends RST.
    }

    /// Closes with 1000 and waits a little for the server's answer.
    pub fn close(mut self) {
        let _ = self.socket.close(None);
        let _ = self.wait_closed(Duration::from_secs(2));
    }

    /// Reads one message before `deadline`: an event is checked and kept
    /// ([`Frame::Event`]), a reply or the end is returned; `None` at the deadline.
    fn read_until(&mut self, deadline: Instant) -> Option<Frame> {
        if let Some(ended) = &self.ended {
            return Some(ended.clone());
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.socket.get_ref().set_read_timeout(Some(wait)).unwrap();
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    let value: Value =
                        serde_json::from_str(text.as_str()).unwrap_or_else(|error| {
                            panic!(
                                "{}: a message that is not JSON ({error}): {text}",
                                self.name
                            )
                        });
                    if value["type"] == "event" {
                        self.keep_event(value);
                        return Some(Frame::Event);
                    }
                    return Some(Frame::Reply(value));
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((CloseCode::Status.into(), String::new()));
                    let ended = Frame::Close(code, reason);
                    self.ended = Some(ended.clone());
                    return Some(ended);
                }
                Ok(Message::Binary(bytes)) => {
                    panic!("{}: a binary message from the hub: {bytes:?}", self.name)
                }
                Ok(_) => continue, // ping, pong, raw frames: tungstenite answers pings
                Err(tungstenite::Error::Io(error))
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(error) => {
                    let ended = Frame::Gone(error.to_string());
                    self.ended = Some(ended.clone());
                    return Some(ended);
                }
            }
        }
    }

    fn keep_event(&mut self, event: Value) {
        let id = event["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: an event without a numeric id: {event}", self.name));
        assert!(
            event["channel"].is_string()
                && event["event"].is_string()
                && !event["payload"].is_null(),
            "{}: an event without its channel, type or payload: {event}",
            self.name
        );
        if let Some(last) = self.events.last() {
            let last = last["id"].as_i64().unwrap();
            assert!(
                id > last,
                "{}: event ids must strictly increase on a connection: {id} came after {last}: {event}",
                self.name
            );
        }
        self.events.push(event);
    }
}

fn refused(response: &HandshakeResponse) -> Refused {
    Refused {
        status: response.status().as_u16(),
        body: response
            .body()
            .as_ref()
            .map(|body| String::from_utf8_lossy(body).into_owned())
            .unwrap_or_default(),
    }
}

/// A TCP connection to `address`, its receive buffer set first if asked.
fn open(address: SocketAddr, receive_buffer: Option<usize>) -> std::io::Result<TcpStream> {
    let Some(size) = receive_buffer else {
        return TcpStream::connect_timeout(&address, Duration::from_secs(10));
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_recv_buffer_size(size)?;
    socket.connect_timeout(&address.into(), Duration::from_secs(10))?;
    Ok(socket.into())
}

/// The text of events' token chunks (`turn.token` of `message_id`), put together
/// by offset: every chunk must start where the text so far ends (a gap or an
/// overlap is a panic naming it). Duplicate chunks (the same offset and content)
/// are a panic too: resume must not repeat.
#[track_caller]
pub fn reassemble(events: &[Value], message_id: &str) -> String {
    let mut chunks: Vec<(usize, String)> = events
        .iter()
        .filter(|e| e["event"] == "turn.token" && e["payload"]["message_id"] == message_id)
        .map(|e| {
            (
                e["payload"]["offset"].as_u64().expect("a chunk's offset") as usize,
                e["payload"]["content"]
                    .as_str()
                    .expect("a chunk's content")
                    .to_owned(),
            )
        })
        .collect();
    chunks.sort_by_key(|(offset, _)| *offset);
    let mut text = String::new();
    let mut chars = 0;
    for (offset, content) in chunks {
        assert_eq!(
            offset, chars,
            "token chunks of {message_id} do not join: one starts at {offset}, the text so far has {chars} characters ({text:?})"
        );
        chars += content.chars().count();
        text.push_str(&content);
    }
    text
}
