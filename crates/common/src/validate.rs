//! Checks on input values that types alone cannot express: lengths, ranges, formats.
//!
//! A [`Validate`] impl reports every invalid field at once, so a client fixes a form in
//! one round trip. Field paths use the notation of JSON parse errors (`agents[2].model`),
//! so a client handles both alike.
//!
//! ```no_run
//! use arena_common::validate::{Validate, Validator};
//!
//! struct Seat { model: String }
//! struct CreateDiscussion { title: String, max_turns: u32, agents: Vec<Seat> }
//!
//! impl Validate for CreateDiscussion {
//!     fn validate(&self, v: &mut Validator) {
//!         v.length("title", &self.title, 1..=200);
//!         v.range("max_turns", self.max_turns, 1..=500);
//!         v.length("agents", &self.agents, 2..=8);
//!         for (i, seat) in self.agents.iter().enumerate() {
//!             v.nested(format_args!("agents[{i}]"), |v| {
//!                 v.check("model", !seat.model.trim().is_empty(), "must not be blank");
//!             });
//!         }
//!     }
//! }
//! ```

use std::fmt::{Display, Write as _};
use std::ops::RangeInclusive;

use crate::{FieldError, Problem};

/// Input with rules beyond its type. Every request body type implements it; one with
/// no such rules says so with an empty `impl Validate for Body {}`.
pub trait Validate {
    /// Records each invalid field in `v`; records nothing when all is well.
    fn validate(&self, v: &mut Validator) {
        let _ = v;
    }

    /// `Ok` if [`validate`](Self::validate) records nothing, else a 400
    /// `validation_failed` listing every field it recorded.
    fn validated(&self) -> Result<(), Problem> {
        let mut v = Validator::default();
        self.validate(&mut v);
        v.finish()
    }
}

/// Collects invalid fields, under a path prefix while inside [`nested`](Self::nested).
#[derive(Debug, Default)]
pub struct Validator {
    prefix: String,
    errors: Vec<FieldError>,
}

/// Something with a length: text counts characters (what a person sees, not UTF-8
/// bytes), a list counts items.
pub trait Length {
    /// The length as a person would count it.
    fn length(&self) -> usize;
    /// What the length counts, for the message.
    const UNIT: &'static str;
}

impl Length for str {
    fn length(&self) -> usize {
        self.chars().count()
    }
    const UNIT: &'static str = "characters";
}

impl Length for String {
    fn length(&self) -> usize {
        self.as_str().length()
    }
    const UNIT: &'static str = "characters";
}

impl<T> Length for [T] {
    fn length(&self) -> usize {
        self.len()
    }
    const UNIT: &'static str = "items";
}

impl<T> Length for Vec<T> {
    fn length(&self) -> usize {
        self.len()
    }
    const UNIT: &'static str = "items";
}

impl Validator {
    /// Records `message` for `field` unless `ok`.
    pub fn check(&mut self, field: impl Display, ok: bool, message: impl Into<String>) {
        if !ok {
            self.error(field, message);
        }
    }

    /// Records `message` for `field`.
    pub fn error(&mut self, field: impl Display, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: join(&self.prefix, field),
            message: message.into(),
        });
    }

    /// Checks that `value` lies in `bounds`, quoting it if not.
    pub fn range<T: PartialOrd + Display>(
        &mut self,
        field: impl Display,
        value: T,
        bounds: RangeInclusive<T>,
    ) {
        if !bounds.contains(&value) {
            let message = format!(
                "must be between {} and {}, got {value}",
                bounds.start(),
                bounds.end()
            );
            self.error(field, message);
        }
    }

    /// Checks that the length of `value` lies in `bounds`.
    pub fn length<L: Length + ?Sized>(
        &mut self,
        field: impl Display,
        value: &L,
        bounds: RangeInclusive<usize>,
    ) {
        let length = value.length();
        if !bounds.contains(&length) {
            let (min, max) = (bounds.start(), bounds.end());
            let unit = L::UNIT;
            let expected = if min == max {
                format!("exactly {min} {unit}")
            } else {
                format!("{min} to {max} {unit}")
            };
            self.error(field, format!("must have {expected}, got {length}"));
        }
    }

    /// Runs `check` with `segment` appended to the path: `nested("agents[2]", ..)`
    /// then `error("model", ..)` records `agents[2].model`. A segment starting with
    /// `[` is an index and is appended without a dot.
    pub fn nested(&mut self, segment: impl Display, check: impl FnOnce(&mut Self)) {
        let outer = self.prefix.len();
        self.prefix = join(&self.prefix, segment);
        check(self);
        self.prefix.truncate(outer);
    }

    /// Checks text a person reads (a name, a title, a prompt): `bounds` characters,
    /// not blank, and no control characters but, where `multiline`, line breaks and
    /// tabs.
    pub fn text(
        &mut self,
        field: impl Display,
        text: &str,
        bounds: RangeInclusive<usize>,
        multiline: bool,
    ) {
        let field = field.to_string();
        self.length(&field, text, bounds);
        if !text.is_empty() {
            self.check(&field, !text.trim().is_empty(), "must not be blank");
        }
        let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
        self.check(
            &field,
            text.chars().all(allowed),
            "must not contain control characters",
        );
    }

    /// Whether nothing has been recorded.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok` if nothing was recorded, else a 400 listing every recorded field.
    pub fn finish(self) -> Result<(), Problem> {
        self.finish_as(crate::ProblemCode::ValidationFailed)
    }

    /// [`finish`](Self::finish) with another code: `InvalidParameters` (422) for
    /// values that are well formed but cannot be used as asked.
    pub fn finish_as(self, code: crate::ProblemCode) -> Result<(), Problem> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let count = self.errors.len();
        let noun = if count == 1 { "field" } else { "fields" };
        let detail = format!("the request has {count} invalid {noun}");
        Err(self
            .errors
            .into_iter()
            .fold(Problem::new(code, detail), |problem, error| {
                problem.with_field_error(error.field, error.message)
            }))
    }
}

