//! The Spin application manifest (`spin.toml`, manifest version 2).
//!
//! Only the fields this host implements are accepted: an unknown field is
//! refused at load time (a typo or an unsupported Spin feature never passes
//! silently). Every field here is a real Spin manifest v2 field, so the same
//! file also runs under `spin up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::variables;

/// A parsed and validated manifest, with paths resolved against its folder.
#[derive(Debug)]
pub struct App {
    /// Folder holding `spin.toml`; relative paths in the manifest start here.
    pub dir: PathBuf,
    pub manifest: Manifest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, Component>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    // Descriptive fields: accepted so any Spin manifest parses, not used here.
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
    #[serde(rename = "authors")]
    _authors: Option<IgnoredAny>,
    #[serde(default)]
    pub trigger: ApplicationTriggers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTriggers {
    pub http: Option<ApplicationHttp>,
}

/// `[application.trigger.http]`: settings shared by every HTTP trigger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationHttp {
    /// A path prefix put in front of every route (Spin's `base`).
    #[serde(default = "root_path")]
    pub base: String,
}

fn root_path() -> String {
    "/".to_owned()
}

/// An application variable (`[variables]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// A secret's value never appears in logs or error messages.
    #[serde(default)]
    pub secret: bool,
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
}

/// One `[[trigger.http]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
    pub route: Route,
    pub component: String,
    #[serde(default)]
    pub dependencies: TriggerDependencies,
}

/// `dependencies` of a trigger: the HTTP middleware in front of its component.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDependencies {
    /// Outermost first: the first sees the request first and the response last.
    #[serde(default)]
    pub middleware: Vec<ComponentRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    pub component: String,
}

impl HttpTrigger {
    /// The middleware names, outermost first.
    pub fn middleware(&self) -> impl Iterator<Item = &str> {
        self.dependencies
            .middleware
            .iter()
            .map(|m| m.component.as_str())
    }

    /// Names what serves this trigger: the component, or the middleware
    /// chain in front of it (`auth>agents`). Triggers with the same chain
    /// share one composed component.
    pub fn handler(&self) -> String {
        let mut names: Vec<&str> = self.middleware().collect();
        names.push(&self.component);
        names.join(">")
    }
}

/// A trigger's route: a path pattern, or `{ private = true }` for a component
/// that is reachable only from inside the application.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Route {
    Path(String),
    Private(PrivateRoute),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateRoute {
    pub private: bool,
}

/// A `[component.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub source: Source,
    #[serde(rename = "description")]
    _description: Option<IgnoredAny>,
    /// Destinations the component may reach (`scheme://host:port`, with
    /// `*` wildcards and `{{ variable }}` templates; see `allowed_hosts`).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// The variables the component may read, each a template over the
    /// application's `[variables]` (`"{{ database_url }}"`).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Environment variables the component's WASI environment holds.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    pub build: Option<Build>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Path(PathBuf),
    Remote {
        url: String,
        #[serde(rename = "digest")]
        _digest: IgnoredAny,
    },
}

/// `[component.NAME.build]`: how `arena build` (like `spin build`) makes the Wasm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub command: Commands,
    pub workdir: Option<PathBuf>,
    /// `spin watch` globs; `arena` does not watch.
    #[serde(rename = "watch")]
    _watch: Option<IgnoredAny>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Commands {
    One(String),
    Many(Vec<String>),
}

impl Commands {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let commands: &[String] = match self {
            Commands::One(command) => std::slice::from_ref(command),
            Commands::Many(commands) => commands,
        };
        commands.iter().map(String::as_str)
    }
}

impl App {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> anyhow::Result<App> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest `{}`", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("invalid manifest `{}`", path.display()))?;
        manifest
            .validate()
            .with_context(|| format!("invalid manifest `{}`", path.display()))?;
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(App { dir, manifest })
    }

    /// Base path every route is mounted under (`/` unless the manifest says otherwise).
    pub fn base(&self) -> &str {
        self.manifest
            .application
            .trigger
            .http
            .as_ref()
            .map_or("/", |http| http.base.as_str())
    }

    /// Where a component's Wasm file lives on disk.
    pub fn source_path(&self, name: &str) -> anyhow::Result<PathBuf> {
        match &self.manifest.component[name].source {
            Source::Path(path) => Ok(self.dir.join(path)),
            Source::Remote { url, .. } => bail!(
                "component `{name}` has a remote source ({url}); this host runs local files only"
            ),
        }
    }
}

