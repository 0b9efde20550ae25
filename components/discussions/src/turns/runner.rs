//! The generation loop of a turn: the prompt (condensing old history into the
//! rolling summary when it no longer fits), the speaker's model streamed, its text
//! flushed to the database about every 100 ms with the lease renewed, and the
//! turn finished as completed, cancelled or failed.
//!
//! The caller may watch it as server-sent events (`token` {content}, then
//! `turn.completed` / `turn.cancelled` {message} or `turn.failed` {message, code,
//! detail}); a caller who goes away does not stop it: sending is best effort, the
//! turn is the database's.

use std::time::{Duration, Instant};

use arena_common::db::Typed;
use arena_common::ids::Uuid;
use arena_common::ollama::{ChatRequest, Step};
use arena_common::usage::{self, Kind, Status};
use arena_common::{Problem, ProblemCode, sse};
use serde_json::json;

use crate::discussion::Discussion;
use crate::message::{MESSAGE_COLUMNS, MESSAGE_JOINS, Message, MessageStatus};

use super::lease::{self, Ending, Lease, TurnRef};
use super::model::{Models, Speaking};
use super::prompt;

/// How often text generated is written while tokens flow.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The longest wait between lease renewals (and looks for a cancel) while no
/// tokens come: the model loading, or thinking before its first token.
const HEARTBEAT_MAX: Duration = Duration::from_secs(1);

/// The most history a prompt is built from: the latest messages after the
/// summary. Older ones would not fit any context window.
const HISTORY_LIMIT: i64 = 500;

/// The longest message stored (the `messages.content` limit, in characters).
const MAX_CONTENT_CHARS: usize = 200_000;

/// How long the runner may wait for the next token before it must write:
/// text waiting is written [`FLUSH_EVERY`] after the previous write; with none
/// waiting, the lease is renewed every `heartbeat`. Zero: write now.
pub(crate) fn flush_wait(since_flush: Duration, pending: bool, heartbeat: Duration) -> Duration {
    let every = if pending { FLUSH_EVERY } else { heartbeat };
    every.saturating_sub(since_flush)
}

/// The interval between lease renewals when no text is waiting: well inside
/// the lease, and at most [`HEARTBEAT_MAX`] so a cancel is seen soon.
pub(crate) fn heartbeat(lease_seconds: f64) -> Duration {
    Duration::from_secs_f64(lease_seconds / 3.0).clamp(FLUSH_EVERY, HEARTBEAT_MAX)
}

/// The summary a discussion's prompts start from, and the history after it.
pub(crate) struct History {
    pub summary: String,
    /// Completed and cancelled messages after the summary, oldest first.
    pub messages: Vec<Message>,
}

impl History {
    /// Reads the summary and up to [`HISTORY_LIMIT`] of the latest messages after it.
    pub(crate) async fn load(client: &impl Typed, discussion_id: Uuid) -> Result<Self, Problem> {
        let row: arena_common::db::Row = client
            .row(
                "select summary, summary_through_seq from discussions where discussion_id = $1",
                &[discussion_id.into()],
            )
            .await?;
        let summary: String = row.get("summary")?;
        let through_seq: i64 = row.get("summary_through_seq")?;
        let mut messages: Vec<Message> = client
            .rows(
                &format!(
                    "select {MESSAGE_COLUMNS} from {MESSAGE_JOINS}
                     where m.discussion_id = $1 and m.seq > $2
                       and m.status in ('completed', 'cancelled')
                     order by m.seq desc limit $3"
                ),
                &[
                    discussion_id.into(),
                    through_seq.into(),
                    HISTORY_LIMIT.into(),
                ],
            )
            .await?;
        messages.reverse();
        Ok(Self { summary, messages })
    }
}

