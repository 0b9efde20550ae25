//! What is wrong with an installed model file, and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

/// How a model file fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetErrorKind {
    Missing,
    WrongSize {
        expected: u64,
        actual: u64,
    },
    WrongDigest {
        expected: &'static str,
        actual: String,
    },
    /// Present but could not be read (permissions, a directory, ...).
    Unreadable(String),
}

/// A model file that is missing or corrupt. Its message names the file, what
/// is wrong and the command that fetches it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetError {
    asset: &'static str,
    path: PathBuf,
    kind: AssetErrorKind,
}

impl AssetError {
    pub(super) fn new(asset: &'static str, path: PathBuf, kind: AssetErrorKind) -> AssetError {
        AssetError { asset, path, kind }
    }

    /// The [`Asset::name`](super::Asset::name) the file belongs to.
    pub fn asset(&self) -> &'static str {
        self.asset
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> &AssetErrorKind {
        &self.kind
    }
}

impl fmt::Display for AssetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (asset, path) = (self.asset, self.path.display());
        match &self.kind {
            AssetErrorKind::Missing => write!(f, "model file {path} ({asset}) is missing"),
            AssetErrorKind::WrongSize { expected, actual } => write!(
                f,
                "model file {path} ({asset}) has the wrong size: {actual} bytes, expected {expected}"
            ),
            AssetErrorKind::WrongDigest { expected, actual } => write!(
                f,
                "model file {path} ({asset}) has the wrong sha256 digest: {actual}, expected {expected}"
            ),
            AssetErrorKind::Unreadable(reason) => {
                write!(f, "model file {path} ({asset}) cannot be read: {reason}")
            }
        }?;
        write!(f, "; run `arena models fetch` to fetch it")
    }
}

impl std::error::Error for AssetError {}
