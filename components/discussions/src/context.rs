//! The persisted context of a discussion: a document a client-side discussion
//! manager keeps (any JSON object, with its own version), and the rolling summary
//! the turn engine writes of the turns too old to fit a prompt.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/discussions/{discussion_id}/context` | readers | `200`: `{version, document, summary}` |
//! | `PUT /v1/discussions/{discussion_id}/context` | its owner, admins | `200`: the same, the document replaced, one version on |
//!
//! The document's version is its own, not the discussion's: a manager writing its
//! notes never makes a settings `PATCH` stale, nor the other way round.

use arena_common::auth::{Access, Identity};
use arena_common::body::read_json;
use arena_common::db::{Client, Db, DbError, FromRow, Row, Typed, transaction};
use arena_common::events;
use arena_common::ids::{self, Uuid};
use arena_common::problem::responses::{
    Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType,
    ValidationFailed,
};
use arena_common::validate::{Validate, Validator};
use arena_common::{Problem, json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Request;
use crate::discussion::{self, Status};

/// The largest document kept: 256 KiB of JSON, as serialized.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The rolling summary of the oldest turns.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct ContextSummary {
    /// Empty until the history first outgrows a prompt.
    pub text: String,
    /// The last message it covers (`seq`); 0 for none.
    pub through_seq: i64,
}

/// A discussion's context.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct DiscussionContext {
    /// The document's version: name it in a `PUT`.
    pub version: i32,
    /// Whatever a discussion manager keeps: a JSON object (`{}` at first).
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    pub summary: ContextSummary,
}

impl FromRow for DiscussionContext {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(Self {
            version: row.get("context_version")?,
            document: row.get("context")?,
            summary: ContextSummary {
                text: row.get("summary")?,
                through_seq: row.get("summary_through_seq")?,
            },
        })
    }
}

/// Reads the context of `discussion_id` (already checked).
async fn read(client: &impl Client, discussion_id: Uuid) -> Result<DiscussionContext, Problem> {
    Ok(client
        .row(
            "select context, context_version, summary, summary_through_seq
             from discussions where discussion_id = $1",
            &[discussion_id.into()],
        )
        .await?)
}

/// Retrieve a discussion's context
///
/// The document its manager keeps, with its version, and the rolling summary of
/// the turns too old to fit a prompt. Whoever may read the discussion.
#[utoipa::path(
    get,
    path = "/v1/discussions/{discussion_id}/context",
    tag = "discussions",
    operation_id = "retrieveDiscussionContext",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The context.", body = DiscussionContext),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn get(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    discussion::load(&db, &caller, discussion_id, Access::Read).await?;
    json(StatusCode::OK, &read(&db, discussion_id).await?)
}

/// A new context document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscussionContextUpdate {
    /// The document's `version` the new one is based on.
    version: i32,
    /// The new document, whole: a JSON object of at most 256 KiB.
    #[schema(value_type = Object)]
    document: serde_json::Value,
}

impl Validate for DiscussionContextUpdate {
    fn validate(&self, v: &mut Validator) {
        v.range("version", self.version, 1..=i32::MAX);
        v.check(
            "document",
            self.document.is_object(),
            "must be a JSON object",
        );
    }
}

/// `413` for a document over [`MAX_DOCUMENT_BYTES`] serialized.
fn check_size(document: &serde_json::Value) -> Result<(), Problem> {
    let size = serde_json::to_string(document)
        .map_err(|error| Problem::internal(format!("serializing a context: {error}")))?
        .len();
    if size <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    let message = format!("must be at most {MAX_DOCUMENT_BYTES} bytes of JSON, got {size}");
    Err(
        Problem::payload_too_large(format!("the document {message}"))
            .with_field_error("document", message),
    )
}

/// Replace a discussion's context document
///
/// Writes the document based on the `version` last read: if it changed since,
/// nothing is written and the answer is a `409 conflict` naming the current
/// version. An archived discussion is read-only (`409 invalid_transition`). Its
/// owner and admins. Event `context.updated`.
#[utoipa::path(
    put,
    path = "/v1/discussions/{discussion_id}/context",
    tag = "discussions",
    operation_id = "replaceDiscussionContext",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    request_body = DiscussionContextUpdate,
    responses(
        (status = 200, description = "The context, one version on.", body = DiscussionContext),
        ValidationFailed, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge,
        UnsupportedMediaType,
    ),
)]
pub(crate) async fn put(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let update: DiscussionContextUpdate = read_json(req).await?;
    check_size(&update.document)?;
    let document = spin_sdk::pg::jsonb(&update.document).map_err(Problem::internal)?;
    let db = Db::connect().await?;
    let context = transaction(&db, async |tx| {
        let discussion = discussion::lock(tx, &caller, discussion_id, Access::Write).await?;
        discussion.require_status(
            &[
                Status::Draft,
                Status::Active,
                Status::Paused,
                Status::Completed,
            ],
            "be changed",
        )?;
        let current = read(tx, discussion_id).await?;
        if update.version != current.version {
            return Err(Problem::stale_version(update.version, current.version));
        }
        tx.execute(
            "update discussions set context = $2, context_version = context_version + 1
             where discussion_id = $1",
            &[discussion_id.into(), document.clone()],
        )
        .await?;
        let context = read(tx, discussion_id).await?;
        events::emit(
            tx,
            &discussion.stream(),
            "context.updated",
            &serde_json::json!({ "version": context.version, "document": context.document }),
        )
        .await?;
        Ok(context)
    })
    .await?;
    json(StatusCode::OK, &context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;

    fn body(json: serde_json::Value) -> Result<DiscussionContextUpdate, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn the_document_is_an_object_and_the_version_is_required() {
        let good = body(serde_json::json!({"version": 1, "document": {"notes": [1, 2]}})).unwrap();
        assert!(good.validated().is_ok());
        for document in [
            serde_json::json!([1]),
            serde_json::json!("x"),
            serde_json::json!(null),
        ] {
            let update = body(serde_json::json!({"version": 1, "document": document})).unwrap();
            let problem = update.validated().unwrap_err();
            assert_eq!(problem.errors()[0].field, "document");
        }
        assert!(body(serde_json::json!({"document": {}})).is_err());
        assert!(body(serde_json::json!({"version": 1, "document": {}, "summary": ""})).is_err());
    }

    #[test]
    fn a_document_over_256_kib_is_413_naming_it() {
        let fits = serde_json::json!({ "x": "a".repeat(MAX_DOCUMENT_BYTES - 10) });
        assert!(check_size(&fits).is_ok());
        let over = serde_json::json!({ "x": "a".repeat(MAX_DOCUMENT_BYTES) });
        let problem = check_size(&over).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::PayloadTooLarge);
        assert_eq!(problem.errors()[0].field, "document");
    }
}
