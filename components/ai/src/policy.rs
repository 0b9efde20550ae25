//! The deployment's policy for model calls, from Spin variables: which models may
//! be used, the most tokens one request may generate, and the token quotas.

use arena_common::Problem;
use arena_common::db::Db;
use arena_common::ollama::{Ollama, Options, same_model};
use arena_common::usage::{CallFor, Quotas};
use arena_common::variables;

/// What an admin allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    /// `allowed_models`: names separated by commas; empty allows every model.
    allowed_models: Vec<String>,
    /// `max_tokens_per_request`: the ceiling on `options.num_predict`, and its
    /// value when a request gives none.
    pub max_tokens: u32,
}

impl Policy {
    pub(crate) async fn from_variables() -> Result<Self, Problem> {
        let allowed = variables::text("allowed_models").await?;
        Ok(Self::new(
            &allowed,
            variables::parsed("max_tokens_per_request").await?,
        ))
    }

    fn new(allowed: &str, max_tokens: u32) -> Self {
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
    pub(crate) fn check_model(&self, model: &str) -> Result<(), Problem> {
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
    /// generates without a bound. `422` naming each field that is out of bounds.
    pub(crate) fn bound(&self, options: Option<Options>) -> Result<Options, Problem> {
        let mut options = options.unwrap_or_default();
        let mut v = arena_common::validate::Validator::default();
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
        v.finish_as(arena_common::ProblemCode::InvalidParameters)?;
        options.num_predict.get_or_insert(self.max_tokens);
        Ok(options)
    }
}

/// The database and Ollama for a model call for `call`, once its quotas allow it
/// (`429 quota_exceeded` otherwise).
pub(crate) async fn within_quotas(call: &CallFor) -> Result<(Db, Ollama), Problem> {
    let db = Db::connect().await?;
    Quotas::from_variables().await?.check(&db, call).await?;
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
}
