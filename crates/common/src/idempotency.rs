//! `Idempotency-Key`: a retried create or turn advance answers with the first
//! result and does no work twice.
//!
//! A client that may retry (a timeout, a dropped connection) sends the same
//! `Idempotency-Key` header, 1 to 255 visible ASCII characters, on every attempt
//! of one request. The key is the caller's: keys of different users never meet.
//!
//! | The request | Answer |
//! |---|---|
//! | no `Idempotency-Key` | as usual; nothing is recorded |
//! | a key not 1–255 visible ASCII characters, or given twice | 400 `validation_failed` naming the header |
//! | a new key | as usual; the answer is recorded with the write, in its transaction |
//! | a key seen with the same method, path and body | the recorded answer, with `Idempotent-Replayed: true`; nothing is done |
//! | a key seen with another method, path or body | 422 `idempotency_key_reused` |
//! | a key whose first request is still running | 409 `conflict` once that one commits (retry: it then replays) |
//!
//! The answer is recorded inside the write's own transaction (the table
//! `idempotency_keys`, primary key `(user_id, key)`), so a request that failed
//! recorded nothing and may be retried with its key. Keys are kept 24 hours: after
//! that the key is new again. Expired keys of a user are deleted when that user
//! records a new one.
//!
//! What "the same request" is: the method, the path (ids included) and the body's
//! canonical JSON (object keys sorted), hashed with SHA-256. The body is the one the
//! handler parsed, so `{"a": 1, "b": null}` and `{"a": 1}` are the same request when
//! the type reads both alike.
//!
//! What is recorded is the handler's choice: the answer's status, its body, and
//! the id of what it made. A create records its body and replays it as it was; a
//! turn advance records the message's id and answers a retry with the message as
//! it is now (see [`Stored::resource_id`]).
//!
//! ```no_run
//! use arena_common::auth::Identity;
//! use arena_common::db::{transaction, Db};
//! use arena_common::idempotency::Idempotency;
//! use arena_common::{created, ids, Problem};
//! use http::StatusCode;
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct NewNote { text: String }
//! # impl arena_common::validate::Validate for NewNote { fn validate(&self, _: &mut arena_common::validate::Validator) {} }
//! # #[derive(serde::Serialize)]
//! # struct Note { note_id: ids::Uuid, text: String }
//!
//! async fn create(req: &mut spin_sdk::http::Request) -> Result<http::Response<String>, Problem> {
//!     let caller = Identity::from_request(req)?;
//!     let new: NewNote = arena_common::body::read_json(req).await?;
//!     // The key (if any), bound to the caller, `POST <path>` and the body.
//!     let idempotency = Idempotency::from_request(req, caller.user_id, &new)?;
//!     let db = Db::connect().await?;
//!     if let Some(stored) = idempotency.replay(&db).await? {
//!         return stored.created("/v1/notes");
//!     }
//!     let note = transaction(&db, async |tx| {
//!         let note = Note { note_id: ids::new_id(), text: new.text.clone() };
//!         // ... insert the note ...
//!         idempotency.record(tx, StatusCode::CREATED, Some(note.note_id), &note).await?;
//!         Ok(note)
//!     })
//!     .await?;
//!     created(&format!("/v1/notes/{}", note.note_id), &note)
//! }
//! ```
//!
//! A write that locks a row first (a discussion, to post in it) checks for a
//! replay after taking the lock, inside its transaction: a concurrent duplicate
//! then waits for the first and replays it instead of answering 409.

use std::fmt::Write as _;

use http::header::{HeaderName, HeaderValue, LOCATION};
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use spin_sdk::pg::ParameterValue;

use crate::db::{Client, DbError, FromRow, ResultExt, Row, Tx, Typed};
use crate::ids::Uuid;
use crate::{Problem, ProblemCode};

/// The request header carrying the key.
pub const KEY_HEADER: &str = "idempotency-key";

/// The response header marking an answer as a replay of the first one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// How long a key is remembered, as a PostgreSQL interval.
const KEPT_FOR: &str = "24 hours";

