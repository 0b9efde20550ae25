//! Raised hands: a person asking to speak next.
//!
//! | Route | Who | Answers |
//! |---|---|---|
//! | `POST /v1/discussions/{id}/hands` | human participants (members, admins) | `200`: the discussion, the caller's hand raised |
//! | `DELETE /v1/discussions/{id}/hands/{participant_id}` | that participant's user, its owner, admins | `200`: the discussion, the hand lowered |
//!
//! `raised_hands` on the discussion row lists participant ids in the order they
//! were raised; the first is who speaks next (`turn.next_speaker_id`), and while
//! any is raised the turn engine waits (`409 awaiting_participant`) until they post
//! (which lowers the hand) or the hand is lowered. Both routes are idempotent:
//! raising a raised hand or lowering a lowered one changes nothing and records no
//! event.

use arena_common::auth::{Access, Identity, Role};
use arena_common::db::{Db, Tx, transaction};
use arena_common::events;
use arena_common::ids::{self, Uuid};
use arena_common::problem::responses::{
    Forbidden, InvalidTransition, NotFound, Unauthorized, ValidationFailed,
};
use arena_common::{Problem, json};
use http::StatusCode;
use serde_json::json;

use crate::Request;
use crate::discussion::{self, Discussion, Status};

/// Raise a hand
///
/// Asks to speak next: the caller's hand is raised, after any raised before it.
/// Human participants (members and admins) of an `active` or `paused` discussion;
/// raising a raised hand changes nothing.
#[utoipa::path(
    post,
    path = "/v1/discussions/{discussion_id}/hands",
    tag = "discussions",
    operation_id = "raiseHand",
    params(("discussion_id" = Uuid, Path, description = "The discussion.")),
    responses(
        (status = 200, description = "The discussion, the caller's hand in `raised_hands`.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound, InvalidTransition,
    ),
)]
pub(crate) async fn raise(req: &mut Request, id: &str) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let db = Db::connect().await?;
    let discussion = transaction(&db, async |tx| {
        let discussion = discussion::lock(tx, &caller, discussion_id, Access::Read).await?;
        let participant_id = own_participant(&discussion, &caller)?;
        discussion.require_status(&[Status::Active, Status::Paused], "take raised hands")?;
        if discussion.raised_hands.contains(&participant_id) {
            return Ok(discussion);
        }
        tx.execute(
            "update discussions set raised_hands = array_append(raised_hands, $2)
             where discussion_id = $1",
            &[discussion_id.into(), participant_id.into()],
        )
        .await?;
        events::emit(
            tx,
            &discussion.stream(),
            "hand.raised",
            &json!({ "participant_id": participant_id, "user_id": caller.user_id }),
        )
        .await?;
        discussion::fetch(tx, discussion_id).await
    })
    .await?;
    json(StatusCode::OK, &discussion)
}

/// The caller's own participant entry, for raising a hand: a 403 for anyone who
/// does not take part as a person, or whose role may not post.
fn own_participant(discussion: &Discussion, caller: &Identity) -> Result<Uuid, Problem> {
    match discussion.participant_for(caller.user_id) {
        Some(participant) if caller.role >= Role::Member => Ok(participant.participant_id),
        _ => Err(Problem::forbidden(
            "only the discussion's human participants (members and admins) raise a hand",
        )),
    }
}

/// Lower a hand
///
/// Withdraws a raised hand: the participant's own user, the discussion's owner,
/// or an admin. Lowering a hand that is not raised changes nothing.
#[utoipa::path(
    delete,
    path = "/v1/discussions/{discussion_id}/hands/{participant_id}",
    tag = "discussions",
    operation_id = "lowerHand",
    params(
        ("discussion_id" = Uuid, Path, description = "The discussion."),
        ("participant_id" = Uuid, Path, description = "The participant whose hand it is."),
    ),
    responses(
        (status = 200, description = "The discussion, the hand no longer in `raised_hands`.", body = Discussion),
        ValidationFailed, Unauthorized, Forbidden, NotFound,
    ),
)]
pub(crate) async fn lower(
    req: &mut Request,
    id: &str,
    participant: &str,
) -> Result<http::Response<String>, Problem> {
    let caller = Identity::from_request(req)?;
    let discussion_id = ids::parse_id("discussion_id", id)?;
    let participant_id = ids::parse_id("participant_id", participant)?;
    let db = Db::connect().await?;
    let discussion = transaction(&db, async |tx| {
        let discussion = discussion::lock(tx, &caller, discussion_id, Access::Read).await?;
        may_lower(&discussion, &caller, participant_id)?;
        if !lower_hand(tx, &discussion, participant_id, caller.user_id).await? {
            return Ok(discussion);
        }
        discussion::fetch(tx, discussion_id).await
    })
    .await?;
    json(StatusCode::OK, &discussion)
}

