//! On-disk cache of compiled components, so a restart skips Cranelift.
//!
//! An entry is keyed by the SHA-256 of the Wasm bytes together with the
//! engine's compatibility hash (Wasmtime version and every setting that
//! changes generated code), so a rebuilt component or a changed engine
//! configuration can never load stale machine code.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: PathBuf,
}

/// Whether a component came from the cache or was compiled now (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cached,
    Compiled,
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> CompileCache {
        CompileCache { dir }
    }

    /// Where the cache lives (composed components are written here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the component at `path`, from the cache when it holds it.
    pub fn load(&self, engine: &Engine, path: &Path) -> anyhow::Result<(Component, Origin)> {
        let wasm = std::fs::read(path)
            .with_context(|| format!("cannot read component `{}`", path.display()))?;
        let entry = self.dir.join(format!("{}.cwasm", key(engine, &wasm)));
        if entry.exists() {
            // SAFETY: entries are written only by `store` below, from
            // `Component::serialize` of this engine configuration (the key
            // covers it), and are renamed into place whole.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(error) => tracing::warn!(
                    entry = %entry.display(),
                    "ignoring unusable compile-cache entry: {error:#}"
                ),
            }
        }
        let component = Component::new(engine, &wasm)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot compile component `{}`", path.display()))?;
        if let Err(error) = self.store(&component, &entry) {
            tracing::warn!(dir = %self.dir.display(), "cannot write compile cache: {error:#}");
        }
        Ok((component, Origin::Compiled))
    }

    fn store(&self, component: &Component, entry: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Write beside the entry and rename, so a concurrent reader never sees
        // half a file.
        let partial = entry.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, component.serialize()?)?;
        std::fs::rename(&partial, entry)?;
        Ok(())
    }
}

fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hasher = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hasher);
    let mut digest = Sha256::new();
    digest.update(engine_hasher.finish().to_le_bytes());
    digest.update(wasm);
    hex::encode(digest.finalize())
}
