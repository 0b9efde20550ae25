//! Timestamps: instants in UTC, written as RFC 3339.
//!
//! Arena writes every timestamp the same way, `2025-01-02T03:04:05.123456Z`: UTC
//! with a `Z`, always six fractional digits. Fixed width makes the text sort as the
//! instants do, and microseconds are what PostgreSQL's `timestamptz` keeps, so a
//! value read back from the database equals the one written. Input may carry any
//! RFC 3339 offset; it is converted to UTC.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// Fractional digits kept: PostgreSQL's `timestamptz` resolution.
const FRACTIONAL_DIGITS: u16 = 6;

/// An instant in UTC, to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, from the WASI wall clock in a component.
    pub fn now() -> Self {
        Self::from(Utc::now())
    }
}

/// Drops anything finer than a microsecond.
impl From<DateTime<Utc>> for Timestamp {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(instant.trunc_subsecs(FRACTIONAL_DIGITS))
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(timestamp: Timestamp) -> Self {
        timestamp.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

/// Parses RFC 3339 with any offset (`2025-01-02T04:04:05+01:00`), converting to UTC.
impl FromStr for Timestamp {
    type Err = chrono::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(text).map(|instant| Self::from(instant.to_utc()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(|error| {
            serde::de::Error::custom(format_args!(
                "expected an RFC 3339 timestamp, got {text:?} ({error})"
            ))
        })
    }
}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An instant in UTC, RFC 3339 with microseconds."))
            .examples(["2025-01-02T03:04:05.123456Z"])
            .into()
    }
}

impl ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

/// A `timestamp` parameter holding the UTC wall time, the representation the WIT
/// interface defines for date-times.
///
/// Real Spin hands such a parameter to PostgreSQL as a `timestamp` (without time
/// zone), which PostgreSQL will not take where it expects a `timestamptz`: write
/// `$1::timestamp at time zone 'UTC'` to compare with or store into a `timestamptz`
/// column, so the statement means the same under every Spin host.
#[cfg(feature = "spin")]
impl From<Timestamp> for spin_sdk::pg::ParameterValue {
    fn from(timestamp: Timestamp) -> Self {
        timestamp.0.naive_utc().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn timestamps_are_written_in_utc_with_six_fractional_digits() {
        let whole_second = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            Timestamp::from(whole_second).to_string(),
            "2025-01-02T03:04:05.000000Z"
        );
    }

    #[test]
    fn precision_finer_than_a_microsecond_is_dropped() {
        assert_eq!(
            at("2025-01-02T03:04:05.123456789Z").to_string(),
            "2025-01-02T03:04:05.123456Z"
        );
        assert_eq!(Timestamp::now().0.timestamp_subsec_nanos() % 1000, 0);
    }

    #[test]
    fn any_offset_is_read_and_converted_to_utc() {
        assert_eq!(at("2025-01-02T04:04:05+01:00"), at("2025-01-02T03:04:05Z"));
    }

    #[test]
    fn json_round_trips_as_a_string() {
        let timestamp = at("2025-01-02T03:04:05.5Z");
        let json = serde_json::to_string(&timestamp).unwrap();
        assert_eq!(json, r#""2025-01-02T03:04:05.500000Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), timestamp);
    }

    #[test]
    fn text_that_is_not_rfc_3339_is_refused_with_the_text_quoted() {
        for text in ["2025-01-02", "2025-01-02T03:04:05", "yesterday"] {
            let error = serde_json::from_value::<Timestamp>(text.into()).unwrap_err();
            assert!(
                error.to_string().contains(&format!("got {text:?}")),
                "{error}"
            );
        }
    }

    #[test]
    fn text_order_is_time_order() {
        let earlier = at("2025-01-02T03:04:05.9Z");
        let later = at("2025-01-02T03:04:06Z");
        assert!(earlier < later);
        assert!(earlier.to_string() < later.to_string());
    }

    #[test]
    fn schema_is_a_date_time_string() {
        let schema = serde_json::to_value(Timestamp::schema()).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["format"], "date-time");
    }

    #[cfg(feature = "spin")]
    #[test]
    fn as_a_parameter_it_is_the_utc_wall_time() {
        use spin_sdk::pg::ParameterValue;
        let value = ParameterValue::from(at("2025-01-02T04:04:05.25+01:00"));
        assert!(
            matches!(
                value,
                ParameterValue::Datetime((2025, 1, 2, 3, 4, 5, 250_000_000))
            ),
            "{value:?}"
        );
    }
}
