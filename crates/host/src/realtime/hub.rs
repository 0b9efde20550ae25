//! The hub: which connection listens to which channel, and the fan-out of the
//! log's events to them.
//!
//! Channels map to their subscribers in [`SHARDS`] shards, each a `RwLock`ed
//! `HashMap` (a std lock: nothing awaits while holding one). The log reader
//! ([`super::log`]) dispatches events in position order; a dispatch takes the
//! read lock of the event's shard, offers the event to each subscriber with
//! `try_send` (never waiting), records the event's position as the hub's
//! cursor, and lets go. A subscriber is one connection's bounded queue, shared
//! by all that connection's subscriptions; a full queue marks the connection
//! slow, and the protocol closes it with the slow-consumer code (it resumes
//! from its last id).
//!
//! # The seam: no gap, no duplicate
//!
//! A client resuming `since` S on channel X: [`Hub::subscribe`] registers its
//! queue and returns the cursor C, then [`Hub::replay`] reads `(S, C]` of X
//! from the table, then the queue's live events follow. They fit exactly:
//!
//! - The one dispatcher stores the cursor *inside* the read-locked section of the
//!   event's shard, in increasing position order, and `subscribe` reads it inside
//!   the write-locked section of the same shard (X's), so the two sections are
//!   ordered by the lock.
//! - An event of X dispatched before the subscribe's section stored its position
//!   before C was read, so its position ≤ C (the cursor only grows); it was not
//!   offered to the new subscriber, and it is in the table (the reader read it
//!   from there, committed and sequenced), so the replay has it.
//! - An event of X dispatched after the section finds the subscriber registered
//!   and is offered to it; its position is > C, since C was stored by a dispatch
//!   of a smaller-or-equal position that came before (a store that comes after a
//!   load cannot be what the load read).
//!
//! So the live events are exactly those of X with position > C, and the replay
//! exactly those ≤ C: no gap, no duplicate. The protocol sends the replay first
//! and holds back the live events of X until then.
//!
//! Before the log reader has connected once, the cursor means nothing (the
//! reader starts at the log's end); [`Hub::is_ready`] says when it does, and the
//! front door does not hand realtime requests over before.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc, watch};

use super::metrics::Metrics;

/// Events a connection's queue holds before the connection counts as slow.
pub const QUEUE_CAPACITY: usize = 1024;

/// Events one replay query reads at most; [`Hub::replay`] reads page after page.
pub const REPLAY_PAGE: usize = 1000;

/// Locks the channel map is split under: dispatch and subscribe contend only
/// when their channels share a shard.
const SHARDS: usize = 64;

/// One event of the log, as subscribers get it.
#[derive(Debug)]
pub struct Event {
    /// The event's position in the log: the id clients see and resume from.
    pub id: i64,
    /// The stream (`discussion:<id>`, `user:<id>`, `job:<id>`).
    pub channel: Arc<str>,
    /// The event's type, e.g. `message.created`.
    pub kind: Arc<str>,
    /// The payload as stored (JSON text).
    pub payload: Arc<RawValue>,
    pub created_at: DateTime<Utc>,
}

impl Event {
    /// Reads `position, stream, type, payload::text, created_at`.
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> anyhow::Result<Event> {
        let payload: String = row.try_get(3)?;
        Ok(Event {
            id: row.try_get(0)?,
            channel: Arc::from(row.try_get::<_, &str>(1)?),
            kind: Arc::from(row.try_get::<_, &str>(2)?),
            payload: Arc::from(RawValue::from_string(payload)?),
            created_at: row.try_get(4)?,
        })
    }
}

/// The columns [`Event::from_row`] reads.
pub(crate) const EVENT_COLUMNS: &str = "position, stream, type, payload::text, created_at";

/// One subscription, for [`Hub::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId {
    shard: u32,
    id: u64,
}

/// One connection's queue of events, shared by all its subscriptions (clone it
/// for each), and whether it was found too slow.
#[derive(Clone, Debug)]
pub struct Subscriber {
    queue: mpsc::Sender<Arc<Event>>,
    state: Arc<SubscriberState>,
}

#[derive(Debug, Default)]
struct SubscriberState {
    slow: AtomicBool,
    slowed: Notify,
    /// Counted in the metrics: a client's subscription, not one of the hub's
    /// own watches (see [`Subscriber::unmetered`]).
    metered: bool,
}

