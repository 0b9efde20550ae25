//! The shared crate's database behaviour end to end: a component written on
//! `arena-common` (tests/fixtures/components/commondb, a small notes API) runs
//! in the real `arena` host against a real PostgreSQL, and is driven over
//! HTTP as a client would. The test reads the database behind it directly.
//!
//! Each test has a database of its own, migrated with `migrations/` (so the
//! `events` table and its NOTIFY trigger are Arena's own), plus the notes
//! tables below, which belong to these tests alone.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arena_e2e::{Arena, TestDatabase};
use postgres::fallible_iterator::FallibleIterator;
use serde_json::{Value, json};

const MANIFEST: &str = "tests/fixtures/commondb.toml";

/// The fixture's tables. Constraint names are the ones the fixture maps with
/// `on_constraint`, or leaves to the shared crate's default mapping.
const SCHEMA: &str = "
    create table labels (
        label text constraint labels_pkey primary key
    );
    insert into labels (label) values ('idea'), ('todo'), ('urgent');

    create table notes (
        note_id uuid constraint notes_pkey primary key,
        title text not null constraint notes_title_key unique,
        stars integer not null,
        due_at timestamptz,
        created_at timestamptz not null
    );
    create index notes_created_at_note_id_idx on notes (created_at, note_id);

    create table note_labels (
        note_id uuid not null constraint note_labels_note_id_fkey references notes,
        label text not null
            constraint note_labels_label_format check (label ~ '^[a-z][a-z0-9-]*$')
            constraint note_labels_label_fkey references labels,
        position integer not null,
        constraint note_labels_pkey primary key (note_id, label)
    );
";

/// The channel the events trigger (migrations/0001_events.sql) notifies.
const EVENTS_CHANNEL: &str = "arena_events";

/// How long to wait for a notification that should come.
const NOTIFICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A port nothing listens on; commondb.toml allows it as a destination.
const CLOSED_PORT_ADDRESS: &str = "127.0.0.1:1";

/// The database's session time zone: UTC−03:30 (−02:30 in summer).
const SESSION_TIME_ZONE: &str = "America/St_Johns";

/// What a client is told about an internal error (crates/common/src/problem.rs).
const INTERNAL_DETAIL: &str =
    "An unexpected error occurred. It has been logged; quote the request id when reporting it.";

/// The notes API running on a fresh, migrated database with the fixture's tables.
struct Notes {
    arena: Arena,
    db: TestDatabase,
}

impl Notes {
    fn start() -> Notes {
        let db = TestDatabase::create();
        // Sessions in a zone far from UTC, at an odd offset: a timestamp read or
        // written as local time anywhere on the way would show.
        db.connect()
            .batch_execute(&format!(
                "alter database {} set timezone = '{SESSION_TIME_ZONE}'",
                db.name
            ))
            .unwrap();
        // No realtime hub: its sequencer rewrites event rows (their `xmin`), which
        // one test reads to see which transaction wrote an event.
        let arena = Arena::start_with_database(MANIFEST, &db.url(), &["--no-realtime"]);
        db.connect()
            .batch_execute(SCHEMA)
            .expect("creating the fixture's tables");
        Notes { arena, db }
    }

    fn post(&self, content_type: Option<&str>, body: impl Into<reqwest::blocking::Body>) -> Reply {
        post(&self.arena, content_type, body)
    }

    fn create(&self, body: &Value) -> Reply {
        self.post(Some("application/json"), body.to_string())
    }

    fn get(&self, path: &str) -> Reply {
        Reply::from(self.arena.get(path))
    }

    /// Rows in each table a create writes: notes, note_labels, events.
    fn counts(&self) -> [i64; 3] {
        let row = self
            .db
            .connect()
            .query_one(
                "select (select count(*) from notes), (select count(*) from note_labels),
                        (select count(*) from events)",
                &[],
            )
            .unwrap();
        [row.get(0), row.get(1), row.get(2)]
    }
}

