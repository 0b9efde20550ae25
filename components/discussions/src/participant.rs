//! A participant of a discussion: an agent (with what this discussion changes of
//! it) or a human user, in speaking order.

use arena_common::db::{Client, DbError, FromRow, Json, Row, Typed};
use arena_common::ids::Uuid;
use arena_common::ollama::Options;
use arena_common::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The columns [`Participant::from_row`] reads: `select {PARTICIPANT_COLUMNS} from
/// discussion_participants p left join agents a ... left join users u ...` (see
/// [`present`]).
pub(crate) const PARTICIPANT_COLUMNS: &str = "p.participant_id, p.discussion_id, p.kind, \
     p.position, p.agent_id, p.user_id, coalesce(a.name, u.username) as name, \
     coalesce(p.model, a.model) as model, p.parameters, p.joined_at, p.left_at";

/// The joins [`PARTICIPANT_COLUMNS`] needs.
pub(crate) const PARTICIPANT_JOINS: &str = "discussion_participants p \
     left join agents a on a.agent_id = p.agent_id \
     left join users u on u.user_id = p.user_id";

/// An agent or a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Agent,
    User,
}

/// Someone taking part in a discussion.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Participant {
    pub participant_id: Uuid,
    pub kind: Kind,
    /// Speaking order among those present, from 0; `null` once they left.
    pub position: Option<i32>,
    pub agent_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// The agent's name, or the user's username.
    pub name: String,
    /// The model the agent speaks with here: this discussion's override, else the
    /// agent's own. `null` for people.
    pub model: Option<String>,
    /// Generation parameters this discussion sets over the agent's own.
    pub parameters: Option<Options>,
    pub joined_at: Timestamp,
    pub left_at: Option<Timestamp>,
}

impl FromRow for Participant {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let kind: String = row.get("kind")?;
        let parameters: Option<Json<Options>> = row.get("parameters")?;
        Ok(Self {
            participant_id: row.get("participant_id")?,
            kind: if kind == "agent" {
                Kind::Agent
            } else {
                Kind::User
            },
            position: row.get("position")?,
            agent_id: row.get("agent_id")?,
            user_id: row.get("user_id")?,
            name: row.get::<Option<String>>("name")?.unwrap_or_default(),
            model: row.get("model")?,
            parameters: parameters.map(|Json(parameters)| parameters),
            joined_at: row.get("joined_at")?,
            left_at: row.get("left_at")?,
        })
    }
}

/// The participants present in a discussion, in speaking order.
pub(crate) async fn present(
    client: &impl Client,
    discussion_id: Uuid,
) -> Result<Vec<Participant>, DbError> {
    client
        .rows(
            &format!(
                "select {PARTICIPANT_COLUMNS} from {PARTICIPANT_JOINS}
                 where p.discussion_id = $1 and p.left_at is null
                 order by p.position"
            ),
            &[discussion_id.into()],
        )
        .await
}
