//! A discussion whole, to keep or share: as JSON (the discussion and all its
//! messages) or as a Markdown transcript.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `GET /v1/discussions/{discussion_id}/export?format=json` | readers | `200`: `{discussion, messages, truncated}` |
//! | `GET /v1/discussions/{discussion_id}/export?format=markdown` | readers | `200`: `text/markdown; charset=utf-8` |
//!
//! Messages are read in order in batches (keyset on `seq`), up to
//! [`MAX_MESSAGES`]; past that the export says it is truncated.

use std::fmt::Write as _;

use arena_common::auth::{Access, Identity};
use arena_common::db::Db;
use arena_common::ids::{self, Uuid};
use arena_common::problem::responses::{NotFound, Unauthorized, ValidationFailed};
use arena_common::query::Filters;
use arena_common::{Problem, json};
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::discussion::{self, Discussion};
use crate::message::{Author, MESSAGE_COLUMNS, MESSAGE_JOINS, Message, MessageStatus};
use crate::{Request, Response, plain};

/// The most messages an export holds.
const MAX_MESSAGES: usize = 100_000;

/// Messages read per query.
const BATCH: usize = 1000;

/// The media type of the transcript.
const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Markdown,
}

impl std::str::FromStr for Format {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "json" => Ok(Format::Json),
            "markdown" => Ok(Format::Markdown),
            _ => Err(()),
        }
    }
}

impl Format {
    /// `?format=`, `json` when left out.
    fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let filters = Filters::from_query(query, &["format"])?;
        Ok(filters
            .parse("format", "json or markdown")?
            .unwrap_or(Format::Json))
    }
}

/// A discussion and everything said in it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DiscussionExport {
    pub discussion: Discussion,
    /// Every message, in order (at most 100,000).
    pub messages: Vec<Message>,
    /// Whether messages were left out past the first 100,000.
    pub truncated: bool,
}

/// Export a discussion
///
/// The discussion and all its messages in order: `format=json` (the default) gives
/// `{discussion, messages, truncated}`; `format=markdown` a transcript (`# title`,
/// the topic, then each message under `### <name> (turn <turn_index>)`, its status
/// flagged when it did not complete). Whoever may read the discussion.
#[utoipa::path(
    get,
    path = "/v1/discussions/{discussion_id}/export",
    tag = "discussions",
    operation_id = "exportDiscussion",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        ("format" = Option<String>, Query, description = "`json` (default) or `markdown`."),
    ),
    responses(
        (status = 200, description = "The export.",
            content((DiscussionExport = "application/json"), (String = "text/markdown"))),
        ValidationFailed, Unauthorized, NotFound,
    ),
)]
pub(crate) async fn export(req: &mut Request, id: &str) -> Result<Response, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let format = Format::from_query(req.uri().query())?;
    let db = Db::connect().await?;
    let discussion = discussion::load(&db, &caller, discussion_id, Access::Read).await?;
    let (messages, truncated) = messages(&db, discussion_id).await?;
    match format {
        Format::Json => plain(json(
            StatusCode::OK,
            &DiscussionExport {
                discussion,
                messages,
                truncated,
            },
        )),
        Format::Markdown => {
            let text = markdown(&discussion, &messages, truncated);
            let mut response = http::Response::new(text);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(MARKDOWN));
            let disposition = format!("inline; filename=\"discussion-{discussion_id}.md\"");
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                response.headers_mut().insert(CONTENT_DISPOSITION, value);
            }
            plain(Ok(response))
        }
    }
}