impl Subscriber {
    /// A queue of `capacity` events ([`QUEUE_CAPACITY`] for a connection) and
    /// its receiving end, which the connection drains to its socket.
    pub fn new(capacity: usize) -> (Subscriber, mpsc::Receiver<Arc<Event>>) {
        Self::with_metering(capacity, true)
    }

    /// As [`new`](Self::new), for a watch the server keeps for itself (a
    /// connection's eye on revocations): left out of the subscriptions gauge and
    /// of the delivered and slow-consumer counts, which describe clients.
    pub fn unmetered(capacity: usize) -> (Subscriber, mpsc::Receiver<Arc<Event>>) {
        Self::with_metering(capacity, false)
    }

    fn with_metering(capacity: usize, metered: bool) -> (Subscriber, mpsc::Receiver<Arc<Event>>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let state = Arc::new(SubscriberState {
            metered,
            ..SubscriberState::default()
        });
        (Subscriber { queue, state }, receiver)
    }

    /// Whether an event could not be queued: the connection must be closed
    /// with the slow-consumer code. Nothing more is queued once it is set.
    pub fn is_slow(&self) -> bool {
        self.state.slow.load(Ordering::Acquire)
    }

    /// Resolves once the connection is [slow](Self::is_slow).
    pub async fn slowed(&self) {
        let notified = self.state.slowed.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if self.is_slow() {
            return;
        }
        notified.await;
    }

