//! Retention: the event log does not grow forever.
//!
//! Every [`INTERVAL`], one replica at a time (`pg_try_advisory_xact_lock`; a
//! replica that finds it held skips its turn) deletes:
//!
//! - token chunks (`turn.token`) older than [`Policy::tokens`] (10 minutes) whose
//!   message is no longer `generating` and was stored at least that long ago
//!   (or is gone): the stored message holds their text;
//! - every other event older than [`Policy::events`] (`--event-retention`, 7
//!   days by default);
//! - realtime tickets expired for a while.
//!
//! Only sequenced events are deleted. Deletes run in small batches, each its own
//! short transaction, so pruning never holds locks on the log for long. A client
//! resuming from before the retention period gets what is left.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::Shutdown;

/// How often retention runs.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// The advisory lock one replica holds while it prunes ("arena_rt").
pub const RETENTION_LOCK: i64 = 0x6172_656e_615f_7274;

/// Rows one delete removes at most.
const BATCH: i64 = 1000;

/// Batches one run deletes at most per kind; the rest waits for the next run.
const MAX_BATCHES: usize = 100;

/// How long events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Every event but token chunks.
    pub events: Duration,
    /// Token chunks, counted from their chunk and from their message's end.
    pub tokens: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            events: Duration::from_secs(7 * 24 * 3600),
            tokens: Duration::from_secs(10 * 60),
        }
    }
}

/// What one run deleted; `None` from [`prune`] when another replica held the lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub tokens: u64,
    pub events: u64,
    pub tickets: u64,
}

const DELETE_TOKENS: &str = "
    delete from events
    where event_id in (
        select e.event_id from events e
        where e.type = 'turn.token'
          and e.created_at < now() - make_interval(secs => $1)
          and e.position is not null
          and not exists (
              select from messages m
              where m.message_id = case
                      when e.payload->>'message_id'
                           ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
                      then (e.payload->>'message_id')::uuid
                    end
                and (m.status = 'generating'
                     or m.completed_at > now() - make_interval(secs => $1)))
        limit $2)";

const DELETE_EVENTS: &str = "
    delete from events
    where event_id in (
        select event_id from events
        where created_at < now() - make_interval(secs => $1)
          and position is not null
        limit $2)";

/// Tickets live 30 seconds; an expired one is kept [`TICKET_GRACE`] for diagnosis.
const DELETE_TICKETS: &str = "
    delete from realtime_tickets
    where ticket_digest in (
        select ticket_digest from realtime_tickets
        where expires_at < now() - make_interval(secs => $1)
        limit $2)";

/// How long an expired ticket is kept.
const TICKET_GRACE: Duration = Duration::from_secs(10 * 60);

/// Prunes every [`INTERVAL`] until shutdown.
pub async fn run(pool: Pool, policy: Policy, shutdown: Shutdown) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.triggered() => return,
        }
        let outcome = tokio::select! {
            outcome = prune(&pool, &policy) => outcome,
            () = shutdown.triggered() => return,
        };
        match outcome {
            Ok(Some(pruned)) if pruned != Pruned::default() => tracing::info!(
                tokens = pruned.tokens,
                events = pruned.events,
                tickets = pruned.tickets,
                "realtime retention: pruned"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!("realtime retention: {error:#}"),
        }
    }
}

/// One run: deletes what [`Policy`] says is due, in batches.
pub async fn prune(pool: &Pool, policy: &Policy) -> anyhow::Result<Option<Pruned>> {
    let mut client = pool.get().await?;
    let mut pruned = Pruned::default();
    let kinds: [(&str, Duration, &mut u64); 3] = [
        (DELETE_TOKENS, policy.tokens, &mut pruned.tokens),
        (DELETE_EVENTS, policy.events, &mut pruned.events),
        (DELETE_TICKETS, TICKET_GRACE, &mut pruned.tickets),
    ];
    for (sql, age, count) in kinds {
        for _ in 0..MAX_BATCHES {
            let tx = client.transaction().await?;
            let locked: bool = tx
                .query_one("select pg_try_advisory_xact_lock($1)", &[&RETENTION_LOCK])
                .await?
                .get(0);
            if !locked {
                return Ok(None);
            }
            let statement = tx.prepare_cached(sql).await?;
            let deleted = tx
                .execute(&statement, &[&age.as_secs_f64(), &BATCH])
                .await?;
            tx.commit().await?;
            *count += deleted;
            if deleted < BATCH as u64 {
                break;
            }
        }
    }
    Ok(Some(pruned))
}

