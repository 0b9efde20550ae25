//! The Spin runtime configuration file (`arena up --runtime-config FILE`,
//! what `spin up --runtime-config-file FILE` reads): settings that differ
//! between deployments of the same application.
//!
//! This host reads Spin's variables providers, in Spin's format, so the same
//! file works under `spin up`:
//!
//! ```toml
//! [[variables_provider]]   # Spin also accepts the older name `config_provider`
//! type = "static"
//! values = { ollama_url = "http://localhost:11434" }
//! ```
//!
//! Static providers rank below the environment (`SPIN_VARIABLE_<NAME>`) and
//! above manifest defaults; an earlier provider beats a later one. Every
//! other section, and every other provider type, is refused by name: a
//! setting the operator expects to apply must never be silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::variables::providers::{Provider, StaticProvider};

/// The sections of the file this host reads.
#[derive(Default)]
pub struct RuntimeConfig {
    /// `static` variables providers, in file order.
    pub variables: Vec<StaticProvider>,
}

/// Spin's names for the variables provider list, current first.
const PROVIDER_KEYS: [&str; 2] = ["variables_provider", "config_provider"];

/// Provider types Spin knows but this host does not implement.
const UNSUPPORTED_PROVIDERS: [&str; 3] = ["env", "vault", "azure_key_vault"];

/// `type = "static"`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticConfig {
    /// Checked to be strings by hand: serde's type errors quote the value.
    values: toml::Table,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> anyhow::Result<RuntimeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config `{}`", path.display()))?;
        RuntimeConfig::parse(&text)
            .with_context(|| format!("invalid runtime config `{}`", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<RuntimeConfig> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|error| syntax_error(text, &error))?;
        let mut lists = PROVIDER_KEYS
            .iter()
            .filter_map(|key| Some((*key, table.remove(*key)?)))
            .collect::<Vec<_>>();
        if let Some(section) = table.keys().next() {
            bail!(
                "section `{section}` is not supported by this host (it reads `variables_provider` only)"
            );
        }
        if lists.len() > 1 {
            bail!("give `variables_provider` or its older name `config_provider`, not both");
        }
        let mut config = RuntimeConfig::default();
        let Some((key, list)) = lists.pop() else {
            return Ok(config);
        };
        let toml::Value::Array(entries) = list else {
            bail!("`{key}` must be an array of tables (`[[{key}]]`)");
        };
        for (index, entry) in entries.into_iter().enumerate() {
            let place = format!("{key}[{index}]");
            let toml::Value::Table(mut entry) = entry else {
                bail!("`{place}` must be a table");
            };
            let kind = match entry.remove("type") {
                Some(toml::Value::String(kind)) => kind,
                Some(_) => bail!("`{place}`: `type` must be a string"),
                None => bail!("`{place}` has no `type` (this host supports `type = \"static\"`)"),
            };
            match kind.as_str() {
                "static" => {
                    let provider: StaticConfig = toml::Value::Table(entry)
                        .try_into()
                        .with_context(|| format!("`{place}` (type \"static\")"))?;
                    let values = provider
                        .values
                        .into_iter()
                        .map(|(name, value)| match value {
                            toml::Value::String(value) => Ok((name, value)),
                            _ => bail!("`{place}`: `values.{name}` must be a string"),
                        })
                        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
                    config.variables.push(StaticProvider::new(values));
                }
                kind if UNSUPPORTED_PROVIDERS.contains(&kind) => bail!(
                    "`{place}`: provider type \"{kind}\" is not supported by this host (it supports \"static\"; `SPIN_VARIABLE_<NAME>` environment variables always apply)"
                ),
                kind => bail!("`{place}`: unknown provider type \"{kind}\""),
            }
        }
        Ok(config)
    }

    /// The variables providers, highest priority first.
    pub fn providers(&self) -> impl Iterator<Item = &dyn Provider> {
        self.variables
            .iter()
            .map(|provider| provider as &dyn Provider)
    }

    /// Names the file gives values for that `is_declared` refuses: likely
    /// typos, worth a warning.
    pub fn undeclared_names(&self, is_declared: impl Fn(&str) -> bool) -> Vec<&str> {
        self.variables
            .iter()
            .flat_map(StaticProvider::names)
            .filter(|name| !is_declared(name))
            .collect()
    }
}

