//! Resource ids: UUID v7, made here and read from paths.
//!
//! A v7 UUID starts with its creation time in milliseconds, so ids sort roughly by
//! age, as text and as PostgreSQL `uuid` (which compares bytes), and index inserts
//! stay at the right edge of the B-tree. In Wasm the clock and the random bits come
//! from WASI (`wasi:clocks/wall-clock`, `wasi:random/random`), which Rust's std
//! already imports: a component needs no interface beyond those.
//!
//! ```no_run
//! use arena_common::ids;
//!
//! # fn handler(agent_id: &str) -> Result<(), arena_common::Problem> {
//! let new_agent = ids::new_id();
//! // `GET /v1/agents/not-a-uuid` is a 400 naming `agent_id`, not a 404.
//! let existing = ids::parse_id("agent_id", agent_id)?;
//! # Ok(()) }
//! ```

pub use uuid::Uuid;

use crate::Problem;

/// The length of a UUID in its canonical hyphenated form.
const HYPHENATED_LEN: usize = 36;

/// A new UUID v7: the current time and 74 random bits.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// Reads the path parameter `name` as a UUID in its canonical hyphenated form (hex
/// digits in either case), the only form Arena writes.
///
/// Anything else is a 400 `validation_failed` naming the parameter and quoting the
/// value: a malformed id is bad input, not a missing resource. Any UUID version is
/// accepted; one that names nothing is the caller's 404 to give.
pub fn parse_id(name: &str, value: &str) -> Result<Uuid, Problem> {
    // `Uuid::try_parse` also takes the braced, URN and 32-digit forms; one URL per
    // resource is easier on caches and logs.
    let parsed = (value.len() == HYPHENATED_LEN)
        .then(|| Uuid::try_parse(value).ok())
        .flatten();
    parsed.ok_or_else(|| {
        Problem::validation_failed(format!("{name} must be a UUID, got {value:?}"))
            .with_field_error(name, format!("must be a UUID, got {value:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProblemCode;

    #[test]
    fn new_ids_are_version_7_and_increase() {
        let first = new_id();
        let second = new_id();
        assert_eq!(first.get_version_num(), 7);
        assert!(second > first, "{second} should sort after {first}");
    }

    #[test]
    fn a_new_id_carries_the_current_time() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (seconds, nanos) = new_id().get_timestamp().unwrap().to_unix();
        let millis = seconds * 1000 + u64::from(nanos) / 1_000_000;
        assert!(
            millis >= before && millis < before + 1000,
            "{millis} vs {before}"
        );
    }

    #[test]
    fn canonical_ids_parse_in_either_case() {
        let id = "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f";
        assert_eq!(parse_id("agent_id", id).unwrap().to_string(), id);
        assert_eq!(
            parse_id("agent_id", &id.to_uppercase())
                .unwrap()
                .to_string(),
            id
        );
    }

    #[test]
    fn a_malformed_id_is_a_400_naming_the_parameter_and_quoting_the_value() {
        let problem = parse_id("agent_id", "42").unwrap_err();
        assert_eq!(problem.code(), ProblemCode::ValidationFailed);
        assert_eq!(problem.detail(), r#"agent_id must be a UUID, got "42""#);
        assert_eq!(problem.errors()[0].field, "agent_id");
        assert_eq!(problem.errors()[0].message, r#"must be a UUID, got "42""#);
    }

    #[test]
    fn other_uuid_spellings_are_refused() {
        for value in [
            "0191f0c48d5e7c1a9b7e3f2a1c4d5e6f",
            "{0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f}",
            "urn:uuid:0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f",
            "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6g",
            "",
        ] {
            assert!(parse_id("id", value).is_err(), "{value}");
        }
    }
}