#[cfg(test)]
mod tests {
    use super::super::test_db::TestDb;
    use super::*;

    #[tokio::test]
    async fn old_events_and_finished_turns_tokens_are_pruned_the_rest_kept() {
        let db = TestDb::create().await;
        let client = db.connect().await;
        // A user, a discussion, and two messages: one still generating, one done.
        client
            .batch_execute(
                "insert into users (user_id, username, password_hash, role)
                     values ('00000000-0000-7000-8000-000000000001', 'ada', 'x', 'member');
                 insert into discussions (discussion_id, owner_id, title, topic)
                     values ('00000000-0000-7000-8000-000000000002',
                             '00000000-0000-7000-8000-000000000001', 't', 't');
                 insert into messages (message_id, discussion_id, seq, turn_index, content, status, completed_at)
                     values ('00000000-0000-7000-8000-00000000000a',
                             '00000000-0000-7000-8000-000000000002', 1, 0, 'x', 'generating', null),
                            ('00000000-0000-7000-8000-00000000000b',
                             '00000000-0000-7000-8000-000000000002', 2, 1, 'y', 'completed',
                             now() - interval '1 hour');",
            )
            .await
            .unwrap();
        let insert = "insert into events (stream, type, payload, created_at)
                      values ('discussion:x', $1, $2, now() - make_interval(secs => $3))";
        let rows: [(&str, serde_json::Value, f64); 7] = [
            // Old chunk of a generating message: kept.
            (
                "turn.token",
                serde_json::json!({"message_id": "00000000-0000-7000-8000-00000000000a"}),
                3600.0,
            ),
            // Old chunk of a completed message: pruned.
            (
                "turn.token",
                serde_json::json!({"message_id": "00000000-0000-7000-8000-00000000000b"}),
                3600.0,
            ),
            // Recent chunk of a completed message: kept.
            (
                "turn.token",
                serde_json::json!({"message_id": "00000000-0000-7000-8000-00000000000b"}),
                10.0,
            ),
            // Old chunk naming no message: pruned.
            (
                "turn.token",
                serde_json::json!({"message_id": "not a uuid"}),
                3600.0,
            ),
            // A week-and-a-day old message event: pruned; a day old: kept.
            ("message.created", serde_json::json!({}), 8.0 * 86400.0),
            ("message.created", serde_json::json!({}), 86400.0),
            // Recent: kept.
            ("turn.started", serde_json::json!({}), 1.0),
        ];
        for (kind, payload, age) in &rows {
            client.execute(insert, &[kind, payload, age]).await.unwrap();
        }
        super::super::log::tests::sequence_until(&client, rows.len() as i64).await;
        // Not yet sequenced (no sequencer ran since): kept whatever its age.
        client
            .execute(
                insert,
                &[&"message.created", &serde_json::json!({}), &(9.0 * 86400.0)],
            )
            .await
            .unwrap();

        let pruned = prune(&db.pool(), &Policy::default()).await.unwrap();
        assert_eq!(
            pruned,
            Some(Pruned {
                tokens: 2,
                events: 1,
                tickets: 0
            })
        );
        let left: i64 = client
            .query_one("select count(*) from events", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 8 - 3);

        // Another replica pruning: this one skips its turn.
        let mut other = db.connect().await;
        let other_tx = other.transaction().await.unwrap();
        other_tx
            .execute("select pg_advisory_xact_lock($1)", &[&RETENTION_LOCK])
            .await
            .unwrap();
        assert_eq!(prune(&db.pool(), &Policy::default()).await.unwrap(), None);
        other_tx.rollback().await.unwrap();
    }
}