/// The longest key accepted (the column's limit).
const MAX_KEY_LEN: usize = 255;

/// The `Idempotency-Key` header as an OpenAPI parameter: `params(IdempotencyKeyHeader)`
/// in an operation's `#[utoipa::path]`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Names this request, so a retry with the same key (and the same body)
    /// answers with the first result and does nothing twice. Kept 24 hours.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// A well-formed `Idempotency-Key` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key `req` carries, if any. One that is empty, longer than 255
    /// characters, not visible ASCII (`!` to `~`), or given twice is a 400 naming
    /// the header.
    pub fn from_request<B>(req: &http::Request<B>) -> Result<Option<Self>, Problem> {
        let mut values = req.headers().get_all(KEY_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(invalid("must be given at most once"));
        }
        let bytes = value.as_bytes();
        let visible = bytes.iter().all(|byte| (b'!'..=b'~').contains(byte));
        if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !visible {
            return Err(invalid(
                "must be 1 to 255 visible ASCII characters (no spaces)",
            ));
        }
        // Visible ASCII is UTF-8.
        Ok(Some(Self(String::from_utf8_lossy(bytes).into_owned())))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, as `user_id` used it for the request `scope` (`"POST /v1/agents"`)
    /// with `body`: what [`Idempotency::replay`] and [`Idempotency::record`] need.
    pub fn bind(
        self,
        user_id: Uuid,
        scope: impl Into<String>,
        body: &impl Serialize,
    ) -> Result<Idempotency, Problem> {
        let scope = scope.into();
        let fingerprint = fingerprint(&scope, body)?;
        Ok(Idempotency(Some(Bound {
            user_id,
            key: self,
            scope,
            fingerprint,
        })))
    }
}

/// The 400 for a malformed `Idempotency-Key`.
fn invalid(message: &str) -> Problem {
    Problem::validation_failed(format!("the Idempotency-Key header {message}"))
        .with_field_error("Idempotency-Key", message)
}

/// SHA-256, in hex, of `scope`, a newline, and `body`'s canonical JSON.
fn fingerprint(scope: &str, body: &impl Serialize) -> Result<String, Problem> {
    let body = serde_json::to_value(body)
        .map_err(|error| Problem::internal(format!("fingerprinting a request body: {error}")))?;
    let mut text = String::with_capacity(scope.len() + 64);
    text.push_str(scope);
    text.push('\n');
    write_canonical(&body, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    Ok(hex)
}

/// `value` as JSON with every object's keys sorted, however the map keeps them.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (at, (name, value)) in entries.into_iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A request's idempotency: its key bound to the caller and the request, or
/// nothing when it carries no key (then [`replay`](Self::replay) finds nothing and
/// [`record`](Self::record) records nothing), so a handler reads the same either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Idempotency(Option<Bound>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    user_id: Uuid,
    key: Key,
    scope: String,
    fingerprint: String,
}

impl Idempotency {
    /// The key `req` carries (see [`Key::from_request`]), bound to `user_id`, the
    /// request's method and path, and `body` (the parsed body; `&()` for none).
    pub fn from_request<B>(
        req: &http::Request<B>,
        user_id: Uuid,
        body: &impl Serialize,
    ) -> Result<Self, Problem> {
        match Key::from_request(req)? {
            Some(key) => key.bind(
                user_id,
                format!("{} {}", req.method(), crate::request::path(req)),
                body,
            ),
            None => Ok(Self::default()),
        }
    }

    /// The key, if the request carries one.
    pub fn key(&self) -> Option<&Key> {
        self.0.as_ref().map(|bound| &bound.key)
    }

