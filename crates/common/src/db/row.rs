//! Rows, and decoding their columns into Rust types.
//!
//! | Rust type | PostgreSQL type |
//! |---|---|
//! | `bool` | `boolean` |
//! | `i16`, `i32`, `i64` | `smallint`, `integer`, `bigint` (exactly: no widening) |
//! | `f32`, `f64` | `real`, `double precision` |
//! | `String` | `text`, `varchar`, `char(n)` |
//! | `Vec<u8>` | `bytea` |
//! | [`Uuid`] | `uuid` |
//! | [`Timestamp`] | `timestamptz` (and `timestamp`, taken as UTC) |
//! | `serde_json::Value`, [`Json<T>`] | `jsonb` |
//! | [`Role`](crate::auth::Role) | `text` holding a role name |
//! | `Option<T>` | any of these, `NULL` as `None` |

use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use serde::de::DeserializeOwned;
use spin_sdk::pg::DbValue;

use super::DbError;
use crate::ids::Uuid;
use crate::time::Timestamp;

/// One row of a result: its values by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<DbValue>,
}

impl Row {
    /// A row of `values` under `columns` (shared by every row of a result). Queries
    /// make rows; tests of a [`FromRow`] impl make their own.
    pub fn new(columns: Arc<[String]>, values: Vec<DbValue>) -> Self {
        Self { columns, values }
    }

    /// The value of `column` as a `T`. A column the row lacks, or a value that is not
    /// a `T` (`NULL` included, unless `T` is an `Option`), is a [`DbError::Decode`]
    /// naming the column: a 500, since the query and the type disagree.
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T, DbError> {
        let decode_error = |message: String| DbError::Decode {
            column: column.to_owned(),
            message,
        };
        let index = self
            .columns
            .iter()
            .position(|name| name == column)
            .ok_or_else(|| {
                decode_error(format!(
                    "the row has no such column; it has {}",
                    self.columns.join(", ")
                ))
            })?;
        let value = self
            .values
            .get(index)
            .ok_or_else(|| decode_error("the row is shorter than its columns".to_owned()))?;
        T::from_value(value).map_err(decode_error)
    }
}

/// A Rust type a column's value decodes into; the module table lists them.
pub trait FromValue: Sized {
    /// The value as a `Self`, or what is wrong with it. The message may name the
    /// value's type but not quote the value: it is logged, and columns hold secrets.
    fn from_value(value: &DbValue) -> Result<Self, String>;
}

/// A type made from a whole row: what [`Db::query`](super::Db::query) and its
/// siblings decode into.
pub trait FromRow: Sized {
    /// Reads the fields from `row`, typically one [`Row::get`] each.
    fn from_row(row: Row) -> Result<Self, DbError>;
}

/// The row itself, for a handler that reads columns as it goes.
impl FromRow for Row {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(row)
    }
}

/// A `jsonb` column decoded into a `T` through serde.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromValue for Json<T> {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        match value {
            DbValue::Jsonb(bytes) => serde_json::from_slice(bytes)
                .map(Json)
                .map_err(|error| format!("the jsonb does not fit the type: {error}")),
            other => Err(mismatch("jsonb", other)),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        match value {
            DbValue::DbNull => Ok(None),
            value => T::from_value(value).map(Some),
        }
    }
}

/// `FromValue` for types that are one `DbValue` variant's payload, as is.
macro_rules! from_variant {
    ($($rust:ty => $variant:ident as $sql:literal),* $(,)?) => {
        $(
            impl FromValue for $rust {
                fn from_value(value: &DbValue) -> Result<Self, String> {
                    match value {
                        DbValue::$variant(inner) => Ok(inner.clone()),
                        other => Err(mismatch($sql, other)),
                    }
                }
            }
        )*
    };
}

from_variant! {
    bool => Boolean as "boolean",
    i16 => Int16 as "smallint",
    i32 => Int32 as "integer",
    i64 => Int64 as "bigint",
    f32 => Floating32 as "real",
    f64 => Floating64 as "double precision",
    String => Str as "text",
    Vec<u8> => Binary as "bytea",
}

impl FromValue for Uuid {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        match value {
            DbValue::Uuid(text) => {
                Uuid::try_parse(text).map_err(|error| format!("malformed uuid: {error}"))
            }
            other => Err(mismatch("uuid", other)),
        }
    }
}

