//! Spin application variables: `[variables]` in the manifest, the values
//! providers give them, and each component's `variables` table of templates
//! over them, which is all a component can read (`spin:variables/get`).
//!
//! Everything is resolved once, before the host listens: a missing required
//! variable or a template naming an undeclared variable stops start-up, and
//! `get` is then a lookup. Spin asks its providers on every `get`; with the
//! environment and static providers the answer cannot change while the host
//! runs, so resolving early loses nothing and fails sooner.
//!
//! Values of `secret = true` variables, and of anything built from them,
//! never appear in a log line or an error message: errors name variables,
//! never quote values.

pub mod providers;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::{Context, bail};

use crate::manifest;
use providers::Provider;
use template::{Part, Template};

/// Checks `name` against Spin's rules for variable names, returning why it
/// is refused. Names become environment keys (`SPIN_VARIABLE_<NAME>`), so
/// they are lowercase ASCII letters, digits and single underscores, start
/// with a letter and end with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("it is empty".into());
    };
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "it contains {bad:?}; names may hold only lowercase letters, digits and `_`"
        ));
    }
    if !first.is_ascii_lowercase() {
        return Err("it must start with a lowercase letter".into());
    }
    if name.ends_with('_') {
        return Err("it must end with a letter or digit".into());
    }
    if name.contains("__") {
        return Err("it contains `__`; underscores must be single".into());
    }
    Ok(())
}

