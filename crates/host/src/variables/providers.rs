//! Where application variable values come from, highest priority first:
//! the host's environment (`SPIN_VARIABLE_<NAME>`), then each `static`
//! provider of the runtime configuration in file order. A variable no
//! provider knows takes its manifest default.
//!
//! That order is the one Spin documents ("the environment variable provider
//! always has the highest priority"). Spin 3's code appears to add the
//! environment provider after those of the runtime configuration, so under
//! `spin up` a static value may beat `SPIN_VARIABLE_<NAME>`; give a variable
//! in one place only when both hosts must agree.

use std::collections::BTreeMap;
use std::ffi::OsString;

use anyhow::bail;

/// The prefix Spin puts before an upper-cased variable name to find its
/// value in the environment (`api_key` → `SPIN_VARIABLE_API_KEY`).
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// A source of application variable values (Spin's "variables provider").
pub trait Provider {
    /// The value of the application variable `name`, if this provider has one.
    fn get(&self, name: &str) -> anyhow::Result<Option<String>>;
}

/// Reads the process environment; a trait so tests can supply their own.
pub trait Environment {
    fn var(&self, key: &str) -> Option<OsString>;
}

/// The host process's real environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, key: &str) -> Option<OsString> {
        std::env::var_os(key)
    }
}

/// Values from `SPIN_VARIABLE_<NAME>` environment variables (the host's
/// environment, not the component's).
pub struct EnvProvider<E = ProcessEnvironment> {
    environment: E,
}

impl EnvProvider {
    pub fn new() -> Self {
        EnvProvider {
            environment: ProcessEnvironment,
        }
    }
}

impl<E: Environment> EnvProvider<E> {
    #[cfg(test)]
    pub fn with(environment: E) -> Self {
        EnvProvider { environment }
    }
}

/// The environment variable holding `name`'s value.
pub fn env_key(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

impl<E: Environment> Provider for EnvProvider<E> {
    fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        let key = env_key(name);
        match self.environment.var(&key) {
            None => Ok(None),
            Some(value) => match value.into_string() {
                Ok(value) => Ok(Some(value)),
                // The value itself may be a secret: name the key only.
                Err(_) => bail!("environment variable `{key}` is not valid UTF-8"),
            },
        }
    }
}

/// Values written in the runtime configuration
/// (`[[variables_provider]]` with `type = "static"`).
#[derive(Default)]
pub struct StaticProvider {
    values: BTreeMap<String, String>,
}

impl StaticProvider {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        StaticProvider { values }
    }

    /// Every variable name this provider gives a value for.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl Provider for StaticProvider {
    fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.values.get(name).cloned())
    }
}

#[cfg(test)]
pub mod testing {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::Environment;

    /// A made-up environment for tests.
    #[derive(Default)]
    pub struct FakeEnvironment(pub HashMap<String, OsString>);

    impl FakeEnvironment {
        pub fn of(pairs: &[(&str, &str)]) -> Self {
            FakeEnvironment(
                pairs
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).into()))
                    .collect(),
            )
        }
    }

    impl Environment for FakeEnvironment {
        fn var(&self, key: &str) -> Option<OsString> {
            self.0.get(key).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::testing::FakeEnvironment;
    use super::*;

    #[test]
    fn the_environment_key_is_the_prefix_and_the_upper_cased_name() {
        assert_eq!(env_key("database_url"), "SPIN_VARIABLE_DATABASE_URL");
    }

    #[test]
    fn the_env_provider_reads_the_prefixed_upper_cased_key() {
        let provider = EnvProvider::with(FakeEnvironment::of(&[
            ("SPIN_VARIABLE_PORT", "5432"),
            ("port", "wrong"),
        ]));
        assert_eq!(provider.get("port").unwrap().as_deref(), Some("5432"));
        assert_eq!(provider.get("host").unwrap(), None);
    }

    #[test]
    fn a_non_utf8_environment_value_is_an_error_naming_the_key_only() {
        let mut environment = FakeEnvironment::default();
        environment.0.insert(
            "SPIN_VARIABLE_TOKEN".into(),
            OsString::from_vec(b"s3cr3t\xff".to_vec()),
        );
        let error = EnvProvider::with(environment)
            .get("token")
            .unwrap_err()
            .to_string();
        assert!(error.contains("SPIN_VARIABLE_TOKEN"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn the_static_provider_answers_only_its_own_names() {
        let provider = StaticProvider::new([("host".to_owned(), "db".to_owned())].into());
        assert_eq!(provider.get("host").unwrap().as_deref(), Some("db"));
        assert_eq!(provider.get("port").unwrap(), None);
    }
}
