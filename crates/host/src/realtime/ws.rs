//! `GET /v1/realtime/ws`: the hub's WebSocket.
//!
//! hyper answers the upgrade (`101`, `Sec-WebSocket-Accept`) and hands over the
//! connection; tungstenite speaks the frames. Every message is a JSON object with
//! a `type`.
//!
//! | Client → server | Server → client |
//! |---|---|
//! | `{"type":"auth","token":"..."}` (first, when the upgrade carried no `Authorization` or `?ticket=`) | `{"type":"authenticated","user_id":...,"role":...}` |
//! | `{"type":"subscribe","channel":"discussion:<id>","since":123}` (`since` optional) | `{"type":"subscribed","channel":...,"cursor":N}`, then the replay, then live events |
//! | `{"type":"unsubscribe","channel":...}` | `{"type":"unsubscribed","channel":...}` |
//! | `{"type":"ping"}` | `{"type":"pong"}` |
//! | | `{"type":"event","id":N,"channel":...,"event":"message.created","payload":{...},"created_at":...}` |
//! | | `{"type":"error","code":"forbidden\|not_found\|validation_failed\|...","detail":...,"channel":...}` |
//!
//! A subscription with `since` S replays the channel's events after S from the log,
//! then continues live with no gap and no duplicate at the seam (see
//! [`crate::realtime::hub`]); the replayed events are merged with the connection's
//! other channels' queued events, so ids only grow on a connection unless a client
//! asks for history older than what it already got. Without `since` it is live only.
//!
//! The server sends WebSocket pings every [`PING_INTERVAL`]; a client heard from
//! neither by pong nor otherwise for [`PING_TIMEOUT`] is closed. Close codes:
//!
//! | Code | When |
//! |---|---|
//! | 1000 | normal closure; idle (no subscription for the idle timeout) |
//! | 1001 | the server is shutting down: reconnect (and resume with `since`) |
//! | 1008 | a message that is not JSON, or a binary one |
//! | 1009 | a message over [`MAX_MESSAGE_BYTES`] |
//! | 1011 | the server failed |
//! | 4001 | unauthorized: no or invalid credentials, or a message before `auth` |
//! | 4003 | forbidden: the session was revoked, the key or user disabled |
//! | 4008 | slow consumer: the connection's queue filled up; resume from the last id |
//! | 4029 | too many connections for this user |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arena_common::Problem;
use arena_common::auth::{Credential, Identity};
use arena_common::time::Timestamp;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::Realtime;
use super::auth::{self, RevocationWatch, Verdict};
use super::channels::{self, Channel};
use crate::realtime::ConnectionGuard;
use crate::realtime::hub::{Event, Hub, Subscriber, SubscriptionId};
use crate::server::Body;

/// How often the server pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A client not heard from for this long is gone.
pub const PING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an unauthenticated socket may wait before its `auth` message.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection's credential is checked again (its session live,
/// its user enabled); revocation events close it sooner.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(60);
/// The largest message a client may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Channels one connection may be subscribed to at once.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// How long the close frame of a slow consumer waits for the client to read
/// what is buffered before it: the client reads its backlog, then the code.
/// (Dropped sooner, the socket is reset once the kernel gives up on the
/// unread data, and the client never learns why.)
const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(120);
/// How long any other close frame may take to send, and the client's reply to come.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long one write may block before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Events written per flush.
const WRITE_BATCH: usize = 64;
/// The `Sec-WebSocket-Version` spoken.
const WEBSOCKET_VERSION: &str = "13";

// ---------------------------------------------------------------------------
// Protocol messages
// ---------------------------------------------------------------------------

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Auth { token: String },
    Subscribe { channel: String, since: Option<i64> },
    Unsubscribe { channel: String },
    Ping,
}

