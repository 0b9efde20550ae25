//! The log: the `events` table read in position order.
//!
//! **The sequencer** gives positions. `event_id` is handed out at insert, so a
//! transaction that commits late makes a smaller id visible after a larger one;
//! positions are handed out only to committed events (the ones a statement can
//! see), in `event_id` order, by one transaction at a time
//! (`pg_advisory_xact_lock`, any replica). Why a reader of `position > cursor`
//! then never skips one:
//!
//! - Each sequencing transaction takes the lock *before* the statement that
//!   reads and numbers the events (a separate statement, so its snapshot is
//!   taken after the lock is held): it sees every position the previous
//!   sequencing committed, and the sequence hands it larger ones. An event whose
//!   transaction commits later simply gets a larger position later.
//! - The lock is released only after its commit is visible, so the blocks of
//!   positions become visible in increasing order, each all at once: a reader
//!   that sees position p sees every position below p that will ever exist
//!   (numbers skipped by a rolled-back sequencing are never used).
//!
//! Nothing waits for other transactions, so a long transaction elsewhere on the
//! server delays no one.
//!
//! **The reader** (one per process) holds a dedicated connection that `LISTEN`s
//! on `arena_events`, driven by `poll_message` so notifications arrive while it
//! queries. On a notification (only a wake-up: the payload is never trusted),
//! and on a safety tick (every [`TICK_PENDING`] while a batch left events
//! unnumbered, [`TICK_IDLE`] otherwise), it runs the sequencer, then reads
//! `position > cursor` in order and dispatches each event to the hub. It starts
//! at the log's end when the process starts (live only: clients resume by
//! replay); when its connection drops it reconnects with backoff and resumes
//! from its cursor, so nothing committed meanwhile is lost.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, SimpleQueryMessage, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Shutdown;
use super::hub::{EVENT_COLUMNS, Event, Hub};
use super::metrics::Metrics;

/// The advisory lock that serializes sequencing across replicas ("arena_sq").
pub const SEQUENCER_LOCK: i64 = 0x6172_656e_615f_7371;

/// Events one sequencing transaction numbers at most.
const SEQUENCE_BATCH: u64 = 10_000;

/// Events one read fetches at most.
const READ_BATCH: i64 = 1000;

/// The safety tick while events are left unnumbered (more than a batch came at
/// once).
pub const TICK_PENDING: Duration = Duration::from_millis(250);
/// The safety tick otherwise: a lost notification costs at most this.
pub const TICK_IDLE: Duration = Duration::from_secs(1);

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One round trip: the lock, then (new statement, new snapshot) the numbering,
/// then whether events are still left unnumbered. `ready` numbers the events in
/// `event_id` order; `taken` draws as many values from the sequence (under the
/// lock, so consecutive ones) and `positions` ranks them, so the i-th event gets
/// the i-th value whatever order `nextval` ran in.
fn sequence_sql() -> String {
    format!(
        "begin;
         select pg_advisory_xact_lock({SEQUENCER_LOCK});
         with ready as materialized (
             select event_id, row_number() over (order by event_id) as n
             from events
             where position is null
             order by event_id
             limit {SEQUENCE_BATCH}
         ),
         taken as materialized (
             select nextval('events_position_seq') as position from ready
         ),
         positions as (
             select position, row_number() over (order by position) as n from taken
         )
         update events set position = positions.position
         from ready join positions using (n)
         where events.event_id = ready.event_id;
         commit;
         select exists (select from events where position is null);"
    )
}

/// What a run of the sequencer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced {
    /// Events given a position.
    pub count: u64,
    /// Whether events are left without one (more than a batch were waiting).
    pub pending: bool,
}

