//! A discussion's life: `draft → active ⇄ paused → completed`, and any state but
//! `archived` → `archived`.
//!
//! | Route | From | To |
//! |---|---|---|
//! | `POST /v1/discussions/{discussion_id}/start` | `draft` (with at least one agent) | `active` |
//! | `POST /v1/discussions/{discussion_id}/pause` | `active` | `paused` |
//! | `POST /v1/discussions/{discussion_id}/resume` | `paused` | `active` |
//! | `POST /v1/discussions/{discussion_id}/complete` | `active`, `paused` | `completed` (reason `manual`) |
//! | `POST /v1/discussions/{discussion_id}/archive` | any but `archived` | `archived` |
//!
//! The table is [`next`], a pure function; the handlers lock the discussion, ask
//! it, and write the answer with the `discussion.status_changed` event. Its owner
//! and admins; anything else from the current state is a `409 invalid_transition`
//! naming that state. A turn in progress does not stop a transition: the turn
//! engine claims turns only in an `active` discussion, and a turn already running
//! finishes as it would.

use arena_common::auth::{Access, Identity};
use arena_common::db::{Db, Tx, transaction};
use arena_common::events;
use arena_common::ids;
use arena_common::problem::responses::{
    Forbidden, InvalidTransition, NotFound, Unauthorized, ValidationFailed,
};
use arena_common::{Problem, ProblemCode, json};
use http::StatusCode;
use serde::Serialize;

use crate::Request;
use crate::discussion::{self, CompletedReason, Discussion, Status, TurnStrategy};

/// A lifecycle action, `POST /v1/discussions/{id}/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Start,
    Pause,
    Resume,
    Complete,
    Archive,
}

impl Transition {
    /// The action as a verb's past participle, for "it cannot be ...".
    fn done(self) -> &'static str {
        match self {
            Transition::Start => "started",
            Transition::Pause => "paused",
            Transition::Resume => "resumed",
            Transition::Complete => "completed",
            Transition::Archive => "archived",
        }
    }
}

impl std::str::FromStr for Transition {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        Ok(match text {
            "start" => Transition::Start,
            "pause" => Transition::Pause,
            "resume" => Transition::Resume,
            "complete" => Transition::Complete,
            "archive" => Transition::Archive,
            _ => return Err(()),
        })
    }
}

/// The state `transition` leads to from `status`, or the `409 invalid_transition`
/// naming the current state.
pub(crate) fn next(status: Status, transition: Transition) -> Result<Status, Problem> {
    use Status::*;
    let to = match (transition, status) {
        (Transition::Start, Draft) => Some(Active),
        (Transition::Pause, Active) => Some(Paused),
        (Transition::Resume, Paused) => Some(Active),
        (Transition::Complete, Active | Paused) => Some(Completed),
        (Transition::Archive, Draft | Active | Paused | Completed) => Some(Archived),
        _ => None,
    };
    to.ok_or_else(|| {
        Problem::new(
            ProblemCode::InvalidTransition,
            format!(
                "the discussion is {status}; it cannot be {}",
                transition.done()
            ),
        )
    })
}

/// The payload of `discussion.status_changed`.
#[derive(Debug, Serialize)]
struct StatusChanged {
    status: Status,
    previous: Status,
    /// Why it completed, for a completion.
    reason: Option<CompletedReason>,
}

/// Makes the transition for `caller`: locks the discussion, checks the table (and
/// that a discussion starts with an agent), writes the new state one version on,
/// and records `discussion.status_changed`.
pub(crate) async fn transition(
    req: &mut Request,
    id: &str,
    transition: Transition,
) -> Result<http::Response<String>, Problem> {
    match transition {
        Transition::Start => start(req, id).await,
        Transition::Pause => pause(req, id).await,
        Transition::Resume => resume(req, id).await,
        Transition::Complete => complete(req, id).await,
        Transition::Archive => archive(req, id).await,
    }
}

async fn apply(
    req: &mut Request,
    id: &str,
    transition: Transition,
) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    let discussion = transaction(&db, async |tx| {
        let current = discussion::lock(tx, &caller, discussion_id, Access::Write).await?;
        let status = next(current.status, transition)?;
        if transition == Transition::Start {
            ready_to_start(&current)?;
        }
        let reason = (status == Status::Completed).then_some(CompletedReason::Manual);
        change(tx, &current, status, reason).await?;
        discussion::fetch(tx, discussion_id).await
    })
    .await?;
    json(StatusCode::OK, &discussion)
}

/// What a discussion needs to start, beyond being a draft: an agent to speak,
/// and for the `moderator` strategy a moderator (a draft may name it late).
fn ready_to_start(discussion: &Discussion) -> Result<(), Problem> {
    let why = if discussion.agents().next().is_none() {
        "the discussion has no agent participant; add one before starting it"
    } else if discussion.turn_strategy == TurnStrategy::Moderator
        && discussion.moderator_id.is_none()
    {
        "the discussion's turn strategy is moderator but it has no moderator; name one \
         (moderator_id) before starting it"
    } else {
        return Ok(());
    };
    Err(Problem::new(ProblemCode::InvalidTransition, why))
}

