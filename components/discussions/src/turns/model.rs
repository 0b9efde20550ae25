//! Who speaks and with what model: the agent behind a participant, and the model
//! calls a turn makes besides its own message (the moderator's choice, a
//! summary), each checked against the deployment's policy and quotas and recorded
//! in `model_calls` like every other model call.

use arena_common::Problem;
use arena_common::db::{Client, Db, DbError, FromRow, Json, Row, Typed};
use arena_common::ids::Uuid;
use arena_common::ollama::policy::{self, Policy};
use arena_common::ollama::{self, ChatRequest, Ollama, Options};
use arena_common::usage::{self, CallFor, Kind, Status};

use crate::discussion::Discussion;
use crate::message::Message;
use crate::participant::Participant;

use super::{prompt, speaker};

/// The agent speaking in a turn, as this discussion has it speak.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Speaking {
    pub participant_id: Uuid,
    pub agent_id: Uuid,
    /// The agent's version now: the message records which version spoke.
    pub agent_version: i32,
    pub name: String,
    pub persona: String,
    /// The participant's model override, else the agent's model.
    pub model: String,
    /// The agent's parameters with the participant's over them, within the policy.
    pub options: Options,
}

/// What the turn engine reads of an agent.
struct Agent {
    name: String,
    persona: String,
    model: String,
    parameters: Options,
    version: i32,
}

impl FromRow for Agent {
    fn from_row(row: Row) -> Result<Self, DbError> {
        let Json(parameters) = row.get("parameters")?;
        Ok(Self {
            name: row.get("name")?,
            persona: row.get("persona")?,
            model: row.get("model")?,
            parameters,
            version: row.get("version")?,
        })
    }
}

impl Speaking {
    /// The agent present as participant `participant_id` of `discussion`, with the
    /// model and parameters the discussion gives it. `400` (field `speaker_id`) if
    /// that is no present agent; `422` if the policy does not allow its model.
    pub(crate) async fn load(
        client: &impl Client,
        discussion: &Discussion,
        participant_id: Uuid,
        policy: &Policy,
    ) -> Result<Self, Problem> {
        let participant = discussion
            .participant(participant_id)
            .filter(|participant| participant.agent_id.is_some())
            .ok_or_else(|| not_an_agent(participant_id))?;
        let agent_id = participant.agent_id.unwrap_or_default();
        let agent: Agent = client
            .row(
                "select name, persona, model, parameters, version from agents where agent_id = $1",
                &[agent_id.into()],
            )
            .await?;
        let model = participant.model.clone().unwrap_or(agent.model);
        policy.check_model(&model)?;
        let options = merged(agent.parameters, participant.parameters.as_ref());
        Ok(Self {
            participant_id,
            agent_id,
            agent_version: agent.version,
            name: agent.name,
            persona: agent.persona,
            model,
            options: policy.bound(Some(policy.clamp(options)))?,
        })
    }

    /// Who `prompt::fit` writes the prompt for.
    pub(crate) fn prompt_speaker(&self) -> prompt::Speaker {
        prompt::Speaker {
            name: self.name.clone(),
            persona: self.persona.clone(),
            participant_id: self.participant_id,
            num_ctx: self.options.num_ctx,
        }
    }
}

/// The `400` for a `speaker_id` that names no present agent participant.
pub(crate) fn not_an_agent(participant_id: Uuid) -> Problem {
    Problem::validation_failed(format!(
        "participant {participant_id} is not an agent taking part in the discussion"
    ))
    .with_field_error(
        "speaker_id",
        "must be an agent participant present in the discussion",
    )
}

/// `base` with every option `over` sets replacing it: a participant's parameters
/// over its agent's.
pub(crate) fn merged(base: Options, over: Option<&Options>) -> Options {
    let Some(over) = over else {
        return base;
    };
    Options {
        temperature: over.temperature.or(base.temperature),
        top_p: over.top_p.or(base.top_p),
        top_k: over.top_k.or(base.top_k),
        repeat_penalty: over.repeat_penalty.or(base.repeat_penalty),
        seed: over.seed.or(base.seed),
        num_ctx: over.num_ctx.or(base.num_ctx),
        num_predict: over.num_predict.or(base.num_predict),
        stop: over.stop.clone().or(base.stop),
    }
}

/// The most tokens the moderator may answer with: a name.
const MODERATOR_TOKENS: u32 = 20;

/// The most tokens a summary may take.
const SUMMARY_TOKENS: u32 = 512;

/// Model calls on behalf of one caller in one discussion.
pub(crate) struct Models {
    pub db: Db,
    pub ollama: Ollama,
    pub policy: Policy,
    /// Carries the request id of the request that started the turn to Ollama.
    pub outbound: http::Request<()>,
    /// Who advanced the turn: usage and quotas count against them.
    pub user_id: Uuid,
    pub discussion_id: Uuid,
}

impl Models {
    /// Usage and quotas: for this caller, `agent_id`, and the discussion.
    pub(crate) fn call_for(&self, agent_id: Uuid) -> CallFor {
        CallFor {
            user_id: self.user_id,
            agent_id: Some(agent_id),
            discussion_id: Some(self.discussion_id),
        }
    }

