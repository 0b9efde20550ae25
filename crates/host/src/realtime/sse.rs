//! `GET /v1/realtime/sse?channels=a,b`: the hub's events as `text/event-stream`,
//! for clients that only read (a browser's `EventSource`).
//!
//! ```text
//! id: 42
//! event: message.created
//! data: {"channel":"discussion:...","payload":{...},"created_at":"..."}
//!
//! : heartbeat
//! ```
//!
//! Authenticated by `Authorization: Bearer` (access token or API key) or
//! `?ticket=` (from `POST /v1/realtime/tickets`). Every listed channel is
//! authorized before the stream starts: a refusal is the REST API's answer (403
//! or 404 as problem+json). `Last-Event-ID` (which an `EventSource` sends when it
//! reconnects), or else `?since=`, resumes every listed channel after that id:
//! the log's events first, then live ones, with no gap and no duplicate.
//!
//! A comment heartbeat every [`HEARTBEAT_INTERVAL`] keeps proxies from closing an
//! idle stream. The stream ends when the client cannot keep up (its queue filled:
//! it resumes from its last id), when its credential stops working (a revoked
//! session), and at shutdown, after `event: reconnect`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arena_common::Problem;
use arena_common::auth::Identity;
use arena_common::time::Timestamp;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use super::Realtime;
use super::auth::{self, AuthError, RevocationWatch, Verdict};
use super::channels::{self, Channel};
use crate::realtime::ConnectionGuard;
use crate::realtime::hub::{Event, Subscriber, SubscriptionId};
use crate::server::Body;

/// How often a comment is sent on an otherwise quiet stream.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// How often the stream's credential is checked again.
const RECHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Channels one stream may list.
pub const MAX_CHANNELS: usize = 64;
/// Chunks waiting for the client's connection to take them.
const BODY_QUEUE: usize = 16;
/// Events written per chunk.
const WRITE_BATCH: usize = 64;
/// How long the `reconnect` event may wait to be taken at shutdown.
const FAREWELL_GRACE: Duration = Duration::from_secs(2);
/// What an `EventSource` waits before reconnecting, in milliseconds.
const RETRY_MS: u64 = 1000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens a stream.
pub async fn handle(
    realtime: Arc<Realtime>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Problem> {
    let query = req.uri().query();
    let channels = parse_channels(super::http::query_param(query, "channels").as_deref())?;
    let since = resume_from(
        req.headers(),
        super::http::query_param(query, "since").as_deref(),
    )?;
    let ticket = super::http::query_param(query, "ticket");
    let identity = super::http::authenticate(&realtime, req.headers(), ticket.as_deref())
        .await
        .map_err(|error| error.problem())?
        .ok_or_else(|| {
            AuthError::Missing(
                "this stream needs credentials: `Authorization: Bearer <access token or API key>`, or `?ticket=` from POST /v1/realtime/tickets"
                    .to_owned(),
            )
            .problem()
        })?;
    {
        let db = super::http::database(&realtime).await?;
        for channel in &channels {
            match channels::authorize(&db, &identity, *channel).await {
                Ok(Ok(())) => {}
                Ok(Err(refusal)) => {
                    let detail = format!("{channel}: {}", refusal.detail());
                    return Err(match refusal {
                        channels::Refusal::NotFound(_) => Problem::not_found(detail),
                        channels::Refusal::Forbidden(_) => Problem::forbidden(detail),
                    });
                }
                Err(error) => {
                    return Err(Problem::upstream_unavailable(
                        "the subscription could not be checked; retry",
                    )
                    .with_cause(format!("{error:#}")));
                }
            }
        }
    }
    let mut guard = realtime.connection();
    guard
        .authenticate(identity.user_id)
        .map_err(super::http::too_many)?;
    super::http::hub_ready(&realtime).await?;

    let (queue, events) = Subscriber::new(realtime.config.queue_capacity);
    let mut subscriptions = HashMap::new();
    for channel in &channels {
        let name: Arc<str> = Arc::from(channel.to_string());
        let (id, cursor) = realtime.hub.subscribe(&name, queue.clone());
        subscriptions.insert(
            name,
            Subscription {
                id,
                cursor,
                floor: since.map_or(cursor, |since| since.max(cursor)),
            },
        );
    }
    let (chunks, body) = mpsc::channel::<Bytes>(BODY_QUEUE);
    let revocation = RevocationWatch::start(&realtime.hub, &identity);
    let stream = Stream {
        realtime,
        _guard: guard,
        identity,
        queue,
        events,
        subscriptions,
        revocation: Some(revocation),
        chunks,
    };
    tokio::spawn(stream.run(since));

    let body = futures::stream::unfold(body, |mut body| async move {
        let chunk = body.recv().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), body))
    });
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    // nginx and friends: do not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `?channels=`: a comma-separated list of channels, each valid, at most
/// [`MAX_CHANNELS`], repeated ones once.
pub fn parse_channels(text: Option<&str>) -> Result<Vec<Channel>, Problem> {
    let Some(text) = text.filter(|text| !text.trim().is_empty()) else {
        return Err(Problem::validation_failed(
            "`channels` is required: e.g. `?channels=discussion:<id>,user:<id>`",
        )
        .with_field_error("channels", "must list at least one channel"));
    };
    let mut channels = Vec::new();
    let mut errors = Vec::new();
    for part in text.split(',').map(str::trim) {
        match Channel::parse(part) {
            Ok(channel) if !channels.contains(&channel) => channels.push(channel),
            Ok(_) => {}
            Err(error) => errors.push(error),
        }
    }
    if !errors.is_empty() {
        let mut problem = Problem::validation_failed(format!(
            "`channels` has {} invalid channel(s)",
            errors.len()
        ));
        for error in errors {
            problem = problem.with_field_error("channels", error);
        }
        return Err(problem);
    }
    if channels.len() > MAX_CHANNELS {
        return Err(Problem::validation_failed(format!(
            "a stream may list at most {MAX_CHANNELS} channels"
        ))
        .with_field_error("channels", format!("at most {MAX_CHANNELS} channels")));
    }
    Ok(channels)
}

