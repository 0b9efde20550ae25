//! `arena migrate`: brings the database schema up to date with `migrations/`.
//!
//! sqlx's migrator does the work: its file format (`<version>_<description>.sql`),
//! a checksum recorded per applied migration in `_sqlx_migrations`, refusal of
//! a landed migration whose file has changed, and a PostgreSQL advisory lock so
//! that hosts starting at once apply each migration exactly once. This module
//! finds the database and the migrations, creates a missing database, and turns
//! sqlx's errors into messages that name the file. `arena up` runs the same code
//! before it listens.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail};
use sqlx::migrate::{Migrate as _, MigrateDatabase, MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Postgres};

use crate::manifest::App;

/// The database when neither `--database-url` nor the environment names one:
/// the local server `./dev` starts. `sslmode=disable` because a local Debian
/// server's snakeoil certificate would not verify (the components' client,
/// like Spin's, verifies whenever it uses TLS).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/arena?sslmode=disable";

/// How a deployer sets the Spin application variable `database_url`. The
/// components read that variable too, so host and components agree.
pub const DATABASE_URL_ENV: &str = "SPIN_VARIABLE_DATABASE_URL";

/// How long connecting may take: an address that drops packets would otherwise
/// hold start-up for the kernel's TCP timeout, minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLSTATE `invalid_catalog_name`: the database named in the URL does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

/// Shown in `pg_stat_activity`, unless the URL sets `application_name`.
const APPLICATION_NAME: &str = "arena migrate";

#[derive(clap::Args)]
pub struct Migrate {
    /// The application manifest (migrations default to `migrations` beside it).
    #[arg(long, short = 'f', env = "ARENA_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,

    #[command(flatten)]
    database: Database,
}

impl Migrate {
    pub async fn run(self) -> anyhow::Result<()> {
        let app = App::load(&self.manifest)?;
        self.database.load(&app).await?.apply().await
    }
}

/// Which database, and which migrations it gets: the flags `arena migrate`
/// and `arena up` share.
#[derive(clap::Args)]
pub struct Database {
    /// PostgreSQL URL (the Spin variable `database_url`); a missing database is created.
    #[arg(
        long,
        env = DATABASE_URL_ENV,
        hide_env_values = true,
        default_value = DEFAULT_DATABASE_URL,
        value_name = "URL"
    )]
    database_url: String,

    /// Folder of SQL migrations [default: `migrations` beside the manifest].
    #[arg(long, value_name = "DIR")]
    migrations: Option<PathBuf>,
}

impl Database {
    /// The URL as given: it may hold a password, so show it through [`redact`].
    pub fn url(&self) -> &str {
        &self.database_url
    }

    /// Reads the migrations and checks the URL, touching no database, so
    /// `arena up` can validate everything before it changes anything.
    pub async fn load(&self, app: &App) -> anyhow::Result<Migrations> {
        let url = redact(&self.database_url);
        let mut options = PgConnectOptions::from_str(&self.database_url)
            .map_err(|error| anyhow!("invalid database URL `{url}`: {}", describe(&error)))?;
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        // The server's notices ("relation ... already exists, skipping") are
        // noise in a start-up log; warnings and errors still come through.
        options = options.options([("client_min_messages", "warning")]);

        let dir = match &self.migrations {
            Some(dir) => dir.clone(),
            None => app.dir.join("migrations"),
        };
        if !dir.is_dir() {
            bail!(
                "the migrations folder `{}` does not exist (choose one with --migrations)",
                dir.display()
            );
        }
        let mut migrator = Migrator::new(dir.as_path()).await.map_err(|error| {
            anyhow!("cannot read the migrations in `{}`: {error}", dir.display())
        })?;
        // `apply` holds the lock itself; see there.
        migrator.set_locking(false);

        Ok(Migrations {
            migrator,
            dir,
            raw_url: self.database_url.clone(),
            url,
            options,
        })
    }
}

