//! Cursor pagination: `?limit=&cursor=` in, `{items, next_cursor}` out.
//!
//! A list is sorted by a key that ends in the row's id, `(sort key, id)`, so the order
//! is total and stable while rows come and go. The cursor is the key of the last item
//! on a page, encoded so clients treat it as opaque (base64url of a small JSON
//! array); the next page is the rows after it. Opaque is not secret: a client that
//! decodes and edits a cursor only chooses another starting point, which it could
//! do anyway. A cursor that does not decode is a 400.
//!
//! A handler asks for one row more than the limit, to know whether there is a next
//! page without a second query:
//!
//! ```no_run
//! use arena_common::db::Db;
//! use arena_common::ids::Uuid;
//! use arena_common::pagination::{Page, PageRequest};
//! use arena_common::time::Timestamp;
//! use arena_common::Problem;
//! # use arena_common::db::{FromRow, Row, DbError};
//! # struct Agent { agent_id: Uuid, created_at: Timestamp }
//! # impl FromRow for Agent { fn from_row(row: Row) -> Result<Self, DbError> { unimplemented!() } }
//!
//! async fn list(db: &Db, query: Option<&str>) -> Result<Page<Agent>, Problem> {
//!     let page = PageRequest::<(Timestamp, Uuid)>::from_query(query)?;
//!     let (after_time, after_id) = page.after.unzip();
//!     let agents: Vec<Agent> = db
//!         .query(
//!             "select agent_id, created_at from agents
//!              where $1::timestamp is null
//!                 or (created_at, agent_id) > ($1::timestamp at time zone 'UTC', $2)
//!              order by created_at, agent_id
//!              limit $3",
//!             &[after_time.into(), after_id.into(), page.fetch_limit().into()],
//!         )
//!         .await?;
//!     page.finish(agents, |agent| (agent.created_at, agent.agent_id))
//! }
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Problem;

/// Items per page when the request does not say.
pub const DEFAULT_LIMIT: u32 = 50;

/// The most items a page may hold; more is a 400, not silently fewer.
pub const MAX_LIMIT: u32 = 200;

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// What a list request asks for: how many items, and after which key.
///
/// `K` is the list's sort key as the cursor carries it, ending in the id: `Uuid` for a
/// list in creation order (v7 ids sort by time), `(Timestamp, Uuid)` or
/// `(String, Uuid)` for others.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest<K> {
    /// Items on the page, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// The key of the last item of the previous page; `None` for the first page.
    pub after: Option<K>,
}

impl<K: Serialize + DeserializeOwned> PageRequest<K> {
    /// Reads `limit` and `cursor` from a query string (`req.uri().query()`), ignoring
    /// other parameters, which belong to the handler. A `limit` that is not a number
    /// from 1 to [`MAX_LIMIT`], a cursor that does not decode, or either given twice
    /// is a 400 naming the parameter.
    pub fn from_query(query: Option<&str>) -> Result<Self, Problem> {
        let mut limit = None;
        let mut cursor = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match &*name {
                "limit" => &mut limit,
                "cursor" => &mut cursor,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(invalid(&name, "must be given at most once".to_owned()));
            }
        }
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    invalid(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}, got {text:?}"),
                    )
                })?,
        };
        let after = match cursor {
            None => None,
            Some(text) if text.is_empty() => None,
            Some(text) => Some(decode(&text).ok_or_else(|| {
                invalid(
                    "cursor",
                    format!("is not a cursor this list gave out: {text:?}"),
                )
            })?),
        };
        Ok(Self { limit, after })
    }

    /// The `LIMIT` to query with: one more than the page holds, to learn whether
    /// another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The page for `items`, fetched in order with [`fetch_limit`](Self::fetch_limit):
    /// if there is an extra item it is dropped, and the cursor is the last kept
    /// item's `key`.
    pub fn finish<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> K) -> Result<Page<T>, Problem> {
        let limit = self.limit as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| encode(&key(last))).transpose()?
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

fn invalid(parameter: &str, message: String) -> Problem {
    Problem::validation_failed(format!("query parameter {parameter} {message}"))
        .with_field_error(parameter, message)
}

