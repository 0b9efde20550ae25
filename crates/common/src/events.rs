//! Events: what others must see of a write, recorded with the write itself.
//!
//! An event is a row of the `events` table (`event_id bigint` identity, `stream`,
//! `type`, `payload jsonb`, `created_at`), inserted in the same transaction as the
//! change it announces: subscribers never hear of a change that was rolled back, and
//! never miss one that was committed. A trigger on the table sends the `NOTIFY` the
//! realtime sidecar listens for; the sidecar replays from the table for a client that
//! reconnects with its last event id.
//!
//! ```no_run
//! use arena_common::db::{transaction, Db};
//! use arena_common::events::emit;
//! use arena_common::Problem;
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct MessageCreated<'a> { message_id: arena_common::ids::Uuid, text: &'a str }
//!
//! # async fn post(db: &Db, discussion: arena_common::ids::Uuid) -> Result<(), Problem> {
//! transaction(db, async |tx| {
//!     let message_id = arena_common::ids::new_id();
//!     // ... insert the message ...
//!     let stream = format!("discussion:{discussion}");
//!     emit(tx, &stream, "message.created", &MessageCreated { message_id, text: "hi" }).await?;
//!     Ok(())
//! })
//! .await
//! # }
//! ```

use serde::Serialize;

use crate::db::{Client, DbError, Row, Tx};

/// Records an event of `event_type` on `stream` with `payload` as its JSON, inside
/// `tx`; it becomes visible when `tx` commits. Returns the event's id, which orders
/// events and is what a client resumes from (`Last-Event-ID`).
///
/// A `payload` that does not serialize to JSON is a [`DbError::Encode`] (a 500).
pub async fn emit<C: Client>(
    tx: &Tx<'_, C>,
    stream: &str,
    event_type: &str,
    payload: &impl Serialize,
) -> Result<i64, DbError> {
    let payload = spin_sdk::pg::jsonb(payload)
        .map_err(|error| DbError::Encode(format!("the {event_type} event's payload: {error}")))?;
    let row: Row = tx
        .query_one(
            "insert into events (stream, type, payload) values ($1, $2, $3) returning event_id",
            &[
                stream.to_owned().into(),
                event_type.to_owned().into(),
                payload,
            ],
        )
        .await?;
    row.get("event_id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fake::Script;
    use crate::db::{Db, transaction};
    use crate::{Problem, ProblemCode};
    use futures::executor::block_on;
    use spin_sdk::pg::{DbValue, ParameterValue};
    use std::collections::BTreeMap;

    fn db() -> Db<Script> {
        Db::new(Script::default().returning(
            "insert into events",
            &["event_id"],
            vec![vec![DbValue::Int64(41)]],
        ))
    }

    #[test]
    fn emit_inserts_the_event_inside_the_transaction() {
        let db = db();
        let id = block_on(transaction(&db, async |tx| {
            tx.execute("insert into messages values (1)", &[]).await?;
            Ok(emit(
                tx,
                "discussion:7",
                "message.created",
                &serde_json::json!({ "n": 1 }),
            )
            .await?)
        }));
        assert_eq!(id.unwrap(), 41);
        let statements = db.client().statements();
        assert_eq!(statements.len(), 4);
        assert_eq!(statements[0], "begin");
        assert!(statements[2].starts_with("insert into events (stream, type, payload)"));
        assert_eq!(statements[3], "commit");
        match &db.client().params()[2][..] {
            [
                ParameterValue::Str(stream),
                ParameterValue::Str(event_type),
                ParameterValue::Jsonb(payload),
            ] => {
                assert_eq!(stream, "discussion:7");
                assert_eq!(event_type, "message.created");
                assert_eq!(payload, br#"{"n":1}"#);
            }
            other => panic!("unexpected parameters {other:?}"),
        }
    }

    #[test]
    fn an_event_emitted_before_a_failure_is_rolled_back_with_it() {
        let db = db();
        let result: Result<(), _> = block_on(transaction(&db, async |tx| {
            emit(tx, "agents", "agent.created", &"x").await?;
            Err(Problem::conflict("name taken"))
        }));
        assert!(result.is_err());
        assert_eq!(db.client().statements().last().unwrap(), "rollback");
    }

    #[test]
    fn a_payload_that_is_not_json_is_internal() {
        let db = db();
        let unrepresentable = BTreeMap::from([((1, 2), 3)]);
        let result = block_on(transaction(&db, async |tx| {
            Ok(emit(tx, "agents", "agent.created", &unrepresentable).await?)
        }));
        assert_eq!(result.unwrap_err().code(), ProblemCode::Internal);
        assert_eq!(db.client().statements(), ["begin", "rollback"]);
    }
}
