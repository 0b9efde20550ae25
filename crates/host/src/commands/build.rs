//! `arena build`: runs each component's `build.command` in its `workdir`,
//! as `spin build` does.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::manifest::App;

#[derive(clap::Args)]
pub struct Build {
    /// The application manifest.
    #[arg(long, short = 'f', env = "ARENA_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,

    /// Build only these components (default: all).
    components: Vec<String>,
}

impl Build {
    pub async fn run(self) -> anyhow::Result<()> {
        let app = App::load(&self.manifest)?;
        build(&app, &self.components).await
    }
}

/// Builds `only` (or every component when empty), stopping at the first failure.
pub async fn build(app: &App, only: &[String]) -> anyhow::Result<()> {
    for name in only {
        if !app.manifest.component.contains_key(name) {
            bail!("there is no component `{name}` in the manifest");
        }
    }
    for (name, component) in &app.manifest.component {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let Some(build) = &component.build else {
            tracing::info!(component = %name, "no build command; skipping");
            continue;
        };
        let workdir = app
            .dir
            .join(build.workdir.as_deref().unwrap_or(".".as_ref()));
        for command in build.command.iter() {
            tracing::info!(component = %name, %command, workdir = %workdir.display(), "building");
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .envs(&build.environment)
                .status()
                .await
                .with_context(|| format!("cannot run the build command of `{name}`"))?;
            if !status.success() {
                bail!("building component `{name}` failed ({status}): `{command}`");
            }
        }
    }
    Ok(())
}
