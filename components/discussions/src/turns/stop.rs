//! Stop conditions: when a discussion ends by itself after a turn.

use crate::discussion::{CompletedReason, Discussion};

/// The reason `discussion` is over now, if it is, judged after a turn (or a human
/// message) that counted: `discussion.turn.index` and `discussion.tokens_used`
/// must already include it, and `latest` is the text it added. When several
/// conditions hold, the first in the spec's order wins: `max_turns`,
/// `token_budget`, `stop_phrase`.
pub(crate) fn reached(discussion: &Discussion, latest: &str) -> Option<CompletedReason> {
    let stop = &discussion.stop;
    if stop
        .max_turns
        .is_some_and(|max_turns| discussion.turn.index >= max_turns)
    {
        return Some(CompletedReason::MaxTurns);
    }
    if stop
        .token_budget
        .is_some_and(|budget| discussion.tokens_used >= budget)
    {
        return Some(CompletedReason::TokenBudget);
    }
    if stop
        .stop_phrase
        .as_deref()
        .is_some_and(|phrase| contains_ignoring_case(latest, phrase))
    {
        return Some(CompletedReason::StopPhrase);
    }
    None
}

/// Whether `text` contains `phrase`, ignoring case (Unicode lowercase on both).
fn contains_ignoring_case(text: &str, phrase: &str) -> bool {
    !phrase.is_empty() && text.to_lowercase().contains(&phrase.to_lowercase())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::discussion::{
        ContextPolicy, MidTurnInput, Status, StopConditions, Turn, TurnState, TurnStrategy,
    };
    use arena_common::ids::Uuid;
    use arena_common::time::Timestamp;
    use arena_common::visibility::Visibility;

    /// An active discussion with no participants, for pure tests of the turn engine.
    pub(crate) fn discussion(stop: StopConditions) -> Discussion {
        let now = Timestamp::now();
        Discussion {
            discussion_id: Uuid::nil(),
            owner_id: Uuid::nil(),
            title: "t".into(),
            topic: "topic".into(),
            status: Status::Active,
            completed_reason: None,
            turn_strategy: TurnStrategy::RoundRobin,
            moderator_id: None,
            stop,
            context_policy: ContextPolicy::default(),
            mid_turn_input: MidTurnInput::Enqueue,
            visibility: Visibility::Private,
            parent_discussion_id: None,
            forked_from_message_id: None,
            participants: Vec::new(),
            turn: Turn {
                index: 0,
                status: TurnState::Idle,
                next_speaker_id: None,
                turn_id: None,
                speaker_id: None,
                message_id: None,
                started_at: None,
                lease_expires_at: None,
            },
            raised_hands: Vec::new(),
            tokens_used: 0,
            version: 1,
            created_at: now,
            updated_at: now,
            last_event_id: 0,
            last_agent_speaker_id: None,
        }
    }

    fn after(stop: StopConditions, turns: i32, tokens: i64) -> Discussion {
        let mut discussion = discussion(stop);
        discussion.turn.index = turns;
        discussion.tokens_used = tokens;
        discussion
    }

    #[test]
    fn no_conditions_never_stop() {
        assert_eq!(
            reached(&after(StopConditions::default(), 9999, 1 << 40), "done"),
            None
        );
    }

    #[test]
    fn max_turns_counts_the_turn_just_taken() {
        let stop = StopConditions {
            max_turns: Some(3),
            ..Default::default()
        };
        assert_eq!(reached(&after(stop.clone(), 2, 0), ""), None);
        assert_eq!(
            reached(&after(stop.clone(), 3, 0), ""),
            Some(CompletedReason::MaxTurns)
        );
        assert_eq!(
            reached(&after(stop, 4, 0), ""),
            Some(CompletedReason::MaxTurns)
        );
    }

    #[test]
    fn the_token_budget_is_reached_at_its_value() {
        let stop = StopConditions {
            token_budget: Some(100),
            ..Default::default()
        };
        assert_eq!(reached(&after(stop.clone(), 1, 99), ""), None);
        assert_eq!(
            reached(&after(stop, 1, 100), ""),
            Some(CompletedReason::TokenBudget)
        );
    }

    #[test]
    fn the_stop_phrase_matches_ignoring_case() {
        let stop = StopConditions {
            stop_phrase: Some("We Agree".into()),
            ..Default::default()
        };
        let discussion = after(stop, 1, 0);
        assert_eq!(
            reached(&discussion, "so... WE AGREE, finally."),
            Some(CompletedReason::StopPhrase)
        );
        assert_eq!(reached(&discussion, "we disagree"), None);
        assert_eq!(reached(&discussion, "we\nagree"), None);
    }

    #[test]
    fn max_turns_wins_over_the_others() {
        let stop = StopConditions {
            max_turns: Some(1),
            token_budget: Some(1),
            stop_phrase: Some("end".into()),
        };
        assert_eq!(
            reached(&after(stop, 1, 5), "the end"),
            Some(CompletedReason::MaxTurns)
        );
    }
}