/// Gives positions to every event that may have one now (see the module's docs).
pub async fn sequence(client: &Client) -> Result<Sequenced, tokio_postgres::Error> {
    let sql = sequence_sql();
    let mut count = 0;
    loop {
        let messages = client.simple_query(&sql).await?;
        // One `CommandComplete` per statement: begin, lock, update, commit, exists.
        let completed: Vec<u64> = messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            })
            .collect();
        let numbered = completed.get(2).copied().unwrap_or(0);
        let pending = messages.iter().rev().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
            _ => None,
        });
        count += numbered;
        if numbered < SEQUENCE_BATCH {
            return Ok(Sequenced {
                count,
                pending: pending.unwrap_or(false),
            });
        }
    }
}

/// The process's reader of the log; [`LogReader::run`] until shutdown.
pub struct LogReader {
    pub hub: Arc<Hub>,
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub shutdown: Shutdown,
}

impl LogReader {
    /// Reads the log until shutdown, reconnecting whenever the connection is lost.
    pub async fn run(self) {
        let mut delay = BACKOFF_MIN;
        loop {
            match self.session(&mut delay).await {
                Ok(()) => return,
                Err(error) => {
                    Metrics::add(&self.hub.metrics().log_reconnects, 1);
                    tracing::warn!(
                        retry_in_ms = delay.as_millis() as u64,
                        cursor = self.hub.cursor(),
                        "realtime log reader: {error:#}"
                    );
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shutdown.triggered() => return,
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: `Ok` at shutdown, `Err` when the connection fails.
    async fn session(&self, delay: &mut Duration) -> anyhow::Result<()> {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(self.tls.clone()));
        let (client, mut connection) = tokio::select! {
            connected = connect => connected
                .map_err(|_| anyhow::anyhow!("no connection within {CONNECT_TIMEOUT:?}"))??,
            () = self.shutdown.triggered() => return Ok(()),
        };
        // The connection is driven here, so notifications are seen while the
        // client queries; each only wakes the loop below.
        let wake = Arc::new(Notify::new());
        let mut driver = tokio::spawn({
            let wake = wake.clone();
            async move {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message? {
                        AsyncMessage::Notification(_) => wake.notify_one(),
                        AsyncMessage::Notice(notice) => {
                            tracing::debug!("realtime log reader: {}", notice.message())
                        }
                        _ => {}
                    }
                }
                Ok::<_, tokio_postgres::Error>(())
            }
        });
        let _stop_driver = AbortOnDrop(driver.abort_handle());

        client.batch_execute("listen arena_events").await?;
        if !self.hub.is_ready() {
            let end: i64 = client
                .query_one("select coalesce(max(position), 0) from events", &[])
                .await?
                .get(0);
            self.hub.start_at(end);
            tracing::info!(position = end, "realtime hub: reading the event log");
        } else {
            tracing::info!(
                position = self.hub.cursor(),
                "realtime hub: reconnected to the event log"
            );
        }
        *delay = BACKOFF_MIN;
        let read = client
            .prepare(&format!(
                "select {EVENT_COLUMNS} from events where position > $1 order by position limit $2"
            ))
            .await?;

        loop {
            let pending = self.catch_up(&client, &read).await?;
            let tick = if pending { TICK_PENDING } else { TICK_IDLE };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
                ended = &mut driver => {
                    return Err(match ended {
                        Ok(Ok(())) => anyhow::anyhow!("the server closed the connection"),
                        Ok(Err(error)) => anyhow::Error::new(error).context("the connection failed"),
                        Err(error) => anyhow::Error::new(error).context("the connection's task ended"),
                    });
                }
                () = self.shutdown.triggered() => return Ok(()),
            }
        }
    }

    /// Sequences, then dispatches everything after the cursor. Returns whether
    /// events are still left without a position.
    async fn catch_up(&self, client: &Client, read: &Statement) -> anyhow::Result<bool> {
        let sequenced = sequence(client).await?;
        Metrics::add(&self.hub.metrics().events_sequenced, sequenced.count);
        loop {
            let cursor = self.hub.cursor();
            let rows = client.query(read, &[&cursor, &READ_BATCH]).await?;
            for row in &rows {
                self.hub.dispatch(Arc::new(Event::from_row(row)?));
            }
            if (rows.len() as i64) < READ_BATCH {
                return Ok(sequenced.pending);
            }
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Instant;

    use tokio::sync::mpsc;

    use super::super::hub::{PgStore, Subscriber};
    use super::super::test_db::TestDb;
    use super::*;

    async fn insert(client: &impl tokio_postgres::GenericClient, stream: &str, n: i64) -> i64 {
        client
            .query_one(
                "insert into events (stream, type, payload) values ($1, 'test.event', $2) returning event_id",
                &[&stream, &serde_json::json!({ "n": n })],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn positions(client: &Client) -> Vec<(i64, Option<i64>)> {
        client
            .query(
                "select event_id, position from events order by event_id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// Runs the sequencer until `expected` events have positions (concurrent
    /// sequencers may have numbered some). Returns how many this
    /// connection sequenced.
    pub(crate) async fn sequence_until(client: &Client, expected: i64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut count = 0;
        loop {
            count += sequence(client).await.unwrap().count;
            let done: i64 = client
                .query_one("select count(position) from events", &[])
                .await
                .unwrap()
                .get(0);
            if done >= expected {
                return count;
            }
            assert!(Instant::now() < deadline, "{done} of {expected} sequenced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn next(rx: &mut mpsc::Receiver<Arc<Event>>) -> Arc<Event> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("the queue is open")
    }

    /// T1 writes the smaller event id but commits last: T2's event is numbered
    /// while T1 runs, T1's after it commits, with a larger position; a reader of
    /// `position > cursor` meets both, in the order they became visible.
    #[tokio::test]
    async fn an_event_committed_late_is_never_stepped_over() {
        let db = TestDb::create().await;
        let sequencer = db.connect().await;
        let mut t1_client = db.connect().await;
        let mut t2_client = db.connect().await;

        let t1 = t1_client.transaction().await.unwrap();
        let first = insert(&t1, "discussion:1", 1).await;
        let t2 = t2_client.transaction().await.unwrap();
        let second = insert(&t2, "discussion:1", 2).await;
        assert!(first < second);
        t2.commit().await.unwrap();

        // T2 is committed: its event is numbered; T1's is not visible yet.
        let run = sequence(&sequencer).await.unwrap();
        assert_eq!(
            run,
            Sequenced {
                count: 1,
                pending: false
            }
        );
        let seen = positions(&sequencer).await;
        assert_eq!(seen, [(second, Some(1))]);

        t1.commit().await.unwrap();
        assert_eq!(sequence(&sequencer).await.unwrap().count, 1);
        let seen = positions(&sequencer).await;
        assert_eq!(seen, [(first, Some(2)), (second, Some(1))]);
        // Nothing left to do.
        assert_eq!(sequence(&sequencer).await.unwrap().count, 0);
    }

    /// Sequencers racing on several connections (replicas) still hand out each
    /// position once, in event_id order within each block.
    #[tokio::test]
    async fn concurrent_sequencers_share_the_work_without_collisions() {
        let db = TestDb::create().await;
        let writer = db.connect().await;
        for n in 0..300 {
            insert(&writer, "discussion:1", n).await;
        }
        let mut runs = Vec::new();
        for _ in 0..4 {
            let client = db.connect().await;
            runs.push(tokio::spawn(
                async move { sequence_until(&client, 300).await },
            ));
        }
        let mut total = 0;
        for run in runs {
            total += run.await.unwrap();
        }
        assert_eq!(total, 300);
        let seen = positions(&writer).await;
        let mut by_position: Vec<(i64, i64)> =
            seen.iter().map(|(id, p)| (p.unwrap(), *id)).collect();
        by_position.sort();
        assert!(
            by_position.windows(2).all(|w| w[0].1 < w[1].1),
            "positions follow event ids"
        );
    }

    fn reader(db: &TestDb, hub: &Arc<Hub>, shutdown: &Shutdown) -> LogReader {
        let mut config = super::super::database_config(&db.url()).unwrap();
        config.application_name("arena realtime test reader");
        LogReader {
            hub: hub.clone(),
            config,
            tls: super::super::tls(),
            shutdown: shutdown.clone(),
        }
    }

    #[tokio::test]
    async fn the_reader_delivers_a_late_commit_and_what_follows_in_order() {
        let db = TestDb::create().await;
        let writer = db.connect().await;
        // Before the reader starts: not delivered (live only), but resumable.
        let old = insert(&writer, "discussion:1", 0).await;
        sequence_until(&writer, 1).await;

        let hub = Arc::new(Hub::new(PgStore { pool: db.pool() }));
        let shutdown = Shutdown::new();
        let task = tokio::spawn(reader(&db, &hub, &shutdown).run());
        tokio::time::timeout(Duration::from_secs(10), hub.ready())
            .await
            .unwrap();
        let start = hub.cursor();
        assert_eq!(start, 1, "the log's end at start: event {old}'s position");
        let (queue, mut rx) = Subscriber::new(64);
        let (_, cursor) = hub.subscribe("discussion:1", queue);
        assert_eq!(cursor, start);

        let mut t1_client = db.connect().await;
        let mut t2_client = db.connect().await;
        let t1 = t1_client.transaction().await.unwrap();
        let first = insert(&t1, "discussion:1", 1).await;
        let t2 = t2_client.transaction().await.unwrap();
        let second = insert(&t2, "discussion:1", 2).await;
        t2.commit().await.unwrap();
        // T2's event comes while T1 still runs...
        let a = next(&mut rx).await;
        assert_eq!(a.payload.get(), r#"{"n": 2}"#, "event {second} first");
        assert_eq!(&*a.kind, "test.event");
        tokio::time::sleep(TICK_PENDING).await;
        assert!(rx.try_recv().is_err(), "nothing of T1 before it commits");

        // ...and T1's after it commits, with the next position.
        t1.commit().await.unwrap();
        let b = next(&mut rx).await;
        assert_eq!(b.id, a.id + 1);
        assert_eq!(b.payload.get(), r#"{"n": 1}"#, "event {first} second");

        // And a resume from the start replays exactly those.
        let replayed = hub.replay("discussion:1", 0, hub.cursor()).await.unwrap();
        let ids: Vec<i64> = replayed.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, a.id, b.id]);

        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the reader stops at shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn the_reader_reconnects_and_loses_nothing_written_meanwhile() {
        let db = TestDb::create().await;
        let writer = db.connect().await;
        let hub = Arc::new(Hub::new(PgStore { pool: db.pool() }));
        let shutdown = Shutdown::new();
        let task = tokio::spawn(reader(&db, &hub, &shutdown).run());
        tokio::time::timeout(Duration::from_secs(10), hub.ready())
            .await
            .unwrap();
        let (queue, mut rx) = Subscriber::new(64);
        hub.subscribe("discussion:1", queue);

        insert(&writer, "discussion:1", 1).await;
        assert_eq!(next(&mut rx).await.payload.get(), r#"{"n": 1}"#);

        let killed: i64 = writer
            .query_one(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity
                 where application_name = 'arena realtime test reader' and datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 1);
        // Written while the reader is (probably) away; its NOTIFY goes nowhere.
        for n in 2..=4 {
            insert(&writer, "discussion:1", n).await;
        }
        let started = Instant::now();
        for n in 2..=4 {
            let event = next(&mut rx).await;
            assert_eq!(event.payload.get(), format!(r#"{{"n": {n}}}"#));
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        let reconnects = hub
            .metrics()
            .log_reconnects
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(reconnects >= 1, "{reconnects}");

        shutdown.trigger();
        task.await.unwrap();
    }
}