/// Migrations read from disk, ready to apply to one database.
pub struct Migrations {
    migrator: Migrator,
    dir: PathBuf,
    /// The URL as given: it may hold a password, so it is never shown.
    raw_url: String,
    /// The URL without its password, for messages.
    url: String,
    options: PgConnectOptions,
}

impl Migrations {
    /// Applies every migration the database lacks, creating the database first
    /// when it does not exist.
    pub async fn apply(self) -> anyhow::Result<()> {
        let mut connection = self.connect_or_create().await?;

        // sqlx's advisory lock, held from reading what is applied until the
        // rest is applied: the versions logged are exactly the ones this host
        // applied, even when another host is migrating the same database.
        let applied = async {
            connection.lock().await?;
            connection.ensure_migrations_table().await?;
            let before: HashSet<i64> = connection
                .list_applied_migrations()
                .await?
                .into_iter()
                .map(|migration| migration.version)
                .collect();
            self.migrator.run(&mut connection).await?;
            connection.unlock().await?;
            Ok::<_, MigrateError>(before)
        }
        .await
        .map_err(|error| self.explain(error))?;

        let mut count = 0;
        for migration in self.migrator.iter() {
            if migration.migration_type.is_down_migration() || applied.contains(&migration.version)
            {
                continue;
            }
            count += 1;
            tracing::info!(
                version = migration.version,
                file = %self.file_of(migration.version),
                "migration applied"
            );
        }
        let latest = self.migrator.iter().map(|m| m.version).max();
        tracing::info!(
            database = %self.url,
            applied = count,
            latest,
            "database schema up to date"
        );
        Ok(())
    }

    /// Connects, creating the database when the server says it does not exist,
    /// so a fresh machine needs no set-up step.
    async fn connect_or_create(&self) -> anyhow::Result<PgConnection> {
        match connect(&self.options).await {
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(INVALID_CATALOG_NAME) => {}
            result => return result.map_err(|error| self.cannot_connect(&error)),
        }
        let name = self
            .options
            .get_database()
            .unwrap_or(self.options.get_username());
        tracing::info!(database = %self.url, "database `{name}` does not exist: creating it");
        // sqlx connects to the server's `postgres` database to run CREATE DATABASE.
        let created =
            tokio::time::timeout(CONNECT_TIMEOUT, Postgres::create_database(&self.raw_url))
                .await
                .unwrap_or_else(|_| Err(timed_out()));
        if let Err(error) = created {
            // Another host starting at the same moment may have created it
            // first (its CREATE then fails here); connecting tells.
            return match connect(&self.options).await {
                Ok(connection) => Ok(connection),
                Err(_) => Err(anyhow!(
                    "database `{name}` does not exist and cannot be created (through the \
                     `postgres` database of the server in `{}`): {}",
                    self.url,
                    describe(&error)
                )),
            };
        }
        connect(&self.options)
            .await
            .map_err(|error| self.cannot_connect(&error))
    }

    fn cannot_connect(&self, error: &sqlx::Error) -> anyhow::Error {
        anyhow!(
            "cannot connect to PostgreSQL at `{}` (set the URL with --database-url or \
             {DATABASE_URL_ENV}): {}",
            self.url,
            describe(error)
        )
    }

    /// sqlx's error, reworded to name the migration's file and what to do.
    fn explain(&self, error: MigrateError) -> anyhow::Error {
        let url = &self.url;
        match error {
            MigrateError::VersionMismatch(version) => anyhow!(
                "migration {version} (`{}`) has changed since it was applied to `{url}`: a landed \
                 migration is never edited; restore the file and put the change in a new migration",
                self.file_of(version)
            ),
            MigrateError::VersionMissing(version) => anyhow!(
                "migration {version} was applied to `{url}` but `{}` has no file for it: is this \
                 `arena` older than the database?",
                self.dir.display()
            ),
            MigrateError::ExecuteMigration(error, version) => anyhow!(
                "migration {version} (`{}`) failed on `{url}`: {}",
                self.file_of(version),
                describe(&error)
            ),
            MigrateError::Execute(error) => {
                anyhow!("cannot migrate `{url}`: {}", describe(&error))
            }
            MigrateError::Dirty(version) => anyhow!(
                "migration {version} (`{}`) failed part-way in an earlier run and is marked \
                 unfinished in `_sqlx_migrations` of `{url}`: repair the schema, then delete that row",
                self.file_of(version)
            ),
            // Its `Display` says it all (and includes its source).
            error => anyhow!("cannot migrate `{url}`: {error}"),
        }
    }