/// Why a client's text could not be read as a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadMessage {
    /// Not a JSON object: the connection is closed (1008).
    NotJson(String),
    /// JSON, but not a valid message: an `error` reply (`validation_failed`), and
    /// the connection goes on. `channel` is the message's, when it named one.
    Invalid {
        detail: String,
        channel: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    Auth {
        token: String,
    },
    Subscribe {
        channel: String,
        #[serde(default)]
        since: Option<i64>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping {},
}

/// Reads a client's text message.
pub fn parse_message(text: &str) -> Result<ClientMessage, BadMessage> {
    let value: Value = serde_json::from_str(text)
        .map_err(|error| BadMessage::NotJson(format!("a message must be JSON: {error}")))?;
    let Some(object) = value.as_object() else {
        return Err(BadMessage::NotJson(
            "a message must be a JSON object".to_owned(),
        ));
    };
    let channel = object
        .get("channel")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let invalid = |detail: String| BadMessage::Invalid {
        detail,
        channel: channel.clone(),
    };
    match object.get("type") {
        Some(Value::String(kind)) => {
            if !matches!(kind.as_str(), "auth" | "subscribe" | "unsubscribe" | "ping") {
                return Err(invalid(format!(
                    "unknown message type `{kind}`: expected auth, subscribe, unsubscribe or ping"
                )));
            }
        }
        _ => {
            return Err(invalid(
                "a message needs a string `type`: auth, subscribe, unsubscribe or ping".to_owned(),
            ));
        }
    }
    let wire: Wire =
        serde_json::from_value(value.clone()).map_err(|error| invalid(error.to_string()))?;
    Ok(match wire {
        Wire::Auth { token } => ClientMessage::Auth { token },
        Wire::Subscribe { channel, since } => {
            if since.is_some_and(|since| since < 0) {
                return Err(invalid("`since` must be an event id, 0 or more".to_owned()));
            }
            ClientMessage::Subscribe { channel, since }
        }
        Wire::Unsubscribe { channel } => ClientMessage::Unsubscribe { channel },
        Wire::Ping {} => ClientMessage::Ping,
    })
}

/// A message to the client (events are written by [`event_message`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply<'a> {
    Authenticated {
        user_id: uuid::Uuid,
        role: arena_common::auth::Role,
    },
    Subscribed {
        channel: &'a str,
        cursor: i64,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Error {
        code: &'a str,
        detail: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
    },
    Pong,
}

impl Reply<'_> {
    fn to_message(&self) -> Message {
        Message::text(serde_json::to_string(self).unwrap_or_default())
    }
}

#[derive(Serialize)]
struct EventMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: i64,
    channel: &'a str,
    event: &'a str,
    payload: &'a RawValue,
    created_at: Timestamp,
}

/// The `event` message of `event`.
pub fn event_message(event: &Event) -> String {
    serde_json::to_string(&EventMessage {
        kind: "event",
        id: event.id,
        channel: &event.channel,
        event: &event.kind,
        payload: &event.payload,
        created_at: Timestamp::from(event.created_at),
    })
    .unwrap_or_default()
}

/// Why the server closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed, or is done.
    Normal,
    /// No subscription for the idle timeout.
    Idle,
    /// No pong (nor anything else) for [`PING_TIMEOUT`].
    Unresponsive,
    /// The server is shutting down.
    GoingAway,
    /// A message that is not JSON, or binary.
    Policy(String),
    /// A message over [`MAX_MESSAGE_BYTES`].
    TooBig,
    Unauthorized(String),
    /// The credential stopped working (session revoked, key revoked, user disabled).
    Revoked(String),
    SlowConsumer,
    TooManyConnections(String),
    /// The server could not go on (the database is down while authenticating).
    ServerError(String),
}

