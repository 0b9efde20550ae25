//! Sizes and sha256 digests of files and wheel members.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::AssetErrorKind;

/// Copies `reader` into `writer`, returning the byte count and hex sha256.
pub(super) fn copy_hashed(
    mut reader: impl Read,
    mut writer: impl Write,
) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut len = 0;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        writer.write_all(&buffer[..read])?;
        len += read as u64;
    }
    Ok((len, hex::encode(hasher.finalize())))
}

/// Checks the file at `path` against a pinned size and digest. The size is
/// checked first: it is free and catches truncated downloads.
pub(super) fn check(path: &Path, size: u64, sha256: &'static str) -> Result<(), AssetErrorKind> {
    let unreadable = |error: io::Error| match error.kind() {
        io::ErrorKind::NotFound => AssetErrorKind::Missing,
        _ => AssetErrorKind::Unreadable(error.to_string()),
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(AssetErrorKind::Unreadable("not a regular file".into()));
    }
    if metadata.len() != size {
        return Err(AssetErrorKind::WrongSize {
            expected: size,
            actual: metadata.len(),
        });
    }
    let file = File::open(path).map_err(unreadable)?;
    let (_, actual) = copy_hashed(file, io::sink()).map_err(unreadable)?;
    if actual != sha256 {
        return Err(AssetErrorKind::WrongDigest {
            expected: sha256,
            actual,
        });
    }
    Ok(())
}
