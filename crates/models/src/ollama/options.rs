//! Ollama's `options` turned into sampling settings, range-checked: a value
//! the model cannot use is a 400 naming the option, not a surprise.

use super::error::ApiError;
use super::wire::Options;
use crate::generation::SamplingOptions;

/// `num_predict` asking for no limit, and asking to fill the context: both
/// mean "until the context is full" here.
const UNLIMITED: i64 = -1;
const FILL_CONTEXT: i64 = -2;

/// `options` as sampling settings. `num_ctx` is as asked: the caller caps it
/// at the model's context length.
pub fn sampling(options: &Options) -> Result<SamplingOptions, ApiError> {
    let defaults = SamplingOptions::default();
    let temperature = options.temperature.unwrap_or(defaults.temperature);
    if !(0.0..=100.0).contains(&temperature) {
        return Err(invalid("temperature", "must be between 0 and 100"));
    }
    let top_p = options.top_p.unwrap_or(defaults.top_p);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(invalid("top_p", "must be greater than 0 and at most 1"));
    }
    let top_k = match options.top_k {
        None => defaults.top_k,
        Some(k) => usize::try_from(k).map_err(|_| invalid("top_k", "must not be negative"))?,
    };
    let num_ctx = match options.num_ctx {
        None => defaults.num_ctx,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(_) => return Err(invalid("num_ctx", "must be at least 1")),
    };
    let num_predict = match options.num_predict {
        None | Some(UNLIMITED) | Some(FILL_CONTEXT) => None,
        Some(n) => Some(
            usize::try_from(n)
                .map_err(|_| invalid("num_predict", "must be -2, -1 or at least 0"))?,
        ),
    };
    let repeat_penalty = options.repeat_penalty.unwrap_or(defaults.repeat_penalty);
    if !(repeat_penalty > 0.0 && repeat_penalty.is_finite()) {
        return Err(invalid("repeat_penalty", "must be greater than 0"));
    }
    let repeat_last_n = match options.repeat_last_n {
        None => defaults.repeat_last_n,
        Some(-1) => num_ctx,
        Some(n) => {
            usize::try_from(n).map_err(|_| invalid("repeat_last_n", "must be -1 or at least 0"))?
        }
    };
    let stop = options.stop.clone().unwrap_or_default();
    if stop.iter().any(String::is_empty) {
        return Err(invalid("stop", "sequences must not be empty"));
    }
    Ok(SamplingOptions {
        temperature,
        top_p,
        top_k,
        // Ollama's seed is an int; any value, negative included, is a seed.
        seed: options.seed.map_or(defaults.seed, |seed| seed as u64),
        num_predict,
        num_ctx,
        stop,
        repeat_penalty,
        repeat_last_n,
    })
}

fn invalid(option: &str, rule: &str) -> ApiError {
    ApiError::bad_request(format!("invalid option \"{option}\": {rule}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> Options {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn unset_options_take_ollamas_defaults() {
        let sampling = sampling(&Options::default()).unwrap();
        let defaults = SamplingOptions::default();
        assert_eq!(sampling.temperature, defaults.temperature);
        assert_eq!(sampling.top_k, defaults.top_k);
        assert_eq!(sampling.num_ctx, defaults.num_ctx);
        assert_eq!(sampling.num_predict, None);
    }

    #[test]
    fn set_options_are_taken() {
        let given = options(serde_json::json!({
            "temperature": 0, "top_p": 0.5, "top_k": 7, "seed": 42, "num_predict": 12,
            "num_ctx": 1000, "stop": ["\n\n"], "repeat_penalty": 1.0, "repeat_last_n": -1
        }));
        let sampling = sampling(&given).unwrap();
        assert_eq!(sampling.temperature, 0.0);
        assert_eq!(sampling.top_p, 0.5);
        assert_eq!(sampling.top_k, 7);
        assert_eq!(sampling.seed, 42);
        assert_eq!(sampling.num_predict, Some(12));
        assert_eq!(sampling.num_ctx, 1000);
        assert_eq!(sampling.stop, ["\n\n"]);
        assert_eq!(sampling.repeat_last_n, 1000);
    }

    #[test]
    fn out_of_range_options_are_refused_by_name() {
        for (json, name) in [
            (serde_json::json!({"temperature": -1}), "temperature"),
            (serde_json::json!({"top_p": 0}), "top_p"),
            (serde_json::json!({"top_k": -3}), "top_k"),
            (serde_json::json!({"num_ctx": 0}), "num_ctx"),
            (serde_json::json!({"num_predict": -5}), "num_predict"),
            (serde_json::json!({"repeat_penalty": 0}), "repeat_penalty"),
            (serde_json::json!({"repeat_last_n": -2}), "repeat_last_n"),
            (serde_json::json!({"stop": [""]}), "stop"),
        ] {
            let error = sampling(&options(json)).unwrap_err();
            assert!(
                error.message().contains(&format!("\"{name}\"")),
                "{}",
                error.message()
            );
        }
    }
}
