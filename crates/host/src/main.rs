//! `arena`: runs Arena's `spin.toml` on Wasmtime, locally and in tests.
//!
//! ```text
//! arena up       [--listen ADDR] [--manifest spin.toml] [--runtime-config FILE] [--build]
//!                [--database-url URL] [--migrations DIR] [--no-migrate]
//! arena migrate  [--manifest spin.toml] [--database-url URL] [--migrations DIR]
//! arena sidecar  [--listen ADDR] [--database-url URL] [--migrate [--migrations DIR]]
//! arena build    [--manifest spin.toml] [COMPONENT ...]
//! arena models   fetch [--wheels DIR] | verify | serve [--listen ADDR]
//! ```

mod allowed_hosts;
mod commands;
mod embedded;
mod logging;
mod manifest;
mod problem;
mod realtime;
mod request_id;
mod routes;
mod runtime;
mod runtime_config;
mod server;
mod variables;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arena",
    version,
    about = "Runs the Arena backend (a Spin application) on Wasmtime"
)]
struct Cli {
    /// Log format: `json` (one object per line), `text`, or `auto` (text on a terminal).
    #[arg(long, global = true, env = "ARENA_LOG_FORMAT", default_value = "auto")]
    log_format: logging::Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve the application's HTTP triggers.
    Up(commands::up::Up),
    /// Apply pending database migrations (creating the database if missing).
    Migrate(commands::migrate::Migrate),
    /// Run every component's `build.command`, like `spin build`.
    Build(commands::build::Build),
    /// Serve only the realtime hub (`/v1/realtime/...`, `/metrics`) beside a Spin host.
    Sidecar(commands::sidecar::Sidecar),
    /// The embedded models served where no Ollama runs: fetch, verify, serve alone.
    Models(commands::models::ModelsCommand),
}

fn main() -> anyhow::Result<()> {
    // SAFETY: no other thread has started yet.
    unsafe { arena_models::pin_cpu_threads() };
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(up) => up.run().await,
            Command::Migrate(migrate) => migrate.run().await,
            Command::Build(build) => build.run().await,
            Command::Sidecar(sidecar) => sidecar.run().await,
            Command::Models(models) => models.run().await,
        }
    });
    if let Err(error) = &result {
        tracing::error!("{error:#}");
        std::process::exit(1);
    }
    Ok(())
}