/// A TOML syntax error by position only: the toml crate's own message
/// quotes the offending line, which may hold a secret value.
fn syntax_error(text: &str, error: &toml::de::Error) -> anyhow::Error {
    let Some(span) = error.span() else {
        return anyhow::anyhow!("TOML syntax error: {}", error.message());
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    anyhow::anyhow!(
        "TOML syntax error at line {line}, column {column}: {}",
        error.message()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        format!(
            "{:#}",
            RuntimeConfig::parse(text).err().expect("must be refused")
        )
    }

    #[test]
    fn an_empty_file_has_no_providers() {
        assert!(RuntimeConfig::parse("").unwrap().variables.is_empty());
    }

    #[test]
    fn static_providers_are_read_in_file_order() {
        let config = RuntimeConfig::parse(
            r#"
            [[variables_provider]]
            type = "static"
            values = { host = "first" }

            [[variables_provider]]
            type = "static"
            [variables_provider.values]
            host = "second"
            port = "5432"
            "#,
        )
        .unwrap();
        let values: Vec<Option<String>> = config
            .providers()
            .map(|provider| provider.get("host").unwrap())
            .collect();
        assert_eq!(values, [Some("first".into()), Some("second".into())]);
    }

    #[test]
    fn the_older_config_provider_name_is_accepted() {
        let config =
            RuntimeConfig::parse("[[config_provider]]\ntype = \"static\"\nvalues = { a = \"1\" }")
                .unwrap();
        assert_eq!(config.variables.len(), 1);
    }

    #[test]
    fn both_names_at_once_are_refused() {
        let text = "[[config_provider]]\ntype = \"static\"\nvalues = {}\n[[variables_provider]]\ntype = \"static\"\nvalues = {}";
        assert!(error(text).contains("not both"));
    }

    #[test]
    fn unsupported_sections_are_refused_by_name() {
        let message = error("[key_value_store.default]\ntype = \"redis\"");
        assert!(message.contains("`key_value_store`"), "{message}");
    }

    #[test]
    fn unsupported_provider_types_are_refused_by_name() {
        let message = error("[[variables_provider]]\ntype = \"vault\"\nurl = \"http://v\"");
        assert!(message.contains("\"vault\""), "{message}");
        assert!(message.contains("variables_provider[0]"), "{message}");
        let message = error("[[variables_provider]]\ntype = \"statik\"");
        assert!(
            message.contains("unknown provider type \"statik\""),
            "{message}"
        );
    }

    #[test]
    fn unknown_fields_of_a_static_provider_are_refused() {
        let message =
            error("[[variables_provider]]\ntype = \"static\"\nvalues = {}\nprefix = \"X\"");
        assert!(message.contains("prefix"), "{message}");
    }

    #[test]
    fn a_provider_without_type_is_refused() {
        let message = error("[[variables_provider]]\nvalues = {}");
        assert!(message.contains("no `type`"), "{message}");
    }

    #[test]
    fn non_string_values_are_refused_without_quoting_them() {
        let message = error("[[variables_provider]]\ntype = \"static\"\nvalues = { pin = 918273 }");
        assert!(
            message.contains("`values.pin` must be a string"),
            "{message}"
        );
        assert!(!message.contains("918273"), "{message}");
    }

    #[test]
    fn a_syntax_error_gives_its_position_without_quoting_the_line() {
        let message =
            error("[[variables_provider]]\ntype = \"static\"\nvalues = { token = \"hunter2\" ");
        assert!(message.contains("line 3"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn undeclared_names_are_reported_for_a_warning() {
        let config = RuntimeConfig::parse(
            "[[variables_provider]]\ntype = \"static\"\nvalues = { host = \"h\", hots = \"typo\" }",
        )
        .unwrap();
        assert_eq!(config.undeclared_names(|name| name == "host"), ["hots"]);
    }
}
