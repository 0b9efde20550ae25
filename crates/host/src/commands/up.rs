//! `arena up`: validates everything, loads every component, applies pending
//! migrations, starts the realtime hub (and the embedded models where no
//! Ollama answers), then listens.
//!
//! All configuration errors surface before the socket is bound, so a broken
//! deployment fails at start rather than on its first request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::migrate;
use crate::allowed_hosts::AllowedHosts;
use crate::embedded::EmbeddedArgs;
use crate::manifest::{App, HttpTrigger, Route};
use crate::realtime::{Realtime, RealtimeArgs};
use crate::routes::Router;
use crate::runtime::chaining::Dispatch;
use crate::runtime::compose;
use crate::runtime::{CompileCache, ComponentConfig, Limits, Runtime};
use crate::runtime_config::RuntimeConfig;
use crate::server::{self, Application};
use crate::variables::Variables;
use crate::variables::providers::{EnvProvider, Provider};
use crate::variables::template::Template;

/// Spin's default address.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

#[derive(clap::Args)]
pub struct Up {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "ARENA_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// The application manifest.
    #[arg(long, short = 'f', env = "ARENA_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,

    /// Spin runtime configuration file (what `spin up --runtime-config-file`
    /// reads); this host reads its `static` variables providers.
    #[arg(long, env = "ARENA_RUNTIME_CONFIG")]
    runtime_config: Option<PathBuf>,

    /// Run `arena build` first.
    #[arg(long)]
    build: bool,

    /// Where compiled components are cached [default: $XDG_CACHE_HOME/arena or ~/.cache/arena].
    #[arg(long, env = "ARENA_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Time a component has to start its response.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,

    /// Time a component has to finish streaming its response body.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    response_timeout: Duration,

    /// Requests handled at once (each in its own instance); more wait their turn.
    #[arg(long, default_value_t = 256)]
    max_concurrent_requests: u32,

    /// Largest linear memory one instance may use, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_limit_mib: usize,

    /// Largest request body accepted, in MiB (a larger Content-Length gets 413).
    #[arg(long, default_value_t = 32)]
    max_request_body_mib: u64,

    #[command(flatten)]
    database: migrate::Database,

    /// Start without applying migrations (for a deployment that runs `arena migrate` itself).
    #[arg(long, conflicts_with = "migrations")]
    no_migrate: bool,

    /// Do not run the realtime hub here (a deployment that runs `arena sidecar`
    /// replicas beside it instead).
    #[arg(long)]
    no_realtime: bool,

    #[command(flatten)]
    realtime: RealtimeArgs,

    #[command(flatten)]
    embedded: EmbeddedArgs,
}

/// The application variable with Ollama's address: where the embedded models
/// are served when nothing else answers there.
const OLLAMA_URL_VARIABLE: &str = "ollama_url";

/// The application variable the realtime hub reads the event log from: the
/// database the components write their events to.
const DATABASE_URL_VARIABLE: &str = "database_url";

/// The application variable access tokens are verified with.
const SIGNING_KEYS_VARIABLE: &str = "jwt_signing_keys";

impl Up {
    pub async fn run(self) -> anyhow::Result<()> {
        let app = App::load(&self.manifest)?;
        let application = &app.manifest.application;
        tracing::info!(
            application = %application.name,
            version = application.version.as_deref().unwrap_or("-"),
            manifest = %self.manifest.display(),
            "starting"
        );
        if self.max_concurrent_requests == 0 {
            bail!("--max-concurrent-requests must be at least 1");
        }
        if self.build {
            super::build::build(&app, &[]).await?;
        }
        let migrations = match self.no_migrate {
            true => None,
            false => Some(self.database.load(&app).await?),
        };
        let runtime_config = match &self.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let variables = resolve_variables(&app, &runtime_config)?;
        let configs = component_configs(&app, &variables)?;
        let realtime_config = self
            .realtime
            .config(variable(&variables, SIGNING_KEYS_VARIABLE)?)?;
        let realtime_database = variable(&variables, DATABASE_URL_VARIABLE)?;

        let runtime = Runtime::new(Limits {
            request_timeout: self.request_timeout,
            response_timeout: self.response_timeout,
            memory_bytes: self.memory_limit_mib << 20,
            // One extra instance per request in flight covers an instance
            // still draining its body while the next request starts.
            max_instances: self.max_concurrent_requests * 2,
        })?;
        let cache = CompileCache::new(self.cache_dir.clone().unwrap_or_else(default_cache_dir));
        let components = load_components(&app, &runtime, &configs, &cache).await?;

        let routes: Vec<(&str, String)> = app
            .manifest
            .trigger
            .http
            .iter()
            .filter_map(|trigger| match &trigger.route {
                Route::Path(route) => Some((route.as_str(), trigger.handler())),
                Route::Private(_) => None,
            })
            .collect();
        let routes = routes
            .iter()
            .map(|(route, handler)| (*route, handler.as_str()));
        let (router, duplicates) = Router::build(app.base(), routes);
        for duplicate in duplicates {
            tracing::warn!(
                route = %duplicate.route,
                "route given twice: `{}` replaces `{}`",
                duplicate.by,
                duplicate.replaced
            );
        }

        // Only now that everything else is known to work: a deployment that
        // cannot start leaves the schema as it was.
        match migrations {
            Some(migrations) => migrations.apply().await?,
            None => tracing::info!("--no-migrate: pending migrations, if any, are not applied"),
        }
        let realtime = match &realtime_database {
            _ if self.no_realtime => {
                tracing::info!("--no-realtime: no realtime hub in this process");
                None
            }
            Some(url) => Some(Realtime::start(url, realtime_config)?),
            None => {
                tracing::info!(
                    "the manifest declares no `{DATABASE_URL_VARIABLE}` variable: no realtime hub"
                );
                None
            }
        };

        if let Some(ollama_url) = variable(&variables, OLLAMA_URL_VARIABLE)? {
            self.embedded.start_if_free(&ollama_url).await;
        }

        let listener = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let address = listener.local_addr()?;
        for (route, component) in router.routes() {
            tracing::info!(%route, %component, "route");
        }
        tracing::info!(address = %address, url = %format!("http://{address}"), "listening");

        let application = Arc::new(Application {
            router,
            components,
            requests: Semaphore::new(self.max_concurrent_requests as usize),
            max_request_body: self.max_request_body_mib << 20,
            base: app.base().to_owned(),
            realtime,
        });
        runtime
            .application()
            .set(Arc::downgrade(&application) as Weak<dyn Dispatch>);
        server::serve(listener, application, shutdown_signal()).await?;
        drop(runtime);
        Ok(())
    }
}

