//! Who is calling, and what they may do.
//!
//! The auth middleware (`components/auth-middleware`) stands in front of every API
//! component. It verifies the caller's credentials, removes any identity headers the
//! client sent, and hands the verified [`Identity`] on in [`headers`]; a handler
//! reads it with [`Identity::from_request`]. A request without them never passed the
//! middleware, and is refused with a 401.
//!
//! The ownership rule every area follows:
//!
//! | Role | Reads | Writes |
//! |---|---|---|
//! | `admin` | everything | everything |
//! | `member` | their own, and what others share | their own |
//! | `viewer` | their own, and what others share | nothing |
//!
//! ```no_run
//! use arena_common::auth::{Access, Identity};
//! use arena_common::Problem;
//! # struct Agent { owner_id: arena_common::ids::Uuid, shared: bool }
//!
//! fn rename(req: &spin_sdk::http::Request, agent: &Agent) -> Result<(), Problem> {
//!     let caller = Identity::from_request(req)?;
//!     caller.check(Access::Write, agent.owner_id, agent.shared, "agent")?;
//!     Ok(())
//! }
//! ```

use std::fmt;
use std::str::FromStr;

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Problem;

/// The headers that carry the verified identity from the middleware to a component.
pub mod headers {
    /// The caller's user id.
    pub const USER_ID: &str = "arena-user-id";
    /// The caller's [`Role`](super::Role) for this request.
    pub const ROLE: &str = "arena-role";
    /// The credential used: `session:<id>` or `api_key:<id>`.
    pub const CREDENTIAL: &str = "arena-credential";

    /// All of them: what the middleware strips from every incoming request.
    pub const ALL: [&str; 3] = [USER_ID, ROLE, CREDENTIAL];
}

/// What a user may do, from least to most: `Viewer < Member < Admin`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads what they may see; writes nothing.
    Viewer,
    /// Creates and changes their own resources.
    Member,
    /// Everything, including users, roles and the audit log.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Member, Role::Admin];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not a role (admin, member or viewer)"))
    }
}

/// A role is stored as its name.
#[cfg(feature = "spin")]
impl From<Role> for spin_sdk::pg::ParameterValue {
    fn from(role: Role) -> Self {
        role.as_str().to_owned().into()
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An access token from a login; the id is the session's.
    Session(Uuid),
    /// An API key; the id is the key's.
    ApiKey(Uuid),
}

impl Credential {
    /// The session's or the key's id.
    pub fn id(self) -> Uuid {
        match self {
            Credential::Session(id) | Credential::ApiKey(id) => id,
        }
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Session(id) => write!(f, "session:{id}"),
            Credential::ApiKey(id) => write!(f, "api_key:{id}"),
        }
    }
}

impl FromStr for Credential {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, id) = text.split_once(':').ok_or(())?;
        let id = Uuid::parse_str(id).map_err(|_| ())?;
        match kind {
            "session" => Ok(Credential::Session(id)),
            "api_key" => Ok(Credential::ApiKey(id)),
            _ => Err(()),
        }
    }
}

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The verified caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Uuid,
    /// The role in force for this request: an API key's, which may be lower than its
    /// owner's.
    pub role: Role,
    pub credential: Credential,
}

