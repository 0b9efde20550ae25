//! PostgreSQL through Spin's `spin:postgres` interface: connecting, typed rows,
//! transactions, and database errors as problems.
//!
//! | Item | What it gives a handler |
//! |---|---|
//! | [`Db::connect`] | a connection to the address in the Spin variable `database_url` |
//! | [`Db::query`], [`query_one`](Db::query_one), [`query_opt`](Db::query_opt), [`execute`](Db::execute) | statements, with rows decoded through [`FromRow`] |
//! | [`Row::get`] | one column as a Rust type ([`FromValue`]); a mismatch is a 500 naming the column |
//! | [`transaction`] | `BEGIN`, then `COMMIT` on `Ok` or `ROLLBACK` on `Err` |
//! | [`DbError`] → [`Problem`](crate::Problem) | the one mapping of database failures to responses (below) |
//! | [`ResultExt::on_constraint`] | a caller's own problem for a named constraint |
//!
//! Unmapped failures answer:
//!
//! | Failure | SQLSTATE | Answer |
//! |---|---|---|
//! | unique violation | 23505 | 409 `conflict` |
//! | foreign-key violation | 23503 | 409 `conflict` |
//! | check violation | 23514 | 400 `validation_failed` |
//! | text with a character the database cannot store (`\u0000`) | 22021, 22P05 | 400 `validation_failed` |
//! | serialization failure, deadlock | 40001, 40P01 | 503 `unavailable`, `Retry-After: 1` |
//! | connection failures, server shutting down or full | class 08, 57P01–57P03, 53300 | 503 `upstream_unavailable` |
//! | anything else, and rows that do not decode | | 500 `internal`, the cause logged and not sent |
//!
//! The generic 409 and 400 say little; a handler names the constraints it expects
//! (constraint names live in `migrations/`) and says what they mean:
//!
//! ```no_run
//! use arena_common::db::{transaction, Db, FromRow, ResultExt, Row, DbError};
//! use arena_common::ids::{self, Uuid};
//! use arena_common::{events, Problem};
//!
//! struct Agent { agent_id: Uuid, name: String }
//!
//! impl FromRow for Agent {
//!     fn from_row(row: Row) -> Result<Self, DbError> {
//!         Ok(Self { agent_id: row.get("agent_id")?, name: row.get("name")? })
//!     }
//! }
//!
//! async fn create(name: String) -> Result<Agent, Problem> {
//!     let db = Db::connect().await?;
//!     transaction(&db, async |tx| {
//!         let agent: Agent = tx
//!             .query_one(
//!                 "insert into agents (agent_id, name) values ($1, $2) returning agent_id, name",
//!                 &[ids::new_id().into(), name.clone().into()],
//!             )
//!             .await
//!             .on_constraint("agents_name_key", |_| {
//!                 Problem::conflict(format!("an agent named {name:?} already exists"))
//!                     .with_field_error("name", "is taken")
//!             })?;
//!         events::emit(tx, "agents", "agent.created", &serde_json::json!({ "agent_id": agent.agent_id })).await?;
//!         Ok(agent)
//!     })
//!     .await
//! }
//! ```
//!
//! Connections are opened per request and never kept: pooling is the host's job, and
//! a component instance may serve many requests, so nothing may live in a `static`.

mod client;
mod error;
mod row;
mod transaction;

pub use client::{Client, DATABASE_URL, Db, Typed};
pub use error::{DbError, ResultExt};
pub use row::{FromRow, FromValue, Json, Row};
pub use spin_sdk::pg::ParameterValue;
pub use transaction::{Tx, transaction};

#[cfg(test)]
pub(crate) mod fake;
