//! A speaker's prompt, fitted into its context window: the setting (persona, the
//! discussion, the rolling summary), as much of the latest history as fits, and a
//! nudge to speak.
//!
//! Counted with tiktoken's cl100k (`arena_common::tokens`), an estimate for open
//! models: the window's `reserve_tokens` absorb the difference. What does not fit
//! goes, oldest first: history beyond `keep_recent_messages` (handed back to be
//! condensed into the summary when `summarize` is on), then the oldest recent
//! messages, and last the setting's own text, cut so that the prompt always fits.

use std::iter;

use arena_common::ids::Uuid;
use arena_common::ollama;
use arena_common::tokens::{self, Counter, Encoding, REPLY_PRIMING};

use crate::discussion::Discussion;
use crate::message::{Author, Message, MessageStatus};

/// The window when neither the discussion nor the agent sets one: Ollama's default.
const DEFAULT_WINDOW: u32 = 4096;

/// The smallest window a model is given: the least `num_ctx` validation accepts.
const MIN_WINDOW: u32 = 256;

/// The least a prompt may take, whatever `reserve_tokens` asks: a reserve as large
/// as the window would leave no room for the setting and the nudge.
const MIN_BUDGET: u32 = 128;

/// How much of the running summary a condense request carries, in tokens.
const CONDENSE_SUMMARY_TOKENS: usize = 1000;

/// How much of the messages' contents a condense request carries, in tokens, so
/// that with the summary, names and instructions it fits a 4,096-token window with
/// room for the answer.
const CONDENSE_MESSAGES_TOKENS: usize = 2000;

/// What a model is asked when condensing.
const CONDENSE_INSTRUCTIONS: &str = "You keep the running summary of a discussion. \
     Fold the new messages into the summary so far. Answer with only the updated \
     summary: concise plain prose, at most about 300 words, that keeps who said what \
     (each point attributed to its speaker by name), what was agreed, what is disputed \
     and what is still open.";

/// The agent about to speak.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Speaker {
    pub name: String,
    pub persona: String,
    /// Which history messages are its own (sent as `assistant`).
    pub participant_id: Uuid,
    /// The agent's window, used when the discussion sets none.
    pub num_ctx: Option<u32>,
}

/// History left out of a prompt, to fold into the rolling summary so later turns
/// have room.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condense {
    /// In order: every message older than the latest `keep_recent_messages`.
    pub messages: Vec<Message>,
    /// The seq of the last of them: the summary's new `summary_through_seq`.
    pub through_seq: i64,
}

/// A prompt that fits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fitted {
    pub messages: Vec<ollama::Message>,
    /// The window, to send as the `num_ctx` option.
    pub num_ctx: u32,
    /// Set when history was left out, `summarize` is on, and some of it is older
    /// than the latest `keep_recent_messages`.
    pub condense: Option<Condense>,
}