impl Identity {
    /// The identity the middleware verified. Missing or malformed headers mean the
    /// request did not pass the middleware (a deployment without it): 401, never a
    /// guess.
    pub fn from_request<B>(req: &http::Request<B>) -> Result<Self, Problem> {
        Self::from_headers(req.headers()).ok_or_else(|| {
            Problem::unauthorized("this request carries no verified identity")
                .for_request(req)
                .with_header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(WWW_AUTHENTICATE_CHALLENGE),
                )
        })
    }

    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let text = |name| headers.get(name)?.to_str().ok();
        Some(Self {
            user_id: Uuid::parse_str(text(headers::USER_ID)?).ok()?,
            role: text(headers::ROLE)?.parse().ok()?,
            credential: text(headers::CREDENTIAL)?.parse().ok()?,
        })
    }

    /// Replaces any identity headers in `headers` with this identity's.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let values = [
            (headers::USER_ID, self.user_id.to_string()),
            (headers::ROLE, self.role.as_str().to_owned()),
            (headers::CREDENTIAL, self.credential.to_string()),
        ];
        for (name, value) in values {
            // Ids and role names are ASCII, always valid header values.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }

    /// Removes identity headers: what a client sends in them is never believed.
    pub fn remove_headers(headers: &mut HeaderMap) {
        for name in headers::ALL {
            headers.remove(name);
        }
    }

    /// 403 unless the caller's role is `minimum` or above.
    pub fn require(&self, minimum: Role) -> Result<(), Problem> {
        if self.role >= minimum {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs the {minimum} role; this request has {}",
                self.role
            )))
        }
    }

    /// Whether the caller may see a resource owned by `owner`, shared with every
    /// user or not.
    pub fn can_read(&self, owner: Uuid, shared: bool) -> bool {
        self.role == Role::Admin || owner == self.user_id || shared
    }

    /// Whether the caller may change a resource owned by `owner`.
    pub fn can_write(&self, owner: Uuid) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Member => owner == self.user_id,
            Role::Viewer => false,
        }
    }

    /// The ownership rule as an answer: 404 (`what` not found) for what the caller
    /// may not see, so private resources do not reveal that they exist; 403 for what
    /// they may see but not change.
    pub fn check(
        &self,
        access: Access,
        owner: Uuid,
        shared: bool,
        what: &str,
    ) -> Result<(), Problem> {
        if !self.can_read(owner, shared) {
            return Err(Problem::not_found(format!("there is no such {what}")));
        }
        if access == Access::Write && !self.can_write(owner) {
            return Err(Problem::forbidden(format!(
                "the {} role may not change this {what}",
                self.role
            )));
        }
        Ok(())
    }
}

/// The `WWW-Authenticate` challenge of a 401 without credentials (RFC 6750 §3).
pub const WWW_AUTHENTICATE_CHALLENGE: &str = r#"Bearer realm="arena""#;

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Role) -> Identity {
        Identity {
            user_id: Uuid::from_u128(1),
            role,
            credential: Credential::Session(Uuid::from_u128(9)),
        }
    }

    #[test]
    fn roles_are_ordered_by_power_and_round_trip_their_names() {
        assert!(Role::Viewer < Role::Member && Role::Member < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn identity_survives_the_trip_through_headers() {
        let mut headers = HeaderMap::new();
        for credential in [
            Credential::Session(Uuid::from_u128(5)),
            Credential::ApiKey(Uuid::from_u128(6)),
        ] {
            let sent = Identity {
                credential,
                ..identity(Role::Member)
            };
            sent.write_headers(&mut headers);
            assert_eq!(Identity::from_headers(&headers), Some(sent));
        }
    }

    #[test]
    fn removed_or_malformed_headers_are_no_identity() {
        let mut headers = HeaderMap::new();
        identity(Role::Admin).write_headers(&mut headers);
        headers.insert(headers::ROLE, HeaderValue::from_static("root"));
        assert_eq!(Identity::from_headers(&headers), None);

        identity(Role::Admin).write_headers(&mut headers);
        Identity::remove_headers(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn a_request_that_skipped_the_middleware_is_unauthorized() {
        let req = http::Request::builder().uri("/v1/agents").body(()).unwrap();
        let problem = Identity::from_request(&req).unwrap_err();
        assert_eq!(problem.status(), http::StatusCode::UNAUTHORIZED);
        assert!(
            problem
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE)
        );
    }

    #[test]
    fn the_ownership_rule_matches_the_table() {
        let me = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let member = identity(Role::Member);
        let viewer = identity(Role::Viewer);
        let admin = identity(Role::Admin);

        assert!(member.check(Access::Write, me, false, "agent").is_ok());
        assert_eq!(
            member
                .check(Access::Read, other, false, "agent")
                .unwrap_err()
                .status(),
            http::StatusCode::NOT_FOUND
        );
        assert!(member.check(Access::Read, other, true, "agent").is_ok());
        assert_eq!(
            member
                .check(Access::Write, other, true, "agent")
                .unwrap_err()
                .status(),
            http::StatusCode::FORBIDDEN
        );
        assert_eq!(
            viewer
                .check(Access::Write, me, false, "agent")
                .unwrap_err()
                .status(),
            http::StatusCode::FORBIDDEN
        );
        assert!(viewer.check(Access::Read, me, false, "agent").is_ok());
        assert!(admin.check(Access::Write, other, false, "agent").is_ok());
    }

    #[test]
    fn require_compares_roles() {
        assert!(identity(Role::Admin).require(Role::Member).is_ok());
        assert_eq!(
            identity(Role::Viewer)
                .require(Role::Member)
                .unwrap_err()
                .status(),
            http::StatusCode::FORBIDDEN
        );
    }
}