/// A role column holds its name (`admin`, `member`, `viewer`).
impl FromValue for crate::auth::Role {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        match value {
            DbValue::Str(text) => text.parse().map_err(|_| "not a role name".to_owned()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl FromValue for serde_json::Value {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        Json::from_value(value).map(|Json(json)| json)
    }
}

/// The WIT interface gives `timestamptz` as its UTC wall time.
impl FromValue for Timestamp {
    fn from_value(value: &DbValue) -> Result<Self, String> {
        match value {
            &DbValue::Datetime((year, month, day, hour, minute, second, nanosecond)) => {
                let date = NaiveDate::from_ymd_opt(year, month.into(), day.into());
                let time = NaiveTime::from_hms_nano_opt(
                    hour.into(),
                    minute.into(),
                    second.into(),
                    nanosecond,
                );
                match date.zip(time) {
                    Some((date, time)) => Ok(Timestamp::from(date.and_time(time).and_utc())),
                    None => Err("the datetime is not a valid date and time".to_owned()),
                }
            }
            other => Err(mismatch("timestamptz", other)),
        }
    }
}

fn mismatch(expected: &str, got: &DbValue) -> String {
    format!("expected {expected}, got {}", type_name(got))
}

/// The PostgreSQL type a value came from, for messages.
fn type_name(value: &DbValue) -> &'static str {
    match value {
        DbValue::Boolean(_) => "boolean",
        DbValue::Int8(_) => "\"char\"",
        DbValue::Int16(_) => "smallint",
        DbValue::Int32(_) => "integer",
        DbValue::Int64(_) => "bigint",
        DbValue::Floating32(_) => "real",
        DbValue::Floating64(_) => "double precision",
        DbValue::Str(_) => "text",
        DbValue::Binary(_) => "bytea",
        DbValue::Date(_) => "date",
        DbValue::Time(_) => "time",
        DbValue::Datetime(_) => "timestamp",
        DbValue::Timestamp(_) => "a Unix timestamp",
        DbValue::Uuid(_) => "uuid",
        DbValue::Jsonb(_) => "jsonb",
        DbValue::Decimal(_) => "numeric",
        DbValue::RangeInt32(_) => "int4range",
        DbValue::RangeInt64(_) => "int8range",
        DbValue::RangeDecimal(_) => "numrange",
        DbValue::ArrayInt32(_) => "integer[]",
        DbValue::ArrayInt64(_) => "bigint[]",
        DbValue::ArrayDecimal(_) => "numeric[]",
        DbValue::ArrayStr(_) => "text[]",
        DbValue::Interval(_) => "interval",
        DbValue::DbNull => "NULL",
        DbValue::Unsupported(_) => "a type the host does not convert",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn row(columns: &[&str], values: Vec<DbValue>) -> Row {
        Row::new(columns.iter().map(|c| c.to_string()).collect(), values)
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Settings {
        temperature: f64,
    }

    #[derive(Debug, PartialEq)]
    struct Agent {
        agent_id: Uuid,
        name: String,
        bio: Option<String>,
        turns: i64,
        settings: Json<Settings>,
        created_at: Timestamp,
    }

    impl FromRow for Agent {
        fn from_row(row: Row) -> Result<Self, DbError> {
            Ok(Self {
                agent_id: row.get("agent_id")?,
                name: row.get("name")?,
                bio: row.get("bio")?,
                turns: row.get("turns")?,
                settings: row.get("settings")?,
                created_at: row.get("created_at")?,
            })
        }
    }

    const ID: &str = "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f";

    fn agent_row(name: DbValue) -> Row {
        row(
            &["agent_id", "name", "bio", "turns", "settings", "created_at"],
            vec![
                DbValue::Uuid(ID.into()),
                name,
                DbValue::DbNull,
                DbValue::Int64(3),
                DbValue::Jsonb(br#"{"temperature": 0.7}"#.to_vec()),
                DbValue::Datetime((2025, 1, 2, 3, 4, 5, 123_456_000)),
            ],
        )
    }

    #[test]
    fn a_row_decodes_into_a_typed_value() {
        let agent = Agent::from_row(agent_row(DbValue::Str("Ada".into()))).unwrap();
        assert_eq!(
            agent,
            Agent {
                agent_id: ID.parse().unwrap(),
                name: "Ada".into(),
                bio: None,
                turns: 3,
                settings: Json(Settings { temperature: 0.7 }),
                created_at: "2025-01-02T03:04:05.123456Z".parse().unwrap(),
            }
        );
    }

    #[test]
    fn a_wrong_type_names_the_column_and_both_types_but_not_the_value() {
        let error = Agent::from_row(agent_row(DbValue::Binary(b"s3cret".to_vec()))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "decoding column name: expected text, got bytea"
        );
    }

    #[test]
    fn null_decodes_only_into_an_option() {
        let error = Agent::from_row(agent_row(DbValue::DbNull)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "decoding column name: expected text, got NULL"
        );
    }

    #[test]
    fn a_missing_column_lists_those_there_are() {
        let error = row(&["a", "b"], vec![DbValue::Int32(1), DbValue::Int32(2)])
            .get::<i32>("c")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "decoding column c: the row has no such column; it has a, b"
        );
    }

    #[test]
    fn integers_decode_only_at_their_own_width() {
        let row = row(&["n"], vec![DbValue::Int32(7)]);
        assert_eq!(row.get::<i32>("n").unwrap(), 7);
        assert_eq!(
            row.get::<i64>("n").unwrap_err().to_string(),
            "decoding column n: expected bigint, got integer"
        );
    }

    #[test]
    fn jsonb_that_does_not_fit_the_type_is_a_decode_error() {
        let row = row(
            &["settings"],
            vec![DbValue::Jsonb(br#"{"temperature": "hot"}"#.to_vec())],
        );
        let error = row.get::<Json<Settings>>("settings").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("decoding column settings: the jsonb does not fit the type"),
            "{error}"
        );
        assert_eq!(
            row.get::<serde_json::Value>("settings").unwrap(),
            serde_json::json!({ "temperature": "hot" })
        );
    }

    #[test]
    fn an_impossible_datetime_is_a_decode_error() {
        let row = row(&["at"], vec![DbValue::Datetime((2025, 2, 30, 0, 0, 0, 0))]);
        assert!(row.get::<Timestamp>("at").is_err());
    }
}