impl CloseReason {
    /// The close code and the reason sent with it (at most 123 bytes).
    pub fn code_and_reason(&self) -> (u16, String) {
        let (code, reason): (u16, &str) = match self {
            CloseReason::Normal => (1000, ""),
            CloseReason::Idle => (1000, "idle: no subscription"),
            CloseReason::Unresponsive => (1000, "no pong: the connection seems dead"),
            CloseReason::GoingAway => (1001, "reconnect: the server is shutting down"),
            CloseReason::Policy(detail) => (1008, detail),
            CloseReason::TooBig => (1009, "message too big"),
            CloseReason::ServerError(detail) => (1011, detail),
            CloseReason::Unauthorized(detail) => (4001, detail),
            CloseReason::Revoked(detail) => (4003, detail),
            CloseReason::SlowConsumer => (4008, "slow consumer: resume from your last event id"),
            CloseReason::TooManyConnections(detail) => (4029, detail),
        };
        (code, truncate(reason, 123))
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

// ---------------------------------------------------------------------------
// The handshake
// ---------------------------------------------------------------------------

/// Checks the upgrade request; the `Sec-WebSocket-Accept` to answer with.
fn accept_key(headers: &HeaderMap) -> Result<String, Problem> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .unwrap_or_default()
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err(Problem::validation_failed(
            "this endpoint speaks WebSocket: send an upgrade request (`Connection: Upgrade`, `Upgrade: websocket`)",
        ));
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != WEBSOCKET_VERSION)
    {
        return Err(Problem::validation_failed(
            "only WebSocket version 13 is spoken (`Sec-WebSocket-Version: 13`)",
        )
        .with_header(
            SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static(WEBSOCKET_VERSION),
        ));
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Problem::validation_failed("the upgrade has no `Sec-WebSocket-Key`"))?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Answers the upgrade, then serves the socket on a task of its own.
pub async fn handle(
    realtime: Arc<Realtime>,
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Problem> {
    let accept = accept_key(req.headers())?;
    let ticket = super::http::query_param(req.uri().query(), "ticket");
    let identity = super::http::authenticate(&realtime, req.headers(), ticket.as_deref())
        .await
        .map_err(|error| error.problem())?;
    let mut guard = realtime.connection();
    if let Some(identity) = &identity {
        guard
            .authenticate(identity.user_id)
            .map_err(super::http::too_many)?;
    }
    super::http::hub_ready(&realtime).await?;
    let request_id = req
        .extensions()
        .get::<crate::realtime::RequestInfo>()
        .map(|info| info.request_id.clone());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    // Small buffers: tens of thousands of connections are held at once.
                    .read_buffer_size(4096)
                    .write_buffer_size(16 * 1024)
                    .max_message_size(Some(MAX_MESSAGE_BYTES))
                    .max_frame_size(Some(MAX_MESSAGE_BYTES));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                Connection::new(realtime, guard, identity, request_id)
                    .run(socket)
                    .await;
            }
            Err(error) => tracing::debug!("the WebSocket upgrade failed: {error}"),
        }
    });
    let mut response = Response::new(super::http::full(String::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(Problem::internal)?,
    );
    Ok(response)
}

// ---------------------------------------------------------------------------
// The connection
// ---------------------------------------------------------------------------

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// What the reading half hands the connection.
enum Inbound {
    Text(tungstenite::Utf8Bytes),
    Binary,
    /// The client sent a close frame (its reply, if the server closed first).
    Closed,
    /// Reading failed (the message was too big, the connection broke).
    Failed(tungstenite::Error),
}

/// One subscription of the connection.
struct Subscription {
    id: SubscriptionId,
    /// Live events at or below this id are not delivered (the replay had them,
    /// or the client said it had them).
    floor: i64,
}

/// How the connection loop ended.
enum Stop {
    Close(CloseReason),
    /// The client is gone (its socket broke, or a write stalled): no close frame.
    Gone,
}

struct Connection {
    realtime: Arc<Realtime>,
    guard: ConnectionGuard,
    identity: Option<Identity>,
    request_id: Option<Arc<str>>,
    queue: Subscriber,
    events: mpsc::Receiver<Arc<Event>>,
    subscriptions: HashMap<Arc<str>, Subscription>,
    revocation: Option<RevocationWatch>,
    /// Milliseconds since `started` when the client was last heard from.
    heard: Arc<AtomicU64>,
    started: Instant,
    /// When the connection last had no subscription (or started).
    idle_since: Instant,
}

impl Connection {
    fn new(
        realtime: Arc<Realtime>,
        guard: ConnectionGuard,
        identity: Option<Identity>,
        request_id: Option<Arc<str>>,
    ) -> Connection {
        let (queue, events) = Subscriber::new(realtime.config.queue_capacity);
        let now = Instant::now();
        Connection {
            realtime,
            guard,
            identity,
            request_id,
            queue,
            events,
            subscriptions: HashMap::new(),
            revocation: None,
            heard: Arc::new(AtomicU64::new(0)),
            started: now,
            idle_since: now,
        }
    }