/// The prompt for `speaker`: the setting with `summary`, then `history` (the
/// messages after the summary's `through_seq`, in order), then a nudge to speak,
/// within the window less `reserve_tokens`.
pub(crate) fn fit(
    discussion: &Discussion,
    speaker: &Speaker,
    summary: &str,
    history: &[Message],
) -> Fitted {
    let policy = &discussion.context_policy;
    let num_ctx = policy
        .max_context_tokens
        .or(speaker.num_ctx)
        .unwrap_or(DEFAULT_WINDOW)
        .max(MIN_WINDOW);
    let budget = num_ctx
        .saturating_sub(policy.reserve_tokens)
        .max(MIN_BUDGET) as usize;

    let spoken: Vec<&Message> = history
        .iter()
        .filter(|message| is_spoken(message))
        .collect();
    let turns: Vec<ollama::Message> = spoken
        .iter()
        .map(|message| as_turn(message, speaker.participant_id))
        .collect();
    let setting = Setting::new(discussion, speaker, summary);
    let opening = spoken.is_empty() && summary.trim().is_empty();
    let mut system = chat("system", setting.whole());
    let mut nudge = chat("user", nudge_text(&speaker.name, opening));

    // A short conversation fits by its bytes alone: no encoding to build.
    let whole = iter::once(&system).chain(&turns).chain(iter::once(&nudge));
    if tokens::upper_bound(whole) <= budget {
        let mut messages = Vec::with_capacity(turns.len() + 2);
        messages.push(system);
        messages.extend(turns);
        messages.push(nudge);
        return Fitted {
            messages,
            num_ctx,
            condense: None,
        };
    }

    let counter = Counter::shared(Encoding::Cl100kBase);
    let fixed = REPLY_PRIMING + counter.message(&system) + counter.message(&nudge);
    if fixed > budget {
        // Not even the setting fits: cut the nudge to what leaves the setting some
        // room (only a huge name needs it), then the setting to the rest.
        let framing = |role| counter.message(&chat(role, String::new()));
        let nudge_room = budget.saturating_sub(REPLY_PRIMING + framing("system") + framing("user"));
        nudge.content = counter.truncate(&nudge.content, nudge_room).to_owned();
        let system_room =
            budget.saturating_sub(REPLY_PRIMING + counter.message(&nudge) + framing("system"));
        system.content = setting.fitted(counter, system_room);
    }

    // The latest messages that fit beside them.
    let mut room =
        budget.saturating_sub(REPLY_PRIMING + counter.message(&system) + counter.message(&nudge));
    let mut kept = 0;
    for turn in turns.iter().rev() {
        let cost = counter.message(turn);
        if cost > room {
            break;
        }
        room -= cost;
        kept += 1;
    }
    let left_out = turns.len() - kept;

    // Everything beyond the recent messages is condensed, not just what was left
    // out, so a summary is made once per window filled rather than every turn.
    let older = spoken
        .len()
        .saturating_sub(policy.keep_recent_messages as usize);
    let condense = (policy.summarize && left_out > 0 && older > 0).then(|| Condense {
        messages: spoken[..older]
            .iter()
            .map(|&message| message.clone())
            .collect(),
        through_seq: spoken[older - 1].seq,
    });

    let mut messages = Vec::with_capacity(kept + 2);
    messages.push(system);
    messages.extend(turns.into_iter().skip(left_out));
    messages.push(nudge);
    debug_assert!(counter.chat(&messages) <= budget);
    Fitted {
        messages,
        num_ctx,
        condense,
    }
}

impl Fitted {
    /// The prompt's tokens with their chat framing, counted (at most `num_ctx`):
    /// for the usage of a call that ended before the model reported its own count.
    pub(crate) fn prompt_tokens(&self) -> u32 {
        let counted = Counter::shared(Encoding::Cl100kBase).chat(&self.messages);
        u32::try_from(counted).unwrap_or(u32::MAX)
    }
}

/// A request asking a model to fold `messages` into `previous_summary`, keeping who
/// said what, in at most `budget` tokens (the model's window less its answer).
/// Long inputs are cut, each message to its fair share, so the request stays near
/// 3,000 tokens and within `budget` whatever the window.
pub(crate) fn condense_request(
    previous_summary: &str,
    messages: &[Message],
    budget: usize,
) -> Vec<ollama::Message> {
    let counter = Counter::shared(Encoding::Cl100kBase);
    let request = |summary: &str, transcript: &str| {
        let summary = if summary.is_empty() {
            "(none yet)"
        } else {
            summary
        };
        vec![
            chat("system", CONDENSE_INSTRUCTIONS.to_owned()),
            chat(
                "user",
                format!(
                    "Summary so far:\n{summary}\n\nNew messages:\n\n{transcript}\n\nWrite the updated summary."
                ),
            ),
        ]
    };
    // What the request costs with nothing to condense: the room left is shared,
    // a third to the summary so far and the rest to the messages.
    let room = budget.saturating_sub(counter.chat(&request("", "")));
    let summary = cut(
        previous_summary.trim(),
        CONDENSE_SUMMARY_TOKENS.min(room / 3),
    );
    let room = room.saturating_sub(counter.text(&summary));
    let lines: Vec<(String, &str)> = messages
        .iter()
        .map(|message| (format!("{}: ", author(message).1), message.content.trim()))
        .collect();
    // Each line costs its name and separator besides its share of the contents.
    let overhead: usize = lines.iter().map(|(name, _)| counter.text(name) + 2).sum();
    let sizes: Vec<usize> = lines.iter().map(|(_, text)| counter.text(text)).collect();
    let shares = fair_shares(
        &sizes,
        CONDENSE_MESSAGES_TOKENS.min(room.saturating_sub(overhead)),
    );
    let transcript: Vec<String> = lines
        .iter()
        .zip(shares)
        .map(|((name, text), share)| format!("{name}{}", cut(text, share)))
        .collect();
    let mut transcript = transcript.join("\n\n");
    // Token boundaries shift where pieces are joined: trim any excess at the end.
    let excess = counter
        .chat(&request(&summary, &transcript))
        .saturating_sub(budget);
    if excess > 0 {
        let keep = counter.text(&transcript).saturating_sub(excess + 2);
        transcript = counter.truncate(&transcript, keep).to_owned();
    }
    request(&summary, &transcript)
}

