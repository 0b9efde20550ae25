//! Who speaks next: the agents in turn, or the moderator's pick (a short model
//! call) with a deterministic fallback when its answer names nobody usable.
//!
//! Candidates are the present agents other than the moderator (the moderator
//! itself when it is the only agent). Naming the previous speaker again is refused
//! while there is another candidate, so a moderator cannot keep one agent talking.

use arena_common::ids::Uuid;
use arena_common::ollama;

use super::prompt::{author, chat, cut, is_spoken};
use crate::discussion::Discussion;
use crate::message::Message;
use crate::participant::Participant;

/// How many of the latest messages the moderator sees.
const MODERATOR_RECENT_MESSAGES: usize = 6;

/// The most of each of those messages, and of the topic, the moderator sees, in
/// tokens: enough to tell who was addressed, in a prompt that stays short.
const MODERATOR_EXCERPT_TOKENS: usize = 200;

/// The next present agent after the last one who spoke (the first if none did).
pub(crate) fn round_robin(discussion: &Discussion) -> Option<Uuid> {
    discussion
        .agent_after(discussion.last_agent_speaker_id)
        .map(|agent| agent.participant_id)
}

/// The request asking `moderator` who speaks next: the topic, the candidates by
/// name (not the previous speaker while there is another) and the latest messages.
pub(crate) fn moderator_request(
    discussion: &Discussion,
    moderator: &Participant,
    history: &[Message],
) -> Vec<ollama::Message> {
    let previous = discussion.last_agent_speaker_id;
    let mut offered = candidates(discussion);
    if offered.len() > 1 {
        offered.retain(|agent| Some(agent.participant_id) != previous);
    }
    let names = offered
        .iter()
        .map(|agent| agent.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let spoken: Vec<&Message> = history
        .iter()
        .filter(|message| is_spoken(message))
        .collect();
    let recent: Vec<String> = spoken[spoken.len().saturating_sub(MODERATOR_RECENT_MESSAGES)..]
        .iter()
        .map(|message| {
            let (_, name) = author(message);
            let excerpt = cut(message.content.trim(), MODERATOR_EXCERPT_TOKENS);
            format!("{name}: {excerpt}")
        })
        .collect();
    let mut question = if recent.is_empty() {
        "The discussion has not started yet.".to_owned()
    } else {
        format!("The latest messages:\n\n{}", recent.join("\n\n"))
    };
    if let Some(agent) = previous.and_then(|id| discussion.participant(id)) {
        question.push_str(&format!("\n\n{} spoke last.", agent.name));
    }
    question.push_str(&format!(
        "\n\nWho should speak next: {names}? Answer with only the name of who should speak next."
    ));
    vec![
        chat(
            "system",
            format!(
                "You are {}, moderating a discussion titled \"{}\". Topic: {}\n\n\
                 You choose who speaks next among: {names}. Pick whoever moves the \
                 discussion forward best, such as someone the last message addressed. \
                 Answer with only the name of who should speak next.",
                moderator.name,
                discussion.title,
                cut(discussion.topic.trim(), MODERATOR_EXCERPT_TOKENS),
            ),
        ),
        chat("user", question),
    ]
}

/// The candidate the moderator's answer names first (ignoring case, whole words
/// only, the longest name where names overlap), or `None` if it names no
/// candidate, or the previous speaker while there is another.
pub(crate) fn read_moderator_answer(discussion: &Discussion, answer: &str) -> Option<Uuid> {
    let candidates = candidates(discussion);
    let answer = visible(answer).to_lowercase();
    // (where the name starts, its length, who): the earliest start wins, then the
    // longest name ("Ann Lee" over "Ann").
    let mut first: Option<(usize, usize, Uuid)> = None;
    for agent in &candidates {
        let name = agent.name.trim().to_lowercase();
        if name.is_empty() {
            continue;
        }
        let found = answer
            .match_indices(&name)
            .map(|(at, _)| at)
            .find(|&at| whole_word(&answer, at, name.len()));
        if let Some(at) = found
            && first.is_none_or(|(start, len, _)| at < start || (at == start && name.len() > len))
        {
            first = Some((at, name.len(), agent.participant_id));
        }
    }
    let (_, _, chosen) = first?;
    let repeats = Some(chosen) == discussion.last_agent_speaker_id && candidates.len() > 1;
    (!repeats).then_some(chosen)
}

/// Who speaks when the moderator's answer is unusable: the next agent after the
/// previous speaker in speaking order, skipping the moderator while there is
/// another candidate, and never the previous speaker while anyone else is present.
pub(crate) fn fallback(discussion: &Discussion) -> Option<Uuid> {
    let agents: Vec<&Participant> = discussion.agents().collect();
    let previous = discussion.last_agent_speaker_id;
    let start = previous
        .and_then(|id| agents.iter().position(|agent| agent.participant_id == id))
        .map_or(0, |at| at + 1);
    let in_turn = || (0..agents.len()).map(|step| agents[(start + step) % agents.len()]);
    let not_previous = |agent: &&Participant| Some(agent.participant_id) != previous;
    in_turn()
        .find(|agent| not_previous(agent) && Some(agent.participant_id) != discussion.moderator_id)
        .or_else(|| in_turn().find(not_previous))
        .or_else(|| agents.first().copied())
        .map(|agent| agent.participant_id)
}

/// Who may be named: the present agents other than the moderator, or every
/// present agent when the moderator is the only one.
fn candidates(discussion: &Discussion) -> Vec<&Participant> {
    let others: Vec<&Participant> = discussion
        .agents()
        .filter(|agent| Some(agent.participant_id) != discussion.moderator_id)
        .collect();
    if others.is_empty() {
        discussion.agents().collect()
    } else {
        others
    }
}

/// The answer without a reasoning model's `<think>…</think>` preamble, whose
/// musings name candidates it did not choose; an unfinished one is no answer.
fn visible(answer: &str) -> &str {
    const END: &str = "</think>";
    match answer.rfind(END) {
        Some(at) => &answer[at + END.len()..],
        None if answer.contains("<think>") => "",
        None => answer,
    }
}

/// Whether `text[at..at + len]` is whole words: no letter, digit or `_` right
/// before or after it.
fn whole_word(text: &str, at: usize, len: usize) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    !text[..at].chars().next_back().is_some_and(word)
        && !text[at + len..].chars().next().is_some_and(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turns::prompt::tests::{agent, said, user, with};

    /// A moderated discussion: Max moderates Ann, Anna and Bo; cy is a person.
    fn moderated() -> (Discussion, [Uuid; 4]) {
        let (max, ann, anna, bo) = (agent("Max"), agent("Ann"), agent("Anna"), agent("Bo"));
        let mut discussion = with(&[&max, &ann, &user("cy"), &anna, &bo]);
        discussion.moderator_id = Some(max.participant_id);
        let ids = [max, ann, anna, bo].map(|agent| agent.participant_id);
        (discussion, ids)
    }

    #[test]
    fn round_robin_goes_on_after_the_last_agent_and_wraps() {
        let (a, b, c) = (agent("A"), agent("B"), agent("C"));
        let mut discussion = with(&[&a, &user("u"), &b, &c]);
        let next = |discussion: &Discussion| round_robin(discussion);
        assert_eq!(next(&discussion), Some(a.participant_id));
        discussion.last_agent_speaker_id = Some(a.participant_id);
        assert_eq!(next(&discussion), Some(b.participant_id));
        discussion.last_agent_speaker_id = Some(c.participant_id);
        assert_eq!(next(&discussion), Some(a.participant_id));
        // Someone who left: start again from the first.
        discussion.last_agent_speaker_id = Some(Uuid::nil());
        assert_eq!(next(&discussion), Some(a.participant_id));
        assert_eq!(round_robin(&with(&[&user("u")])), None);
    }

    #[test]
    fn the_first_candidate_named_wins_whole_words_any_case() {
        let (discussion, [max, ann, anna, bo]) = moderated();
        let read = |answer| read_moderator_answer(&discussion, answer);
        assert_eq!(read("Ann"), Some(ann));
        assert_eq!(read("anna"), Some(anna));
        assert_eq!(read("ANNA."), Some(anna));
        assert_eq!(read("  **Bo**\n"), Some(bo));
        assert_eq!(read("\"Ann\""), Some(ann));
        assert_eq!(read("I'd pick Bo, then Ann."), Some(bo));
        assert_eq!(read("Anna or Ann"), Some(anna));
        assert_eq!(read("Next: Ann!"), Some(ann));
        // Not a word of the answer, nobody, or not a candidate.
        assert_eq!(read("Bob"), None);
        assert_eq!(read("Annabel"), None);
        assert_eq!(read("bo_2"), None);
        assert_eq!(read(""), None);
        assert_eq!(read("Nobody should."), None);
        assert_eq!(read("cy"), None);
        assert_eq!(read("Max"), None);
        assert_eq!(read("Max thinks: Bo"), Some(bo));
        let _ = max;
    }

    #[test]
    fn the_longest_of_overlapping_names_wins() {
        let (ann, ann_lee, lee) = (agent("Ann"), agent("Ann Lee"), agent("Lee"));
        let discussion = with(&[&ann, &ann_lee, &lee]);
        let read = |answer| read_moderator_answer(&discussion, answer);
        assert_eq!(read("ann lee, please"), Some(ann_lee.participant_id));
        assert_eq!(read("Ann, please"), Some(ann.participant_id));
        assert_eq!(read("Lee, then Ann"), Some(lee.participant_id));
    }

    #[test]
    fn naming_the_previous_speaker_is_refused_while_another_could_speak() {
        let (mut discussion, [_, ann, _, bo]) = moderated();
        discussion.last_agent_speaker_id = Some(bo);
        assert_eq!(read_moderator_answer(&discussion, "Bo"), None);
        assert_eq!(
            read_moderator_answer(&discussion, "Bo again, then Ann"),
            None
        );
        assert_eq!(read_moderator_answer(&discussion, "Ann"), Some(ann));

        // The only candidate may speak again.
        let (max, solo) = (agent("Max"), agent("Solo"));
        let mut discussion = with(&[&max, &solo]);
        discussion.moderator_id = Some(max.participant_id);
        discussion.last_agent_speaker_id = Some(solo.participant_id);
        assert_eq!(
            read_moderator_answer(&discussion, "Solo"),
            Some(solo.participant_id)
        );
        // A moderator alone chooses itself.
        let mut discussion = with(&[&max, &user("cy")]);
        discussion.moderator_id = Some(max.participant_id);
        discussion.last_agent_speaker_id = Some(max.participant_id);
        assert_eq!(
            read_moderator_answer(&discussion, "max"),
            Some(max.participant_id)
        );
    }

    #[test]
    fn a_reasoning_preamble_is_not_the_answer() {
        let (discussion, [_, ann, _, _]) = moderated();
        let read = |answer| read_moderator_answer(&discussion, answer);
        assert_eq!(read("<think>Bo spoke a lot.</think>\n\nAnn"), Some(ann));
        assert_eq!(read("<think>Bo spoke a lot, so maybe"), None);
    }

    #[test]
    fn the_fallback_goes_round_skipping_the_moderator_and_never_repeats() {
        let (mut discussion, [max, ann, anna, bo]) = moderated();
        let mut after = |previous: Option<Uuid>| {
            discussion.last_agent_speaker_id = previous;
            fallback(&discussion)
        };
        assert_eq!(after(None), Some(ann));
        assert_eq!(after(Some(ann)), Some(anna));
        assert_eq!(after(Some(bo)), Some(ann));
        assert_eq!(after(Some(max)), Some(ann));
        assert_eq!(after(Some(Uuid::nil())), Some(ann));

        // With one other agent, the moderator speaks rather than it twice.
        let (max, bo) = (agent("Max"), agent("Bo"));
        let mut discussion = with(&[&max, &bo]);
        discussion.moderator_id = Some(max.participant_id);
        discussion.last_agent_speaker_id = Some(bo.participant_id);
        assert_eq!(fallback(&discussion), Some(max.participant_id));
        discussion.participants.remove(1);
        assert_eq!(fallback(&discussion), Some(max.participant_id));
        discussion.participants.clear();
        assert_eq!(fallback(&discussion), None);
    }

    #[test]
    fn the_fallback_never_picks_the_previous_speaker_when_anyone_else_is_there() {
        let agents: Vec<_> = ["A", "B", "C", "D", "E"].map(agent).into();
        for size in 1..=agents.len() {
            let roster: Vec<_> = agents[..size].iter().collect();
            for moderator in
                std::iter::once(None).chain(roster.iter().map(|a| Some(a.participant_id)))
            {
                for previous in
                    std::iter::once(None).chain(roster.iter().map(|a| Some(a.participant_id)))
                {
                    let mut discussion = with(&roster);
                    discussion.moderator_id = moderator;
                    discussion.last_agent_speaker_id = previous;
                    let chosen = fallback(&discussion).unwrap();
                    assert!(discussion.participant(chosen).is_some());
                    if size > 1 {
                        assert_ne!(Some(chosen), previous);
                    }
                    if size > 2 {
                        assert_ne!(Some(chosen), moderator);
                    }
                }
            }
        }
    }

    #[test]
    fn the_moderator_sees_the_topic_the_candidates_and_the_latest_messages() {
        let (mut discussion, [max, _, _, bo]) = moderated();
        discussion.last_agent_speaker_id = Some(bo);
        let moderator = discussion.participant(max).unwrap().clone();
        let speaker = discussion.participant(bo).unwrap().clone();
        let history: Vec<Message> = (1..=9)
            .map(|seq| said(seq, &speaker, &format!("point {seq}")))
            .collect();
        let request = moderator_request(&discussion, &moderator, &history);
        assert_eq!(request.len(), 2);
        let system = &request[0].content;
        assert!(
            system.starts_with("You are Max, moderating a discussion titled \"t\". Topic: topic")
        );
        assert!(system.contains("among: Ann, Anna."), "{system}");
        let question = &request[1].content;
        assert!(!question.contains("point 3"));
        assert!(question.contains("Bo: point 4\n\nBo: point 5"));
        assert!(question.contains("Bo spoke last."));
        assert!(question.ends_with("Answer with only the name of who should speak next."));

        let fresh = moderator_request(&with(&[&moderator]), &moderator, &[]);
        assert!(
            fresh[1]
                .content
                .starts_with("The discussion has not started yet.")
        );
        assert!(fresh[0].content.contains("among: Max."));
    }
}