    /// The file holding migration `version`, for messages.
    fn file_of(&self, version: i64) -> String {
        let names = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok());
        match file_name_of(names, version) {
            Some(name) => self.dir.join(name).display().to_string(),
            // The file is gone (or renamed): the folder is the best lead.
            None => self.dir.display().to_string(),
        }
    }
}

/// The first name among `names` that sqlx reads as migration `version`
/// (`0001_events.sql` is version 1).
fn file_name_of(names: impl IntoIterator<Item = String>, version: i64) -> Option<String> {
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|name| {
            name.ends_with(".sql")
                && name
                    .split_once('_')
                    .and_then(|(prefix, _)| prefix.parse::<i64>().ok())
                    == Some(version)
        })
        .collect();
    // `.up.sql` before `.down.sql`, whatever order the folder lists them in.
    names.sort_by_key(|name| name.ends_with(".down.sql"));
    names.into_iter().next()
}

/// One line for a sqlx error. Its `Display` already includes its source,
/// which anyhow's `{:#}` would print a second time; a server error gets its
/// SQLSTATE, the stable part to search for.
fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(error) => match error.code() {
            Some(code) => format!("{} (SQLSTATE {code})", error.message()),
            None => error.message().to_owned(),
        },
        error => error.to_string(),
    }
}

async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

fn timed_out() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {CONNECT_TIMEOUT:?}"),
    ))
}