/// Moves `discussion` (locked) to `status` and announces it with
/// `discussion.status_changed`: the one write of a status, whether a person asked
/// for it or a stop condition was met. A completion says why; an archive keeps the
/// reason a completed discussion had.
pub(crate) async fn change(
    tx: &Tx<'_>,
    discussion: &Discussion,
    status: Status,
    reason: Option<CompletedReason>,
) -> Result<(), Problem> {
    tx.execute(
        "update discussions
         set status = $2, completed_reason = coalesce($3, completed_reason),
             version = version + 1
         where discussion_id = $1",
        &[
            discussion.discussion_id.into(),
            status.into(),
            reason.into(),
        ],
    )
    .await?;
    let changed = StatusChanged {
        status,
        previous: discussion.status,
        reason,
    };
    events::emit(
        tx,
        &discussion.stream(),
        "discussion.status_changed",
        &changed,
    )
    .await?;
    Ok(())
}

/// Start a discussion
///
/// `draft → active`: turns may now be taken. It needs at least one agent
/// participant (else `409 invalid_transition` saying so). Its owner and admins.
/// Event `discussion.status_changed`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/start",
    tag = "discussions",
    operation_id = "startDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The discussion, active.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, InvalidTransition,
    ),
)]
pub(crate) async fn start(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    apply(req, id, Transition::Start).await
}

/// Pause a discussion
///
/// `active → paused`: no turns until it is resumed (a turn already running
/// finishes); people may still post. Its owner and admins. Event
/// `discussion.status_changed`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/pause",
    tag = "discussions",
    operation_id = "pauseDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The discussion, paused.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, InvalidTransition,
    ),
)]
pub(crate) async fn pause(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    apply(req, id, Transition::Pause).await
}

/// Resume a discussion
///
/// `paused → active`. Its owner and admins. Event `discussion.status_changed`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/resume",
    tag = "discussions",
    operation_id = "resumeDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The discussion, active.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, InvalidTransition,
    ),
)]
pub(crate) async fn resume(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    apply(req, id, Transition::Resume).await
}

/// Complete a discussion
///
/// `active` or `paused` → `completed`, with `completed_reason: manual`. Its owner
/// and admins. Event `discussion.status_changed`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/complete",
    tag = "discussions",
    operation_id = "completeDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The discussion, completed.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, InvalidTransition,
    ),
)]
pub(crate) async fn complete(
    req: &mut Request,
    id: &str,
) -> Result<http::Response<String>, Problem> {
    apply(req, id, Transition::Complete).await
}

/// Archive a discussion
///
/// Any state but `archived` → `archived`: put away, read-only (it may still be
/// read, exported and forked). Its owner and admins. Event
/// `discussion.status_changed`.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/archive",
    tag = "discussions",
    operation_id = "archiveDiscussion",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The discussion, archived.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, InvalidTransition,
    ),
)]
pub(crate) async fn archive(
    req: &mut Request,
    id: &str,
) -> Result<http::Response<String>, Problem> {
    apply(req, id, Transition::Archive).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn every_action_parses_from_its_path_segment() {
        for (text, transition) in ["start", "pause", "resume", "complete", "archive"]
            .into_iter()
            .zip([
                Transition::Start,
                Transition::Pause,
                Transition::Resume,
                Transition::Complete,
                Transition::Archive,
            ])
        {
            assert_eq!(text.parse(), Ok(transition));
        }
        assert!("stop".parse::<Transition>().is_err());
    }

    #[test]
    fn the_whole_table() {
        let table: [(Transition, [Option<Status>; 5]); 5] = [
            //                    from: draft          active           paused           completed        archived
            (Transition::Start, [Some(Active), None, None, None, None]),
            (Transition::Pause, [None, Some(Paused), None, None, None]),
            (Transition::Resume, [None, None, Some(Active), None, None]),
            (
                Transition::Complete,
                [None, Some(Completed), Some(Completed), None, None],
            ),
            (
                Transition::Archive,
                [
                    Some(Archived),
                    Some(Archived),
                    Some(Archived),
                    Some(Archived),
                    None,
                ],
            ),
        ];
        let from = [Draft, Active, Paused, Completed, Archived];
        for (transition, row) in table {
            for (status, expected) in from.into_iter().zip(row) {
                let got = next(status, transition).ok();
                assert_eq!(got, expected, "{transition:?} from {status}");
            }
        }
    }

    #[test]
    fn a_discussion_starts_with_an_agent_and_a_moderator_if_moderated() {
        let mut discussion = crate::discussions::tests_support::discussion();
        assert!(ready_to_start(&discussion).is_ok());
        discussion.turn_strategy = TurnStrategy::Moderator;
        let problem = ready_to_start(&discussion).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::InvalidTransition);
        assert!(
            problem.detail().contains("moderator"),
            "{}",
            problem.detail()
        );
        discussion.moderator_id = Some(discussion.participants[0].participant_id);
        assert!(ready_to_start(&discussion).is_ok());
        discussion.participants.retain(|p| p.agent_id.is_none());
        assert!(
            ready_to_start(&discussion)
                .unwrap_err()
                .detail()
                .contains("agent")
        );
    }

    #[test]
    fn an_invalid_transition_is_a_409_naming_the_current_state() {
        let problem = next(Completed, Transition::Pause).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::InvalidTransition);
        assert_eq!(problem.status(), StatusCode::CONFLICT);
        assert_eq!(
            problem.detail(),
            "the discussion is completed; it cannot be paused"
        );
        assert!(
            next(Archived, Transition::Archive)
                .unwrap_err()
                .detail()
                .contains("archived")
        );
    }
}
