//! A list's filters: its query parameters other than `limit` and `cursor`
//! (which [`PageRequest`](crate::pagination::PageRequest) reads).
//!
//! Strict, so a typo is an error rather than a silently unfiltered list: a
//! parameter the list does not take, one given twice, or a value that does not
//! parse is a 400 naming the parameter. An empty value (`?role=`) is the same as
//! leaving the parameter out, as an empty `cursor` is: a blank search field
//! filters nothing.
//!
//! ```
//! use arena_common::query::Filters;
//!
//! let filters = Filters::from_query(Some("role=viewer&q=ada+l&limit=5"), &["role", "q"]).unwrap();
//! assert_eq!(filters.text("q"), Some("ada l"));
//! assert_eq!(filters.parse::<u8>("role", "a number").unwrap_err().errors()[0].field, "role");
//! assert!(Filters::from_query(Some("rol=viewer"), &["role", "q"]).is_err());
//! ```

use std::str::FromStr;

use crate::Problem;

/// The parameters pagination reads, which every list takes.
const PAGINATION: [&str; 2] = ["limit", "cursor"];

/// The filters given to a list.
#[derive(Debug)]
pub struct Filters {
    /// Every `(name, value)` given, decoded, empty values included.
    given: Vec<(String, String)>,
}

impl Filters {
    /// Reads the query string `query` (`req.uri().query()`) of a list that takes
    /// the filters `known`. Decoding is the HTML form rules (`+` is a space,
    /// `%XX` a byte), as `URLSearchParams` encodes.
    pub fn from_query(query: Option<&str>, known: &[&str]) -> Result<Self, Problem> {
        let mut given: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if PAGINATION.contains(&&*name) {
                continue;
            }
            if !known.contains(&&*name) {
                let takes: Vec<&str> = known.iter().chain(&PAGINATION).copied().collect();
                let message = format!(
                    "is not a parameter of this list; it takes {}",
                    takes.join(", ")
                );
                return Err(invalid(&name, message));
            }
            if given.iter().any(|(seen, _)| *seen == name) {
                return Err(invalid(&name, "must be given at most once".to_owned()));
            }
            given.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { given })
    }

    /// The value of the parameter `name`, if given and not empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(given, value)| given == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// The value of the parameter `name` as a `T`, if given and not empty. One
    /// that does not parse is a 400 saying it must be `expected`, quoting it.
    pub fn parse<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, Problem> {
        self.text(name)
            .map(|text| {
                text.parse()
                    .map_err(|_| invalid(name, format!("must be {expected}, got {text:?}")))
            })
            .transpose()
    }
}

/// The 400 for the query parameter `name`, worded as pagination's are.
pub fn invalid(name: &str, message: String) -> Problem {
    Problem::validation_failed(format!("query parameter {name} {message}"))
        .with_field_error(name, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_decoded_as_forms_encode_them() {
        let filters = Filters::from_query(
            Some("q=ada+lovelace%2Fx%C3%A9&t%61rget=1"),
            &["q", "target"],
        )
        .unwrap();
        assert_eq!(filters.text("q"), Some("ada lovelace/xé"));
        assert_eq!(filters.text("target"), Some("1"));
    }

    #[test]
    fn an_unknown_parameter_is_400_listing_the_ones_there_are() {
        let problem = Filters::from_query(Some("actor=1"), &["action"]).unwrap_err();
        assert_eq!(problem.errors()[0].field, "actor");
        assert_eq!(
            problem.errors()[0].message,
            "is not a parameter of this list; it takes action, limit, cursor"
        );
    }

    #[test]
    fn a_filter_given_twice_is_400_even_when_the_first_is_empty() {
        let problem = Filters::from_query(Some("a=&a=b"), &["a"]).unwrap_err();
        assert_eq!(problem.errors()[0].message, "must be given at most once");
    }

    #[test]
    fn empty_values_and_pagination_filter_nothing() {
        let filters = Filters::from_query(Some("a=&limit=5&cursor=x"), &["a"]).unwrap();
        assert_eq!(filters.text("a"), None);
        assert_eq!(filters.text("limit"), None);
    }
}
