//! Logging: JSON lines for machines, readable text for a terminal, filtered
//! by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Auto,
    Json,
    Text,
}

pub fn init(format: Format) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // wasm-compose narrates every step of a composition at `info`; keep it
    // quiet unless asked for by name.
    if !std::env::var("RUST_LOG").is_ok_and(|spec| spec.contains("wasm_compose")) {
        filter = filter.add_directive("wasm_compose=error".parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = match format {
        Format::Json => true,
        Format::Text => false,
        Format::Auto => !std::io::stderr().is_terminal(),
    };
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}
