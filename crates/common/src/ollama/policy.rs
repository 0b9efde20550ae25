//! The deployment's policy for model calls, from Spin variables: which models may
//! be used, the most tokens one request may generate, and the token quotas. Every
//! component that calls a model on someone's behalf (the AI component's chat, a
//! discussion's turns) checks the same policy, so no route is a way around it.
//!
//! | Spin variable | What it bounds |
//! |---|---|
//! | `allowed_models` | the models that may be called (names separated by commas; empty: all) |
//! | `max_tokens_per_request` | `options.num_predict`, and its value when none is given |
//! | `quota_tokens_per_*` | the tokens a user, an agent or a discussion may use (see [`crate::usage`]) |

use crate::Problem;
use crate::db::{Client, Db};
use crate::ollama::{Ollama, Options, same_model};
use crate::usage::{CallFor, Quotas};
use crate::variables;

/// What an admin allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `allowed_models`: empty allows every model.
    allowed_models: Vec<String>,
    /// `max_tokens_per_request`: the ceiling on `options.num_predict`, and its
    /// value when a request gives none.
    pub max_tokens: u32,
}

impl Policy {
    /// The policy the Spin variables set.
    pub async fn from_variables() -> Result<Self, Problem> {
        let allowed = variables::text("allowed_models").await?;
        Ok(Self::new(
            &allowed,
            variables::parsed("max_tokens_per_request").await?,
        ))
    }

    /// The policy allowing the models listed in `allowed` (separated by commas;
    /// none: every model), generating at most `max_tokens` per request.
    pub fn new(allowed: &str, max_tokens: u32) -> Self {
        Self {
            allowed_models: allowed
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
            max_tokens: max_tokens.max(1),
        }
    }

    /// `422` (field `model`) unless the policy allows `model`. Names compare as
    /// Ollama compares them (a bare name means `:latest`; case is ignored).
    pub fn check_model(&self, model: &str) -> Result<(), Problem> {
        if self.allowed_models.is_empty()
            || self
                .allowed_models
                .iter()
                .any(|allowed| same_model(allowed, model))
        {
            return Ok(());
        }
        Err(Problem::invalid_parameters(format!(
            "the model {model:?} is not allowed here; allowed: {}",
            self.allowed_models.join(", ")
        ))
        .with_field_error("model", "is not an allowed model"))
    }

    /// The options to send: `options` checked against their ranges and the token
    /// ceiling, with `num_predict` set to the ceiling when not given, so no request
    /// generates without a bound. `422` naming each field that is out of bounds
    /// (`options.<name>`).
    pub fn bound(&self, options: Option<Options>) -> Result<Options, Problem> {
        let mut options = options.unwrap_or_default();
        let mut v = crate::validate::Validator::default();
        options.check_into(&mut v);
        if let Some(asked) = options.num_predict {
            v.check(
                "options.num_predict",
                asked <= self.max_tokens,
                format!(
                    "must be at most {} (this deployment's limit), got {asked}",
                    self.max_tokens
                ),
            );
        }
        v.finish_as(crate::ProblemCode::InvalidParameters)?;
        options.num_predict.get_or_insert(self.max_tokens);
        Ok(options)
    }

    /// Options the server chose itself (a short internal call), clamped to the
    /// ceiling rather than refused: `num_predict` at most [`max_tokens`](Self::max_tokens).
    pub fn clamp(&self, mut options: Options) -> Options {
        let asked = options.num_predict.unwrap_or(self.max_tokens);
        options.num_predict = Some(asked.clamp(1, self.max_tokens));
        options
    }
}

/// `429 quota_exceeded` unless the quotas the Spin variables set allow a model
/// call for `call`, read through `client` (a connection, or a transaction).
pub async fn check_quotas(client: &impl Client, call: &CallFor) -> Result<(), Problem> {
    Quotas::from_variables().await?.check(client, call).await
}

/// The database and Ollama for a model call for `call`, once its quotas allow it
/// (`429 quota_exceeded` otherwise).
pub async fn within_quotas(call: &CallFor) -> Result<(Db, Ollama), Problem> {
    let db = Db::connect().await?;
    check_quotas(&db, call).await?;
    Ok((db, Ollama::from_variables().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_allows_every_model_and_a_bare_name_means_latest() {
        assert!(Policy::new("", 10).check_model("anything:7b").is_ok());
        let policy = Policy::new("llama3.2, qwen3:8b", 10);
        assert!(policy.check_model("llama3.2:latest").is_ok());
        assert!(policy.check_model("qwen3:8b").is_ok());
        let refused = policy.check_model("qwen3:32b").unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.errors()[0].field, "model");
    }

    #[test]
    fn the_token_ceiling_bounds_and_defaults_num_predict() {
        let policy = Policy::new("", 512);
        assert_eq!(policy.bound(None).unwrap().num_predict, Some(512));
        let asked = Options {
            num_predict: Some(100),
            ..Options::default()
        };
        assert_eq!(policy.bound(Some(asked)).unwrap().num_predict, Some(100));
        let greedy = Options {
            num_predict: Some(513),
            temperature: Some(9.0),
            ..Options::default()
        };
        let problem = policy.bound(Some(greedy)).unwrap_err();
        let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["options.temperature", "options.num_predict"]);
    }

    #[test]
    fn clamping_keeps_internal_calls_under_the_ceiling() {
        let policy = Policy::new("", 16);
        let short = Options {
            num_predict: Some(20),
            ..Options::default()
        };
        assert_eq!(policy.clamp(short).num_predict, Some(16));
        assert_eq!(policy.clamp(Options::default()).num_predict, Some(16));
    }
}