    /// The first answer to this request, if its key was used (and recorded) in the
    /// last 24 hours; a 422 `idempotency_key_reused` if the key was used with
    /// another request. `None` without a key.
    pub async fn replay(&self, client: &impl Client) -> Result<Option<Stored>, Problem> {
        let Some(bound) = &self.0 else {
            return Ok(None);
        };
        let statement = format!(
            "select scope, fingerprint, status_code, body, resource_id
             from idempotency_keys
             where user_id = $1 and key = $2 and created_at > now() - interval '{KEPT_FOR}'"
        );
        let row: Option<Recorded> = client
            .row_opt(
                &statement,
                &[bound.user_id.into(), bound.key.0.clone().into()],
            )
            .await?;
        let Some(recorded) = row else {
            return Ok(None);
        };
        if recorded.fingerprint != bound.fingerprint {
            let other = if recorded.scope == bound.scope {
                "the same method and path with another body".to_owned()
            } else {
                recorded.scope
            };
            return Err(Problem::new(
                ProblemCode::IdempotencyKeyReused,
                format!(
                    "the Idempotency-Key {:?} was first used with {other}; a key names one \
                     request, so use a new key for a new request",
                    bound.key.0
                ),
            ));
        }
        let status = StatusCode::from_u16(u16::try_from(recorded.status_code).unwrap_or(0))
            .map_err(|_| {
                Problem::internal(format!(
                    "idempotency key recorded with status {}",
                    recorded.status_code
                ))
            })?;
        Ok(Some(Stored {
            status,
            body: recorded.body.filter(|body| !body.is_null()),
            resource_id: recorded.resource_id,
        }))
    }

    /// Records the answer to this request inside `tx`, the transaction of the write
    /// it answers: `status`, the id of what it made, and `body` (`&()` or
    /// `&Value::Null` for none). Nothing without a key. Deletes the caller's expired
    /// keys first.
    ///
    /// A concurrent request with the same key that recorded first makes this a
    /// 409 `conflict` (and so rolls this one back).
    pub async fn record<C: Client>(
        &self,
        tx: &Tx<'_, C>,
        status: StatusCode,
        resource_id: Option<Uuid>,
        body: &impl Serialize,
    ) -> Result<(), Problem> {
        let Some(bound) = &self.0 else {
            return Ok(());
        };
        let body = serde_json::to_value(body).map_err(|error| {
            Problem::internal(format!("recording an idempotent answer: {error}"))
        })?;
        let body = match body {
            Value::Null => ParameterValue::DbNull,
            body => spin_sdk::pg::jsonb(&body).map_err(Problem::internal)?,
        };
        tx.execute(
            &format!(
                "delete from idempotency_keys
                 where user_id = $1 and created_at <= now() - interval '{KEPT_FOR}'"
            ),
            &[bound.user_id.into()],
        )
        .await?;
        tx.execute(
            "insert into idempotency_keys
                 (user_id, key, scope, fingerprint, status_code, body, resource_id)
             values ($1, $2, $3, $4, $5, $6, $7)",
            &[
                bound.user_id.into(),
                bound.key.0.clone().into(),
                bound.scope.clone().into(),
                bound.fingerprint.clone().into(),
                i32::from(status.as_u16()).into(),
                body,
                resource_id.into(),
            ],
        )
        .await
        .on_constraint("idempotency_keys_pkey", |_| {
            Problem::conflict(format!(
                "a request with this Idempotency-Key ({:?}) is in progress; retry once it ends",
                bound.key.0
            ))
        })?;
        Ok(())
    }
}

/// A row of `idempotency_keys`, as [`Idempotency::replay`] reads it.
struct Recorded {
    scope: String,
    fingerprint: String,
    status_code: i32,
    body: Option<Value>,
    resource_id: Option<Uuid>,
}

impl FromRow for Recorded {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(Self {
            scope: row.get("scope")?,
            fingerprint: row.get("fingerprint")?,
            status_code: row.get::<Option<i32>>("status_code")?.unwrap_or(0),
            body: row.get("body")?,
            resource_id: row.get("resource_id")?,
        })
    }
}

/// The first answer to a request, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub status: StatusCode,
    /// Its JSON body, if one was recorded.
    pub body: Option<Value>,
    /// What it made (an agent, a message), if recorded: a handler that answers a
    /// retry with the resource as it is now reads it again by this id, and marks
    /// its answer with [`mark_replayed`].
    pub resource_id: Option<Uuid>,
}

