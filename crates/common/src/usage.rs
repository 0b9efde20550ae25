//! Model usage: every call to a language model recorded, and quotas enforced.
//!
//! A call is a row of `model_calls` (`migrations/0003_model_calls.sql`): [`start`]
//! it before calling the model (after [`Quotas::check`]), and [`finish`] it with
//! Ollama's token counts and timings however it ended. [`Call`] does both and
//! keeps the clock and the token count in between. Whatever component makes the
//! call (AI, discussions, knowledge) records it here, so usage reports and quotas
//! see every token.
//!
//! Quotas count prompt and completion tokens together:
//!
//! | Quota (Spin variable) | Counts | Resets |
//! |---|---|---|
//! | `quota_tokens_per_user_per_day` | the user's calls since UTC midnight | at the next UTC midnight |
//! | `quota_tokens_per_agent_per_day` | the agent's calls since UTC midnight | at the next UTC midnight |
//! | `quota_tokens_per_discussion` | every call of the discussion | never |
//!
//! `0` is no quota. A call is refused once a quota is used up. The check reads what
//! finished calls recorded, so the call that crosses a quota completes, and calls
//! running at the same time all pass: a quota can be exceeded by the calls in
//! flight when it runs out, never by later ones.

use chrono::{Days, Utc};
use serde::Serialize;

use crate::db::{Client, DbError, Row};
use crate::ids::{self, Uuid};
use crate::time::Timestamp;
use crate::{Problem, variables};

/// Who and what a model call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallFor {
    pub user_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub discussion_id: Option<Uuid>,
}

/// What kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Chat,
    Embed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Embed => "embed",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// The token quotas in force; 0 is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quotas {
    pub per_user_per_day: i64,
    pub per_agent_per_day: i64,
    pub per_discussion: i64,
}

impl Quotas {
    /// The quotas the Spin variables set.
    pub async fn from_variables() -> Result<Self, Problem> {
        Ok(Self {
            per_user_per_day: variables::parsed("quota_tokens_per_user_per_day").await?,
            per_agent_per_day: variables::parsed("quota_tokens_per_agent_per_day").await?,
            per_discussion: variables::parsed("quota_tokens_per_discussion").await?,
        })
    }

    /// `429 quota_exceeded` if a quota that applies to `call` is used up, naming it
    /// and when it resets.
    pub async fn check(&self, db: &impl Client, call: &CallFor) -> Result<(), Problem> {
        if *self == Quotas::default() {
            return Ok(());
        }
        let today = Utc::now().date_naive();
        let midnight = Timestamp::from(today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
        let rows = db
            .query(
                "select
                     coalesce(sum(prompt_tokens + completion_tokens)
                         filter (where user_id = $1 and started_at >= $4), 0)::bigint as user_today,
                     coalesce(sum(prompt_tokens + completion_tokens)
                         filter (where agent_id = $2 and started_at >= $4), 0)::bigint as agent_today,
                     coalesce(sum(prompt_tokens + completion_tokens)
                         filter (where discussion_id = $3), 0)::bigint as discussion_total
                 from model_calls
                 where (user_id = $1 and started_at >= $4)
                    or (agent_id = $2 and started_at >= $4)
                    or discussion_id = $3",
                &[
                    call.user_id.into(),
                    call.agent_id.into(),
                    call.discussion_id.into(),
                    midnight.into(),
                ],
            )
            .await?;
        let row: &Row = rows
            .first()
            .ok_or_else(|| Problem::internal("the usage sum returned no row"))?;
        let tomorrow = today
            .checked_add_days(Days::new(1))
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map(|at| Timestamp::from(at.and_utc()));
        let used = |column: &str| row.get::<i64>(column);
        let exceeded = [
            (
                "tokens per user per day",
                self.per_user_per_day,
                used("user_today")?,
                true,
                tomorrow,
            ),
            (
                "tokens per agent per day",
                self.per_agent_per_day,
                used("agent_today")?,
                call.agent_id.is_some(),
                tomorrow,
            ),
            (
                "tokens per discussion",
                self.per_discussion,
                used("discussion_total")?,
                call.discussion_id.is_some(),
                None,
            ),
        ]
        .into_iter()
        .find(|(_, limit, used, applies, _)| *applies && *limit > 0 && used >= limit);
        match exceeded {
            None => Ok(()),
            Some((name, limit, used, _, resets)) => Err(quota_exceeded(name, limit, used, resets)),
        }
    }
}

/// The 429 for a used-up quota.
fn quota_exceeded(name: &str, limit: i64, used: i64, resets: Option<Timestamp>) -> Problem {
    let when = match resets {
        Some(at) => format!("it resets at {at}"),
        None => "it does not reset".to_owned(),
    };
    let problem = Problem::quota_exceeded(format!(
        "the quota of {limit} {name} is used up ({used} used); {when}"
    ));
    match resets {
        Some(at) => {
            let seconds = (chrono::DateTime::<Utc>::from(at) - Utc::now())
                .num_seconds()
                .max(1);
            problem.with_retry_after(seconds as u64)
        }
        None => problem,
    }
}

/// Records a call to `model` for `call` as running; returns its id for [`finish`].
pub async fn start(
    db: &impl Client,
    call: &CallFor,
    model: &str,
    kind: Kind,
) -> Result<Uuid, DbError> {
    let id = ids::new_id();
    db.execute(
        "insert into model_calls (model_call_id, user_id, agent_id, discussion_id, model, kind, status)
         values ($1, $2, $3, $4, $5, $6, 'running')",
        &[
            id.into(),
            call.user_id.into(),
            call.agent_id.into(),
            call.discussion_id.into(),
            model.to_owned().into(),
            kind.as_str().to_owned().into(),
        ],
    )
    .await?;
    Ok(id)
}

/// How a call went, as [`finish`] records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub first_token_ms: Option<f64>,
    pub duration_ms: f64,
    pub load_ns: Option<u64>,
    pub prompt_eval_ns: Option<u64>,
    pub eval_ns: Option<u64>,
    pub error: Option<String>,
}