/// Checks the manifest's `[variables]`: names, and that each has exactly one
/// of `default` and `required = true`.
pub fn check_declared(declared: &BTreeMap<String, manifest::Variable>) -> anyhow::Result<()> {
    for (name, variable) in declared {
        if let Err(reason) = check_name(name) {
            bail!("variable name `{name}` is invalid: {reason}");
        }
        match (variable.required, &variable.default) {
            (true, Some(_)) => bail!("variable `{name}` is required and has a default; choose one"),
            (false, None) => {
                bail!("variable `{name}` needs a `default` or `required = true`")
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a component's `variables` table: names, and that every template
/// parses and refers only to declared application variables.
pub fn check_component_table(
    component: &str,
    table: &BTreeMap<String, String>,
    declared: &BTreeMap<String, manifest::Variable>,
) -> anyhow::Result<()> {
    for (key, text) in table {
        if let Err(reason) = check_name(key) {
            bail!("component `{component}`: variable name `{key}` is invalid: {reason}");
        }
        parse_declared(text, |name| declared.contains_key(name))
            .with_context(|| format!("component `{component}`: variable `{key}`"))?;
    }
    Ok(())
}

/// Parses `text` as a template whose variables all satisfy `is_declared`.
/// Templates are manifest text, so quoting them in errors reveals no value.
pub fn parse_declared(text: &str, is_declared: impl Fn(&str) -> bool) -> anyhow::Result<Template> {
    let template =
        Template::parse(text).with_context(|| format!("template \"{text}\" is malformed"))?;
    if let Some(unknown) = template.variables().find(|name| !is_declared(name)) {
        bail!("template \"{text}\" refers to `{unknown}`, which is not declared in `[variables]`");
    }
    Ok(template)
}

/// One application variable's value.
struct Value {
    text: String,
    secret: bool,
}

/// Every application variable with its value, resolved at start-up.
pub struct Variables {
    values: HashMap<String, Value>,
}

/// A rendered template; `secret` when any variable in it is secret, so the
/// text must not be shown.
pub struct Rendered {
    pub text: String,
    pub secret: bool,
}

impl Variables {
    /// Gives each declared variable the value of the first provider that has
    /// one, else its default. Fails naming every required variable left
    /// without a value.
    pub fn resolve(
        declared: &BTreeMap<String, manifest::Variable>,
        providers: &[&dyn Provider],
    ) -> anyhow::Result<Variables> {
        let mut values = HashMap::new();
        let mut missing = Vec::new();
        for (name, variable) in declared {
            let mut provided = None;
            for provider in providers {
                provided = provider
                    .get(name)
                    .with_context(|| format!("cannot read the value of variable `{name}`"))?;
                if provided.is_some() {
                    break;
                }
            }
            match provided.or_else(|| variable.default.clone()) {
                Some(text) => {
                    let secret = variable.secret;
                    values.insert(name.clone(), Value { text, secret });
                }
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|name| format!("`{name}`")).collect();
            let keys: Vec<String> = missing
                .iter()
                .map(|name| providers::env_key(name))
                .collect();
            bail!(
                "required variable {} has no value: set {} in the environment, or give a value in the runtime config (a `[[variables_provider]]` with `type = \"static\"`)",
                names.join(", "),
                keys.join(", ")
            );
        }
        Ok(Variables { values })
    }

    pub fn is_declared(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Fills in `template`. Its variables must be declared (templates are
    /// checked with [`parse_declared`]); an undeclared one is reported by name.
    pub fn render(&self, template: &Template) -> Result<Rendered, UndeclaredVariable> {
        let mut text = String::new();
        let mut secret = false;
        for part in template.parts() {
            match part {
                Part::Literal(literal) => text.push_str(literal),
                Part::Variable(name) => {
                    let value = self
                        .values
                        .get(name)
                        .ok_or_else(|| UndeclaredVariable(name.clone()))?;
                    text.push_str(&value.text);
                    secret |= value.secret;
                }
            }
        }
        Ok(Rendered { text, secret })
    }

    /// Resolves a component's `variables` table into what it may `get`.
    pub fn for_component(
        &self,
        component: &str,
        table: &BTreeMap<String, String>,
    ) -> anyhow::Result<ComponentVariables> {
        let mut values = HashMap::new();
        for (key, text) in table {
            let template = parse_declared(text, |name| self.is_declared(name))
                .with_context(|| format!("component `{component}`: variable `{key}`"))?;
            let rendered = self.render(&template)?;
            values.insert(key.clone(), rendered.text);
        }
        Ok(ComponentVariables {
            component: component.to_owned(),
            values,
        })
    }
}

impl fmt::Debug for Variables {
    /// Names only: values may be secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// A template named a variable `[variables]` does not declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeclaredVariable(pub String);

impl fmt::Display for UndeclaredVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not declared in `[variables]`", self.0)
    }
}

impl std::error::Error for UndeclaredVariable {}

/// The variables one component may read: exactly its own `variables` table.
pub struct ComponentVariables {
    component: String,
    values: HashMap<String, String>,
}

/// Why `get` gave no value; the messages reach the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    InvalidName(String),
    Undefined(String),
}

impl ComponentVariables {
    /// The variables of components composed into one instance (middleware
    /// and its handler): each may read any of them; a later component's
    /// value wins on a shared name.
    pub fn merged<'a>(
        parts: impl IntoIterator<Item = &'a ComponentVariables>,
    ) -> ComponentVariables {
        let mut names = Vec::new();
        let mut values = HashMap::new();
        for part in parts {
            names.push(part.component.as_str());
            values.extend(part.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        ComponentVariables {
            component: names.join(">"),
            values,
        }
    }

    pub fn get(&self, name: &str) -> Result<String, GetError> {
        if let Err(reason) = check_name(name) {
            return Err(GetError::InvalidName(format!(
                "variable name {name:?} is invalid: {reason}"
            )));
        }
        self.values.get(name).cloned().ok_or_else(|| {
            GetError::Undefined(format!(
                "component `{}` has no variable {name:?} (a component reads only its own `[component.{}.variables]`)",
                self.component, self.component
            ))
        })
    }
}

impl fmt::Debug for ComponentVariables {
    /// Names only: values may be built from secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentVariables")
            .field("component", &self.component)
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::providers::testing::FakeEnvironment;
    use super::providers::{EnvProvider, StaticProvider};
    use super::*;

    fn declared(text: &str) -> BTreeMap<String, manifest::Variable> {
        toml::from_str(text).unwrap()
    }

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    const DECLARED: &str = r#"
        host = { default = "localhost" }
        port = { default = "5432" }
        password = { required = true, secret = true }
    "#;

    fn with_password() -> StaticProvider {
        StaticProvider::new(table(&[("password", "hunter2")]))
    }

    #[test]
    fn valid_names_pass_and_each_rule_is_enforced() {
        for name in ["a", "abc", "a1b2", "a_1", "database_url"] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
        for name in ["", "Abc", "1abc", "_a", "a_", "a__b", "a-b", "a.b", "ü"] {
            assert!(check_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn a_variable_with_neither_default_nor_required_is_refused() {
        let error = check_declared(&declared("x = {}")).unwrap_err().to_string();
        assert!(error.contains("`x`"), "{error}");
    }

    #[test]
    fn an_invalid_application_variable_name_is_refused_with_the_name() {
        let error = check_declared(&declared("Api_Key = { default = \"\" }"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`Api_Key`"), "{error}");
    }

    #[test]
    fn a_component_template_naming_an_undeclared_variable_is_refused() {
        let error = check_component_table(
            "api",
            &table(&[("url", "http://{{ hots }}")]),
            &declared(DECLARED),
        )
        .unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("`api`"), "{error}");
        assert!(error.contains("`url`"), "{error}");
        assert!(error.contains("`hots`"), "{error}");
    }

    #[test]
    fn a_malformed_component_template_is_refused_quoting_it() {
        let error = check_component_table(
            "api",
            &table(&[("url", "http://{{ host")]),
            &declared(DECLARED),
        )
        .unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("\"http://{{ host\""), "{error}");
    }

    #[test]
    fn the_environment_beats_the_runtime_config_which_beats_the_default() {
        let declared = declared(DECLARED);
        let env = EnvProvider::with(FakeEnvironment::of(&[("SPIN_VARIABLE_HOST", "from-env")]));
        let file = StaticProvider::new(table(&[
            ("host", "from-file"),
            ("port", "6543"),
            ("password", "hunter2"),
        ]));
        let variables = Variables::resolve(&declared, &[&env, &file]).unwrap();
        let component = variables
            .for_component("c", &table(&[("h", "{{ host }}"), ("p", "{{ port }}")]))
            .unwrap();
        assert_eq!(component.get("h").unwrap(), "from-env");
        assert_eq!(component.get("p").unwrap(), "6543");

        let variables = Variables::resolve(&declared, &[&with_password()]).unwrap();
        let component = variables
            .for_component("c", &table(&[("p", "{{ port }}")]))
            .unwrap();
        assert_eq!(component.get("p").unwrap(), "5432");
    }

    #[test]
    fn an_earlier_static_provider_beats_a_later_one() {
        let first = StaticProvider::new(table(&[("password", "first")]));
        let second = StaticProvider::new(table(&[("password", "second")]));
        let variables = Variables::resolve(&declared(DECLARED), &[&first, &second]).unwrap();
        let component = variables
            .for_component("c", &table(&[("p", "{{ password }}")]))
            .unwrap();
        assert_eq!(component.get("p").unwrap(), "first");
    }

    #[test]
    fn a_missing_required_variable_is_refused_with_its_name_and_environment_key() {
        let error = Variables::resolve(&declared(DECLARED), &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("`password`"), "{error}");
        assert!(error.contains("SPIN_VARIABLE_PASSWORD"), "{error}");
    }

    #[test]
    fn templates_combine_text_and_several_variables() {
        let variables = Variables::resolve(&declared(DECLARED), &[&with_password()]).unwrap();
        let component = variables
            .for_component(
                "c",
                &table(&[(
                    "url",
                    "postgres://app:{{ password }}@{{ host }}:{{port}}/arena",
                )]),
            )
            .unwrap();
        assert_eq!(
            component.get("url").unwrap(),
            "postgres://app:hunter2@localhost:5432/arena"
        );
    }

    #[test]
    fn a_rendered_template_using_a_secret_is_marked_secret() {
        let variables = Variables::resolve(&declared(DECLARED), &[&with_password()]).unwrap();
        let secret = variables
            .render(&Template::parse("x{{ password }}").unwrap())
            .unwrap();
        assert!(secret.secret);
        let public = variables
            .render(&Template::parse("{{ host }}").unwrap())
            .unwrap();
        assert!(!public.secret);
    }

    #[test]
    fn a_component_reads_only_its_own_table() {
        let variables = Variables::resolve(&declared(DECLARED), &[&with_password()]).unwrap();
        let component = variables
            .for_component("c", &table(&[("h", "{{ host }}")]))
            .unwrap();
        // `port` is an application variable, but not in this component's table.
        assert!(matches!(component.get("port"), Err(GetError::Undefined(_))));
        assert!(matches!(
            component.get("Host"),
            Err(GetError::InvalidName(_))
        ));
        assert!(matches!(
            component.get("h__x"),
            Err(GetError::InvalidName(_))
        ));
    }

    #[test]
    fn debug_output_shows_names_but_no_values() {
        let variables = Variables::resolve(&declared(DECLARED), &[&with_password()]).unwrap();
        let component = variables
            .for_component("c", &table(&[("p", "{{ password }}")]))
            .unwrap();
        for shown in [format!("{variables:?}"), format!("{component:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert!(format!("{component:?}").contains("\"p\""));
    }
}
