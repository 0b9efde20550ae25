//! An agent and its versions as the API shows them and the database rows decode,
//! and the rules their fields follow.

use arena_common::db::{DbError, FromRow, Json, Row};
use arena_common::ids::Uuid;
use arena_common::ollama::Options;
use arena_common::time::Timestamp;
use arena_common::validate::Validator;
pub(crate) use arena_common::visibility::Visibility;
use serde::Serialize;
use utoipa::ToSchema;

/// The columns [`Agent::from_row`] reads: `select {AGENT_COLUMNS} from agents ...`.
/// Tags come as JSON, which decodes without an array type of our own.
pub(crate) const AGENT_COLUMNS: &str = "agent_id, owner_id, name, description, persona, model, \
     parameters, to_jsonb(tags) as tags, visibility, version, created_at, updated_at";

/// The columns [`AgentVersion::from_row`] reads from `agent_versions`.
pub(crate) const VERSION_COLUMNS: &str = "agent_id, version, name, description, persona, model, \
     parameters, to_jsonb(tags) as tags, visibility, created_at, created_by";

/// A participant of discussions: a persona on a model.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Agent {
    pub agent_id: Uuid,
    /// The user who made it; they (and admins) may change it.
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The system prompt the agent speaks with.
    pub persona: String,
    /// The Ollama model it runs on.
    pub model: String,
    /// Generation parameters; those left out are the model's defaults.
    pub parameters: Options,
    pub tags: Vec<String>,
    pub visibility: Visibility,
    /// Name it in a `PATCH` so a concurrent change is not overwritten; also the
    /// number of its latest entry in the version history.
    pub version: i32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl FromRow for Agent {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let Json(parameters) = row.get("parameters")?;
        let Json(tags) = row.get("tags")?;
        Ok(Self {
            agent_id: row.get("agent_id")?,
            owner_id: row.get("owner_id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            persona: row.get("persona")?,
            model: row.get("model")?,
            parameters,
            tags,
            visibility: row.get("visibility")?,
            version: row.get("version")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

/// An agent as one of its versions was: what spoke in a discussion held then.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct AgentVersion {
    pub agent_id: Uuid,
    pub version: i32,
    pub name: String,
    pub description: Option<String>,
    pub persona: String,
    pub model: String,
    pub parameters: Options,
    pub tags: Vec<String>,
    pub visibility: Visibility,
    /// When this version was written.
    pub created_at: Timestamp,
    /// Who wrote it; `null` once that user is deleted.
    pub created_by: Option<Uuid>,
}

impl FromRow for AgentVersion {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let Json(parameters) = row.get("parameters")?;
        let Json(tags) = row.get("tags")?;
        Ok(Self {
            agent_id: row.get("agent_id")?,
            version: row.get("version")?,
            name: row.get("name")?,
            description: row.get("description")?,
            persona: row.get("persona")?,
            model: row.get("model")?,
            parameters,
            tags,
            visibility: row.get("visibility")?,
            created_at: row.get("created_at")?,
            created_by: row.get("created_by")?,
        })
    }
}

/// The most tags an agent has.
pub(crate) const MAX_TAGS: usize = 20;

/// At most [`MAX_TAGS`] tags, each 1 to 40 lowercase letters, digits or `-`, none
/// twice.
pub(crate) fn check_tags(v: &mut Validator, tags: &[String]) {
    v.length("tags", tags, 0..=MAX_TAGS);
    for (n, tag) in tags.iter().enumerate() {
        let field = format!("tags[{n}]");
        let well_formed = (1..=40).contains(&tag.len())
            && tag
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        v.check(
            &field,
            well_formed,
            "must be 1 to 40 lowercase letters, digits or '-'",
        );
        v.check(
            &field,
            !tags[..n].contains(tag),
            format!("repeats the tag {tag:?}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(check: impl FnOnce(&mut Validator)) -> Vec<String> {
        let mut v = Validator::default();
        check(&mut v);
        match v.finish() {
            Ok(()) => Vec::new(),
            Err(problem) => problem.errors().iter().map(|e| e.field.clone()).collect(),
        }
    }

    #[test]
    fn tags_are_few_short_lowercase_and_distinct() {
        let tags = |list: &[&str]| list.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        assert!(fields(|v| check_tags(v, &tags(&["debate", "gpt-4", "x1"]))).is_empty());
        assert_eq!(
            fields(|v| check_tags(v, &tags(&["Debate", "", "a b", "ok", "ok"]))),
            ["tags[0]", "tags[1]", "tags[2]", "tags[4]"]
        );
        let many: Vec<String> = (0..21).map(|n| format!("t{n}")).collect();
        assert_eq!(fields(|v| check_tags(v, &many)), ["tags"]);
        assert_eq!(
            fields(|v| check_tags(v, &tags(&[&"a".repeat(41)]))),
            ["tags[0]"]
        );
    }

    #[test]
    fn visibility_round_trips_its_names() {
        for visibility in [Visibility::Private, Visibility::Shared] {
            assert_eq!(visibility.as_str().parse(), Ok(visibility));
        }
        assert!("public".parse::<Visibility>().is_err());
    }
}