/// A turn whose message exists, ready to generate it.
pub(crate) struct Runner {
    pub models: Models,
    pub discussion: Discussion,
    pub speaking: Speaking,
    /// The message being written, as it was started (`generating`).
    pub message: Message,
    pub turn: TurnRef,
    pub lease: f64,
    /// Tokens the turn's model calls used before this one (the moderator's).
    pub other_tokens: u64,
    /// The caller's event stream, while they listen.
    pub events: Option<sse::Sender>,
}

/// How a turn ended: its message as stored, and for a failure the problem.
pub(crate) struct Ended {
    pub message: Message,
    pub problem: Option<Problem>,
}

/// What the generation came to, before it is written.
enum Generated {
    Ending(Ending, Option<Problem>),
    /// The turn was taken away (its lease expired); nothing more may be written.
    Lost,
}

impl Runner {
    /// Generates the message and finishes the turn. Never gives up silently: a
    /// failure is stored on the message, and the caller told.
    pub(crate) async fn run(mut self) -> Result<Ended, Problem> {
        if self.events.is_some() {
            let started = json!({ "message": self.message });
            self.send("turn.started", &started).await;
        }
        let generated = self.generate().await;
        let ended = match generated {
            Generated::Ending(ending, problem) => {
                match lease::finish(&self.models.db, &self.turn, &ending).await {
                    Ok(Some(message)) => Ended { message, problem },
                    Ok(None) => self.lost().await?,
                    Err(error) => {
                        self.send_failure(None, &error).await;
                        return Err(error);
                    }
                }
            }
            Generated::Lost => self.lost().await?,
        };
        match (&ended.problem, ended.message.status) {
            (Some(problem), _) => self.send_failure(Some(&ended.message), problem).await,
            (None, MessageStatus::Cancelled) => {
                self.send("turn.cancelled", &json!({ "message": ended.message }))
                    .await;
            }
            (None, _) => {
                self.send("turn.completed", &json!({ "message": ended.message }))
                    .await;
            }
        }
        Ok(ended)
    }

    /// The answer when the turn was taken away: its message as it is now.
    async fn lost(&self) -> Result<Ended, Problem> {
        let message = lease::message(&self.models.db, self.turn.message_id).await?;
        let problem = Problem::new(
            ProblemCode::Unavailable,
            "the turn showed no sign of life within its lease and was interrupted; advance it again",
        );
        Ok(Ended {
            message,
            problem: Some(problem),
        })
    }

    /// Sends an event to the caller, if they still listen.
    async fn send(&mut self, name: &str, data: &serde_json::Value) {
        if let Some(events) = &mut self.events
            && events.send(name, data).await.is_err()
        {
            // Gone: the turn goes on without them.
            self.events = None;
        }
    }

    async fn send_failure(&mut self, message: Option<&Message>, problem: &Problem) {
        let data =
            json!({ "message": message, "code": problem.code(), "detail": problem.detail() });
        self.send("turn.failed", &data).await;
    }

