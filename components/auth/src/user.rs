//! A user as the API shows it, and as the database row decodes.

use arena_common::auth::Role;
use arena_common::db::{DbError, FromRow, Row};
use arena_common::ids::Uuid;
use arena_common::time::Timestamp;
use arena_common::validate::Validator;
use serde::Serialize;
use utoipa::ToSchema;

/// The columns [`User::from_row`] reads: `select {USER_COLUMNS} from users ...`.
pub(crate) const USER_COLUMNS: &str =
    "user_id, username, display_name, role, disabled_at, version, created_at, updated_at";

/// A person who can log in. Never carries the password or its hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct User {
    pub user_id: Uuid,
    /// Lowercase letters, digits, `.`, `_` and `-`; 3 to 64 characters.
    pub username: String,
    pub display_name: Option<String>,
    pub role: Role,
    /// Set while the user is disabled: they cannot log in, and their sessions and
    /// API keys do not work.
    pub disabled_at: Option<Timestamp>,
    /// Name it in a `PATCH` so a concurrent change is not overwritten.
    pub version: i32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl FromRow for User {
    fn from_row(row: Row) -> Result<Self, DbError> {
        Ok(Self {
            user_id: row.get("user_id")?,
            username: row.get("username")?,
            display_name: row.get("display_name")?,
            role: row.get("role")?,
            disabled_at: row.get("disabled_at")?,
            version: row.get("version")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
        })
    }
}

/// Usernames are 3 to 64 characters: lowercase ASCII letters and digits, then also
/// `.`, `_` and `-`. ASCII only, so no two names look alike; the database checks
/// the same rule (`users_username_format`).
pub(crate) fn check_username(v: &mut Validator, field: &str, username: &str) {
    let chars = username.chars().count();
    let first_ok = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = username
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    v.check(
        field,
        (3..=64).contains(&chars) && first_ok && rest_ok,
        "must be 3 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
    );
}

/// The rules every new account's fields follow, whoever creates it.
pub(crate) fn check_account(
    v: &mut Validator,
    username: &str,
    password: &str,
    display_name: Option<&str>,
) {
    check_username(v, "username", username);
    crate::password::check_strength(v, "password", password, username);
    if let Some(name) = display_name {
        check_display_name(v, "display_name", name);
    }
}

/// A display name: 1 to 100 characters, no control characters.
pub(crate) fn check_display_name(v: &mut Validator, field: &str, name: &str) {
    v.length(field, name, 1..=100);
    v.check(
        field,
        !name.chars().any(char::is_control),
        "must not contain control characters",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(username: &str) -> bool {
        let mut v = Validator::default();
        check_username(&mut v, "username", username);
        v.is_valid()
    }

    #[test]
    fn usernames_are_lowercase_ascii_words() {
        for name in ["ada", "ada.lovelace", "a_1-b", "007"] {
            assert!(valid(name), "{name}");
        }
        for name in [
            "",
            "ab",
            "Ada",
            ".ada",
            "ada lovelace",
            "ádá",
            "аda",
            "ada\u{0}",
            &"a".repeat(65),
        ] {
            assert!(!valid(name), "{name:?}");
        }
    }
}