/// Whether a message is part of the conversation a model sees: finished (or
/// cancelled, its partial text kept), and not blank.
pub(super) fn is_spoken(message: &Message) -> bool {
    matches!(
        message.status,
        MessageStatus::Completed | MessageStatus::Cancelled
    ) && !message.content.trim().is_empty()
}

/// Who wrote a message: their participant (if any) and name.
pub(super) fn author(message: &Message) -> (Option<Uuid>, &str) {
    match &message.author {
        Author::Agent {
            participant_id,
            name,
            ..
        }
        | Author::User {
            participant_id,
            name,
            ..
        } => (*participant_id, name),
    }
}

/// A chat message.
pub(super) fn chat(role: &str, content: String) -> ollama::Message {
    ollama::Message {
        role: role.to_owned(),
        content,
    }
}

/// `text` cut to `max` tokens, marked when cut. A text of at most `max` bytes is
/// whole without counting (a token is at least a byte).
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    match Counter::shared(Encoding::Cl100kBase).truncate(text, max) {
        whole if whole.len() == text.len() => whole.to_owned(),
        start => format!("{} […]", start.trim_end()),
    }
}

/// `total` split among parts of `sizes`, fairly: none gets more than its size, and
/// what the small ones leave goes to the larger ones.
fn fair_shares(sizes: &[usize], total: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&at| sizes[at]);
    let mut shares = vec![0; sizes.len()];
    let mut left = total;
    for (given, &at) in order.iter().enumerate() {
        let share = (left / (sizes.len() - given)).min(sizes[at]);
        shares[at] = share;
        left -= share;
    }
    shares
}

/// A history message as the speaker sees it: its own as `assistant`, anyone
/// else's as `user` naming who said it.
fn as_turn(message: &Message, speaker: Uuid) -> ollama::Message {
    match author(message) {
        (Some(participant_id), _) if participant_id == speaker => {
            chat("assistant", message.content.clone())
        }
        (_, name) => chat("user", format!("{name}: {}", message.content)),
    }
}

/// The closing line asking the speaker for its contribution.
fn nudge_text(name: &str, opening: bool) -> String {
    if opening {
        format!(
            "{name}, open the discussion: give your first contribution, in your own words only."
        )
    } else {
        format!(
            "{name}, give your next contribution to the discussion, in your own words only \
             (no name prefix)."
        )
    }
}

/// What the system message says, and how it is cut when it does not fit.
struct Setting<'a> {
    name: &'a str,
    title: &'a str,
    /// The other participants' names: "Ann, Bo and Cy".
    others: String,
    persona: &'a str,
    topic: &'a str,
    summary: &'a str,
}

impl<'a> Setting<'a> {
    fn new(discussion: &'a Discussion, speaker: &'a Speaker, summary: &'a str) -> Self {
        let others: Vec<&str> = discussion
            .participants
            .iter()
            .filter(|participant| participant.participant_id != speaker.participant_id)
            .map(|participant| participant.name.as_str())
            .collect();
        let others = match others.split_last() {
            None => String::new(),
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        };
        Self {
            name: &speaker.name,
            title: &discussion.title,
            others,
            persona: &speaker.persona,
            topic: &discussion.topic,
            summary,
        }
    }