impl Manifest {
    fn validate(&self) -> anyhow::Result<()> {
        if self.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version is {}; this host reads version 2",
                self.spin_manifest_version
            );
        }
        for (index, trigger) in self.trigger.http.iter().enumerate() {
            if !self.component.contains_key(&trigger.component) {
                bail!(
                    "trigger.http[{index}] names component `{}`, which is not defined",
                    trigger.component
                );
            }
            for middleware in trigger.middleware() {
                if !self.component.contains_key(middleware) {
                    bail!(
                        "trigger.http[{index}] names middleware `{middleware}`, which is not defined"
                    );
                }
            }
            match &trigger.route {
                Route::Path(route) if !route.starts_with('/') => {
                    bail!("trigger.http[{index}] route `{route}` must start with `/`")
                }
                Route::Private(PrivateRoute { private: false }) => {
                    bail!("trigger.http[{index}] route: `private = false` is not a route")
                }
                _ => {}
            }
        }
        variables::check_declared(&self.variables)?;
        for (name, component) in &self.component {
            variables::check_component_table(name, &component.variables, &self.variables)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Manifest> {
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    const MINIMAL: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "demo"
        [[trigger.http]]
        route = "/v1/..."
        component = "meta"
        [component.meta]
        source = "meta.wasm"
        allowed_outbound_hosts = []
        [component.meta.build]
        command = "cargo build"
    "#;

    #[test]
    fn a_minimal_manifest_parses() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.trigger.http.len(), 1);
        let build = manifest.component["meta"].build.as_ref().unwrap();
        assert_eq!(build.command.iter().collect::<Vec<_>>(), ["cargo build"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = MINIMAL.replace(
            "allowed_outbound_hosts = []",
            "key_value_stores = [\"default\"]",
        );
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains("key_value_stores"), "{error}");
    }

    #[test]
    fn a_trigger_naming_a_missing_component_is_refused() {
        let text = MINIMAL.replace("component = \"meta\"", "component = \"ghost\"");
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("`ghost`"), "{error}");
    }

    #[test]
    fn manifest_version_one_is_refused() {
        let text = MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(parse(&text).is_err());
    }

    #[test]
    fn a_component_variable_naming_an_undeclared_application_variable_is_refused() {
        let text = MINIMAL.replace(
            "[component.meta.build]",
            "[component.meta.variables]\nurl = \"{{ database_url }}\"\n[component.meta.build]",
        );
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("`database_url`"), "{error}");
        let declared = text.replace(
            "[[trigger.http]]",
            "[variables]\ndatabase_url = { required = true }\n[[trigger.http]]",
        );
        parse(&declared).unwrap();
    }

    #[test]
    fn middleware_is_named_outermost_first_in_the_handler() {
        let text = MINIMAL.replace(
            "component = \"meta\"\n",
            "component = \"meta\"\n        dependencies.middleware = [{ component = \"meta\" }]\n",
        );
        let manifest = parse(&text).unwrap();
        assert_eq!(manifest.trigger.http[0].handler(), "meta>meta");
    }

    #[test]
    fn undefined_middleware_is_refused() {
        let text = MINIMAL.replace(
            "component = \"meta\"\n",
            "component = \"meta\"\n        dependencies.middleware = [{ component = \"auth\" }]\n",
        );
        let error = format!("{:#}", parse(&text).unwrap_err());
        assert!(error.contains("middleware `auth`"), "{error}");
    }

    #[test]
    fn private_routes_parse() {
        let text = MINIMAL.replace("route = \"/v1/...\"", "route = { private = true }");
        let manifest = parse(&text).unwrap();
        assert!(matches!(
            manifest.trigger.http[0].route,
            Route::Private(PrivateRoute { private: true })
        ));
    }
}
