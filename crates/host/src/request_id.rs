//! `X-Request-Id`: taken from the caller when well-formed, else a new UUID v7.

use http::HeaderMap;

pub const HEADER: &str = "x-request-id";

/// Longest caller-supplied id accepted; longer ones are replaced, not cut.
const MAX_LEN: usize = 128;

pub fn from_request(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_well_formed(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// Printable token characters only, so an id is safe in logs and headers.
fn is_well_formed(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_well_formed_id_is_echoed() {
        assert_eq!(from_request(&with("req-42_a.b")), "req-42_a.b");
    }

    #[test]
    fn a_malformed_id_is_replaced_by_a_uuid_v7() {
        let id = from_request(&with("has space"));
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let id = from_request(&with(&"x".repeat(MAX_LEN + 1)));
        assert!(uuid::Uuid::parse_str(&id).is_ok());
    }

    #[test]
    fn a_missing_id_is_generated() {
        assert!(uuid::Uuid::parse_str(&from_request(&HeaderMap::new())).is_ok());
    }
}
