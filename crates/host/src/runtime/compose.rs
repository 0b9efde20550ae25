//! HTTP middleware by composition, as Spin 4 does it: a middleware component
//! imports and exports `wasi:http/handler@0.3.0`; plugging the next handler's
//! export into its import makes one component that runs the chain, outermost
//! first, in a single fresh instance per request.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasm_compose::composer::{ComponentComposer, ROOT_COMPONENT_NAME};
use wasm_compose::config::{Config, Dependency, Instantiation, InstantiationArg};

/// The interface a middleware imports (the next handler) and everyone exports.
const HANDLER: &str = "wasi:http/handler@0.3.0";

/// Composes `middleware` (outermost first) in front of `handler`, writing the
/// result into `dir` (named by the inputs' hash, so it is written once) and
/// returning its path. Without middleware, `handler` itself.
pub fn chain(
    middleware: &[(&str, PathBuf)],
    handler: &Path,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let mut inner = handler.to_path_buf();
    for (name, outer) in middleware.iter().rev() {
        inner = plug(outer, &inner, dir)
            .with_context(|| format!("cannot put middleware `{name}` in front"))?;
    }
    Ok(inner)
}

/// `outer` with its `wasi:http/handler` import satisfied by `inner`.
fn plug(outer: &Path, inner: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let mut digest = Sha256::new();
    for path in [outer, inner] {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        digest.update(Sha256::digest(&bytes));
    }
    let output = dir.join(format!("composed-{}.wasm", hex::encode(digest.finalize())));
    if output.exists() {
        return Ok(output);
    }

    // wasm-compose resolves relative paths against `config.dir` and looks
    // there for files named like unresolved imports: give it absolute paths
    // and a folder that does not exist, so every other import stays an import.
    let inner = std::fs::canonicalize(inner)?;
    let outer = std::fs::canonicalize(outer)?;
    let config_dir = dir.join("compose-resolves-nothing-here");
    let mut config = Config {
        dir: config_dir,
        ..Config::default()
    };
    config
        .dependencies
        .insert("next".into(), Dependency { path: inner });
    let mut root = Instantiation::default();
    root.arguments.insert(
        HANDLER.into(),
        InstantiationArg {
            instance: "next".into(),
            export: Some(HANDLER.into()),
        },
    );
    config
        .instantiations
        .insert(ROOT_COMPONENT_NAME.into(), root);
    let composed = ComponentComposer::new(&outer, &config).compose()?;

    std::fs::create_dir_all(dir)?;
    let partial = output.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, composed)?;
    std::fs::rename(&partial, &output)?;
    Ok(output)
}