/// `prefix` and `segment` joined as a field path: `a` + `b` is `a.b`, `a` + `[0]` is
/// `a[0]`, and an empty prefix adds nothing.
pub(crate) fn join(prefix: &str, segment: impl Display) -> String {
    let mut path = String::from(prefix);
    let start = path.len();
    // Writing to a String cannot fail.
    let _ = write!(path, "{segment}");
    if start > 0 && !path[start..].starts_with('[') {
        path.insert(start, '.');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProblemCode;

    struct Seat {
        model: String,
        temperature: f64,
    }

    struct CreateDiscussion {
        title: String,
        agents: Vec<Seat>,
    }

    impl Validate for CreateDiscussion {
        fn validate(&self, v: &mut Validator) {
            v.length("title", &self.title, 1..=10);
            v.length("agents", &self.agents, 2..=8);
            for (i, seat) in self.agents.iter().enumerate() {
                v.nested(format_args!("agents[{i}]"), |v| {
                    v.check("model", !seat.model.is_empty(), "must not be empty");
                    v.range("temperature", seat.temperature, 0.0..=2.0);
                });
            }
        }
    }

    fn seat(model: &str, temperature: f64) -> Seat {
        Seat {
            model: model.into(),
            temperature,
        }
    }

    #[test]
    fn every_invalid_field_is_reported_at_once_with_its_path() {
        let body = CreateDiscussion {
            title: String::new(),
            agents: vec![seat("llama", 0.7), seat("", 2.5)],
        };
        let problem = body.validated().unwrap_err();
        assert_eq!(problem.code(), ProblemCode::ValidationFailed);
        assert_eq!(problem.detail(), "the request has 3 invalid fields");
        let fields: Vec<_> = problem
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("title", "must have 1 to 10 characters, got 0"),
                ("agents[1].model", "must not be empty"),
                ("agents[1].temperature", "must be between 0 and 2, got 2.5"),
            ]
        );
    }

    #[test]
    fn valid_input_passes() {
        let body = CreateDiscussion {
            title: "Debate".into(),
            agents: vec![seat("a", 0.0), seat("b", 2.0)],
        };
        assert!(body.validated().is_ok());
    }

    #[test]
    fn a_type_without_rules_is_always_valid() {
        struct Anything;
        impl Validate for Anything {}
        assert!(Anything.validated().is_ok());
    }

    #[test]
    fn text_length_counts_characters_not_bytes() {
        let mut v = Validator::default();
        v.length("name", "ÅÄÖ", 1..=3);
        assert!(v.is_valid());
        v.length("name", "ÅÄÖÜ", 1..=3);
        assert!(!v.is_valid());
    }

    #[test]
    fn an_exact_length_is_worded_as_such() {
        let mut v = Validator::default();
        v.length("pair", &[1, 2, 3][..], 2..=2);
        let problem = v.finish().unwrap_err();
        assert_eq!(
            problem.errors()[0].message,
            "must have exactly 2 items, got 3"
        );
        assert_eq!(problem.detail(), "the request has 1 invalid field");
    }

    #[test]
    fn nesting_restores_the_prefix_afterwards() {
        let mut v = Validator::default();
        v.nested("a", |v| {
            v.nested("[0]", |v| v.error("b", "x"));
            v.error("c", "y");
        });
        v.error("d", "z");
        let fields: Vec<_> = v.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a[0].b", "a.c", "d"]);
    }

    fn text_fields(text: &str, bounds: RangeInclusive<usize>, multiline: bool) -> Vec<String> {
        let mut v = Validator::default();
        v.text("t", text, bounds, multiline);
        v.errors.into_iter().map(|e| e.message).collect()
    }

    #[test]
    fn text_is_in_bounds_not_blank_and_free_of_control_characters() {
        assert!(text_fields("Be\nbrief.", 1..=10, true).is_empty());
        assert_eq!(
            text_fields("a\nb", 1..=10, false),
            ["must not contain control characters"]
        );
        assert_eq!(text_fields("   ", 1..=10, false), ["must not be blank"]);
        assert_eq!(
            text_fields("", 1..=10, false),
            ["must have 1 to 10 characters, got 0"]
        );
        assert_eq!(text_fields(&"é".repeat(11), 1..=10, false).len(), 1);
        assert!(text_fields("", 0..=10, true).is_empty());
    }
}