/// `url` with its password replaced by `***`, in the user-info part and in
/// a `password` query parameter, so it can be logged.
///
/// A URL that does not parse is cut down instead: everything between the
/// first `:` and the last `@` could be a password, and so could everything
/// after `password=`.
pub fn redact(url: &str) -> String {
    const HIDDEN: &str = "***";
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password.
                let _ = parsed.set_password(Some(HIDDEN));
            }
            if parsed.query_pairs().any(|(key, _)| key == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if key == "password" {
                            HIDDEN.into()
                        } else {
                            value
                        };
                        (key.into_owned(), value.into_owned())
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.into()
        }
        Err(_) => {
            let (mut shown, mut rest) = match url.split_once("://") {
                Some((scheme, rest)) => (format!("{scheme}://"), rest),
                None => (String::new(), url),
            };
            if let Some(at) = rest.rfind('@') {
                let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
                shown.push_str(user);
                if !password.is_empty() {
                    shown.push(':');
                    shown.push_str(HIDDEN);
                }
                shown.push('@');
                rest = &rest[at + 1..];
            }
            match rest.find("password=") {
                Some(start) => {
                    shown.push_str(&rest[..start]);
                    shown.push_str("password=");
                    shown.push_str(HIDDEN);
                }
                None => shown.push_str(rest),
            }
            shown
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_password_in_the_url_is_hidden() {
        assert_eq!(
            redact("postgres://arena:s3cret@db.internal:5432/arena?sslmode=disable"),
            "postgres://arena:***@db.internal:5432/arena?sslmode=disable"
        );
    }

    #[test]
    fn a_url_without_a_password_is_shown_as_is() {
        assert_eq!(redact(DEFAULT_DATABASE_URL), DEFAULT_DATABASE_URL);
    }

    #[test]
    fn a_password_query_parameter_is_hidden() {
        let shown = redact("postgres://db/arena?user=arena&password=s3cret&sslmode=require");
        assert_eq!(
            shown,
            "postgres://db/arena?user=arena&password=***&sslmode=require"
        );
    }

    #[test]
    fn a_percent_encoded_password_is_hidden() {
        let shown = redact("postgres://arena:p%40ss%2Fword@db/arena");
        assert!(!shown.contains("p%40ss"), "{shown}");
        assert_eq!(shown, "postgres://arena:***@db/arena");
    }

    #[test]
    fn an_unparseable_url_loses_everything_that_could_be_a_password() {
        // An unencoded space makes this an invalid URL.
        let shown = redact("postgres://arena:pass word@db:99999/arena");
        assert!(!shown.contains("pass"), "{shown}");
        assert_eq!(shown, "postgres://arena:***@db:99999/arena");
        let shown = redact("host=db password=s3cret dbname=arena");
        assert_eq!(shown, "host=db password=***");
    }

    #[test]
    fn the_migration_file_is_found_by_its_version() {
        let names = [
            "README.md",
            "0002_users.sql",
            "0001_events.sql",
            "0010_x.sql",
        ]
        .map(String::from);
        assert_eq!(
            file_name_of(names.clone(), 1).as_deref(),
            Some("0001_events.sql")
        );
        assert_eq!(
            file_name_of(names.clone(), 10).as_deref(),
            Some("0010_x.sql")
        );
        assert_eq!(file_name_of(names, 3), None);
    }

    #[test]
    fn the_up_file_of_a_reversible_migration_is_named() {
        let names = ["0001_events.down.sql", "0001_events.up.sql"].map(String::from);
        assert_eq!(
            file_name_of(names, 1).as_deref(),
            Some("0001_events.up.sql")
        );
    }

    fn database(migrations: Option<&str>, url: &str) -> Database {
        Database {
            database_url: url.to_owned(),
            migrations: migrations.map(PathBuf::from),
        }
    }

    fn app_in(dir: &Path) -> App {
        let manifest = dir.join("spin.toml");
        std::fs::write(
            &manifest,
            "spin_manifest_version = 2\n[application]\nname = \"demo\"\n",
        )
        .unwrap();
        App::load(&manifest).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("arena-migrate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn migrations_default_to_the_folder_beside_the_manifest() {
        let dir = temp_dir("beside");
        std::fs::create_dir(dir.join("migrations")).unwrap();
        std::fs::write(dir.join("migrations/0001_a.sql"), "select 1;").unwrap();
        let loaded = database(None, DEFAULT_DATABASE_URL)
            .load(&app_in(&dir))
            .await
            .unwrap();
        assert_eq!(loaded.dir, dir.join("migrations"));
        assert_eq!(loaded.migrator.iter().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_migrations_folder_is_refused_by_name() {
        let dir = temp_dir("missing");
        let error = database(Some("/nonexistent/migrations"), DEFAULT_DATABASE_URL)
            .load(&app_in(&dir))
            .await
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("`/nonexistent/migrations`"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_invalid_url_is_refused_without_its_password() {
        let dir = temp_dir("invalid-url");
        std::fs::create_dir(dir.join("migrations")).unwrap();
        let error = database(None, "postgres://arena:s3cret@db:99999/arena")
            .load(&app_in(&dir))
            .await
            .err()
            .unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("invalid database URL"), "{message}");
        assert!(
            message.contains("postgres://arena:***@db:99999/arena"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_edited_migration_is_refused_naming_its_file() {
        let migrations = Migrations {
            migrator: Migrator::DEFAULT,
            dir: PathBuf::from("/nonexistent"),
            raw_url: "postgres://u:s3cret@db/arena".into(),
            url: redact("postgres://u:s3cret@db/arena"),
            options: PgConnectOptions::new_without_pgpass(),
        };
        let message = migrations
            .explain(MigrateError::VersionMismatch(1))
            .to_string();
        assert!(message.starts_with("migration 1 ("), "{message}");
        assert!(message.contains("never edited"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }
}