/// Where to resume: `Last-Event-ID`, else `?since=`; `None`: live only.
pub fn resume_from(headers: &HeaderMap, since: Option<&str>) -> Result<Option<i64>, Problem> {
    let (name, text) = match headers.get("last-event-id") {
        Some(value) => (
            "Last-Event-ID",
            value.to_str().unwrap_or("not text").trim().to_owned(),
        ),
        None => match since {
            Some(since) => ("since", since.trim().to_owned()),
            None => return Ok(None),
        },
    };
    // An `EventSource` that got no event yet sends an empty one.
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(id) if id >= 0 => Ok(Some(id)),
        _ => Err(Problem::validation_failed(format!(
            "`{name}` must be an event id (an integer, 0 or more)"
        ))
        .with_field_error(name, "must be an event id")),
    }
}

#[derive(Serialize)]
struct Data<'a> {
    channel: &'a str,
    payload: &'a RawValue,
    created_at: Timestamp,
}

/// One event in the stream's format.
pub fn event_text(event: &Event) -> String {
    let data = serde_json::to_string(&Data {
        channel: &event.channel,
        payload: &event.payload,
        created_at: Timestamp::from(event.created_at),
    })
    .unwrap_or_default();
    let mut text = format!("id: {}\nevent: {}\n", event.id, one_line(&event.kind));
    // JSON text has no raw newline but as whitespace; a line each, to be safe.
    for line in data.split('\n') {
        text.push_str("data: ");
        text.push_str(line.trim_end_matches('\r'));
        text.push('\n');
    }
    text.push('\n');
    text
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

struct Subscription {
    id: SubscriptionId,
    /// The hub's cursor at subscribe: the replay goes up to it.
    cursor: i64,
    /// Live events at or below it are not sent.
    floor: i64,
}

/// Why a stream ends.
enum End {
    /// The client went away, or cannot keep up, or the write failed.
    Quietly,
    /// Shutdown: tell the client to reconnect.
    Reconnect,
    /// The credential stopped working.
    Revoked(&'static str),
}

struct Stream {
    realtime: Arc<Realtime>,
    _guard: ConnectionGuard,
    identity: Identity,
    queue: Subscriber,
    events: mpsc::Receiver<Arc<Event>>,
    subscriptions: HashMap<Arc<str>, Subscription>,
    revocation: Option<RevocationWatch>,
    chunks: mpsc::Sender<Bytes>,
}

impl Stream {
    async fn run(mut self, since: Option<i64>) {
        let end = self.serve(since).await;
        match end {
            End::Quietly => {}
            End::Reconnect => {
                let farewell = format!("retry: {RETRY_MS}\nevent: reconnect\ndata: {{}}\n\n");
                let _ =
                    tokio::time::timeout(FAREWELL_GRACE, self.chunks.send(Bytes::from(farewell)))
                        .await;
            }
            End::Revoked(detail) => {
                let data = serde_json::json!({ "code": "forbidden", "detail": detail });
                let text = format!("event: error\ndata: {data}\n\n");
                let _ = self.chunks.try_send(Bytes::from(text));
            }
        }
        for (_, subscription) in self.subscriptions.drain() {
            self.realtime.hub.unsubscribe(subscription.id);
        }
        if let Some(watch) = self.revocation.take() {
            watch.stop(&self.realtime.hub);
        }
        // Dropping the sender ends the body; the guard goes with `self`.
    }

    async fn serve(&mut self, since: Option<i64>) -> End {
        // The first chunk: the reconnection delay, and headers flushed at once.
        if let Err(end) = self
            .send(format!("retry: {RETRY_MS}\n: connected\n\n"))
            .await
        {
            return end;
        }
        if let Some(since) = since
            && let Err(end) = self.replay(since).await
        {
            return end;
        }
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut recheck =
            tokio::time::interval_at(Instant::now() + RECHECK_INTERVAL, RECHECK_INTERVAL);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.realtime.shutdown.clone();
        loop {
            let step = tokio::select! {
                biased;
                () = shutdown.triggered() => Err(End::Reconnect),
                () = self.queue.slowed() => Err(End::Quietly),
                () = self.chunks.closed() => Err(End::Quietly),
                verdict = next_verdict(&mut self.revocation, &self.realtime, &self.identity) => {
                    match verdict {
                        Verdict::Unaffected => Ok(()),
                        Verdict::Revoked => Err(End::Revoked("the session was revoked")),
                        Verdict::Recheck => self.recheck().await,
                    }
                }
                event = self.events.recv() => match event {
                    Some(event) => self.deliver(event).await,
                    None => Err(End::Quietly),
                },
                _ = heartbeat.tick() => self.send(": heartbeat\n\n".to_owned()).await,
                _ = recheck.tick() => self.recheck().await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Every listed channel's events in `(since, cursor]`, merged by id with
    /// what was queued live meanwhile.
    async fn replay(&mut self, since: i64) -> Result<(), End> {
        let mut all: Vec<(bool, Arc<Event>)> = Vec::new();
        for (name, subscription) in &self.subscriptions {
            if since >= subscription.cursor {
                continue;
            }
            match self
                .realtime
                .hub
                .replay(name, since, subscription.cursor)
                .await
            {
                Ok(events) => all.extend(events.into_iter().map(|event| (true, event))),
                Err(error) => {
                    tracing::warn!(channel = %name, "replaying for SSE: {error:#}");
                    return Err(End::Quietly);
                }
            }
        }
        while let Ok(event) = self.events.try_recv() {
            all.push((false, event));
        }
        all.sort_by_key(|(_, event)| event.id);
        for chunk in all.chunks(WRITE_BATCH) {
            let text: String = chunk
                .iter()
                .filter(|(replayed, event)| *replayed || self.wanted(event))
                .map(|(_, event)| event_text(event))
                .collect();
            if !text.is_empty() {
                self.send(text).await?;
            }
        }
        Ok(())
    }

    fn wanted(&self, event: &Event) -> bool {
        self.subscriptions
            .get(&*event.channel)
            .is_some_and(|subscription| event.id > subscription.floor)
    }

    /// `first` and whatever else is queued (up to a batch), as one chunk.
    async fn deliver(&mut self, first: Arc<Event>) -> Result<(), End> {
        let mut text = String::new();
        if self.wanted(&first) {
            text.push_str(&event_text(&first));
        }
        for _ in 1..WRITE_BATCH {
            match self.events.try_recv() {
                Ok(event) if self.wanted(&event) => text.push_str(&event_text(&event)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        self.send(text).await
    }

    /// Hands `text` to the client's connection, unless the stream must end first.
    async fn send(&self, text: String) -> Result<(), End> {
        tokio::select! {
            biased;
            sent = self.chunks.send(Bytes::from(text)) => sent.map_err(|_| End::Quietly),
            () = self.realtime.shutdown.triggered() => Err(End::Reconnect),
            () = self.queue.slowed() => Err(End::Quietly),
        }
    }

    async fn recheck(&self) -> Result<(), End> {
        let live = match self.realtime.db.get().await {
            Ok(db) => auth::still_live(&db, &self.identity).await,
            Err(error) => Err(anyhow::anyhow!("realtime pool: {error}")),
        };
        match live {
            Ok(false) => Err(End::Revoked("the credential is no longer valid")),
            Ok(true) => Ok(()),
            Err(error) => {
                tracing::debug!("re-checking a realtime credential: {error:#}");
                Ok(())
            }
        }
    }
}

async fn next_verdict(
    watch: &mut Option<RevocationWatch>,
    realtime: &Realtime,
    identity: &Identity,
) -> Verdict {
    match watch {
        Some(watch) => watch.next(&realtime.hub, identity).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const ID: &str = "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f";

    #[test]
    fn channels_are_listed_with_commas_deduplicated_and_checked() {
        let list = format!("discussion:{ID}, user:{ID},discussion:{ID}");
        let channels = parse_channels(Some(&list)).unwrap();
        assert_eq!(channels.len(), 2);
        assert_eq!(channels[1].to_string(), format!("user:{ID}"));
        for bad in [
            None,
            Some(""),
            Some(" "),
            Some("discussion:x"),
            Some("bogus:1,user:"),
        ] {
            let problem = parse_channels(bad).unwrap_err();
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(!problem.errors().is_empty());
        }
        let many: Vec<String> = (0..=MAX_CHANNELS as u128)
            .map(|n| format!("user:{}", uuid::Uuid::from_u128(n)))
            .collect();
        assert!(parse_channels(Some(&many.join(","))).is_err());
    }

    #[test]
    fn last_event_id_wins_over_since() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_from(&headers, None).unwrap(), None);
        assert_eq!(resume_from(&headers, Some("7")).unwrap(), Some(7));
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(resume_from(&headers, Some("7")).unwrap(), Some(42));
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(resume_from(&headers, Some("7")).unwrap(), None);
        headers.insert("last-event-id", HeaderValue::from_static("abc"));
        assert!(resume_from(&headers, None).is_err());
        assert!(resume_from(&HeaderMap::new(), Some("-1")).is_err());
    }

    #[test]
    fn events_are_written_with_their_id_type_and_json_data() {
        let event = Event {
            id: 9,
            channel: Arc::from("discussion:1"),
            kind: Arc::from("turn.token"),
            payload: Arc::from(RawValue::from_string(r#"{"content":"a\nb"}"#.to_owned()).unwrap()),
            created_at: Utc::now(),
        };
        let text = event_text(&event);
        assert!(
            text.starts_with("id: 9\nevent: turn.token\ndata: {"),
            "{text}"
        );
        assert!(text.ends_with("}\n\n"), "{text}");
        assert_eq!(text.matches('\n').count(), 4, "{text}");
        let data = text.lines().nth(2).unwrap().strip_prefix("data: ").unwrap();
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["channel"], "discussion:1");
        assert_eq!(data["payload"]["content"], "a\nb");
        assert!(data["created_at"].is_string());
    }
}
