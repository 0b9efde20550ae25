//! Database failures, and the one place they become problems.

use std::fmt;

use spin_sdk::pg::{PgError, QueryError};

use crate::{Problem, ProblemCode};

/// Seconds a client should wait before retrying a transaction that lost a race.
const RETRY_AFTER_CONFLICT: u64 = 1;

/// Why a database call failed. Converts into a [`Problem`] with `?` (see the table in
/// the [module docs](super)); [`ResultExt::on_constraint`] picks another problem for
/// a named constraint first.
#[derive(Debug)]
pub enum DbError {
    /// PostgreSQL, or the host's connection to it, refused or failed a step.
    Pg {
        /// What was being done: the statement, or `connecting`.
        during: String,
        /// Boxed: it is large, and errors travel up every call.
        error: Box<PgError>,
    },
    /// A column's value is not the Rust type it was read as: a bug in the query or
    /// the handler.
    Decode { column: String, message: String },
    /// A statement expected to return one row returned another number.
    RowCount { expected: &'static str, got: usize },
    /// A parameter could not be encoded (a value that does not serialize to JSON).
    Encode(String),
    /// Already decided by the caller: see [`ResultExt::on_constraint`].
    Problem(Problem),
}

impl DbError {
    /// A failure of the step `during` (a statement, or `connecting`).
    pub(crate) fn pg(during: &str, error: spin_sdk::pg::Error) -> Self {
        let error = match error {
            spin_sdk::pg::Error::PgError(error) => error,
            // Only spin-sdk's own `Decode` impls make this, and they are not used here.
            spin_sdk::pg::Error::Decode(message) => PgError::Other(message),
        };
        Self::Pg {
            during: during.to_owned(),
            error: Box::new(error),
        }
    }

    /// PostgreSQL's structured error, when it sent one.
    fn server_error(&self) -> Option<&spin_sdk::pg::DbError> {
        match self {
            Self::Pg { error, .. } => match &**error {
                PgError::QueryFailed(QueryError::DbError(error)) => Some(error),
                _ => None,
            },
            _ => None,
        }
    }

    /// The SQLSTATE PostgreSQL reported (`23505` for a unique violation), if any.
    pub fn sqlstate(&self) -> Option<&str> {
        self.server_error().map(|error| error.code.as_str())
    }

    /// The constraint PostgreSQL reported as violated (`agents_name_key`), if any.
    pub fn constraint(&self) -> Option<&str> {
        let error = self.server_error()?;
        error
            .extras
            .iter()
            .find(|(name, _)| name == "constraint")
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pg { during, error } => match &**error {
                // `as_text` has everything PostgreSQL said, the detail and hint too.
                PgError::QueryFailed(QueryError::DbError(error)) => {
                    write!(f, "{during}: {}", error.as_text)
                }
                // The host's own sentence, without the enum's debug dressing around it
                // (`Error::ConnectionFailed("...")`).
                PgError::ConnectionFailed(message) => write!(f, "{during}: {message}"),
                error => write!(f, "{during}: {error}"),
            },
            Self::Decode { column, message } => write!(f, "decoding column {column}: {message}"),
            Self::RowCount { expected, got } => {
                write!(f, "expected {expected} row, the statement returned {got}")
            }
            Self::Encode(message) => write!(f, "encoding a parameter: {message}"),
            Self::Problem(problem) => write!(f, "{problem}"),
        }
    }
}

impl std::error::Error for DbError {}

/// What the client is told about a database failure no caller mapped.
impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        if let DbError::Problem(problem) = error {
            return problem;
        }
        if let DbError::Pg { error: pg, .. } = &error
            && matches!(**pg, PgError::ConnectionFailed(_))
        {
            return database_unavailable(&error);
        }
        match error.sqlstate().map(Sqlstate::classify) {
            Some(Sqlstate::UniqueViolation) => {
                Problem::conflict("the request conflicts with an existing resource")
            }
            Some(Sqlstate::ForeignKeyViolation) => Problem::conflict(
                "the request refers to a resource that does not exist, or removes one still in use",
            ),
            Some(Sqlstate::CheckViolation) => {
                Problem::validation_failed("a value is outside the range the database allows")
            }
            Some(Sqlstate::UnstorableCharacter) => Problem::validation_failed(
                "a text value contains a character the database cannot store, such as U+0000",
            ),
            Some(Sqlstate::TransientConflict) => Problem::new(
                ProblemCode::Unavailable,
                "the request collided with a concurrent one and changed nothing; retry it",
            )
            .with_retry_after(RETRY_AFTER_CONFLICT)
            .with_cause(&error),
            Some(Sqlstate::Unavailable) => database_unavailable(&error),
            Some(Sqlstate::Other) | None => Problem::internal(&error),
        }
    }
}

