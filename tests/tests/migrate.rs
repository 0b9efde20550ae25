//! Migrations: `arena migrate`, and `arena up` migrating before it listens,
//! against a real PostgreSQL with a fresh database per test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use arena_e2e::{Arena, TestDatabase, arena_bin, repo_root};
use postgres::fallible_iterator::FallibleIterator;
use serde_json::{Value, json};

const FIXTURES: &str = "tests/fixtures/spin.toml";

/// How long a test waits for a NOTIFY to arrive.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

fn migrations_dir() -> PathBuf {
    repo_root().join("migrations")
}

/// The versions of the repository's migrations, in order (`0001_events.sql` is 1).
fn migration_versions() -> Vec<i64> {
    let mut versions: Vec<i64> = std::fs::read_dir(migrations_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".sql"))
        .map(|name| name.split_once('_').unwrap().0.parse().unwrap())
        .collect();
    versions.sort();
    versions
}

/// `arena migrate` on `database_url` with the migrations in `dir`, started but not awaited.
fn spawn_migrate(database_url: &str, dir: &Path) -> Child {
    Command::new(arena_bin())
        .current_dir(repo_root())
        .args([
            "--log-format",
            "json",
            "migrate",
            "--database-url",
            database_url,
        ])
        .arg("--migrations")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start arena migrate")
}

fn migrate(database_url: &str, dir: &Path) -> Output {
    spawn_migrate(database_url, dir).wait_with_output().unwrap()
}

fn assert_succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "arena migrate failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Log lines whose message is `message`.
fn logged(output: &Output, message: &str) -> Vec<Value> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == message)
        .collect()
}