    async fn run(mut self, socket: Socket) {
        let (mut sink, stream) = socket.split();
        let (inbound_tx, mut inbound) = mpsc::channel(8);
        let reader = tokio::spawn(read(stream, inbound_tx, self.heard.clone(), self.started));
        if self.identity.is_some() {
            self.watch_revocation();
        }
        tracing::debug!(
            request_id = self.request_id.as_deref().unwrap_or_default(),
            user_id = ?self.identity.map(|identity| identity.user_id),
            "WebSocket open"
        );
        let stop = self.serve(&mut sink, &mut inbound).await;
        let reason = match &stop {
            Stop::Close(reason) => Some(reason.clone()),
            Stop::Gone => None,
        };
        let guard = self.end(reason.as_ref());
        // A slow consumer's close may wait long for the client to read its
        // backlog: it no longer counts (against the user's limit, the gauge, the
        // drain at shutdown) meanwhile. Any other connection counts until closed,
        // so a shutdown waits for its 1001 to be sent.
        let (guard, grace) = match reason {
            Some(CloseReason::SlowConsumer) => {
                drop(guard);
                (None, SLOW_CLOSE_GRACE)
            }
            _ => (Some(guard), CLOSE_GRACE),
        };
        if let Some(reason) = &reason {
            let (code, text) = reason.code_and_reason();
            let frame = Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: text.into(),
            }));
            // Flushes what is buffered before it too: a slow client gets its
            // backlog, then the code.
            if tokio::time::timeout(grace, sink.send(frame)).await.is_ok() {
                // The client's close reply, so the connection ends cleanly (a
                // socket closed with unread input is reset, and the client could
                // lose the close frame).
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    while let Some(message) = inbound.recv().await {
                        if matches!(message, Inbound::Closed | Inbound::Failed(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        reader.abort();
        drop(guard);
    }

    /// Unsubscribes everything and logs how the connection ended; what is
    /// left is its place among the connections.
    fn end(mut self, reason: Option<&CloseReason>) -> ConnectionGuard {
        for (_, subscription) in self.subscriptions.drain() {
            self.realtime.hub.unsubscribe(subscription.id);
        }
        self.unwatch_revocation();
        let (code, text) = reason.map_or((1006, String::new()), CloseReason::code_and_reason);
        tracing::debug!(
            request_id = self.request_id.as_deref().unwrap_or_default(),
            user_id = ?self.identity.map(|identity| identity.user_id),
            code,
            reason = %text,
            "WebSocket closed"
        );
        self.guard
    }

    /// The connection's loop, until it must close.
    async fn serve(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        inbound: &mut mpsc::Receiver<Inbound>,
    ) -> Stop {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut recheck =
            tokio::time::interval_at(Instant::now() + RECHECK_INTERVAL, RECHECK_INTERVAL);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.realtime.shutdown.clone();
        loop {
            let deadline = self.deadline();
            let step = tokio::select! {
                biased;
                () = shutdown.triggered() => Err(Stop::Close(CloseReason::GoingAway)),
                () = self.queue.slowed() => Err(Stop::Close(CloseReason::SlowConsumer)),
                verdict = next_verdict(&mut self.revocation, &self.realtime.hub, self.identity) => {
                    self.on_verdict(verdict).await
                }
                message = inbound.recv() => match message {
                    Some(Inbound::Text(text)) => self.on_text(sink, text.as_str()).await,
                    Some(Inbound::Binary) => Err(Stop::Close(CloseReason::Policy(
                        "binary messages are not spoken here: send JSON text".to_owned(),
                    ))),
                    Some(Inbound::Closed) => Err(Stop::Close(CloseReason::Normal)),
                    Some(Inbound::Failed(error)) => Err(match error {
                        tungstenite::Error::Capacity(_) => Stop::Close(CloseReason::TooBig),
                        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
                            Stop::Close(CloseReason::Policy("not a valid WebSocket frame".to_owned()))
                        }
                        _ => Stop::Gone,
                    }),
                    None => Err(Stop::Gone),
                },
                event = self.events.recv() => match event {
                    Some(event) => self.deliver(sink, vec![event]).await,
                    None => Err(Stop::Gone),
                },
                _ = ping.tick() => {
                    if self.silent_for() >= PING_TIMEOUT {
                        Err(Stop::Close(CloseReason::Unresponsive))
                    } else {
                        self.write(sink, vec![Message::Ping(tungstenite::Bytes::new())]).await
                    }
                }
                _ = recheck.tick() => self.recheck().await,
                () = tokio::time::sleep_until(deadline) => Err(Stop::Close(match self.identity {
                    None => CloseReason::Unauthorized(
                        "no `auth` message in time: send {\"type\":\"auth\",\"token\":...} first".to_owned(),
                    ),
                    Some(_) => CloseReason::Idle,
                })),
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// When the connection closes for want of something to do: the auth timeout
    /// before authentication, the idle timeout while it has no subscription.
    fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        match self.identity {
            None => self.started + AUTH_TIMEOUT,
            Some(_) if self.subscriptions.is_empty() => {
                self.idle_since + self.realtime.config.idle_timeout
            }
            Some(_) => far,
        }
    }

    fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.heard.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(heard)
    }

    /// Writes `messages` and flushes, unless the server shuts down or the
    /// connection is found slow meanwhile, or the write stalls.
    async fn write(
        &self,
        sink: &mut SplitSink<Socket, Message>,
        messages: Vec<Message>,
    ) -> Result<(), Stop> {
        let shutdown = &self.realtime.shutdown;
        let written = async {
            for message in messages {
                sink.feed(message).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            result = tokio::time::timeout(WRITE_TIMEOUT, written) => match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) | Err(_) => Err(Stop::Gone),
            },
            () = shutdown.triggered() => Err(Stop::Close(CloseReason::GoingAway)),
            () = self.queue.slowed() => Err(Stop::Close(CloseReason::SlowConsumer)),
        }
    }

    async fn reply(
        &self,
        sink: &mut SplitSink<Socket, Message>,
        reply: Reply<'_>,
    ) -> Result<(), Stop> {
        self.write(sink, vec![reply.to_message()]).await
    }

    async fn error(
        &self,
        sink: &mut SplitSink<Socket, Message>,
        code: &str,
        detail: &str,
        channel: Option<&str>,
    ) -> Result<(), Stop> {
        self.reply(
            sink,
            Reply::Error {
                code,
                detail,
                channel,
            },
        )
        .await
    }

    /// Writes `first` and whatever else is queued (up to a batch), in order,
    /// skipping what the connection no longer wants.
    async fn deliver(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        first: Vec<Arc<Event>>,
    ) -> Result<(), Stop> {
        let mut batch = first;
        while batch.len() < WRITE_BATCH {
            match self.events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let messages: Vec<Message> = batch
            .iter()
            .filter(|event| self.wanted(event))
            .map(|event| Message::text(event_message(event)))
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        self.write(sink, messages).await
    }

    /// Whether a queued live event is for a current subscription and above its floor.
    fn wanted(&self, event: &Event) -> bool {
        self.subscriptions
            .get(&*event.channel)
            .is_some_and(|subscription| event.id > subscription.floor)
    }

    async fn on_text(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        text: &str,
    ) -> Result<(), Stop> {
        let message = match parse_message(text) {
            Ok(message) => message,
            Err(BadMessage::NotJson(detail)) => {
                return Err(Stop::Close(CloseReason::Policy(detail)));
            }
            Err(BadMessage::Invalid { detail, channel }) => {
                if self.identity.is_none() {
                    return Err(Stop::Close(CloseReason::Unauthorized(
                        "authenticate first: {\"type\":\"auth\",\"token\":...}".to_owned(),
                    )));
                }
                return self
                    .error(sink, "validation_failed", &detail, channel.as_deref())
                    .await;
            }
        };
        match (message, self.identity) {
            (ClientMessage::Auth { token }, None) => self.on_auth(sink, &token).await,
            (ClientMessage::Auth { .. }, Some(_)) => {
                self.error(
                    sink,
                    "validation_failed",
                    "this connection is already authenticated",
                    None,
                )
                .await
            }
            (_, None) => Err(Stop::Close(CloseReason::Unauthorized(
                "authenticate first: {\"type\":\"auth\",\"token\":...}".to_owned(),
            ))),
            (ClientMessage::Subscribe { channel, since }, Some(identity)) => {
                self.subscribe(sink, &identity, &channel, since).await
            }
            (ClientMessage::Unsubscribe { channel }, Some(_)) => {
                self.unsubscribe(sink, &channel).await
            }
            (ClientMessage::Ping, Some(_)) => self.reply(sink, Reply::Pong).await,
        }
    }

    async fn on_auth(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        token: &str,
    ) -> Result<(), Stop> {
        let db = match self.realtime.db.get().await {
            Ok(db) => db,
            Err(error) => {
                tracing::warn!("realtime pool: {error}");
                return Err(Stop::Close(CloseReason::ServerError(
                    "the credentials could not be checked; reconnect".to_owned(),
                )));
            }
        };
        let identity = match super::http::identify(&self.realtime, &db, token).await {
            Ok(identity) => identity,
            Err(auth::AuthError::Failed(error)) => {
                tracing::warn!("realtime authentication: {error:#}");
                return Err(Stop::Close(CloseReason::ServerError(
                    "the credentials could not be checked; reconnect".to_owned(),
                )));
            }
            Err(error) => return Err(Stop::Close(CloseReason::Unauthorized(error.detail()))),
        };
        drop(db);
        if let Err(error) = self.guard.authenticate(identity.user_id) {
            return Err(Stop::Close(CloseReason::TooManyConnections(
                error.to_string(),
            )));
        }
        self.identity = Some(identity);
        self.idle_since = Instant::now();
        self.watch_revocation();
        self.reply(
            sink,
            Reply::Authenticated {
                user_id: identity.user_id,
                role: identity.role,
            },
        )
        .await
    }

    async fn subscribe(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        identity: &Identity,
        text: &str,
        since: Option<i64>,
    ) -> Result<(), Stop> {
        let channel = match Channel::parse(text) {
            Ok(channel) => channel,
            Err(detail) => {
                return self
                    .error(sink, "validation_failed", &detail, Some(text))
                    .await;
            }
        };
        let name: Arc<str> = Arc::from(channel.to_string());
        if !self.subscriptions.contains_key(&name) && self.subscriptions.len() >= MAX_SUBSCRIPTIONS
        {
            let detail = format!(
                "a connection may hold {MAX_SUBSCRIPTIONS} subscriptions; unsubscribe first"
            );
            return self
                .error(sink, "validation_failed", &detail, Some(text))
                .await;
        }
        let decision = match self.realtime.db.get().await {
            Ok(db) => channels::authorize(&db, identity, channel).await,
            Err(error) => Err(anyhow::anyhow!("realtime pool: {error}")),
        };
        match decision {
            Ok(Ok(())) => {}
            Ok(Err(refusal)) => {
                return self
                    .error(sink, refusal.code(), refusal.detail(), Some(text))
                    .await;
            }
            Err(error) => {
                tracing::warn!(channel = %name, "authorizing a subscription: {error:#}");
                return self
                    .error(
                        sink,
                        "upstream_unavailable",
                        "the subscription could not be checked; retry",
                        Some(text),
                    )
                    .await;
            }
        }
        // Subscribing again replaces the subscription (and replays from `since`).
        if let Some(previous) = self.subscriptions.remove(&name) {
            self.realtime.hub.unsubscribe(previous.id);
        }
        let (id, cursor) = self.realtime.hub.subscribe(&name, self.queue.clone());
        let floor = since.map_or(cursor, |since| since.max(cursor));
        self.subscriptions
            .insert(name.clone(), Subscription { id, floor });
        self.reply(
            sink,
            Reply::Subscribed {
                channel: &name,
                cursor: floor,
            },
        )
        .await?;
        let Some(since) = since.filter(|since| *since < cursor) else {
            return Ok(());
        };
        let replayed = match self.realtime.hub.replay(&name, since, cursor).await {
            Ok(replayed) => replayed,
            Err(error) => {
                tracing::warn!(channel = %name, "replaying: {error:#}");
                if let Some(subscription) = self.subscriptions.remove(&name) {
                    self.realtime.hub.unsubscribe(subscription.id);
                }
                return self
                    .error(
                        sink,
                        "upstream_unavailable",
                        "the channel's history could not be read; subscribe again",
                        Some(&name),
                    )
                    .await;
            }
        };
        // The replay, merged with what the other channels queued meanwhile, so
        // ids keep growing on the connection.
        let mut queued = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            queued.push(event);
        }
        let merged = merge(replayed, queued);
        for chunk in merged.chunks(WRITE_BATCH) {
            let messages: Vec<Message> = chunk
                .iter()
                .filter(|(replayed, event)| *replayed || self.wanted(event))
                .map(|(_, event)| Message::text(event_message(event)))
                .collect();
            if !messages.is_empty() {
                self.write(sink, messages).await?;
            }
        }
        Ok(())
    }

    async fn unsubscribe(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        text: &str,
    ) -> Result<(), Stop> {
        let name = match Channel::parse(text) {
            Ok(channel) => channel.to_string(),
            Err(detail) => {
                return self
                    .error(sink, "validation_failed", &detail, Some(text))
                    .await;
            }
        };
        match self.subscriptions.remove(name.as_str()) {
            Some(subscription) => {
                self.realtime.hub.unsubscribe(subscription.id);
                if self.subscriptions.is_empty() {
                    self.idle_since = Instant::now();
                }
                self.reply(sink, Reply::Unsubscribed { channel: &name })
                    .await
            }
            None => {
                self.error(
                    sink,
                    "not_found",
                    "this connection is not subscribed to the channel",
                    Some(text),
                )
                .await
            }
        }
    }

    /// Watches the user's channel for the revocation of the connection's session.
    fn watch_revocation(&mut self) {
        self.unwatch_revocation();
        if let Some(identity) = &self.identity {
            self.revocation = Some(RevocationWatch::start(&self.realtime.hub, identity));
        }
    }

    fn unwatch_revocation(&mut self) {
        if let Some(watch) = self.revocation.take() {
            watch.stop(&self.realtime.hub);
        }
    }

    async fn on_verdict(&mut self, verdict: Verdict) -> Result<(), Stop> {
        match verdict {
            Verdict::Unaffected => Ok(()),
            Verdict::Revoked => Err(Stop::Close(CloseReason::Revoked(
                "the session was revoked".to_owned(),
            ))),
            Verdict::Recheck => self.recheck().await,
        }
    }

    /// Closes the connection if its credential no longer works.
    async fn recheck(&mut self) -> Result<(), Stop> {
        let Some(identity) = self.identity else {
            return Ok(());
        };
        let live = match self.realtime.db.get().await {
            Ok(db) => auth::still_live(&db, &identity).await,
            Err(error) => Err(anyhow::anyhow!("realtime pool: {error}")),
        };
        match live {
            Ok(true) => Ok(()),
            Ok(false) => Err(Stop::Close(CloseReason::Revoked(
                match identity.credential {
                    Credential::Session(_) => "the session has ended",
                    Credential::ApiKey(_) => "the API key is no longer valid",
                }
                .to_owned(),
            ))),
            // The database is down: the connection keeps what it was allowed.
            Err(error) => {
                tracing::debug!("re-checking a realtime credential: {error:#}");
                Ok(())
            }
        }
    }
}

/// What the next event on the user's channel means; never, without a watch.
async fn next_verdict(
    watch: &mut Option<RevocationWatch>,
    hub: &Hub,
    identity: Option<Identity>,
) -> Verdict {
    match (watch, identity) {
        (Some(watch), Some(identity)) => watch.next(hub, &identity).await,
        _ => std::future::pending().await,
    }
}

/// `replayed` and `queued` merged by id; each item says whether it was replayed
/// (and so is delivered whatever the subscription floors say).
fn merge(replayed: Vec<Arc<Event>>, queued: Vec<Arc<Event>>) -> Vec<(bool, Arc<Event>)> {
    let mut merged: Vec<(bool, Arc<Event>)> = replayed
        .into_iter()
        .map(|event| (true, event))
        .chain(queued.into_iter().map(|event| (false, event)))
        .collect();
    // Stable: equal ids (none expected) keep the replay first.
    merged.sort_by_key(|(_, event)| event.id);
    merged
}

/// The reading half: hands messages to the connection, and notes when the
/// client was last heard from (tungstenite answers pings itself).
async fn read(
    mut stream: SplitStream<Socket>,
    inbound: mpsc::Sender<Inbound>,
    heard: Arc<AtomicU64>,
    started: Instant,
) {
    while let Some(message) = stream.next().await {
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        heard.store(elapsed, Ordering::Relaxed);
        let forward = match message {
            Ok(Message::Text(text)) => Inbound::Text(text),
            Ok(Message::Binary(_)) => Inbound::Binary,
            Ok(Message::Close(_)) => Inbound::Closed,
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Err(error) => {
                let _ = inbound.send(Inbound::Failed(error)).await;
                return;
            }
        };
        if inbound.send(forward).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn client_messages_parse() {
        assert_eq!(
            parse_message(r#"{"type":"auth","token":"abc"}"#),
            Ok(ClientMessage::Auth {
                token: "abc".into()
            })
        );
        assert_eq!(
            parse_message(r#"{"type":"subscribe","channel":"user:x","since":12}"#),
            Ok(ClientMessage::Subscribe {
                channel: "user:x".into(),
                since: Some(12)
            })
        );
        assert_eq!(
            parse_message(r#"{"type":"subscribe","channel":"user:x","since":null}"#),
            Ok(ClientMessage::Subscribe {
                channel: "user:x".into(),
                since: None
            })
        );
        assert_eq!(
            parse_message(r#"{"type":"unsubscribe","channel":"user:x"}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "user:x".into()
            })
        );
        assert_eq!(parse_message(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
    }

    #[test]
    fn text_that_is_not_a_json_object_closes_the_connection() {
        for text in ["this is not JSON", "[1,2]", "\"ping\"", ""] {
            assert!(
                matches!(parse_message(text), Err(BadMessage::NotJson(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn well_formed_but_wrong_messages_are_validation_errors() {
        for (text, wanted) in [
            (r#"{"type":"subscribe"}"#, "channel"),
            (
                r#"{"type":"subscribe","channel":"user:x","since":"yesterday"}"#,
                "",
            ),
            (r#"{"type":"subscribe","channel":42}"#, ""),
            (
                r#"{"type":"subscribe","channel":"user:x","since":-1}"#,
                "since",
            ),
            (r#"{"type":"fly"}"#, "unknown message type"),
            (r#"{"channel":"user:x"}"#, "type"),
            (r#"{"type":"ping","extra":1}"#, "extra"),
        ] {
            match parse_message(text) {
                Err(BadMessage::Invalid { detail, .. }) => {
                    assert!(detail.contains(wanted), "{text}: {detail}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // The error names the channel when the message did.
        let Err(BadMessage::Invalid { channel, .. }) =
            parse_message(r#"{"type":"subscribe","channel":"user:x","since":"x"}"#)
        else {
            panic!()
        };
        assert_eq!(channel.as_deref(), Some("user:x"));
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let json = |reply: Reply| {
            serde_json::from_str::<Value>(&serde_json::to_string(&reply).unwrap()).unwrap()
        };
        assert_eq!(json(Reply::Pong), serde_json::json!({"type": "pong"}));
        assert_eq!(
            json(Reply::Subscribed {
                channel: "user:x",
                cursor: 7
            }),
            serde_json::json!({"type": "subscribed", "channel": "user:x", "cursor": 7})
        );
        assert_eq!(
            json(Reply::Error {
                code: "forbidden",
                detail: "no",
                channel: None
            }),
            serde_json::json!({"type": "error", "code": "forbidden", "detail": "no"})
        );
    }

    #[test]
    fn events_carry_their_id_channel_type_payload_and_time() {
        let event = Event {
            id: 42,
            channel: Arc::from("discussion:1"),
            kind: Arc::from("message.created"),
            payload: Arc::from(RawValue::from_string(r#"{"a":[1,2]}"#.to_owned()).unwrap()),
            created_at: Utc::now(),
        };
        let value: Value = serde_json::from_str(&event_message(&event)).unwrap();
        assert_eq!(value["type"], "event");
        assert_eq!(value["id"], 42);
        assert_eq!(value["channel"], "discussion:1");
        assert_eq!(value["event"], "message.created");
        assert_eq!(value["payload"], serde_json::json!({"a": [1, 2]}));
        assert!(value["created_at"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn close_codes_follow_the_contract() {
        let code = |reason: CloseReason| reason.code_and_reason().0;
        assert_eq!(code(CloseReason::Normal), 1000);
        assert_eq!(code(CloseReason::Idle), 1000);
        assert_eq!(code(CloseReason::GoingAway), 1001);
        assert_eq!(code(CloseReason::Policy("x".into())), 1008);
        assert_eq!(code(CloseReason::TooBig), 1009);
        assert_eq!(code(CloseReason::Unauthorized("x".into())), 4001);
        assert_eq!(code(CloseReason::Revoked("x".into())), 4003);
        assert_eq!(code(CloseReason::SlowConsumer), 4008);
        assert_eq!(code(CloseReason::TooManyConnections("x".into())), 4029);
        assert!(
            CloseReason::GoingAway
                .code_and_reason()
                .1
                .contains("reconnect")
        );
        // Reasons fit a control frame.
        let long = CloseReason::Unauthorized("é".repeat(100));
        let (_, reason) = long.code_and_reason();
        assert!(reason.len() <= 123);
    }

    #[test]
    fn a_replay_merges_with_queued_events_by_id() {
        let event = |id| {
            Arc::new(crate::realtime::hub::tests::event(
                id,
                if id % 2 == 0 { "a" } else { "b" },
            ))
        };
        let merged = merge(vec![event(2), event(4), event(8)], vec![event(3), event(9)]);
        let ids: Vec<(bool, i64)> = merged.iter().map(|(r, e)| (*r, e.id)).collect();
        assert_eq!(
            ids,
            [(true, 2), (false, 3), (true, 4), (true, 8), (false, 9)]
        );
    }

    #[test]
    fn an_upgrade_request_is_checked() {
        let mut headers = HeaderMap::new();
        assert!(accept_key(&headers).is_err());
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let problem = accept_key(&headers).unwrap_err();
        assert_eq!(problem.headers()[SEC_WEBSOCKET_VERSION], "13");
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        assert!(accept_key(&headers).is_err(), "no key");
        // RFC 6455's example.
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            accept_key(&headers).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