/// The discussion's messages in order, at most [`MAX_MESSAGES`], and whether there
/// were more.
async fn messages(db: &Db, discussion_id: Uuid) -> Result<(Vec<Message>, bool), Problem> {
    let mut messages: Vec<Message> = Vec::new();
    let mut after = 0_i64;
    loop {
        let room = MAX_MESSAGES + 1 - messages.len();
        let limit = i64::try_from(BATCH.min(room)).map_err(Problem::internal)?;
        let batch: Vec<Message> = db
            .query(
                &format!(
                    "select {MESSAGE_COLUMNS} from {MESSAGE_JOINS}
                     where m.discussion_id = $1 and m.seq > $2
                     order by m.seq limit $3"
                ),
                &[discussion_id.into(), after.into(), limit.into()],
            )
            .await?;
        let full = batch.len() as i64 == limit;
        if let Some(last) = batch.last() {
            after = last.seq;
        }
        messages.extend(batch);
        if messages.len() > MAX_MESSAGES {
            messages.truncate(MAX_MESSAGES);
            return Ok((messages, true));
        }
        if !full {
            return Ok((messages, false));
        }
    }
}

/// The transcript: `# title`, the topic, then each message under `### <name>
/// (turn N)`, flagged when it did not complete.
fn markdown(discussion: &Discussion, messages: &[Message], truncated: bool) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# {}\n\n{}\n",
        one_line(&discussion.title),
        discussion.topic
    );
    for message in messages {
        let name = match &message.author {
            Author::Agent { name, .. } | Author::User { name, .. } => name,
        };
        let name = if name.is_empty() { "(unknown)" } else { name };
        let _ = write!(out, "### {} (turn {})", one_line(name), message.turn_index);
        if message.status != MessageStatus::Completed {
            let _ = write!(out, " [{}]", message.status.as_str());
        }
        let _ = writeln!(out, "\n\n{}\n", message.content);
    }
    if truncated {
        let _ = writeln!(
            out,
            "---\n\n*Only the first {MAX_MESSAGES} messages are exported.*"
        );
    }
    out
}

/// `text` on one line, so it cannot end a heading early.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::ProblemCode;
    use arena_common::time::Timestamp;

    fn message(seq: i64, author: Author, content: &str, status: MessageStatus) -> Message {
        let at: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        Message {
            message_id: Uuid::from_u128(seq as u128),
            discussion_id: Uuid::from_u128(1),
            seq,
            turn_index: (seq - 1) as i32,
            author,
            content: content.into(),
            status,
            error: None,
            model: None,
            usage: None,
            first_token_ms: None,
            latency_ms: None,
            created_at: at,
            completed_at: None,
        }
    }

    #[test]
    fn the_format_is_json_unless_markdown_is_asked_for() {
        assert_eq!(Format::from_query(None).unwrap(), Format::Json);
        assert_eq!(
            Format::from_query(Some("format=markdown")).unwrap(),
            Format::Markdown
        );
        for query in ["format=pdf", "fmt=json"] {
            let problem = Format::from_query(Some(query)).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed);
            assert!(
                ["format", "fmt"].contains(&problem.errors()[0].field.as_str()),
                "{query}"
            );
        }
        assert_eq!(
            Format::from_query(Some("format=pdf")).unwrap_err().errors()[0].field,
            "format"
        );
    }

    #[test]
    fn the_transcript_has_the_title_topic_and_each_message_flagged_unless_completed() {
        let discussion = crate::discussions::tests_support::discussion();
        let messages = [
            message(
                1,
                Author::Agent {
                    participant_id: None,
                    agent_id: Uuid::from_u128(5),
                    agent_version: 1,
                    name: "Ada".into(),
                },
                "Tabs.",
                MessageStatus::Completed,
            ),
            message(
                2,
                Author::User {
                    participant_id: None,
                    user_id: None,
                    name: "grace".into(),
                },
                "Spa",
                MessageStatus::Cancelled,
            ),
        ];
        let text = markdown(&discussion, &messages, false);
        assert_eq!(
            text,
            "# Tabs or spaces\n\nSettle it.\n\n\
             ### Ada (turn 0)\n\nTabs.\n\n\
             ### grace (turn 1) [cancelled]\n\nSpa\n\n"
        );
        assert!(markdown(&discussion, &[], true).contains("first 100000 messages"));
    }
}