    /// Builds the prompt and streams the model's answer into the message.
    async fn generate(&mut self) -> Generated {
        let fitted = match self.prompt().await {
            Ok(fitted) => fitted,
            Err(problem) => return self.failed(String::new(), None, 0, problem),
        };
        let mut options = self.speaking.options.clone();
        options.num_ctx = Some(fitted.num_ctx);

        // A cancel may have come while the speaker was chosen or the history
        // condensed; and the lease is renewed before the wait for a first token.
        match lease::flush(&self.models.db, &self.turn, "", 0, self.lease).await {
            Ok(Lease::Held) => {}
            Ok(Lease::Cancelling) => {
                return self.ending(MessageStatus::Cancelled, String::new(), None, None);
            }
            Ok(Lease::Lost) => return Generated::Lost,
            Err(problem) => return self.failed(String::new(), None, 0, problem),
        }

        let models = &self.models;
        let call_for = models.call_for(self.speaking.agent_id);
        let mut call =
            match usage::Call::start(&models.db, &call_for, &self.speaking.model, Kind::Chat).await
            {
                Ok(call) => call,
                Err(error) => return self.failed(String::new(), None, 0, error.into()),
            };
        let request = ChatRequest {
            model: &self.speaking.model,
            messages: &fitted.messages,
            stream: true,
            options: Some(&options),
        };
        let mut stream = match models.ollama.chat(&models.outbound, &request).await {
            Ok(stream) => stream,
            Err(error) => {
                let outcome = call.early_outcome(0, Some(error.to_string()));
                call.record(&models.db, Status::Failed, &outcome).await;
                return self.failed(String::new(), Some(&call), 0, error.into());
            }
        };

        let heartbeat = heartbeat(self.lease);
        let mut content = String::new();
        let mut pending = String::new();
        let mut flushed_chars = 0;
        let mut last_flush = Instant::now();
        let mut at_limit = false;
        loop {
            let wait = flush_wait(last_flush.elapsed(), !pending.is_empty(), heartbeat);
            let step = if wait.is_zero() || at_limit {
                None
            } else {
                stream.step_within(wait).await
            };
            let mut done = None;
            match step {
                None => {}
                Some(Step::Token(text)) => {
                    call.token();
                    let room = MAX_CONTENT_CHARS - flushed_chars - pending.chars().count();
                    let text: String = text.chars().take(room).collect();
                    at_limit = text.chars().count() == room;
                    pending.push_str(&text);
                    self.send("token", &json!({ "content": text })).await;
                    if !flush_wait(last_flush.elapsed(), true, heartbeat).is_zero() && !at_limit {
                        continue;
                    }
                }
                Some(Step::Done(last)) => done = Some(call.outcome(&last)),
                Some(Step::Failed(error)) => {
                    drop(stream);
                    content.push_str(&pending);
                    let outcome =
                        call.early_outcome(fitted.prompt_tokens(), Some(error.to_string()));
                    call.record(&self.models.db, Status::Failed, &outcome).await;
                    return self.failed(content, Some(&call), fitted.prompt_tokens(), error.into());
                }
            }
            let flushed = lease::flush(
                &self.models.db,
                &self.turn,
                &pending,
                flushed_chars,
                self.lease,
            )
            .await;
            flushed_chars += pending.chars().count();
            content.push_str(&pending);
            pending.clear();
            last_flush = Instant::now();
            if at_limit && done.is_none() {
                // The message is as long as one may be: the model is stopped there.
                drop(stream);
                let outcome = call.early_outcome(fitted.prompt_tokens(), None);
                call.record(&self.models.db, Status::Cancelled, &outcome)
                    .await;
                return self.ended_with(MessageStatus::Completed, content, &outcome);
            }
            match (flushed, done) {
                (Ok(Lease::Lost), _) => {
                    drop(stream);
                    let outcome = call.early_outcome(fitted.prompt_tokens(), None);
                    call.record(&self.models.db, Status::Cancelled, &outcome)
                        .await;
                    return Generated::Lost;
                }
                (_, Some(outcome)) => {
                    // Finished: a cancel that came too late changes nothing, and a
                    // failed last flush is made good by the finishing write.
                    call.record(&self.models.db, Status::Succeeded, &outcome)
                        .await;
                    return self.ended_with(MessageStatus::Completed, content, &outcome);
                }
                (Ok(Lease::Held), None) => {}
                (Ok(Lease::Cancelling), None) => {
                    // Dropping the stream closes the connection: Ollama stops.
                    drop(stream);
                    let outcome = call.early_outcome(fitted.prompt_tokens(), None);
                    call.record(&self.models.db, Status::Cancelled, &outcome)
                        .await;
                    return self.ended_with(MessageStatus::Cancelled, content, &outcome);
                }
                (Err(problem), None) => {
                    drop(stream);
                    let outcome =
                        call.early_outcome(fitted.prompt_tokens(), Some(problem.to_string()));
                    call.record(&self.models.db, Status::Failed, &outcome).await;
                    return self.failed(content, Some(&call), fitted.prompt_tokens(), problem);
                }
            }
        }
    }