/// Who may lower `participant_id`'s hand: that participant's user, and who
/// manages the discussion. A participant neither present nor with a raised hand
/// is a 404.
fn may_lower(
    discussion: &Discussion,
    caller: &Identity,
    participant_id: Uuid,
) -> Result<(), Problem> {
    let participant = discussion.participant(participant_id);
    if participant.is_none() && !discussion.raised_hands.contains(&participant_id) {
        return Err(Problem::not_found(format!(
            "there is no participant {participant_id} in discussion {}",
            discussion.discussion_id
        )));
    }
    let own = participant.is_some_and(|participant| participant.user_id == Some(caller.user_id));
    if own || caller.can_write(discussion.owner_id) {
        return Ok(());
    }
    Err(Problem::forbidden(
        "only the participant, the discussion's owner or an admin may lower this hand",
    ))
}

/// Lowers `participant_id`'s hand if it is raised, recording `hand.lowered` (by
/// the user `by`); whether it was. For `discussion` locked in `tx`. Posting a
/// message lowers its author's hand this way.
pub(crate) async fn lower_hand(
    tx: &Tx<'_>,
    discussion: &Discussion,
    participant_id: Uuid,
    by: Uuid,
) -> Result<bool, Problem> {
    if !discussion.raised_hands.contains(&participant_id) {
        return Ok(false);
    }
    tx.execute(
        "update discussions set raised_hands = array_remove(raised_hands, $2)
         where discussion_id = $1",
        &[discussion.discussion_id.into(), participant_id.into()],
    )
    .await?;
    events::emit(
        tx,
        &discussion.stream(),
        "hand.lowered",
        &json!({ "participant_id": participant_id, "lowered_by": by }),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discussion::StopConditions;
    use crate::participant::{Kind, Participant};
    use crate::turns::stop::tests::discussion as a_discussion;
    use arena_common::ProblemCode;
    use arena_common::auth::Credential;
    use arena_common::time::Timestamp;

    const OWNER: Uuid = Uuid::from_u128(1);
    const ADA: Uuid = Uuid::from_u128(2);
    const STRANGER: Uuid = Uuid::from_u128(3);
    const ADA_SEAT: Uuid = Uuid::from_u128(20);
    const AGENT_SEAT: Uuid = Uuid::from_u128(21);

    fn caller(user_id: Uuid, role: Role) -> Identity {
        Identity {
            user_id,
            role,
            credential: Credential::ApiKey(Uuid::from_u128(99)),
        }
    }

    fn seat(participant_id: Uuid, kind: Kind, user_id: Option<Uuid>) -> Participant {
        Participant {
            participant_id,
            kind,
            position: Some(0),
            agent_id: (kind == Kind::Agent).then(|| Uuid::from_u128(30)),
            user_id,
            name: "x".into(),
            model: None,
            parameters: None,
            joined_at: Timestamp::now(),
            left_at: None,
        }
    }

    /// A shared discussion owned by OWNER, where Ada and an agent take part.
    fn discussion() -> Discussion {
        let mut discussion = a_discussion(StopConditions::default());
        discussion.owner_id = OWNER;
        discussion.visibility = arena_common::visibility::Visibility::Shared;
        discussion.participants = vec![
            seat(AGENT_SEAT, Kind::Agent, None),
            seat(ADA_SEAT, Kind::User, Some(ADA)),
        ];
        discussion
    }

    #[test]
    fn only_human_participants_who_may_post_raise_a_hand() {
        let discussion = discussion();
        assert_eq!(
            own_participant(&discussion, &caller(ADA, Role::Member)).unwrap(),
            ADA_SEAT
        );
        for who in [
            caller(ADA, Role::Viewer),
            caller(OWNER, Role::Member),
            caller(STRANGER, Role::Admin),
        ] {
            let problem = own_participant(&discussion, &who).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::Forbidden, "{who:?}");
        }
    }

    #[test]
    fn the_participant_the_owner_and_admins_lower_a_hand() {
        let discussion = discussion();
        for who in [
            caller(ADA, Role::Viewer),
            caller(OWNER, Role::Member),
            caller(STRANGER, Role::Admin),
        ] {
            assert!(may_lower(&discussion, &who, ADA_SEAT).is_ok(), "{who:?}");
        }
        let problem =
            may_lower(&discussion, &caller(STRANGER, Role::Member), ADA_SEAT).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::Forbidden);
        // Ada may not lower another participant's hand.
        let problem = may_lower(&discussion, &caller(ADA, Role::Member), AGENT_SEAT).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::Forbidden);
    }

    #[test]
    fn an_unknown_participant_is_404_unless_their_hand_is_still_raised() {
        let mut discussion = discussion();
        let gone = Uuid::from_u128(40);
        let owner = caller(OWNER, Role::Member);
        assert_eq!(
            may_lower(&discussion, &owner, gone).unwrap_err().code(),
            ProblemCode::NotFound
        );
        discussion.raised_hands.push(gone);
        assert!(may_lower(&discussion, &owner, gone).is_ok());
    }
}