/// Compiles every component on the blocking pool, in parallel, and checks
/// each can run here.
async fn load_components(
    app: &App,
    runtime: &Runtime,
    configs: &HashMap<String, ComponentConfig>,
    cache: &CompileCache,
) -> anyhow::Result<HashMap<String, crate::runtime::ComponentHandler>> {
    let started = Instant::now();
    // One handler per distinct chain; a chain's components run composed.
    let mut handlers: HashMap<String, &HttpTrigger> = HashMap::new();
    for trigger in &app.manifest.trigger.http {
        handlers.entry(trigger.handler()).or_insert(trigger);
    }
    let loaded = std::thread::scope(|scope| {
        let tasks: Vec<_> = handlers
            .into_iter()
            .map(|(key, trigger)| {
                scope.spawn(move || {
                    let handler_started = Instant::now();
                    let path = compose_chain(app, trigger, cache.dir())?;
                    let parts: Vec<&ComponentConfig> = trigger
                        .middleware()
                        .chain([trigger.component.as_str()])
                        .map(|name| &configs[name])
                        .collect();
                    let config = ComponentConfig::merged(&parts);
                    let (handler, origin) = runtime.load(&key, &path, config, cache)?;
                    tracing::info!(
                        component = %key,
                        origin = ?origin,
                        ms = handler_started.elapsed().as_millis() as u64,
                        "component ready"
                    );
                    Ok((key, handler))
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|task| task.join().expect("component loading panicked"))
            .collect::<anyhow::Result<HashMap<_, _>>>()
    })?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        count = loaded.len(),
        "components ready"
    );
    Ok(loaded)
}

/// Gives every application variable its value: the environment first, then
/// the runtime config's providers, then the manifest's defaults.
fn resolve_variables(app: &App, runtime_config: &RuntimeConfig) -> anyhow::Result<Variables> {
    let declared = &app.manifest.variables;
    for name in runtime_config.undeclared_names(|name| declared.contains_key(name)) {
        tracing::warn!(
            variable = name,
            "the runtime config gives a value for `{name}`, which the manifest's `[variables]` does not declare"
        );
    }
    let environment = EnvProvider::new();
    let providers: Vec<&dyn Provider> = std::iter::once(&environment as &dyn Provider)
        .chain(runtime_config.providers())
        .collect();
    Variables::resolve(declared, &providers)
}

/// The Wasm that serves `trigger`: its component, composed behind its
/// middleware when it has any.
fn compose_chain(app: &App, trigger: &HttpTrigger, dir: &Path) -> anyhow::Result<PathBuf> {
    let existing = |name: &str| -> anyhow::Result<PathBuf> {
        let path = app.source_path(name)?;
        if !path.exists() {
            bail!(
                "component `{name}`: `{}` does not exist (run `arena build`, or `arena up --build`)",
                path.display()
            );
        }
        Ok(path)
    };
    let middleware = trigger
        .middleware()
        .map(|name| Ok((name, existing(name)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    compose::chain(&middleware, &existing(&trigger.component)?, dir)
}

/// Each component's environment, variables and allowed destinations, with templates
/// filled in; fails on the first invalid entry.
fn component_configs(
    app: &App,
    variables: &Variables,
) -> anyhow::Result<HashMap<String, ComponentConfig>> {
    app.manifest
        .component
        .iter()
        .map(|(name, component)| {
            let allowed_hosts = AllowedHosts::parse(&component.allowed_outbound_hosts, variables)
                .with_context(|| format!("component `{name}`"))?;
            let config = ComponentConfig {
                environment: component
                    .environment
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
                variables: Arc::new(variables.for_component(name, &component.variables)?),
                allowed_hosts: Arc::new(allowed_hosts),
            };
            Ok((name.clone(), config))
        })
        .collect()
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("arena")
}

/// The value of application variable `name`, when the manifest declares it.
fn variable(variables: &Variables, name: &str) -> anyhow::Result<Option<String>> {
    if !variables.is_declared(name) {
        return Ok(None);
    }
    let template = Template::parse(&format!("{{{{ {name} }}}}"))
        .map_err(|_| anyhow::anyhow!("`{name}` is not a variable name"))?;
    Ok(Some(variables.render(&template)?.text))
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