/// Records how the call `id` ended.
pub async fn finish(
    db: &impl Client,
    id: Uuid,
    status: Status,
    outcome: &Outcome,
) -> Result<(), DbError> {
    let nanos = |value: Option<u64>| value.map(|ns| i64::try_from(ns).unwrap_or(i64::MAX));
    db.execute(
        "update model_calls set status = $2, prompt_tokens = $3, completion_tokens = $4,
             first_token_ms = $5, duration_ms = $6, load_ns = $7, prompt_eval_ns = $8,
             eval_ns = $9, error = $10, finished_at = now()
         where model_call_id = $1",
        &[
            id.into(),
            status.as_str().to_owned().into(),
            i32::try_from(outcome.prompt_tokens)
                .unwrap_or(i32::MAX)
                .into(),
            i32::try_from(outcome.completion_tokens)
                .unwrap_or(i32::MAX)
                .into(),
            outcome.first_token_ms.into(),
            outcome.duration_ms.into(),
            nanos(outcome.load_ns).into(),
            nanos(outcome.prompt_eval_ns).into(),
            nanos(outcome.eval_ns).into(),
            outcome.error.clone().into(),
        ],
    )
    .await?;
    Ok(())
}

/// A model call being made, from any component: recorded as `running` when it
/// starts, timed, its generated tokens counted as they come, and recorded as it
/// ended. Recording never fails the caller: an error writing the outcome is
/// logged, since the answer (perhaps half streamed) does not depend on it.
#[derive(Debug)]
pub struct Call {
    id: Uuid,
    started: std::time::Instant,
    first_token_ms: Option<f64>,
    completion_tokens: u32,
}

impl Call {
    /// Records a call to `model` for `call` as running (see [`start`]) and starts
    /// its clock.
    pub async fn start(
        db: &impl Client,
        call: &CallFor,
        model: &str,
        kind: Kind,
    ) -> Result<Self, DbError> {
        Ok(Self {
            id: start(db, call, model, kind).await?,
            started: std::time::Instant::now(),
            first_token_ms: None,
            completion_tokens: 0,
        })
    }

    /// The `model_calls` row's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Milliseconds since the call started.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Milliseconds from the start to the first token, once there was one.
    pub fn first_token_ms(&self) -> Option<f64> {
        self.first_token_ms
    }

    /// Tokens generated so far, as counted by [`token`](Self::token).
    pub fn completion_tokens(&self) -> u32 {
        self.completion_tokens
    }

    /// Notes a generated token.
    pub fn token(&mut self) {
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.elapsed_ms());
        }
        self.completion_tokens += 1;
    }

    /// The outcome of a call that ended before the model finished (it failed, or
    /// was cancelled): what it generated so far and, if it failed, why.
    /// `prompt_tokens` is what the caller knows of the prompt (Ollama reports it
    /// only at the end).
    pub fn early_outcome(&self, prompt_tokens: u32, error: Option<String>) -> Outcome {
        Outcome {
            prompt_tokens,
            completion_tokens: self.completion_tokens,
            first_token_ms: self.first_token_ms,
            duration_ms: self.elapsed_ms(),
            error,
            ..Outcome::default()
        }
    }

    /// Records how the call ended (see [`finish`]); a failure to record is logged.
    pub async fn record(&self, db: &impl Client, status: Status, outcome: &Outcome) {
        if let Err(error) = finish(db, self.id, status, outcome).await {
            eprintln!("recording model call {}: {error}", self.id);
        }
    }
}

/// Ollama's last chunk read as an outcome.
#[cfg(feature = "ollama")]
impl Call {
    /// The outcome of a call the model finished, with `last` (the `done` chunk)
    /// giving Ollama's token counts and timings.
    pub fn outcome(&self, last: &crate::ollama::ChatChunk) -> Outcome {
        Outcome {
            prompt_tokens: last.prompt_eval_count.unwrap_or(0),
            completion_tokens: last.eval_count.unwrap_or(self.completion_tokens),
            first_token_ms: self.first_token_ms,
            duration_ms: self.elapsed_ms(),
            load_ns: last.load_duration,
            prompt_eval_ns: last.prompt_eval_duration,
            eval_ns: last.eval_duration,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_daily_quota_says_which_and_when_it_resets() {
        let tomorrow: Timestamp = "2099-01-01T00:00:00Z".parse().unwrap();
        let problem = quota_exceeded("tokens per user per day", 1000, 1200, Some(tomorrow));
        assert_eq!(problem.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert!(problem.detail().contains("1000 tokens per user per day"));
        assert!(problem.detail().contains("resets at 2099-01-01T00:00:00"));
        assert!(problem.headers().contains_key(http::header::RETRY_AFTER));
    }

    #[test]
    fn a_discussion_quota_never_resets() {
        let problem = quota_exceeded("tokens per discussion", 10, 10, None);
        assert!(problem.detail().ends_with("it does not reset"));
        assert!(!problem.headers().contains_key(http::header::RETRY_AFTER));
    }
}
