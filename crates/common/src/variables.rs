//! Settings from Spin variables, parsed.
//!
//! Every variable a component reads is declared in spin.toml with its default, so a
//! missing or unparsable value means a broken deployment: a 500 whose logged cause
//! names the variable and what was wrong, never its (possibly secret) value.

use std::fmt::Display;
use std::str::FromStr;

use crate::Problem;

/// The variable `name` as text.
pub async fn text(name: &str) -> Result<String, Problem> {
    spin_sdk::variables::get(name)
        .await
        .map_err(|error| Problem::internal(format!("reading the variable {name}: {error}")))
}

/// The variable `name`, parsed as a `T` (a number, a `bool`, ...).
pub async fn parsed<T>(name: &str) -> Result<T, Problem>
where
    T: FromStr,
    T::Err: Display,
{
    let value = text(name).await?;
    value
        .trim()
        .parse()
        .map_err(|error| Problem::internal(format!("the variable {name} is not valid: {error}")))
}