    /// The system message, nothing cut.
    fn whole(&self) -> String {
        self.render(self.persona, self.topic, self.summary)
    }

    /// The system message with these persona, topic and summary texts.
    fn render(&self, persona: &str, topic: &str, summary: &str) -> String {
        let mut parts = Vec::with_capacity(3);
        if !persona.trim().is_empty() {
            parts.push(persona.trim().to_owned());
        }
        let with = if self.others.is_empty() {
            String::new()
        } else {
            format!(" with {}", self.others)
        };
        parts.push(format!(
            "You are {}, taking part in a discussion titled \"{}\"{with}. Topic: {}",
            self.name,
            self.title,
            topic.trim()
        ));
        if !summary.trim().is_empty() {
            parts.push(format!(
                "Summary of the discussion so far: {}",
                summary.trim()
            ));
        }
        parts.join("\n\n")
    }

    /// The system message within `max` tokens: persona, topic and summary cut to
    /// fair shares of what the rest leaves, and the whole cut if even that is too
    /// long.
    fn fitted(&self, counter: &Counter, max: usize) -> String {
        let texts = [self.persona, self.topic, self.summary];
        let sizes = texts.map(|text| counter.text(text));
        let mut room = max.saturating_sub(counter.text(&self.render("", "", "")));
        loop {
            let shares = fair_shares(&sizes, room);
            let [persona, topic, summary] =
                [0, 1, 2].map(|at| counter.truncate(texts[at], shares[at]));
            let text = self.render(persona, topic, summary);
            let tokens = counter.text(&text);
            if tokens <= max {
                return text;
            }
            if room == 0 {
                return counter.truncate(&text, max).to_owned();
            }
            // Joined, the parts count a little differently than apart.
            room = room.saturating_sub(tokens - max);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::discussion::StopConditions;
    use crate::participant::{Kind, Participant};
    use arena_common::ids::new_id;
    use arena_common::time::Timestamp;

    pub(in crate::turns) fn agent(name: &str) -> Participant {
        participant(name, Kind::Agent)
    }

    pub(in crate::turns) fn user(name: &str) -> Participant {
        participant(name, Kind::User)
    }

    fn participant(name: &str, kind: Kind) -> Participant {
        let agent = kind == Kind::Agent;
        Participant {
            participant_id: new_id(),
            kind,
            position: None,
            agent_id: agent.then(new_id),
            user_id: (!agent).then(new_id),
            name: name.to_owned(),
            model: agent.then(|| "llama3.2".to_owned()),
            parameters: None,
            joined_at: Timestamp::now(),
            left_at: None,
        }
    }

    /// An active discussion titled "t" about "topic" with these participants, in
    /// this order.
    pub(in crate::turns) fn with(participants: &[&Participant]) -> Discussion {
        let mut discussion = crate::turns::stop::tests::discussion(StopConditions::default());
        discussion.participants = participants
            .iter()
            .zip(0..)
            .map(|(participant, position)| Participant {
                position: Some(position),
                ..(*participant).clone()
            })
            .collect();
        discussion
    }

    /// A completed message.
    pub(in crate::turns) fn said(seq: i64, by: &Participant, content: &str) -> Message {
        let participant_id = Some(by.participant_id);
        let name = by.name.clone();
        Message {
            message_id: new_id(),
            discussion_id: Uuid::nil(),
            seq,
            turn_index: seq as i32,
            author: match by.agent_id {
                Some(agent_id) => Author::Agent {
                    participant_id,
                    agent_id,
                    agent_version: 1,
                    name,
                },
                None => Author::User {
                    participant_id,
                    user_id: by.user_id,
                    name,
                },
            },
            content: content.to_owned(),
            status: MessageStatus::Completed,
            error: None,
            model: None,
            usage: None,
            first_token_ms: None,
            latency_ms: None,
            created_at: Timestamp::now(),
            completed_at: None,
        }
    }

    fn speaker(agent: &Participant, persona: &str) -> Speaker {
        Speaker {
            name: agent.name.clone(),
            persona: persona.to_owned(),
            participant_id: agent.participant_id,
            num_ctx: None,
        }
    }

    /// About `tokens` tokens of varied prose, different for each `seed`.
    fn prose(tokens: usize, seed: usize) -> String {
        const WORDS: [&str; 12] = [
            "river",
            "argument",
            "because",
            "ledger",
            "quietly",
            "seventeen",
            "Zürich",
            "therefore",
            "maple",
            "evidence",
            "however",
            "草",
        ];
        (0..tokens)
            .map(|at| WORDS[(at * 7 + seed * 5 + at / 3) % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn count(messages: &[ollama::Message]) -> usize {
        Counter::shared(Encoding::Cl100kBase).chat(messages)
    }

    /// The conversation between the system message and the nudge.
    fn middle(fitted: &Fitted) -> &[ollama::Message] {
        &fitted.messages[1..fitted.messages.len() - 1]
    }

    fn policy(discussion: &mut Discussion, window: u32, reserve: u32, keep: u32, summarize: bool) {
        let policy = &mut discussion.context_policy;
        policy.max_context_tokens = Some(window);
        policy.reserve_tokens = reserve;
        policy.keep_recent_messages = keep;
        policy.summarize = summarize;
    }

    #[test]
    fn the_setting_the_history_and_a_nudge_in_order() {
        let (ann, bo, cy) = (agent("Ann"), agent("Bo"), user("cy"));
        let discussion = with(&[&ann, &bo, &cy]);
        let mut failed = said(4, &bo, "lost");
        failed.status = MessageStatus::Failed;
        let mut generating = said(6, &ann, "half");
        generating.status = MessageStatus::Generating;
        let mut cancelled = said(5, &bo, "Let me fin");
        cancelled.status = MessageStatus::Cancelled;
        let history = [
            said(1, &bo, "Hi all."),
            said(2, &ann, "Hello, Bo."),
            said(3, &cy, "Hey."),
            failed,
            cancelled,
            said(7, &cy, "  "),
            generating,
        ];
        let fitted = fit(&discussion, &speaker(&ann, "Be brief."), "", &history);
        let roles: Vec<&str> = fitted.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user", "user", "user"]
        );
        assert_eq!(
            fitted.messages[0].content,
            "Be brief.\n\nYou are Ann, taking part in a discussion titled \"t\" with Bo and cy. \
             Topic: topic"
        );
        let contents: Vec<&str> = middle(&fitted).iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            contents,
            ["Bo: Hi all.", "Hello, Bo.", "cy: Hey.", "Bo: Let me fin"]
        );
        let nudge = &fitted.messages[5].content;
        assert!(
            nudge.starts_with("Ann, give your next contribution"),
            "{nudge}"
        );
        assert_eq!(fitted.num_ctx, 4096);
        assert_eq!(fitted.condense, None);
    }

    #[test]
    fn an_empty_history_asks_for_an_opening_and_a_summary_is_the_story_so_far() {
        let ann = agent("Ann");
        let discussion = with(&[&ann]);
        let fitted = fit(&discussion, &speaker(&ann, ""), "", &[]);
        assert_eq!(fitted.messages.len(), 2);
        assert_eq!(
            fitted.messages[0].content,
            "You are Ann, taking part in a discussion titled \"t\". Topic: topic"
        );
        assert!(
            fitted.messages[1]
                .content
                .starts_with("Ann, open the discussion")
        );

        let fitted = fit(&discussion, &speaker(&ann, ""), " Bo doubts it. ", &[]);
        assert!(
            fitted.messages[0]
                .content
                .ends_with("Topic: topic\n\nSummary of the discussion so far: Bo doubts it.")
        );
        assert!(
            fitted.messages[1]
                .content
                .starts_with("Ann, give your next")
        );
    }

    #[test]
    fn the_window_is_the_discussions_else_the_agents_else_4096() {
        let ann = agent("Ann");
        let mut discussion = with(&[&ann]);
        let mut speaker = speaker(&ann, "");
        assert_eq!(fit(&discussion, &speaker, "", &[]).num_ctx, 4096);
        speaker.num_ctx = Some(8192);
        assert_eq!(fit(&discussion, &speaker, "", &[]).num_ctx, 8192);
        discussion.context_policy.max_context_tokens = Some(1024);
        assert_eq!(fit(&discussion, &speaker, "", &[]).num_ctx, 1024);
        // Below what validation accepts, the least window is used.
        discussion.context_policy.max_context_tokens = Some(10);
        assert_eq!(fit(&discussion, &speaker, "", &[]).num_ctx, MIN_WINDOW);
    }

    #[test]
    fn the_budget_is_never_exceeded_and_the_latest_messages_are_kept_in_order() {
        let (ann, bo) = (agent("Ann"), agent("Bo"));
        let personas = [String::new(), prose(40, 1), prose(1500, 2)];
        let topics = ["topic".to_owned(), prose(800, 3)];
        let history: Vec<Message> = (1..=30)
            .map(|seq| {
                let by = if seq % 3 == 0 { &ann } else { &bo };
                said(
                    seq,
                    by,
                    &prose(10 + (seq as usize * 37) % 300, seq as usize),
                )
            })
            .collect();
        let mut checked = 0;
        for window in [256, 300, 700, 2048, 8192] {
            for reserve in [0, 100, 512, 9000] {
                for (persona, topic) in personas.iter().zip(topics.iter().cycle()) {
                    for messages in [0, 1, 4, 30] {
                        let mut discussion = with(&[&ann, &bo]);
                        discussion.topic = topic.clone();
                        policy(&mut discussion, window, reserve, 4, true);
                        let history = &history[..messages];
                        let fitted = fit(&discussion, &speaker(&ann, persona), "", history);
                        let budget = window.saturating_sub(reserve).max(MIN_BUDGET) as usize;
                        let case = format!("{window}/{reserve}/{}/{messages}", persona.len());
                        let tokens = count(&fitted.messages);
                        assert_eq!(fitted.prompt_tokens() as usize, tokens, "{case}");
                        assert!(tokens <= budget, "{case}");
                        assert!(tokens as u32 <= fitted.num_ctx, "{case}");
                        // What is kept is the latest messages, whole and in order.
                        let kept = middle(&fitted);
                        let expected: Vec<ollama::Message> = history[messages - kept.len()..]
                            .iter()
                            .map(|message| as_turn(message, ann.participant_id))
                            .collect();
                        assert_eq!(kept, expected, "{case}");
                        assert_eq!(fitted.messages[0].role, "system");
                        assert!(fitted.messages.last().unwrap().content.starts_with("Ann"));
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 4 * 3 * 4);
    }

    #[test]
    fn older_messages_are_condensed_exactly_when_something_is_left_out() {
        let (ann, bo) = (agent("Ann"), agent("Bo"));
        let history: Vec<Message> = (1..=20)
            .map(|seq| {
                said(
                    seq,
                    if seq % 2 == 0 { &ann } else { &bo },
                    &prose(60, seq as usize),
                )
            })
            .collect();
        let fits = |window, keep, summarize| {
            let mut discussion = with(&[&ann, &bo]);
            policy(&mut discussion, window, 256, keep, summarize);
            fit(&discussion, &speaker(&ann, "Be brief."), "", &history)
        };

        // Everything fits: nothing to condense.
        let roomy = fits(8192, 4, true);
        assert_eq!(middle(&roomy).len(), 20);
        assert_eq!(roomy.condense, None);

        // Only some fit: all but the latest four are to be condensed, and the
        // prompt keeps the latest that fit.
        let tight = fits(1024, 4, true);
        let kept = middle(&tight).len();
        assert!((4..20).contains(&kept), "{kept}");
        let condense = tight.condense.unwrap();
        assert_eq!(condense.through_seq, 16);
        assert_eq!(condense.messages, history[..16]);

        // Not summarizing: the oldest are just left out.
        let dropped = fits(1024, 4, false);
        assert_eq!(middle(&dropped).len(), kept);
        assert_eq!(dropped.condense, None);

        // Left out, but all of it recent: nothing may be condensed.
        assert_eq!(fits(1024, 20, true).condense, None);
        assert_eq!(fits(1024, 25, true).condense, None);

        // Even the recent messages do not all fit: the oldest of them go too, and
        // only the older ones are condensed.
        let cramped = fits(512, 8, true);
        assert!(middle(&cramped).len() < 8);
        assert_eq!(cramped.condense.unwrap().through_seq, 12);
    }

    #[test]
    fn a_huge_persona_topic_and_summary_are_cut_to_fair_shares() {
        let ann = agent("Ann");
        let mut discussion = with(&[&ann]);
        discussion.topic = format!("TOPIC {}", prose(5000, 1));
        policy(&mut discussion, 1024, 0, 4, true);
        let persona = format!("PERSONA {}", prose(5000, 2));
        let summary = format!("SUMMARY {}", prose(100, 3));
        let fitted = fit(&discussion, &speaker(&ann, &persona), &summary, &[]);
        let tokens = count(&fitted.messages);
        assert!((1001..=1024).contains(&tokens), "{tokens}");
        let system = &fitted.messages[0].content;
        assert!(system.starts_with("PERSONA "));
        assert!(
            system.contains("You are Ann, taking part in a discussion titled \"t\". Topic: TOPIC ")
        );
        // The short summary is whole; the rest is shared between persona and topic.
        assert!(system.ends_with(&format!("Summary of the discussion so far: {summary}")));
        let counter = Counter::shared(Encoding::Cl100kBase);
        let persona_tokens = counter.text(system.split("\n\n").next().unwrap());
        assert!((380..=520).contains(&persona_tokens), "{persona_tokens}");
    }

    #[test]
    fn even_a_huge_name_and_title_leave_a_prompt_within_the_window() {
        let ann = agent(&prose(600, 4));
        let mut discussion = with(&[&ann, &agent(&prose(600, 5))]);
        discussion.title = prose(600, 6);
        policy(&mut discussion, 256, 512, 4, true);
        let history = [said(1, &ann, "Hi.")];
        let fitted = fit(&discussion, &speaker(&ann, &prose(600, 7)), "", &history);
        let tokens = count(&fitted.messages);
        assert!(tokens <= MIN_BUDGET as usize, "{tokens}");
        assert_eq!(fitted.messages.len(), 2);
    }

    #[test]
    fn a_condense_request_names_who_said_what_within_a_bound() {
        let (ann, bo) = (agent("Ann"), user("bo"));
        let messages = [
            said(1, &ann, "Tea is best."),
            said(2, &bo, "Coffee, surely."),
        ];
        let request = condense_request("", &messages, 3500);
        assert_eq!(request[0].role, "system");
        assert_eq!(
            request[1].content,
            "Summary so far:\n(none yet)\n\nNew messages:\n\nAnn: Tea is best.\n\nbo: Coffee, \
             surely.\n\nWrite the updated summary."
        );
        assert!(
            condense_request("Ann likes tea.", &messages, 3500)[1]
                .content
                .starts_with("Summary so far:\nAnn likes tea.\n\n")
        );

        let long: Vec<Message> = (1..=12)
            .map(|seq| {
                said(
                    seq,
                    &ann,
                    &prose(if seq == 3 { 20 } else { 3000 }, seq as usize),
                )
            })
            .collect();
        let request = condense_request(&prose(5000, 9), &long, 3500);
        assert!(count(&request) <= 3500, "{}", count(&request));
        // A small window gets a small request, never more than its budget.
        for budget in [0, 50, 200, 700, 1500] {
            let request = condense_request(&prose(5000, 9), &long, budget);
            let floor = count(&condense_request("", &[], 0));
            assert!(
                count(&request) <= budget.max(floor),
                "{budget}: {}",
                count(&request)
            );
        }
        let transcript = &request[1].content;
        // The short message is whole; the long ones are cut, and say so.
        assert!(transcript.contains(&format!("Ann: {}\n\n", long[2].content)));
        assert_eq!(transcript.matches(" […]").count(), 12);
    }

    #[test]
    fn fair_shares_give_the_small_their_size_and_split_the_rest() {
        assert_eq!(fair_shares(&[10, 1000, 1000], 410), [10, 200, 200]);
        assert_eq!(fair_shares(&[10, 20, 30], 1000), [10, 20, 30]);
        assert_eq!(fair_shares(&[500, 5], 0), [0, 0]);
        assert_eq!(fair_shares(&[], 10), Vec::<usize>::new());
    }
}