impl Stored {
    /// The recorded answer: its status and JSON body (empty if none was recorded),
    /// marked `Idempotent-Replayed: true`.
    pub fn response(&self) -> Result<Response<String>, Problem> {
        let mut response = match &self.body {
            Some(body) => crate::json(self.status, body)?,
            None => {
                let mut response = Response::new(String::new());
                *response.status_mut() = self.status;
                response
            }
        };
        mark_replayed(&mut response);
        Ok(response)
    }

    /// [`response`](Self::response) for a create: `Location:
    /// <collection>/<resource_id>` (`/v1/agents/0191...`) when an id was recorded.
    pub fn created(&self, collection: &str) -> Result<Response<String>, Problem> {
        let mut response = self.response()?;
        if let Some(id) = self.resource_id {
            let location = format!("{collection}/{id}");
            let location = HeaderValue::from_str(&location)
                .map_err(|_| Problem::internal(format!("{location:?} is not a valid Location")))?;
            response.headers_mut().insert(LOCATION, location);
        }
        Ok(response)
    }
}

/// Marks `response` as the replay of a request answered before:
/// `Idempotent-Replayed: true`.
pub fn mark_replayed<B>(response: &mut Response<B>) {
    response.headers_mut().insert(
        HeaderName::from_static(REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::fake::Script;
    use crate::db::{Db, transaction};
    use futures::executor::block_on;
    use spin_sdk::pg::DbValue;

    const USER: Uuid = Uuid::from_u128(7);

    /// PostgreSQL's unique violation of `idempotency_keys_pkey`, as Spin reports it.
    fn duplicate_key() -> DbError {
        use spin_sdk::pg::{PgError, QueryError};
        DbError::Pg {
            during: "insert into idempotency_keys ...".to_owned(),
            error: Box::new(PgError::QueryFailed(QueryError::DbError(
                spin_sdk::pg::DbError {
                    as_text: "duplicate key value violates unique constraint".to_owned(),
                    severity: "ERROR".to_owned(),
                    code: "23505".to_owned(),
                    message: "duplicate key".to_owned(),
                    detail: None,
                    extras: vec![("constraint".to_owned(), "idempotency_keys_pkey".to_owned())],
                },
            ))),
        }
    }

    fn request(keys: &[&[u8]]) -> http::Request<()> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("http://localhost/v1/agents?x=1");
        for key in keys {
            builder = builder.header(KEY_HEADER, HeaderValue::from_bytes(key).unwrap());
        }
        builder.body(()).unwrap()
    }

    fn bound(key: &str, body: Value) -> Idempotency {
        Idempotency::from_request(&request(&[key.as_bytes()]), USER, &body).unwrap()
    }

    fn fingerprint_of(idempotency: &Idempotency) -> String {
        idempotency.0.as_ref().unwrap().fingerprint.clone()
    }

    /// A database holding one recorded answer for the key.
    fn recorded(scope: &str, fingerprint: &str, body: Option<&str>) -> Db<Script> {
        let body = body.map_or(DbValue::DbNull, |body| DbValue::Jsonb(body.into()));
        Db::new(Script::default().returning(
            "select scope, fingerprint",
            &["scope", "fingerprint", "status_code", "body", "resource_id"],
            vec![vec![
                DbValue::Str(scope.into()),
                DbValue::Str(fingerprint.into()),
                DbValue::Int32(201),
                body,
                DbValue::Uuid(Uuid::from_u128(9).to_string()),
            ]],
        ))
    }

    #[test]
    fn no_header_is_no_key_and_changes_nothing() {
        let idempotency = Idempotency::from_request(&request(&[]), USER, &1).unwrap();
        assert_eq!(idempotency, Idempotency::default());
        assert!(idempotency.key().is_none());
        let db = Db::new(Script::default());
        assert_eq!(block_on(idempotency.replay(&db)).unwrap(), None);
        block_on(transaction(&db, async |tx| {
            idempotency.record(tx, StatusCode::CREATED, None, &1).await
        }))
        .unwrap();
        assert_eq!(db.client().statements(), ["begin", "commit"]);
    }

    #[test]
    fn a_key_of_visible_ascii_up_to_255_is_read() {
        let long = "k".repeat(255);
        for key in ["a", "01J0-retry_1:~!", long.as_str()] {
            let got = Key::from_request(&request(&[key.as_bytes()])).unwrap();
            assert_eq!(got.unwrap().as_str(), key);
        }
    }

    #[test]
    fn a_malformed_key_is_400_naming_the_header() {
        let long = "k".repeat(256);
        for key in [
            &b""[..],
            b"has space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            long.as_bytes(),
        ] {
            let problem = Key::from_request(&request(&[key])).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed, "{key:?}");
            assert_eq!(problem.errors()[0].field, "Idempotency-Key");
        }
        let twice = Key::from_request(&request(&[b"a", b"b"])).unwrap_err();
        assert_eq!(twice.errors()[0].message, "must be given at most once");
    }

    #[test]
    fn the_fingerprint_is_the_method_path_and_canonical_body() {
        let first = bound(
            "k",
            serde_json::json!({"a": 1, "b": {"y": [1, 2], "x": null}}),
        );
        let reordered = bound(
            "k",
            serde_json::json!({"b": {"x": null, "y": [1, 2]}, "a": 1}),
        );
        assert_eq!(fingerprint_of(&first), fingerprint_of(&reordered));
        assert_eq!(first.0.as_ref().unwrap().scope, "POST /v1/agents");
        assert_eq!(fingerprint_of(&first).len(), 64);

        let other_body = bound(
            "k",
            serde_json::json!({"a": 2, "b": {"y": [1, 2], "x": null}}),
        );
        assert_ne!(fingerprint_of(&first), fingerprint_of(&other_body));
        let other_path = Key("k".into())
            .bind(
                USER,
                "POST /v1/discussions",
                &serde_json::json!({"a": 1, "b": {"y": [1, 2], "x": null}}),
            )
            .unwrap();
        assert_ne!(fingerprint_of(&first), fingerprint_of(&other_path));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut out = String::new();
        write_canonical(
            &serde_json::json!({"z": [{"b": "\"", "a": 1.5}], "a": true}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":true,"z":[{"a":1.5,"b":"\""}]}"#);
    }

    #[test]
    fn a_new_key_finds_nothing_and_asks_for_this_user_and_key() {
        let idempotency = bound("retry-1", serde_json::json!({}));
        let db = Db::new(Script::default());
        assert_eq!(block_on(idempotency.replay(&db)).unwrap(), None);
        let statements = db.client().statements();
        assert!(statements[0].contains("created_at > now() - interval '24 hours'"));
        assert_eq!(
            format!("{:?}", db.client().params()[0]),
            format!(
                "{:?}",
                [
                    ParameterValue::from(USER),
                    ParameterValue::Str("retry-1".into())
                ]
            )
        );
    }

    #[test]
    fn the_same_request_replays_the_first_answer() {
        let idempotency = bound("k", serde_json::json!({"name": "Ada"}));
        let db = recorded(
            "POST /v1/agents",
            &fingerprint_of(&idempotency),
            Some(r#"{"agent_id": 9}"#),
        );
        let stored = block_on(idempotency.replay(&db)).unwrap().unwrap();
        assert_eq!(stored.status, StatusCode::CREATED);
        assert_eq!(stored.resource_id, Some(Uuid::from_u128(9)));
        let response = stored.created("/v1/agents").unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.body(), r#"{"agent_id":9}"#);
        assert_eq!(response.headers()[REPLAYED_HEADER], "true");
        assert_eq!(
            response.headers()[LOCATION],
            format!("/v1/agents/{}", Uuid::from_u128(9))
        );
    }

    #[test]
    fn a_recorded_answer_without_a_body_replays_its_status_and_id() {
        let idempotency = bound("k", serde_json::json!(null));
        let db = recorded("POST /v1/agents", &fingerprint_of(&idempotency), None);
        let stored = block_on(idempotency.replay(&db)).unwrap().unwrap();
        assert_eq!(stored.body, None);
        let response = stored.response().unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(response.body().is_empty());
        assert_eq!(response.headers()[REPLAYED_HEADER], "true");
    }

    #[test]
    fn the_key_with_another_request_is_422() {
        let idempotency = bound("k", serde_json::json!({"name": "Ada"}));
        let db = recorded("POST /v1/agents", "0".repeat(64).as_str(), None);
        let problem = block_on(idempotency.replay(&db)).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::IdempotencyKeyReused);
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            problem.detail().contains("another body"),
            "{}",
            problem.detail()
        );

        let db = recorded("POST /v1/discussions", "0".repeat(64).as_str(), None);
        let problem = block_on(idempotency.replay(&db)).unwrap_err();
        assert!(
            problem.detail().contains("POST /v1/discussions"),
            "{}",
            problem.detail()
        );
    }

    #[test]
    fn record_clears_expired_keys_then_inserts_in_the_transaction() {
        let idempotency = bound("k", serde_json::json!({"name": "Ada"}));
        let db = Db::new(Script::default());
        block_on(transaction(&db, async |tx| {
            idempotency
                .record(
                    tx,
                    StatusCode::CREATED,
                    Some(Uuid::from_u128(9)),
                    &serde_json::json!({"agent_id": 9}),
                )
                .await
        }))
        .unwrap();
        let statements = db.client().statements();
        assert_eq!(statements.len(), 4);
        assert!(statements[1].starts_with("delete from idempotency_keys"));
        assert!(statements[1].contains("user_id = $1"));
        assert!(statements[2].starts_with("insert into idempotency_keys"));
        assert_eq!(statements[3], "commit");
        match &db.client().params()[2][..] {
            [
                _,
                ParameterValue::Str(key),
                ParameterValue::Str(scope),
                ParameterValue::Str(fingerprint),
                ParameterValue::Int32(201),
                ParameterValue::Jsonb(body),
                ParameterValue::Uuid(_),
            ] => {
                assert_eq!(key, "k");
                assert_eq!(scope, "POST /v1/agents");
                assert_eq!(*fingerprint, fingerprint_of(&idempotency));
                assert_eq!(body, br#"{"agent_id":9}"#);
            }
            other => panic!("unexpected parameters {other:?}"),
        }
    }

    #[test]
    fn no_body_is_recorded_as_null() {
        let idempotency = bound("k", serde_json::json!(null));
        let db = Db::new(Script::default());
        block_on(transaction(&db, async |tx| {
            idempotency
                .record(tx, StatusCode::CREATED, Some(Uuid::from_u128(9)), &())
                .await
        }))
        .unwrap();
        assert!(matches!(db.client().params()[2][5], ParameterValue::DbNull));
    }

    #[test]
    fn a_concurrent_duplicate_is_409_and_rolls_back() {
        let idempotency = bound("k", serde_json::json!({}));
        let db = Db::new(Script::default().fail("insert into idempotency_keys", duplicate_key()));
        let problem = block_on(transaction(&db, async |tx| {
            idempotency.record(tx, StatusCode::CREATED, None, &()).await
        }))
        .unwrap_err();
        assert_eq!(problem.code(), ProblemCode::Conflict);
        assert!(
            problem.detail().contains("in progress"),
            "{}",
            problem.detail()
        );
        assert_eq!(db.client().statements().last().unwrap(), "rollback");
    }

    #[test]
    fn mark_replayed_sets_the_header() {
        let mut response = Response::new(());
        mark_replayed(&mut response);
        assert_eq!(response.headers()[REPLAYED_HEADER], "true");
    }

    #[test]
    fn the_header_is_documented_under_its_name() {
        use utoipa::IntoParams;
        let params = IdempotencyKeyHeader::into_params(|| None);
        let json = serde_json::to_value(&params).unwrap();
        assert_eq!(json[0]["name"], "Idempotency-Key");
        assert_eq!(json[0]["in"], "header");
        assert_eq!(json[0]["required"], false);
        assert_eq!(json[0]["schema"]["maxLength"], 255);
    }
}
