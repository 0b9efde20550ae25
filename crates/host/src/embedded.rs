//! The embedded models in `arena up`: where the application's Ollama address
//! is on this machine and nothing answers there, the host serves Ollama's API
//! at that address itself (see `arena_models`), so a laptop or CI without
//! Ollama still gets agents that talk and search that understands meaning.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arena_models::assets::Store;
use arena_models::ollama::{self, CATALOG, Models};
use tokio::net::{TcpListener, TcpStream};

/// How long an Ollama already at the address has to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(clap::Args)]
pub struct EmbeddedArgs {
    /// Never serve the embedded models, even where no Ollama answers.
    #[arg(long, env = "ARENA_NO_EMBEDDED_MODELS")]
    no_embedded_models: bool,

    /// Where `arena models fetch` put the models [default: $XDG_CACHE_HOME/arena/models or ~/.cache/arena/models].
    #[arg(long, env = "ARENA_MODELS_DIR")]
    models_dir: Option<PathBuf>,
}

impl EmbeddedArgs {
    pub fn store(&self) -> Store {
        self.models_dir
            .clone()
            .map_or_else(Store::from_env, Store::new)
    }

    /// Serves the embedded models at `ollama_url` when it is local and free;
    /// says in the log what it did and why.
    pub async fn start_if_free(&self, ollama_url: &str) {
        if self.no_embedded_models {
            tracing::info!("--no-embedded-models: Arena uses the Ollama at {ollama_url} only");
            return;
        }
        let Some(address) = local_address(ollama_url) else {
            tracing::info!("Ollama at {ollama_url} is not on this machine: no embedded models");
            return;
        };
        match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Ok(_)) => {
                tracing::info!("an Ollama answers at {ollama_url}: no embedded models");
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(
                    "cannot tell whether Ollama runs at {ollama_url} ({error}): no embedded models"
                );
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "{ollama_url} accepts no connection yet refuses none: no embedded models"
                );
                return;
            }
        }
        let models = Arc::new(Models::new(self.store(), parallelism()));
        if let Some(missing) = CATALOG.iter().find(|entry| !models.is_installed(entry)) {
            tracing::warn!(
                "no Ollama at {ollama_url}, and the embedded model {} is not installed in {}: \
                 run `arena models fetch` to serve them there",
                missing.name,
                models.store().root().display()
            );
            return;
        }
        let listener = match TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!("cannot serve the embedded models at {address}: {error}");
                return;
            }
        };
        let names: Vec<&str> = CATALOG.iter().map(|entry| entry.name).collect();
        tracing::info!(
            address = %address,
            models = %names.join(", "),
            "no Ollama at {ollama_url}: serving the embedded models there (--no-embedded-models turns this off)"
        );
        tokio::spawn(async move {
            if let Err(error) = ollama::serve(listener, models, std::future::pending()).await {
                tracing::error!("the embedded models' server stopped: {error}");
            }
        });
    }
}

/// One inference per core.
pub fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The socket address of an `http://` URL on a loopback host.
fn local_address(url: &str) -> Option<SocketAddr> {
    let url = url::Url::parse(url).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let ip = match url.host()? {
        url::Host::Domain("localhost") => IpAddr::from([127, 0, 0, 1]),
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
    };
    ip.is_loopback()
        .then(|| SocketAddr::new(ip, url.port_or_known_default().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_on_a_loopback_host_is_local() {
        let local = |url| local_address(url).map(|address| address.to_string());
        assert_eq!(
            local("http://127.0.0.1:11434").as_deref(),
            Some("127.0.0.1:11434")
        );
        assert_eq!(
            local("http://localhost:11434/").as_deref(),
            Some("127.0.0.1:11434")
        );
        assert_eq!(local("http://[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(local("http://127.0.0.1").as_deref(), Some("127.0.0.1:80"));
        assert_eq!(local("http://ollama.internal:11434"), None);
        assert_eq!(local("http://10.0.0.5:11434"), None);
        assert_eq!(local("https://127.0.0.1:11434"), None);
        assert_eq!(local("not a url"), None);
    }
}