    /// A short answer from `model` for `agent_id`, read whole, within the policy
    /// and quotas and recorded; the text and the tokens it used.
    async fn complete(
        &self,
        agent_id: Uuid,
        model: &str,
        messages: &[ollama::Message],
        options: Options,
    ) -> Result<(String, u64), Problem> {
        self.policy.check_model(model)?;
        let options = self.policy.bound(Some(self.policy.clamp(options)))?;
        let call_for = self.call_for(agent_id);
        policy::check_quotas(&self.db, &call_for).await?;
        let mut call = usage::Call::start(&self.db, &call_for, model, Kind::Chat).await?;
        let request = ChatRequest {
            model,
            messages,
            stream: true,
            options: Some(&options),
        };
        let answer = match self.ollama.chat(&self.outbound, &request).await {
            Ok(mut stream) => stream.whole(|_| call.token()).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok((text, last)) => {
                let outcome = call.outcome(&last);
                call.record(&self.db, Status::Succeeded, &outcome).await;
                let tokens =
                    u64::from(outcome.prompt_tokens) + u64::from(outcome.completion_tokens);
                Ok((text, tokens))
            }
            Err(error) => {
                let outcome = call.early_outcome(0, Some(error.to_string()));
                call.record(&self.db, Status::Failed, &outcome).await;
                Err(error.into())
            }
        }
    }

    /// The agent participant the moderator names to speak next, or the
    /// deterministic fallback when there is no moderator, its call fails, or it
    /// names nobody valid; and the tokens the call used. `None` only when no agent
    /// takes part.
    pub(crate) async fn moderator_choice(
        &self,
        discussion: &Discussion,
        history: &[Message],
    ) -> (Option<Uuid>, u64) {
        let moderator = discussion
            .moderator_id
            .and_then(|id| discussion.participant(id))
            .filter(|participant| participant.agent_id.is_some());
        let Some(moderator) = moderator else {
            return (speaker::fallback(discussion), 0);
        };
        match self.ask_moderator(discussion, moderator, history).await {
            Ok((answer, tokens)) => {
                let chosen = speaker::read_moderator_answer(discussion, &answer)
                    .or_else(|| speaker::fallback(discussion));
                (chosen, tokens)
            }
            Err(problem) => {
                eprintln!(
                    "discussion {}: the moderator could not choose ({problem}); falling back",
                    discussion.discussion_id
                );
                (speaker::fallback(discussion), 0)
            }
        }
    }

    async fn ask_moderator(
        &self,
        discussion: &Discussion,
        moderator: &Participant,
        history: &[Message],
    ) -> Result<(String, u64), Problem> {
        let agent_id = moderator.agent_id.unwrap_or_default();
        let model = moderator
            .model
            .clone()
            .ok_or_else(|| Problem::internal("the moderator has no model"))?;
        let messages = speaker::moderator_request(discussion, moderator, history);
        let options = Options {
            temperature: Some(0.0),
            num_predict: Some(MODERATOR_TOKENS),
            ..Options::default()
        };
        self.complete(agent_id, &model, &messages, options).await
    }

    /// `messages` folded into `previous` (the rolling summary) by the speaker's
    /// model; the new summary and the tokens the call used.
    pub(crate) async fn condense(
        &self,
        speaking: &Speaking,
        previous: &str,
        messages: &[Message],
        num_ctx: u32,
    ) -> Result<(String, u64), Problem> {
        let budget = num_ctx.saturating_sub(SUMMARY_TOKENS) as usize;
        let request = prompt::condense_request(previous, messages, budget);
        let options = Options {
            temperature: Some(0.0),
            num_ctx: Some(num_ctx),
            num_predict: Some(SUMMARY_TOKENS),
            ..Options::default()
        };
        let (summary, tokens) = self
            .complete(speaking.agent_id, &speaking.model, &request, options)
            .await?;
        let summary = summary.trim();
        if summary.is_empty() {
            return Err(Problem::upstream_unavailable(
                "the model answered an empty summary",
            ));
        }
        Ok((summary.to_owned(), tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_participants_parameters_override_its_agents_one_by_one() {
        let agent = Options {
            temperature: Some(0.7),
            top_k: Some(40),
            stop: Some(vec!["END".into()]),
            ..Options::default()
        };
        assert_eq!(merged(agent.clone(), None), agent);
        let over = Options {
            temperature: Some(0.1),
            num_ctx: Some(8192),
            ..Options::default()
        };
        let both = merged(agent, Some(&over));
        assert_eq!(both.temperature, Some(0.1));
        assert_eq!(both.top_k, Some(40));
        assert_eq!(both.num_ctx, Some(8192));
        assert_eq!(both.stop, Some(vec!["END".to_owned()]));
    }

    #[test]
    fn a_speaker_that_is_no_agent_is_a_400_naming_the_field() {
        let problem = not_an_agent(Uuid::nil());
        assert_eq!(problem.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(problem.errors()[0].field, "speaker_id");
    }
}
