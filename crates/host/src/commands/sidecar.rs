//! `arena sidecar`: only the realtime hub (`/v1/realtime/...` and `/metrics`),
//! as production runs it beside a Spin host, several replicas behind a load
//! balancer, each reading the whole event log.
//!
//! It serves no component and, unless `--migrate`, leaves the schema to
//! `arena migrate` (or `arena up`). Shutdown is `arena up`'s: on SIGINT or
//! SIGTERM it stops accepting, tells realtime clients to reconnect, and drains.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::migrate;
use crate::manifest::App;
use crate::realtime::{Realtime, RealtimeArgs};
use crate::routes::Router;
use crate::server::{self, Application};

/// Beside `arena up`'s 3000.
const DEFAULT_LISTEN: &str = "127.0.0.1:3001";

#[derive(clap::Args)]
pub struct Sidecar {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "ARENA_SIDECAR_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    #[command(flatten)]
    database: migrate::Database,

    /// Apply pending migrations first (they default to `migrations` beside the manifest).
    #[arg(long)]
    migrate: bool,

    /// The application manifest; read only by `--migrate`, to find the migrations.
    #[arg(long, short = 'f', env = "ARENA_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,

    /// The access-token signing keys (`kid:secret` pairs), as the Spin app's
    /// `jwt_signing_keys` variable: set the environment variable rather than the flag.
    #[arg(
        long,
        env = "SPIN_VARIABLE_JWT_SIGNING_KEYS",
        hide_env_values = true,
        value_name = "KEYS"
    )]
    jwt_signing_keys: Option<String>,

    #[command(flatten)]
    realtime: RealtimeArgs,
}

impl Sidecar {
    pub async fn run(self) -> anyhow::Result<()> {
        let config = self.realtime.config(self.jwt_signing_keys.clone())?;
        if config.jwt_signing_keys.is_none() {
            tracing::warn!(
                "no signing keys (SPIN_VARIABLE_JWT_SIGNING_KEYS): access tokens are refused, API keys still work"
            );
        }
        if self.migrate {
            let app = App::load(&self.manifest)?;
            self.database.load(&app).await?.apply().await?;
        }
        let listener = TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let address = listener.local_addr()?;
        let realtime = Realtime::start(self.database.url(), config)?;
        let (router, _) = Router::build("/", std::iter::empty());
        let application = Arc::new(Application {
            router,
            components: HashMap::new(),
            // Realtime requests take no permit; nothing else is served.
            requests: Semaphore::new(1),
            max_request_body: 0,
            base: "/".to_owned(),
            realtime: Some(realtime),
        });
        tracing::info!(address = %address, url = %format!("http://{address}"), "listening");
        server::serve(listener, application, super::up::shutdown_signal()).await
    }
}