fn database_unavailable(error: &DbError) -> Problem {
    Problem::upstream_unavailable("the database is unavailable").with_cause(error)
}

/// The SQLSTATEs answered other than with a 500.
#[derive(Debug, PartialEq, Eq)]
enum Sqlstate {
    UniqueViolation,
    ForeignKeyViolation,
    CheckViolation,
    /// Text the client sent holds a character PostgreSQL cannot store: U+0000,
    /// which JSON allows as `\u0000` and `text` does not, or one outside a
    /// non-Unicode server encoding.
    UnstorableCharacter,
    /// Retrying the same transaction may well succeed.
    TransientConflict,
    /// The server cannot serve now.
    Unavailable,
    Other,
}

impl Sqlstate {
    fn classify(code: &str) -> Self {
        match code {
            "23505" => Self::UniqueViolation,
            "23503" => Self::ForeignKeyViolation,
            "23514" => Self::CheckViolation,
            // character_not_in_repertoire, untranslatable_character
            "22021" | "22P05" => Self::UnstorableCharacter,
            // serialization_failure, deadlock_detected
            "40001" | "40P01" => Self::TransientConflict,
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
            "57P01" | "57P02" | "57P03" | "53300" => Self::Unavailable,
            // Class 08: connection exception.
            code if code.starts_with("08") => Self::Unavailable,
            _ => Self::Other,
        }
    }
}

/// Maps a named constraint's violation to the caller's own problem.
pub trait ResultExt<T> {
    /// If the error is a violation of `constraint` (unique, foreign key, check or
    /// exclusion alike: constraint names are unique per table), `problem` decides the
    /// answer; any other error is left for the default mapping. Chains:
    ///
    /// ```no_run
    /// # use arena_common::db::{Db, ResultExt};
    /// # use arena_common::Problem;
    /// # async fn seat(db: &Db, params: &[arena_common::db::ParameterValue]) -> Result<(), Problem> {
    /// db.execute("insert into seats (discussion_id, agent_id) values ($1, $2)", params)
    ///     .await
    ///     .on_constraint("seats_pkey", |_| Problem::conflict("the agent already has a seat"))
    ///     .on_constraint("seats_agent_id_fkey", |_| {
    ///         Problem::validation_failed("no such agent").with_field_error("agent_id", "names no agent")
    ///     })?;
    /// # Ok(()) }
    /// ```
    fn on_constraint(
        self,
        constraint: &str,
        problem: impl FnOnce(&DbError) -> Problem,
    ) -> Result<T, DbError>;
}