/// `POST /commondb/notes` with `body`.
fn post(
    arena: &Arena,
    content_type: Option<&str>,
    body: impl Into<reqwest::blocking::Body>,
) -> Reply {
    let mut request = arena.client().post(format!("{}/commondb/notes", arena.url));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    Reply::from(request.body(body).send().unwrap())
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    request_id: String,
    text: String,
}

impl From<reqwest::blocking::Response> for Reply {
    fn from(response: reqwest::blocking::Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (content_type, request_id) = (header("content-type"), header("x-request-id"));
        Reply {
            status: response.status().as_u16(),
            content_type,
            request_id,
            text: response.text().unwrap(),
        }
    }
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text))
    }

    /// The body of a successful JSON response with `status`.
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.content_type, "application/json");
        self.json()
    }

    /// The problem document of a response with `status` and `code`, which names
    /// the request's path and id.
    fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.content_type, "application/problem+json",
            "{}",
            self.text
        );
        let problem = self.json();
        assert_eq!(problem["status"], status);
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["request_id"], self.request_id.as_str());
        assert!(
            problem["instance"]
                .as_str()
                .is_some_and(|path| path.starts_with("/commondb/")),
            "{problem}"
        );
        problem
    }
}

/// `[{field, message}]` of a problem, as pairs.
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let text = |key: &str| e[key].as_str().unwrap().to_owned();
                    (text("field"), text("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A connection LISTENing on the events channel.
fn listen(db: &TestDatabase) -> postgres::Client {
    let mut listener = db.connect();
    listener
        .batch_execute(&format!("listen {EVENTS_CHANNEL}"))
        .unwrap();
    listener
}

/// The next notification's payload, waiting at most [`NOTIFICATION_TIMEOUT`].
fn next_notification(listener: &mut postgres::Client) -> Value {
    let notification = listener
        .notifications()
        .timeout_iter(NOTIFICATION_TIMEOUT)
        .next()
        .expect("listening failed")
        .expect("no notification came");
    assert_eq!(notification.channel(), EVENTS_CHANNEL);
    serde_json::from_str(notification.payload()).unwrap()
}

fn note_id(created: &Value) -> &str {
    created["note"]["note_id"].as_str().unwrap()
}

#[test]
fn a_create_writes_the_row_and_its_event_in_one_transaction_and_notifies_listeners() {
    let notes = Notes::start();
    let mut listener = listen(&notes.db);

    let created = notes
        .create(&json!({ "title": "Tabs or spaces", "stars": 4, "labels": ["idea", "todo"] }))
        .ok(201);
    let id = note_id(&created);
    let event_id = created["event_id"].as_i64().unwrap();
    assert_eq!(created["note"]["title"], "Tabs or spaces");
    assert_eq!(created["note"]["stars"], 4);
    assert_eq!(created["note"]["due_at"], Value::Null);
    assert_eq!(created["labels"], json!(["idea", "todo"]));

    let mut client = notes.db.connect();
    let note = client
        .query_one(
            "select title, stars, xmin::text as tx from notes where note_id = $1::text::uuid",
            &[&id],
        )
        .unwrap();
    assert_eq!(note.get::<_, String>("title"), "Tabs or spaces");
    assert_eq!(note.get::<_, i32>("stars"), 4);
    let labels: Vec<String> = client
        .query(
            "select label from note_labels where note_id = $1::text::uuid order by position",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(labels, ["idea", "todo"]);

    let event = client
        .query_one(
            "select stream, type, payload::text as payload, xmin::text as tx
             from events where event_id = $1",
            &[&event_id],
        )
        .unwrap();
    assert_eq!(event.get::<_, String>("stream"), "notes");
    assert_eq!(event.get::<_, String>("type"), "note.created");
    let payload: Value = serde_json::from_str(event.get("payload")).unwrap();
    assert_eq!(payload, json!({ "note_id": id, "title": "Tabs or spaces" }));
    // Rows written by one transaction carry its id.
    assert_eq!(
        note.get::<_, String>("tx"),
        event.get::<_, String>("tx"),
        "the note and its event were written by different transactions"
    );

    assert_eq!(
        next_notification(&mut listener),
        json!({ "event_id": event_id, "stream": "notes" })
    );
    assert_eq!(notes.counts(), [1, 2, 1]);
}

#[test]
fn a_constraint_violated_after_the_insert_rolls_back_the_row_and_the_event() {
    let notes = Notes::start();
    let mut listener = listen(&notes.db);

    // Each fails on its second label, after the note and its event are written.
    let unique = notes
        .create(&json!({ "title": "one", "stars": 1, "labels": ["idea", "idea"] }))
        .problem(409, "conflict");
    // `note_labels_pkey` is mapped by the fixture's `on_constraint`.
    assert_eq!(unique["detail"], "the label \"idea\" is given twice");
    assert_eq!(
        field_errors(&unique),
        [(
            "labels[1]".to_owned(),
            "repeats an earlier label".to_owned()
        )]
    );
    assert_eq!(notes.counts(), [0, 0, 0]);

    // The check and the foreign key are left to the default mapping.
    let check = notes
        .create(&json!({ "title": "two", "stars": 1, "labels": ["idea", "Not A Label"] }))
        .problem(400, "validation_failed");
    assert_eq!(
        check["detail"],
        "a value is outside the range the database allows"
    );
    assert_eq!(notes.counts(), [0, 0, 0]);

    let foreign_key = notes
        .create(&json!({ "title": "three", "stars": 1, "labels": ["idea", "unheard-of"] }))
        .problem(409, "conflict");
    assert_eq!(
        foreign_key["detail"],
        "the request refers to a resource that does not exist, or removes one still in use"
    );
    assert_eq!(notes.counts(), [0, 0, 0]);

    // Notifications arrive in commit order, and a rolled-back transaction
    // sends none: the first one to arrive is this create's.
    let created = notes
        .create(&json!({ "title": "four", "stars": 1, "labels": ["idea"] }))
        .ok(201);
    assert_eq!(
        next_notification(&mut listener),
        json!({ "event_id": created["event_id"], "stream": "notes" })
    );
    assert_eq!(notes.counts(), [1, 1, 1]);
}

#[test]
fn a_taken_title_is_the_409_its_constraint_is_mapped_to_and_writes_nothing() {
    let notes = Notes::start();
    notes
        .create(&json!({ "title": "Only once", "stars": 2 }))
        .ok(201);
    let before = notes.counts();

    let problem = notes
        .create(&json!({ "title": "Only once", "stars": 3, "labels": ["todo"] }))
        .problem(409, "conflict");
    // The generic 409 says "the request conflicts with an existing resource";
    // this is the fixture's answer for `notes_title_key`.
    assert_eq!(
        problem["detail"],
        "a note titled \"Only once\" already exists"
    );
    assert_eq!(
        field_errors(&problem),
        [("title".to_owned(), "is taken".to_owned())]
    );
    assert_eq!(notes.counts(), before);
}

#[test]
fn concurrent_creates_of_one_title_make_one_note_and_one_event() {
    // The database decides who was first; nobody checks with a SELECT.
    let notes = Notes::start();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let creates: Vec<_> = (0..8)
            .map(|stars| {
                let notes = &notes;
                scope.spawn(move || {
                    notes
                        .create(&json!({ "title": "Race", "stars": stars % 6 }))
                        .status
                })
            })
            .collect();
        creates.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 409).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(notes.counts(), [1, 0, 1]);
}

#[test]
fn text_holding_u0000_is_a_400_and_writes_nothing() {
    // Valid JSON and a valid Rust `String`, but PostgreSQL's `text` cannot hold
    // U+0000 and refuses it with SQLSTATE 22021: the client's input, not a 500.
    let notes = Notes::start();
    let mut listener = listen(&notes.db);
    let in_the_note = notes
        .create(&json!({ "title": "nul\u{0}byte", "stars": 1 }))
        .problem(400, "validation_failed");
    assert_eq!(
        in_the_note["detail"],
        "a text value contains a character the database cannot store, such as U+0000"
    );
    // In a label, after the note and its event are written: all rolled back.
    notes
        .create(&json!({ "title": "fine", "stars": 1, "labels": ["idea", "to\u{0}do"] }))
        .problem(400, "validation_failed");
    assert_eq!(notes.counts(), [0, 0, 0]);

    let created = notes
        .create(&json!({ "title": "fine", "stars": 1, "labels": ["idea"] }))
        .ok(201);
    assert_eq!(
        next_notification(&mut listener),
        json!({ "event_id": created["event_id"], "stream": "notes" })
    );
}

#[test]
fn bad_bodies_are_4xx_problems_naming_the_field_and_change_nothing() {
    let notes = Notes::start();
    let json_body = |body: &str| notes.post(Some("application/json"), body.to_owned());

    let malformed =
        json_body("{\"title\": \"x\",\n \"stars\": }").problem(400, "validation_failed");
    assert_eq!(
        malformed["detail"],
        "the request body is not valid JSON: expected value at line 2, column 11"
    );
    let empty = json_body("").problem(400, "validation_failed");
    assert_eq!(
        empty["detail"],
        "the request body is empty; expected a JSON document"
    );

    let cases = [
        (
            r#"{"title": "x", "stars": 1, "colour": "red"}"#,
            "colour",
            "is not a known field",
        ),
        (
            r#"{"title": "x", "stars": "many"}"#,
            "stars",
            "invalid type",
        ),
        (
            r#"{"title": "x", "stars": 1, "labels": [7]}"#,
            "labels[0]",
            "invalid type",
        ),
        (
            r#"{"title": "x", "stars": 1, "due_at": "next tuesday"}"#,
            "due_at",
            "expected an RFC 3339 timestamp, got \"next tuesday\"",
        ),
        (r#"{"stars": 1}"#, "title", "is required"),
        (
            r#"{"title": "x", "stars": 99999999999}"#,
            "stars",
            "invalid value: integer `99999999999`, expected i32",
        ),
        (
            r#"{"title": "x", "stars": 9}"#,
            "stars",
            "must be between 0 and 5, got 9",
        ),
        (
            r#"{"title": "", "stars": 0}"#,
            "title",
            "must have 1 to 100 characters, got 0",
        ),
    ];
    for (body, field, message) in cases {
        let problem = json_body(body).problem(400, "validation_failed");
        let errors = field_errors(&problem);
        assert_eq!(errors.len(), 1, "{body}: {problem}");
        assert_eq!(errors[0].0, field, "{body}: {problem}");
        assert!(errors[0].1.contains(message), "{body}: {problem}");
    }

    // Over the shared crate's 1 MiB limit, declared up front and streamed.
    let big = json!({ "title": "x".repeat(2 << 20), "stars": 1 }).to_string();
    let declared = json_body(&big);
    let declared = declared.problem(413, "payload_too_large");
    assert!(
        declared["detail"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes")
    );
    let (status, chunked) = post_chunked(&notes.arena, "/commondb/notes", big.as_bytes());
    assert_eq!(status, 413, "{chunked}");
    assert_eq!(chunked["code"], "payload_too_large", "{chunked}");

    let body = r#"{"title": "x", "stars": 1}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        notes
            .post(content_type, body.to_owned())
            .problem(415, "unsupported_media_type");
    }

    assert_eq!(notes.counts(), [0, 0, 0]);
    // The same body, well labelled, is fine: the refusals were the body's fault.
    notes
        .post(Some("application/json"), body.to_owned())
        .ok(201);
}

#[test]
fn a_row_that_does_not_decode_is_a_500_whose_cause_is_logged_not_sent() {
    let notes = Notes::start();
    let created = notes
        .create(&json!({ "title": "s3cret title", "stars": 5 }))
        .ok(201);
    let id = note_id(&created);

    let reply = notes.get(&format!("/commondb/notes/{id}/summary"));
    let problem = reply.problem(500, "internal");
    assert_eq!(problem["detail"], INTERNAL_DETAIL);
    for leak in ["stars", "bigint", "integer", "decod", "s3cret", "select"] {
        assert!(
            !reply.text.contains(leak),
            "{leak:?} leaked: {}",
            reply.text
        );
    }

    let cause = "decoding column stars: expected bigint, got integer";
    let logged = notes
        .arena
        .wait_for_log(Duration::from_secs(5), |entry| {
            entry["message"]
                .as_str()
                .is_some_and(|message| message.contains(cause))
        })
        .unwrap_or_else(|| panic!("the cause was not logged: {:#?}", notes.arena.logs()));
    assert_eq!(logged["component"], "commondb");
    assert_eq!(logged["request_id"], reply.request_id.as_str());
    assert!(!logged.to_string().contains("s3cret"), "{logged}");

    // The note itself is fine, through a type that matches it.
    notes.get(&format!("/commondb/notes/{id}")).ok(200);
}

#[test]
fn timestamps_round_trip_to_the_microsecond_and_ids_are_stored_v7_uuids() {
    let notes = Notes::start();
    let before = unix_micros(SystemTime::now());
    let created = notes
        .create(&json!({
            "title": "Due soon",
            "stars": 3,
            "due_at": "2031-05-06T07:08:09.123456+02:00",
        }))
        .ok(201);
    let after = unix_micros(SystemTime::now());
    let note = &created["note"];
    let id = note["note_id"].as_str().unwrap();
    assert_eq!(note["due_at"], "2031-05-06T05:08:09.123456Z");

    // The database holds what the response says, to the microsecond.
    let mut client = notes.db.connect();
    let stored = client
        .query_one(
            "select note_id::text as note_id,
                    to_char(due_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') as due_at,
                    to_char(created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') as created_at,
                    (extract(epoch from created_at) * 1000000)::bigint as created_micros
             from notes",
            &[],
        )
        .unwrap();
    assert_eq!(stored.get::<_, String>("note_id"), id);
    assert_eq!(
        stored.get::<_, String>("due_at"),
        "2031-05-06T05:08:09.123456Z"
    );
    assert_eq!(stored.get::<_, String>("created_at"), note["created_at"]);
    let created_micros: i64 = stored.get("created_micros");
    assert!(
        (before..=after).contains(&created_micros),
        "created_at {created_micros} is not between {before} and {after}"
    );

    // A UUID v7: version 7, RFC 9562 variant, and its first 48 bits the
    // creation time in milliseconds.
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "7", "{id}");
    assert!("89ab".contains(&id[19..20]), "{id}");
    let id_millis = i64::from_str_radix(&id[..8], 16).unwrap() << 16
        | i64::from_str_radix(&id[9..13], 16).unwrap();
    assert!(
        (before / 1000..=after / 1000).contains(&id_millis),
        "the id's time {id_millis} is not between {before} and {after} µs"
    );

    // Read back through the component, the same values.
    let read = notes.get(&format!("/commondb/notes/{id}")).ok(200);
    assert_eq!(read["note"], *note);
    assert_eq!(read["labels"], json!([]));

    // Finer than a microsecond is cut off, not rounded, on the way in.
    let fine = notes
        .create(&json!({ "title": "Fine", "stars": 0, "due_at": "1999-12-31T23:59:59.9999999Z" }))
        .ok(201);
    assert_eq!(fine["note"]["due_at"], "1999-12-31T23:59:59.999999Z");
    let fine_id = note_id(&fine);
    let read = notes.get(&format!("/commondb/notes/{fine_id}")).ok(200);
    assert_eq!(read["note"]["due_at"], "1999-12-31T23:59:59.999999Z");

    // Before the Unix epoch and at the ends of RFC 3339's years, as exactly.
    for (n, instant) in [
        "1969-12-31T23:59:59.000001Z",
        "0001-01-01T00:00:00.000001Z",
        "9999-12-31T23:59:59.999999Z",
    ]
    .into_iter()
    .enumerate()
    {
        let title = format!("edge {n}");
        let created = notes
            .create(&json!({ "title": title, "stars": 0, "due_at": instant }))
            .ok(201);
        assert_eq!(created["note"]["due_at"], instant);
        let stored: String = client
            .query_one(
                "select to_char(due_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                 from notes where title = $1",
                &[&title],
            )
            .unwrap()
            .get(0);
        assert_eq!(stored, instant);
        let read = notes
            .get(&format!("/commondb/notes/{}", note_id(&created)))
            .ok(200);
        assert_eq!(read["note"]["due_at"], instant);
    }

    // A row written by SQL with other offsets reads back in UTC.
    let from_sql = "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f";
    client
        .execute(
            "insert into notes (note_id, title, stars, due_at, created_at)
             values ($1::text::uuid, 'From SQL', 1, '2031-05-06 07:08:09.123456+02',
                     '2000-02-29 23:59:59.000001-03:30')",
            &[&from_sql],
        )
        .unwrap();
    let read = notes.get(&format!("/commondb/notes/{from_sql}")).ok(200);
    assert_eq!(read["note"]["note_id"], from_sql);
    assert_eq!(read["note"]["due_at"], "2031-05-06T05:08:09.123456Z");
    assert_eq!(read["note"]["created_at"], "2000-03-01T03:29:59.000001Z");

    // Ids from the path: malformed is a 400 naming it, unknown is a 404.
    let malformed = notes
        .get("/commondb/notes/not-a-uuid")
        .problem(400, "validation_failed");
    assert_eq!(
        field_errors(&malformed),
        [(
            "note_id".to_owned(),
            "must be a UUID, got \"not-a-uuid\"".to_owned()
        )]
    );
    notes
        .get("/commondb/notes/0191f0c4-0000-7000-8000-000000000000")
        .problem(404, "not_found");
}

#[test]
fn pages_of_fifty_walk_every_row_once_in_a_stable_order() {
    let notes = Notes::start();
    let mut client = notes.db.connect();
    // 120 notes on 7 instants with microsecond fractions: many share a
    // `created_at`, so the order rests on the id breaking ties.
    client
        .batch_execute(
            "insert into notes (note_id, title, stars, created_at)
             select gen_random_uuid(), 'note ' || g, g % 6,
                    timestamptz '2030-01-01 00:00:00+00' + (g % 7) * interval '1.000001 second'
             from generate_series(1, 120) as g",
        )
        .unwrap();
    let expected: Vec<String> = client
        .query(
            "select note_id::text from notes order by created_at, note_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();

    let page = |query: &str| notes.get(&format!("/commondb/notes?{query}")).ok(200);
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|note| note["note_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let cursor_of = |page: &Value| page["next_cursor"].as_str().unwrap().to_owned();

    let first = page("limit=50");
    assert_eq!(ids(&first), expected[..50]);

    // Rows written between pages do not shift the walk: one sorting before
    // the cursor is not seen, one sorting after the last row is.
    client
        .batch_execute(
            "insert into notes (note_id, title, stars, created_at) values
             (gen_random_uuid(), 'early', 0, '2029-01-01 00:00:00+00'),
             (gen_random_uuid(), 'late', 0, '2031-01-01 00:00:00+00')",
        )
        .unwrap();
    let late: String = client
        .query_one("select note_id::text from notes where title = 'late'", &[])
        .unwrap()
        .get(0);

    let second = page(&format!("limit=50&cursor={}", cursor_of(&first)));
    assert_eq!(ids(&second), expected[50..100]);
    let third = page(&format!("limit=50&cursor={}", cursor_of(&second)));
    assert_eq!(third["next_cursor"], Value::Null);
    let mut rest = expected[100..].to_vec();
    rest.push(late);
    assert_eq!(ids(&third), rest);

    let walked: Vec<String> = [first, second, third].iter().flat_map(ids).collect();
    let distinct: HashSet<&String> = walked.iter().collect();
    assert_eq!(walked.len(), 121);
    assert_eq!(distinct.len(), 121, "a note appeared twice");

    // Without a limit, the default of 50.
    assert_eq!(ids(&page("")).len(), 50);

    // A cursor the list did not give out is the client's mistake.
    let good = cursor_of(&page("limit=50"));
    let tampered = format!("{}{}", &good[..good.len() - 3], "AAA");
    let shapeless = "WzEsMl0"; // base64url of `[1,2]`: JSON, but not this list's key
    for cursor in [tampered.as_str(), shapeless, "!!!", &good[1..]] {
        let problem = notes
            .get(&format!("/commondb/notes?cursor={cursor}"))
            .problem(400, "validation_failed");
        assert_eq!(field_errors(&problem)[0].0, "cursor", "{cursor}: {problem}");
    }
    for limit in ["0", "201", "fifty"] {
        let problem = notes
            .get(&format!("/commondb/notes?limit={limit}"))
            .problem(400, "validation_failed");
        assert_eq!(field_errors(&problem)[0].0, "limit", "{limit}: {problem}");
    }
}

#[test]
fn an_unreachable_database_is_503_upstream_unavailable_without_its_address() {
    let refused = TcpStream::connect(CLOSED_PORT_ADDRESS).map(drop);
    assert!(
        matches!(&refused, Err(error) if error.kind() == ErrorKind::ConnectionRefused),
        "the test needs nothing listening on {CLOSED_PORT_ADDRESS}: {refused:?}"
    );
    let address = format!("postgres://postgres@{CLOSED_PORT_ADDRESS}/arena?sslmode=disable");
    let arena = Arena::start_with_env(
        MANIFEST,
        &[],
        &[("SPIN_VARIABLE_DATABASE_URL", address.as_str())],
    );
    let get = |path: &str| Reply::from(arena.get(path));
    let create = |body: &str| post(&arena, Some("application/json"), body.to_owned());

    for reply in [
        get("/commondb/notes"),
        get("/commondb/notes/0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f"),
        create(r#"{"title": "x", "stars": 1}"#),
    ] {
        let problem = reply.problem(503, "upstream_unavailable");
        assert_eq!(problem["detail"], "the database is unavailable");
        assert!(!reply.text.contains("127.0.0.1"), "{}", reply.text);
    }

    // Bad input is still the client's fault, found before the database is needed.
    create(r#"{"title": "x"}"#).problem(400, "validation_failed");
    get("/commondb/notes?cursor=!!!").problem(400, "validation_failed");

    // The log says why, and it is a refused connection, not a refused destination.
    let cause = arena
        .wait_for_log(Duration::from_secs(5), |entry| {
            entry["component"] == "commondb"
                && entry["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("upstream_unavailable"))
        })
        .unwrap_or_else(|| panic!("the cause was not logged: {:#?}", arena.logs()));
    let cause = cause["message"].as_str().unwrap();
    assert!(cause.contains("connecting"), "{cause}");
    assert!(cause.to_lowercase().contains("refused"), "{cause}");
    assert!(
        !arena
            .logs()
            .iter()
            .any(|entry| entry["message"] == "connection to disallowed destination"),
        "{:#?}",
        arena.logs()
    );
}

/// POSTs `body` as JSON in chunks, without a `Content-Length`, over a plain
/// socket: the status and problem document of the answer.
///
/// Not reqwest: its blocking client reports the failure to send the rest of a
/// streamed body (the server answers 413 and closes) instead of the response.
fn post_chunked(arena: &Arena, path: &str, body: &[u8]) -> (u16, Value) {
    let address = arena.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    let mut sent = stream.write_all(head.as_bytes());
    for chunk in body.chunks(64 * 1024) {
        sent = sent
            .and_then(|()| write!(stream, "{:x}\r\n", chunk.len()))
            .and_then(|()| stream.write_all(chunk))
            .and_then(|()| stream.write_all(b"\r\n"));
    }
    // The server may stop reading once it has seen enough, and close: the
    // answer is still there to read.
    let _ = sent.and_then(|()| stream.write_all(b"0\r\n\r\n"));
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, mut rest) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut decoded = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        decoded.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    (status, serde_json::from_str(&decoded).unwrap())
}

fn unix_micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}