    /// The prompt for the speaker: the history since the rolling summary fitted
    /// into its context window, older messages condensed into the summary first
    /// when the policy says so (a failed summary leaves them dropped instead).
    async fn prompt(&mut self) -> Result<prompt::Fitted, Problem> {
        let history = History::load(&self.models.db, self.turn.discussion_id).await?;
        let speaker = self.speaking.prompt_speaker();
        let mut fitted = prompt::fit(
            &self.discussion,
            &speaker,
            &history.summary,
            &history.messages,
        );
        let Some(condense) = fitted.condense.take() else {
            return Ok(fitted);
        };
        let summary = self
            .models
            .condense(
                &self.speaking,
                &history.summary,
                &condense.messages,
                fitted.num_ctx,
            )
            .await;
        let summary = match summary {
            Ok((summary, tokens)) => {
                self.other_tokens += tokens;
                summary
            }
            Err(problem) => {
                eprintln!(
                    "discussion {}: condensing the history failed ({problem}); older messages are left out",
                    self.turn.discussion_id
                );
                return Ok(fitted);
            }
        };
        lease::store_summary(
            &self.models.db,
            &self.turn,
            &summary,
            condense.through_seq,
            self.lease,
        )
        .await?;
        let remaining: Vec<Message> = history
            .messages
            .into_iter()
            .filter(|message| message.seq > condense.through_seq)
            .collect();
        // What does not fit now is left out.
        let mut refitted = prompt::fit(&self.discussion, &speaker, &summary, &remaining);
        refitted.condense = None;
        Ok(refitted)
    }

    fn ending(
        &self,
        status: MessageStatus,
        content: String,
        outcome: Option<&usage::Outcome>,
        failure: Option<&Problem>,
    ) -> Generated {
        let ending = Ending {
            status,
            content,
            failure: failure.map(|problem| (problem.code(), problem.detail().to_owned())),
            prompt_tokens: outcome.map_or(0, |outcome| outcome.prompt_tokens),
            completion_tokens: outcome.map_or(0, |outcome| outcome.completion_tokens),
            first_token_ms: outcome.and_then(|outcome| outcome.first_token_ms),
            latency_ms: outcome.map(|outcome| outcome.duration_ms),
            other_tokens: self.other_tokens,
        };
        Generated::Ending(ending, failure.cloned())
    }

    fn ended_with(
        &self,
        status: MessageStatus,
        content: String,
        outcome: &usage::Outcome,
    ) -> Generated {
        self.ending(status, content, Some(outcome), None)
    }

    /// A failed turn, with the text it got to and what the model call used.
    fn failed(
        &self,
        content: String,
        call: Option<&usage::Call>,
        prompt_tokens: u32,
        problem: Problem,
    ) -> Generated {
        let outcome = call.map(|call| call.early_outcome(prompt_tokens, None));
        self.ending(
            MessageStatus::Failed,
            content,
            outcome.as_ref(),
            Some(&problem),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAT: Duration = Duration::from_millis(700);

    #[test]
    fn waiting_text_is_written_a_tenth_of_a_second_after_the_last_write() {
        assert_eq!(
            flush_wait(Duration::from_millis(30), true, BEAT),
            Duration::from_millis(70)
        );
        assert!(flush_wait(Duration::from_millis(100), true, BEAT).is_zero());
        assert!(flush_wait(Duration::from_secs(3), true, BEAT).is_zero());
    }

    #[test]
    fn with_nothing_waiting_only_the_heartbeat_is_due() {
        assert_eq!(
            flush_wait(Duration::from_millis(200), false, BEAT),
            Duration::from_millis(500)
        );
        assert!(flush_wait(BEAT, false, BEAT).is_zero());
    }

    #[test]
    fn the_heartbeat_is_well_inside_the_lease_and_at_most_a_second() {
        assert_eq!(heartbeat(90.0), HEARTBEAT_MAX);
        assert_eq!(heartbeat(1.5), Duration::from_millis(500));
        assert_eq!(heartbeat(0.1), FLUSH_EVERY);
    }
}