impl<T> ResultExt<T> for Result<T, DbError> {
    fn on_constraint(
        self,
        constraint: &str,
        problem: impl FnOnce(&DbError) -> Problem,
    ) -> Result<T, DbError> {
        self.map_err(|error| {
            if error.constraint() == Some(constraint) {
                DbError::Problem(problem(&error))
            } else {
                error
            }
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::StatusCode;
    use http::header::RETRY_AFTER;

    /// The error PostgreSQL sends for `code`, naming `constraint` if given, as Spin's
    /// host reports it.
    pub(crate) fn server_error(code: &str, constraint: Option<&str>) -> DbError {
        let mut extras = vec![("table".to_owned(), "agents".to_owned())];
        if let Some(constraint) = constraint {
            extras.push(("constraint".to_owned(), constraint.to_owned()));
        }
        DbError::Pg {
            during: "insert into agents ...".to_owned(),
            error: Box::new(PgError::QueryFailed(QueryError::DbError(
                spin_sdk::pg::DbError {
                    as_text: format!("db error: ERROR: code {code} at 10.0.0.5"),
                    severity: "ERROR".to_owned(),
                    code: code.to_owned(),
                    message: "something".to_owned(),
                    detail: Some("Key (name)=(ada) already exists.".to_owned()),
                    extras,
                },
            ))),
        }
    }

    fn answer(error: DbError) -> (StatusCode, ProblemCode) {
        let problem = Problem::from(error);
        (problem.status(), problem.code())
    }

    #[test]
    fn constraint_violations_are_client_errors() {
        assert_eq!(
            answer(server_error("23505", Some("agents_name_key"))),
            (StatusCode::CONFLICT, ProblemCode::Conflict)
        );
        assert_eq!(
            answer(server_error("23503", Some("seats_agent_id_fkey"))),
            (StatusCode::CONFLICT, ProblemCode::Conflict)
        );
        assert_eq!(
            answer(server_error("23514", Some("agents_temperature_check"))),
            (StatusCode::BAD_REQUEST, ProblemCode::ValidationFailed)
        );
    }

    #[test]
    fn text_the_database_cannot_store_is_a_client_error() {
        // PostgreSQL refuses U+0000 in `text` with 22021, whatever the column.
        for code in ["22021", "22P05"] {
            let problem = Problem::from(server_error(code, None));
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{code}");
            assert_eq!(problem.code(), ProblemCode::ValidationFailed);
            assert!(problem.detail().contains("U+0000"), "{}", problem.detail());
        }
    }

    #[test]
    fn a_lost_race_is_a_retryable_503() {
        for code in ["40001", "40P01"] {
            let problem = Problem::from(server_error(code, None));
            assert_eq!(problem.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(problem.code(), ProblemCode::Unavailable);
            assert_eq!(problem.to_response().headers()[RETRY_AFTER], "1");
        }
    }

    #[test]
    fn an_unreachable_database_is_upstream_unavailable() {
        let refused = DbError::Pg {
            during: "connecting".to_owned(),
            error: Box::new(PgError::ConnectionFailed(
                "connection refused (10.0.0.5:5432)".to_owned(),
            )),
        };
        assert_eq!(
            refused.to_string(),
            "connecting: connection refused (10.0.0.5:5432)"
        );
        let problem = Problem::from(refused);
        assert_eq!(problem.code(), ProblemCode::UpstreamUnavailable);
        assert_eq!(problem.detail(), "the database is unavailable");
        assert!(!problem.to_response().body().contains("10.0.0.5"));

        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert_eq!(
                answer(server_error(code, None)).1,
                ProblemCode::UpstreamUnavailable,
                "{code}"
            );
        }
    }

    #[test]
    fn anything_else_is_internal_and_keeps_its_cause_out_of_the_body() {
        let others = [
            server_error("42P01", None), // undefined_table
            server_error("23502", None), // not_null_violation: the handler's bug
            DbError::Pg {
                during: "select 1".to_owned(),
                error: Box::new(PgError::BadParameter("invalid uuid".to_owned())),
            },
            DbError::Pg {
                during: "select 1".to_owned(),
                error: Box::new(PgError::QueryFailed(QueryError::Text(
                    "connection closed".to_owned(),
                ))),
            },
            DbError::Decode {
                column: "agent_id".to_owned(),
                message: "expected uuid, got text".to_owned(),
            },
            DbError::RowCount {
                expected: "exactly one",
                got: 0,
            },
        ];
        for error in others {
            let cause = error.to_string();
            let problem = Problem::from(error);
            assert_eq!(problem.code(), ProblemCode::Internal, "{cause}");
            let body = problem.to_response().into_body();
            assert!(
                !body.contains("10.0.0.5") && !body.contains("agent_id"),
                "{body}"
            );
        }
    }

    #[test]
    fn a_decode_error_names_the_column_in_its_cause() {
        let error = DbError::Decode {
            column: "agent_id".to_owned(),
            message: "expected uuid, got text".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "decoding column agent_id: expected uuid, got text"
        );
    }

    #[test]
    fn sqlstate_and_constraint_are_read_from_the_server_error() {
        let error = server_error("23505", Some("agents_name_key"));
        assert_eq!(error.sqlstate(), Some("23505"));
        assert_eq!(error.constraint(), Some("agents_name_key"));
        assert_eq!(server_error("23505", None).constraint(), None);
        assert_eq!(DbError::Encode("x".into()).sqlstate(), None);
    }

    #[test]
    fn on_constraint_maps_only_the_named_constraint() {
        let taken = || Problem::conflict("an agent named \"ada\" already exists");
        let mapped: Result<(), _> = Err(server_error("23505", Some("agents_name_key")));
        let problem = Problem::from(
            mapped
                .on_constraint("agents_name_key", |_| taken())
                .unwrap_err(),
        );
        assert_eq!(problem.detail(), "an agent named \"ada\" already exists");

        let other: Result<(), _> = Err(server_error("23505", Some("agents_pkey")));
        let problem = Problem::from(
            other
                .on_constraint("agents_name_key", |_| taken())
                .unwrap_err(),
        );
        assert_eq!(
            problem.detail(),
            "the request conflicts with an existing resource"
        );
    }

    #[test]
    fn on_constraint_chains_and_the_first_match_wins() {
        let result: Result<(), _> = Err(server_error("23503", Some("seats_agent_id_fkey")));
        let problem = Problem::from(
            result
                .on_constraint("seats_pkey", |_| Problem::conflict("already seated"))
                .on_constraint("seats_agent_id_fkey", |_| {
                    Problem::validation_failed("no such agent")
                })
                .on_constraint("seats_agent_id_fkey", |_| Problem::conflict("unreachable"))
                .unwrap_err(),
        );
        assert_eq!(problem.code(), ProblemCode::ValidationFailed);
        assert_eq!(problem.detail(), "no such agent");
    }

    #[test]
    fn ok_passes_through_on_constraint() {
        let ok: Result<u64, DbError> = Ok(1);
        assert_eq!(
            ok.on_constraint("x", |_| Problem::conflict("x")).unwrap(),
            1
        );
    }
}
