//! Pools of PostgreSQL connections, one per address (and CA root), shared by
//! every instance of the application.
//!
//! Components are stateless and open a connection per request; pooling is
//! the host's job, so "opening" usually takes an idle connection. A pooled
//! connection is reset (see [`RESET_SQL`]) before it is handed out again, so
//! a transaction a component left open, or a session setting it changed,
//! never leaks into another request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connections kept per address.
const MAX_CONNECTIONS_PER_ADDRESS: usize = 16;
/// How long opening a connection may take before the component gets an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a component waits for a free connection in a full pool.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Run on a pooled connection before reuse: resets all session state (one
/// statement, cheap for the server). On a connection a component left inside
/// a transaction it fails, and the pool then discards that connection (the
/// server rolls the transaction back) rather than hand it out again.
const RESET_SQL: &str = "DISCARD ALL";

#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<(String, Option<String>), Pool>>,
}

impl Pools {
    /// The pool for `address`, created on first use. `ca_root` (PEM) is
    /// trusted besides the usual web roots.
    pub fn get(
        &self,
        address: &str,
        config: &tokio_postgres::Config,
        ca_root: Option<&str>,
    ) -> Result<Pool, String> {
        let key = (address.to_owned(), ca_root.map(str::to_owned));
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let mut config = config.clone();
        config.connect_timeout(CONNECT_TIMEOUT);
        let manager = Manager::from_config(
            config,
            tls(ca_root)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Custom(RESET_SQL.into()),
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS_PER_ADDRESS)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(CHECKOUT_TIMEOUT),
                create: Some(CONNECT_TIMEOUT),
                recycle: Some(CONNECT_TIMEOUT),
            })
            .build()
            .map_err(|e| e.to_string())?;
        pools.insert(key, pool.clone());
        Ok(pool)
    }
}

/// TLS as Spin does it: attempted unless the address says
/// `sslmode=disable`, verified against the web's roots plus `ca_root`.
fn tls(ca_root: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_root {
        let certificates: Vec<CertificateDer> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("invalid CA root certificate: {e}"))?;
        if certificates.is_empty() {
            return Err("the CA root holds no PEM certificate".into());
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| format!("invalid CA root certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
