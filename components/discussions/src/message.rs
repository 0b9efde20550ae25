//! A message of a discussion as the API shows it and the database row decodes.

use arena_common::db::{DbError, FromRow, FromValue, ParameterValue, Row};
use arena_common::ids::Uuid;
use arena_common::time::Timestamp;
use serde::{Deserialize, Serialize};
use spin_sdk::pg::DbValue;
use utoipa::ToSchema;

/// The columns [`Message::from_row`] reads: `select {MESSAGE_COLUMNS} from
/// {MESSAGE_JOINS} where ...`.
pub(crate) const MESSAGE_COLUMNS: &str = "m.message_id, m.discussion_id, m.seq, m.turn_index, \
     m.participant_id, m.agent_id, m.agent_version, m.user_id, \
     coalesce(av.name, u.username, '') as author_name, m.content, m.status, m.error, m.model, \
     m.prompt_tokens, m.completion_tokens, m.first_token_ms, m.latency_ms, m.created_at, \
     m.completed_at";

/// The joins [`MESSAGE_COLUMNS`] needs: an agent's name as it was at the version
/// that spoke.
pub(crate) const MESSAGE_JOINS: &str = "messages m \
     left join agent_versions av on av.agent_id = m.agent_id and av.version = m.agent_version \
     left join users u on u.user_id = m.user_id";

/// Where a message is: being written, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MessageStatus {
    /// The agent's model is still generating it.
    Generating,
    Completed,
    /// Stopped on request; the text so far is kept.
    Cancelled,
    /// The server running the turn went away; the text so far is kept and the turn
    /// may be retried.
    Interrupted,
    /// The model failed; `error` says how. The turn may be retried.
    Failed,
}

impl MessageStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Generating => "generating",
            MessageStatus::Completed => "completed",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Interrupted => "interrupted",
            MessageStatus::Failed => "failed",
        }
    }
}

impl FromValue for MessageStatus {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        match String::from_value(value)?.as_str() {
            "generating" => Ok(MessageStatus::Generating),
            "completed" => Ok(MessageStatus::Completed),
            "cancelled" => Ok(MessageStatus::Cancelled),
            "interrupted" => Ok(MessageStatus::Interrupted),
            "failed" => Ok(MessageStatus::Failed),
            other => Err(format!("{other:?} is not a message status")),
        }
    }
}

impl From<MessageStatus> for ParameterValue {
    fn from(status: MessageStatus) -> Self {
        status.as_str().to_owned().into()
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[schema(as = MessageAuthor)]
pub(crate) enum Author {
    /// An agent, at the version that spoke.
    Agent {
        participant_id: Option<Uuid>,
        agent_id: Uuid,
        agent_version: i32,
        /// The agent's name at that version.
        name: String,
    },
    /// A person.
    User {
        participant_id: Option<Uuid>,
        /// `null` once the user is deleted.
        user_id: Option<Uuid>,
        name: String,
    },
}

/// Tokens, as the model counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = MessageUsage)]
pub(crate) struct Usage {
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
}

/// One message of a discussion.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DiscussionMessage)]
pub(crate) struct Message {
    pub message_id: Uuid,
    pub discussion_id: Uuid,
    /// Its place in the discussion: 1, 2, ...
    pub seq: i64,
    /// The turn it was written in.
    pub turn_index: i32,
    pub author: Author,
    pub content: String,
    pub status: MessageStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// The model an agent spoke with.
    pub model: Option<String>,
    pub usage: Option<Usage>,
    /// Milliseconds from the model call to its first token, and to its end.
    pub first_token_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

impl FromRow for Message {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let participant_id = row.get("participant_id")?;
        let name = row.get("author_name")?;
        let author = match row.get::<Option<Uuid>>("agent_id")? {
            Some(agent_id) => Author::Agent {
                participant_id,
                agent_id,
                agent_version: row.get::<Option<i32>>("agent_version")?.unwrap_or(1),
                name,
            },
            None => Author::User {
                participant_id,
                user_id: row.get("user_id")?,
                name,
            },
        };
        let prompt_tokens: Option<i32> = row.get("prompt_tokens")?;
        let completion_tokens: Option<i32> = row.get("completion_tokens")?;
        Ok(Self {
            message_id: row.get("message_id")?,
            discussion_id: row.get("discussion_id")?,
            seq: row.get("seq")?,
            turn_index: row.get("turn_index")?,
            author,
            content: row.get("content")?,
            status: row.get("status")?,
            error: row.get("error")?,
            model: row.get("model")?,
            usage: prompt_tokens.zip(completion_tokens).map(
                |(prompt_tokens, completion_tokens)| Usage {
                    prompt_tokens,
                    completion_tokens,
                },
            ),
            first_token_ms: row.get("first_token_ms")?,
            latency_ms: row.get("latency_ms")?,
            created_at: row.get("created_at")?,
            completed_at: row.get("completed_at")?,
        })
    }
}