    /// Queues `event` without waiting. A full queue marks the connection slow
    /// (counted once) and the event is not queued; so is every later one.
    /// Returns whether the event was queued.
    pub fn offer(&self, event: &Arc<Event>, metrics: &Metrics) -> bool {
        if self.is_slow() {
            return false;
        }
        match self.queue.try_send(event.clone()) {
            Ok(()) => {
                if self.state.metered {
                    Metrics::add(&metrics.events_delivered, 1);
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.state.slow.swap(true, Ordering::AcqRel) {
                    if self.state.metered {
                        Metrics::add(&metrics.slow_consumers, 1);
                    }
                    self.state.slowed.notify_waiters();
                }
                false
            }
            // The connection is going away and unsubscribes as it goes.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Where replays read from: the `events` table, or a fake in tests.
pub trait EventStore: Send + Sync + 'static {
    /// Up to `limit` events of `channel` with positions in `(after, through]`,
    /// in position order.
    fn events<'a>(
        &'a self,
        channel: &'a str,
        after: i64,
        through: i64,
        limit: usize,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Event>>>;
}

/// The `events` table, through the hub's pool.
pub struct PgStore {
    pub pool: deadpool_postgres::Pool,
}

impl EventStore for PgStore {
    fn events<'a>(
        &'a self,
        channel: &'a str,
        after: i64,
        through: i64,
        limit: usize,
    ) -> BoxFuture<'a, anyhow::Result<Vec<Event>>> {
        Box::pin(async move {
            let client = self.pool.get().await?;
            let statement = client
                .prepare_cached(&format!(
                    "select {EVENT_COLUMNS} from events
                     where stream = $1 and position > $2 and position <= $3
                     order by position limit $4"
                ))
                .await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(&statement, &[&channel, &after, &through, &limit])
                .await?;
            rows.iter().map(Event::from_row).collect()
        })
    }
}

#[derive(Default)]
struct Shard {
    channels: HashMap<Arc<str>, Vec<(u64, Subscriber)>>,
    /// Each subscription's channel, for unsubscribing by id.
    ids: HashMap<u64, Arc<str>>,
}

/// Channels and their subscribers; shared (`Arc`) by the log reader and every
/// connection.
pub struct Hub {
    shards: Box<[RwLock<Shard>]>,
    hasher: std::hash::RandomState,
    next_id: AtomicU64,
    /// The position of the last event dispatched; see the module's docs.
    cursor: AtomicI64,
    ready: watch::Sender<bool>,
    store: Box<dyn EventStore>,
    metrics: Metrics,
}

impl Hub {
    pub fn new(store: impl EventStore) -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: std::hash::RandomState::new(),
            next_id: AtomicU64::new(1),
            cursor: AtomicI64::new(0),
            ready: watch::Sender::new(false),
            store: Box::new(store),
            metrics: Metrics::default(),
        }
    }

    fn shard_of(&self, channel: &str) -> usize {
        (self.hasher.hash_one(channel) % SHARDS as u64) as usize
    }

    /// Adds `queue` to `channel`'s subscribers. Returns the subscription and the
    /// cursor C at that moment: every event of `channel` with a position above C
    /// will be offered to `queue`; those at or below it are in the table (see
    /// [`Hub::replay`] and the module's docs). Call it once the hub
    /// [is ready](Hub::is_ready).
    pub fn subscribe(&self, channel: &str, queue: Subscriber) -> (SubscriptionId, i64) {
        let index = self.shard_of(channel);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let metered = queue.state.metered;
        let cursor = {
            let mut shard = self.shards[index]
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let key = match shard.channels.get_key_value(channel) {
                Some((key, _)) => key.clone(),
                None => Arc::from(channel),
            };
            shard
                .channels
                .entry(key.clone())
                .or_default()
                .push((id, queue));
            shard.ids.insert(id, key);
            // Inside the lock: the seam's argument depends on it.
            self.cursor.load(Ordering::Acquire)
        };
        if metered {
            self.metrics.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
        let shard = u32::try_from(index).expect("few shards");
        (SubscriptionId { shard, id }, cursor)
    }

    /// Stops offering the subscription's events. Returns whether it existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let Some(lock) = self.shards.get(id.shard as usize) else {
            return false;
        };
        let mut shard = lock.write().unwrap_or_else(PoisonError::into_inner);
        let Some(channel) = shard.ids.remove(&id.id) else {
            return false;
        };
        let mut metered = false;
        if let Some(subscribers) = shard.channels.get_mut(&channel) {
            subscribers.retain(|(sid, queue)| {
                let this = *sid == id.id;
                metered |= this && queue.state.metered;
                !this
            });
            if subscribers.is_empty() {
                shard.channels.remove(&channel);
            }
        }
        drop(shard);
        if metered {
            self.metrics.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }

    /// The events of `channel` with positions in `(after, through]`, from the
    /// table, in order (empty when `through <= after`). With `through` the cursor
    /// [`Hub::subscribe`] returned, this is exactly what the subscription's live
    /// events do not cover. Events pruned by retention are gone.
    pub async fn replay(
        &self,
        channel: &str,
        after: i64,
        through: i64,
    ) -> anyhow::Result<Vec<Arc<Event>>> {
        let mut events = Vec::new();
        let mut from = after;
        while from < through {
            let page = self
                .store
                .events(channel, from, through, REPLAY_PAGE)
                .await?;
            let full = page.len() >= REPLAY_PAGE;
            // One `Arc<str>` for the channel of every replayed event.
            let shared: Arc<str> = Arc::from(channel);
            for mut event in page {
                if event.id <= from || event.id > through {
                    anyhow::bail!(
                        "the event store answered position {} outside ({from}, {through}]",
                        event.id
                    );
                }
                from = event.id;
                event.channel = shared.clone();
                events.push(Arc::new(event));
            }
            if !full {
                break;
            }
        }
        Metrics::add(&self.metrics.events_delivered, events.len() as u64);
        Ok(events)
    }

    /// Offers `event` to its channel's subscribers and makes its position the
    /// cursor. Called by the log reader only, in increasing position order.
    pub(crate) fn dispatch(&self, event: Arc<Event>) {
        let index = self.shard_of(&event.channel);
        {
            let shard = self.shards[index]
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(subscribers) = shard.channels.get(&event.channel) {
                for (_, subscriber) in subscribers {
                    subscriber.offer(&event, &self.metrics);
                }
            }
            // Inside the lock: the seam's argument depends on it.
            self.cursor.store(event.id, Ordering::Release);
        }
        Metrics::add(&self.metrics.events_read, 1);
        self.metrics.log_position.store(event.id, Ordering::Relaxed);
    }

    /// Sets the cursor where the log reader starts (the log's end when the
    /// process starts) and marks the hub ready. Before any subscription.
    pub(crate) fn start_at(&self, position: i64) {
        self.cursor.store(position, Ordering::Release);
        self.metrics.log_position.store(position, Ordering::Relaxed);
        self.ready.send_replace(true);
    }

    /// The position of the last event dispatched.
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Acquire)
    }

    /// Whether the log reader has found where the log ends, so that cursors
    /// mean something. Once true, it stays true (a reconnecting reader resumes
    /// from the cursor).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the hub [is ready](Hub::is_ready).
    pub async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many subscriptions `channel` has.
    #[cfg(test)]
    pub fn subscribers_of(&self, channel: &str) -> usize {
        self.shards[self.shard_of(channel)]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .channels
            .get(channel)
            .map_or(0, Vec::len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The table as a list: every event ever dispatched, or about to be.
    #[derive(Default, Clone)]
    pub(crate) struct FakeStore {
        events: Arc<Mutex<Vec<(i64, String)>>>,
        pub(crate) queries: Arc<AtomicU64>,
    }

    impl FakeStore {
        pub(crate) fn add(&self, id: i64, channel: &str) {
            self.events.lock().unwrap().push((id, channel.to_owned()));
        }
    }

    impl EventStore for FakeStore {
        fn events<'a>(
            &'a self,
            channel: &'a str,
            after: i64,
            through: i64,
            limit: usize,
        ) -> BoxFuture<'a, anyhow::Result<Vec<Event>>> {
            self.queries.fetch_add(1, Ordering::Relaxed);
            let mut found: Vec<Event> = self
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|(id, c)| c == channel && *id > after && *id <= through)
                .map(|(id, c)| event(*id, c))
                .collect();
            found.sort_by_key(|e| e.id);
            found.truncate(limit);
            Box::pin(async move { Ok(found) })
        }
    }

    pub(crate) fn event(id: i64, channel: &str) -> Event {
        Event {
            id,
            channel: Arc::from(channel),
            kind: Arc::from("test.event"),
            payload: Arc::from(RawValue::from_string(format!("{{\"n\":{id}}}")).unwrap()),
            created_at: Utc::now(),
        }
    }

    fn ready_hub(store: FakeStore) -> Hub {
        let hub = Hub::new(store);
        hub.start_at(0);
        hub
    }

    fn drain(receiver: &mut mpsc::Receiver<Arc<Event>>) -> Vec<(i64, String)> {
        let mut got = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            got.push((event.id, event.channel.to_string()));
        }
        got
    }

    #[test]
    fn events_reach_every_subscriber_of_their_channel_only() {
        let hub = ready_hub(FakeStore::default());
        let (a, mut a_rx) = Subscriber::new(16);
        let (b, mut b_rx) = Subscriber::new(16);
        let (c, mut c_rx) = Subscriber::new(16);
        hub.subscribe("discussion:1", a.clone());
        hub.subscribe("discussion:2", a);
        hub.subscribe("discussion:1", b);
        hub.subscribe("user:9", c);
        hub.dispatch(Arc::new(event(1, "discussion:1")));
        hub.dispatch(Arc::new(event(2, "discussion:2")));
        hub.dispatch(Arc::new(event(3, "job:4")));
        assert_eq!(
            drain(&mut a_rx),
            [(1, "discussion:1".into()), (2, "discussion:2".into())]
        );
        assert_eq!(drain(&mut b_rx), [(1, "discussion:1".into())]);
        assert_eq!(drain(&mut c_rx), []);
        assert_eq!(hub.cursor(), 3);
        let metrics = hub.metrics();
        assert_eq!(metrics.events_delivered.load(Ordering::Relaxed), 3);
        assert_eq!(metrics.events_read.load(Ordering::Relaxed), 3);
        assert_eq!(metrics.subscriptions.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn an_unsubscribed_queue_gets_nothing_more() {
        let hub = ready_hub(FakeStore::default());
        let (a, mut rx) = Subscriber::new(16);
        let (id, _) = hub.subscribe("discussion:1", a.clone());
        let (other, _) = hub.subscribe("discussion:1", a);
        hub.dispatch(Arc::new(event(1, "discussion:1")));
        assert!(hub.unsubscribe(id));
        assert!(!hub.unsubscribe(id), "twice");
        assert_eq!(hub.subscribers_of("discussion:1"), 1);
        assert!(hub.unsubscribe(other));
        assert_eq!(hub.subscribers_of("discussion:1"), 0);
        hub.dispatch(Arc::new(event(2, "discussion:1")));
        assert_eq!(
            drain(&mut rx),
            [(1, "discussion:1".into()), (1, "discussion:1".into())]
        );
        assert_eq!(hub.metrics().subscriptions.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_queue_marks_its_connection_slow_and_spares_the_others() {
        let hub = ready_hub(FakeStore::default());
        let (slow, mut slow_rx) = Subscriber::new(2);
        let (fast, mut fast_rx) = Subscriber::new(16);
        hub.subscribe("discussion:1", slow.clone());
        hub.subscribe("discussion:1", fast.clone());
        let waiter = tokio::spawn({
            let slow = slow.clone();
            async move { slow.slowed().await }
        });
        for id in 1..=4 {
            hub.dispatch(Arc::new(event(id, "discussion:1")));
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("slowed() resolves")
            .unwrap();
        assert!(slow.is_slow());
        assert!(!fast.is_slow());
        // What fit stays queued; nothing after the overflow is, even with room again.
        assert_eq!(drain(&mut slow_rx).len(), 2);
        hub.dispatch(Arc::new(event(5, "discussion:1")));
        assert_eq!(drain(&mut slow_rx), []);
        assert_eq!(drain(&mut fast_rx).len(), 5);
        assert_eq!(hub.metrics().slow_consumers.load(Ordering::Relaxed), 1);
        // Already slow: resolves at once.
        slow.slowed().await;
    }

    #[tokio::test]
    async fn a_resume_replays_up_to_the_cursor_then_goes_live() {
        let store = FakeStore::default();
        let hub = ready_hub(store.clone());
        for id in 1..=5 {
            let channel = if id == 4 {
                "discussion:2"
            } else {
                "discussion:1"
            };
            store.add(id, channel);
            hub.dispatch(Arc::new(event(id, channel)));
        }
        let (queue, mut rx) = Subscriber::new(16);
        let (_, cursor) = hub.subscribe("discussion:1", queue);
        assert_eq!(cursor, 5);
        for id in 6..=7 {
            store.add(id, "discussion:1");
            hub.dispatch(Arc::new(event(id, "discussion:1")));
        }
        let replayed: Vec<i64> = hub
            .replay("discussion:1", 1, cursor)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(replayed, [2, 3, 5]);
        let live: Vec<i64> = drain(&mut rx).into_iter().map(|(id, _)| id).collect();
        assert_eq!(live, [6, 7]);
        assert!(hub.replay("discussion:1", 5, 5).await.unwrap().is_empty());
        assert!(hub.replay("discussion:1", 7, 5).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_long_replay_is_read_page_by_page() {
        let store = FakeStore::default();
        let hub = ready_hub(store.clone());
        let total = REPLAY_PAGE as i64 * 2 + 10;
        for id in 1..=total {
            store.add(id, "discussion:1");
        }
        let replayed = hub.replay("discussion:1", 0, total).await.unwrap();
        assert_eq!(replayed.len() as i64, total);
        assert!(replayed.windows(2).all(|w| w[0].id + 1 == w[1].id));
        assert_eq!(store.queries.load(Ordering::Relaxed), 3);
    }

    /// A subscriber joining at an arbitrary moment while events stream in: the
    /// replay up to its cursor and the live events after it are, together, every
    /// event of its channel exactly once, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribing_mid_stream_leaves_no_gap_and_no_duplicate() {
        const EVENTS: i64 = 2000;
        for round in 0..20u64 {
            let store = FakeStore::default();
            // Every event is "in the table" before it is dispatched, as the log
            // reader reads them from there.
            for id in 1..=EVENTS {
                store.add(id, if id % 3 == 0 { "other" } else { "x" });
            }
            let hub = Arc::new(ready_hub(store));
            let dispatcher = std::thread::spawn({
                let hub = hub.clone();
                move || {
                    for id in 1..=EVENTS {
                        hub.dispatch(Arc::new(event(id, if id % 3 == 0 { "other" } else { "x" })));
                    }
                }
            });
            // Join somewhere in the middle.
            let spin = round * 37 % 500;
            while hub.cursor() < spin as i64 {
                std::hint::spin_loop();
            }
            let (queue, mut rx) = Subscriber::new(EVENTS as usize);
            let (_, cursor) = hub.subscribe("x", queue);
            dispatcher.join().unwrap();
            let mut seen: Vec<i64> = hub
                .replay("x", 0, cursor)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            seen.extend(drain(&mut rx).into_iter().map(|(id, _)| id));
            let expected: Vec<i64> = (1..=EVENTS).filter(|id| id % 3 != 0).collect();
            assert_eq!(seen, expected, "round {round}, cursor {cursor}");
        }
    }

    #[tokio::test]
    async fn readiness_is_announced_once_the_log_end_is_known() {
        let hub = Arc::new(Hub::new(FakeStore::default()));
        assert!(!hub.is_ready());
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.ready().await }
        });
        hub.start_at(41);
        waiter.await.unwrap();
        assert!(hub.is_ready());
        let (queue, _rx) = Subscriber::new(1);
        assert_eq!(hub.subscribe("x", queue).1, 41);
    }
}