/// `key` as a cursor: base64url, unpadded, of its JSON.
fn encode<K: Serialize>(key: &K) -> Result<String, Problem> {
    let json = serde_json::to_vec(key)
        .map_err(|error| Problem::internal(format!("encoding a cursor: {error}")))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// The key in `cursor`, if it is one [`encode`] made for a `K`.
fn decode<K: DeserializeOwned>(cursor: &str) -> Option<K> {
    let json = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProblemCode;
    use crate::ids::Uuid;
    use crate::time::Timestamp;

    type Key = (Timestamp, Uuid);

    fn key(n: u128) -> Key {
        let at = format!("2025-01-02T03:04:{:02}Z", n % 60);
        (at.parse().unwrap(), Uuid::from_u128(n))
    }

    fn request(query: &str) -> Result<PageRequest<Key>, Problem> {
        PageRequest::from_query(Some(query))
    }

    #[test]
    fn no_query_asks_for_the_first_page_at_the_default_limit() {
        let page = PageRequest::<Uuid>::from_query(None).unwrap();
        assert_eq!(
            page,
            PageRequest {
                limit: 50,
                after: None
            }
        );
        assert_eq!(page.fetch_limit(), 51);
    }

    #[test]
    fn limit_is_read_and_other_parameters_are_left_alone() {
        let page = request("discussion_id=7&limit=200&order=asc").unwrap();
        assert_eq!(page.limit, 200);
        assert_eq!(request("limit=1").unwrap().limit, 1);
    }

    #[test]
    fn an_out_of_range_or_non_numeric_limit_is_400_quoting_it() {
        for (value, quoted) in [
            ("0", "\"0\""),
            ("201", "\"201\""),
            ("-1", "\"-1\""),
            ("ten", "\"ten\""),
            ("", "\"\""),
            ("1.5", "\"1.5\""),
        ] {
            let problem = request(&format!("limit={value}")).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed);
            assert_eq!(problem.errors()[0].field, "limit");
            assert_eq!(
                problem.errors()[0].message,
                format!("must be a whole number from 1 to 200, got {quoted}")
            );
        }
    }

    #[test]
    fn a_parameter_given_twice_is_400() {
        let problem = request("limit=5&limit=6").unwrap_err();
        assert_eq!(
            problem.detail(),
            "query parameter limit must be given at most once"
        );
    }

    #[test]
    fn a_cursor_round_trips_through_a_page() {
        let first = request("limit=2").unwrap();
        let page = first.finish(vec![key(1), key(2), key(3)], |k| *k).unwrap();
        assert_eq!(page.items, [key(1), key(2)]);
        let cursor = page.next_cursor.expect("a third item means a next page");
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{cursor} must need no escaping in a URL"
        );

        let next = request(&format!("limit=2&cursor={cursor}")).unwrap();
        assert_eq!(next.after, Some(key(2)));
    }

    #[test]
    fn the_last_page_has_no_cursor() {
        let page = request("limit=2").unwrap();
        assert_eq!(
            page.finish(vec![key(1), key(2)], |k| *k)
                .unwrap()
                .next_cursor,
            None
        );
        assert_eq!(
            page.finish(Vec::new(), |k: &Key| *k).unwrap().next_cursor,
            None
        );
    }

    #[test]
    fn an_empty_cursor_is_the_first_page() {
        assert_eq!(request("cursor=").unwrap().after, None);
    }

    #[test]
    fn a_tampered_cursor_is_400_naming_the_parameter() {
        let page = request("limit=1").unwrap();
        let cursor = page
            .finish(vec![key(1), key(2)], |k| *k)
            .unwrap()
            .next_cursor
            .unwrap();
        // A changed first character makes the JSON no longer start with `[`.
        let tampered = format!("X{}", &cursor[1..]);
        for bad in [
            tampered.as_str(),
            &cursor[..cursor.len() - 2],
            "not a cursor!",
            "bnVsbA",  // base64url of `null`
            "WzEsMl0", // base64url of `[1,2]`: JSON, but not this list's key
        ] {
            let problem = request(&format!("cursor={bad}")).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::ValidationFailed, "{bad}");
            assert_eq!(problem.errors()[0].field, "cursor");
        }
    }

    #[test]
    fn page_serializes_items_and_a_null_cursor() {
        let page = Page {
            items: vec![1, 2],
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            serde_json::json!({ "items": [1, 2], "next_cursor": null })
        );
    }

    #[test]
    fn page_schema_requires_items_and_a_nullable_cursor() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(Page::<Timestamp>::schema()).unwrap();
        assert_eq!(
            schema["required"],
            serde_json::json!(["items", "next_cursor"])
        );
        assert_eq!(
            schema["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/Timestamp"
        );
        assert_eq!(
            schema["properties"]["next_cursor"]["type"],
            serde_json::json!(["string", "null"])
        );
    }
}