/// Each recorded migration version with how many times it is recorded.
fn recorded(database: &TestDatabase) -> Vec<(i64, i64)> {
    database
        .connect()
        .query(
            "select version, count(*) from _sqlx_migrations where success group by version order by version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn exactly_once_each() -> Vec<(i64, i64)> {
    migration_versions().into_iter().map(|v| (v, 1)).collect()
}

fn table_exists(database: &TestDatabase, table: &str) -> bool {
    database
        .connect()
        .query_one("select to_regclass($1) is not null", &[&table])
        .unwrap()
        .get(0)
}

/// A copy of the repository's migrations that a test may edit, removed on drop.
struct MigrationsCopy(PathBuf);

impl MigrationsCopy {
    fn new(name: &str) -> MigrationsCopy {
        let dir = std::env::temp_dir().join(format!("{name}-migrations"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(migrations_dir()).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        MigrationsCopy(dir)
    }
}

impl Drop for MigrationsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn migrate_applies_every_migration_to_an_empty_database() {
    let database = TestDatabase::create();
    let output = migrate(&database.url(), &migrations_dir());
    assert_succeeded(&output);

    assert_eq!(recorded(&database), exactly_once_each());
    assert!(table_exists(&database, "events"));
    assert_eq!(
        logged(&output, "migration applied").len(),
        migration_versions().len()
    );

    // A second run finds nothing to do.
    let again = migrate(&database.url(), &migrations_dir());
    assert_succeeded(&again);
    assert!(logged(&again, "migration applied").is_empty());
    assert_eq!(
        logged(&again, "database schema up to date")[0]["applied"],
        0
    );
}

#[test]
fn migrate_reaches_a_database_that_requires_tls() {
    let database = TestDatabase::create();
    let ssl: String = database
        .connect()
        .query_one("SHOW ssl", &[])
        .unwrap()
        .get(0);
    if ssl != "on" {
        eprintln!("skipped: this PostgreSQL server does not offer TLS");
        return;
    }
    let url = database.url().replace("sslmode=disable", "sslmode=require");
    let output = migrate(&url, &migrations_dir());
    assert_succeeded(&output);
    assert_eq!(recorded(&database), exactly_once_each());
}

#[test]
fn inserting_an_event_notifies_arena_events_with_its_id_and_stream() {
    let database = TestDatabase::create();
    assert_succeeded(&migrate(&database.url(), &migrations_dir()));

    let mut listener = database.connect();
    listener.batch_execute("listen arena_events").unwrap();
    let mut writer = database.connect();
    let event_id: i64 = writer
        .query_one(
            "insert into events (stream, type, payload) values ($1, $2, $3::text::jsonb) returning event_id",
            &[&"discussion:0190c1c4-0000-7000-8000-000000000001", &"message.created", &r#"{"text": "hi"}"#],
        )
        .unwrap()
        .get(0);

    let notification = listener
        .notifications()
        .timeout_iter(NOTIFY_TIMEOUT)
        .next()
        .unwrap()
        .expect("no notification on arena_events");
    assert_eq!(notification.channel(), "arena_events");
    let payload: Value = serde_json::from_str(notification.payload()).unwrap();
    assert_eq!(
        payload,
        json!({"event_id": event_id, "stream": "discussion:0190c1c4-0000-7000-8000-000000000001"})
    );
}

#[test]
fn a_rolled_back_event_is_never_announced() {
    let database = TestDatabase::create();
    assert_succeeded(&migrate(&database.url(), &migrations_dir()));

    let mut listener = database.connect();
    listener.batch_execute("listen arena_events").unwrap();
    let mut writer = database.connect();
    writer
        .batch_execute(
            "begin;
             insert into events (stream, type, payload) values ('discussion:a', 'rolled.back', '{}');
             rollback;
             insert into events (stream, type, payload) values ('discussion:b', 'committed', '{}');",
        )
        .unwrap();

    let notification = listener
        .notifications()
        .timeout_iter(NOTIFY_TIMEOUT)
        .next()
        .unwrap()
        .expect("no notification on arena_events");
    let payload: Value = serde_json::from_str(notification.payload()).unwrap();
    assert_eq!(payload["stream"], "discussion:b");
}

#[test]
fn two_migrations_started_at_once_apply_each_migration_exactly_once() {
    let database = TestDatabase::create();
    let first = spawn_migrate(&database.url(), &migrations_dir());
    let second = spawn_migrate(&database.url(), &migrations_dir());
    let outputs = [first, second].map(|child| child.wait_with_output().unwrap());
    for output in &outputs {
        assert_succeeded(output);
    }

    assert_eq!(recorded(&database), exactly_once_each());
    // Each migration is reported by the one host that applied it.
    let reported: usize = outputs
        .iter()
        .map(|output| logged(output, "migration applied").len())
        .sum();
    assert_eq!(reported, migration_versions().len());
}

#[test]
fn migrate_creates_a_missing_database_even_when_two_race_to_create_it() {
    let database = TestDatabase::unique();
    assert!(!database.exists());
    let first = spawn_migrate(&database.url(), &migrations_dir());
    let second = spawn_migrate(&database.url(), &migrations_dir());
    for child in [first, second] {
        assert_succeeded(&child.wait_with_output().unwrap());
    }

    assert!(database.exists());
    assert_eq!(recorded(&database), exactly_once_each());
}

#[test]
fn a_landed_migration_edited_afterwards_is_refused_by_name() {
    let database = TestDatabase::create();
    let copy = MigrationsCopy::new(&database.name);
    assert_succeeded(&migrate(&database.url(), &copy.0));

    let file = copy.0.join("0001_events.sql");
    let mut sql = std::fs::read_to_string(&file).unwrap();
    sql.push_str("\ncreate index events_edited_afterwards_idx on events (created_at);\n");
    std::fs::write(&file, sql).unwrap();
    let output = migrate(&database.url(), &copy.0);

    assert!(!output.status.success(), "an edited migration was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("migration 1 ("), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("never edited"), "{stderr}");
    // Nothing of the edit was applied.
    assert!(!table_exists(&database, "events_edited_afterwards_idx"));
}

#[test]
fn up_applies_migrations_before_listening() {
    let database = TestDatabase::create();
    let arena = Arena::start_with_database(FIXTURES, &database.url(), &[]);

    assert_eq!(recorded(&database), exactly_once_each());
    assert!(table_exists(&database, "events"));
    let messages: Vec<Value> = arena
        .logs()
        .into_iter()
        .map(|entry| entry["message"].clone())
        .collect();
    let migrated = messages
        .iter()
        .position(|message| message == "database schema up to date")
        .expect("no migration in the log");
    let listening = messages.iter().position(|message| message == "listening");
    assert!(Some(migrated) < listening, "{messages:?}");
    assert_eq!(arena.get("/v1/health").status(), 200);
}

#[test]
fn up_refuses_to_start_when_the_database_is_unreachable() {
    // Port 1: nothing listens there, so the connection is refused at once.
    let url = "postgres://postgres:hunter2@127.0.0.1:1/arena?sslmode=disable";
    let failure = Arena::try_start_with_database(FIXTURES, url, &[])
        .err()
        .expect("arena up started without its database");

    assert!(failure.status.is_some_and(|status| !status.success()));
    let messages = failure.messages();
    assert!(
        messages.contains(
            "cannot connect to PostgreSQL at `postgres://postgres:***@127.0.0.1:1/arena?sslmode=disable`"
        ),
        "{messages}"
    );
    assert!(
        !messages.contains("hunter2"),
        "the password leaked: {messages}"
    );
    assert!(!messages.contains("\"listening\""), "{messages}");
}
