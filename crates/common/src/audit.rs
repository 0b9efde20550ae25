//! The audit trail: who did what to what, when, from where, and whether it worked.
//!
//! A record is a row of `audit_events` (`migrations/0002_auth.sql`). Record a change
//! in the same transaction as the change itself, so the trail never shows a change
//! that was rolled back; record a refusal (a failed login, a 403) on its own, since
//! there is no change to roll back. Nothing secret goes in: no password, hash or
//! token, only ids, names and reasons.
//!
//! ```no_run
//! use arena_common::audit::{AuditEvent, Outcome};
//! use arena_common::auth::Identity;
//! use arena_common::db::{transaction, Db};
//! use arena_common::Problem;
//! # async fn disable(req: &spin_sdk::http::Request, db: &Db, user: arena_common::ids::Uuid) -> Result<(), Problem> {
//! let caller = Identity::from_request(req)?;
//! transaction(db, async |tx| {
//!     // ... disable the user ...
//!     AuditEvent::new("user.disabled", Outcome::Success)
//!         .by(&caller)
//!         .target("user", user)
//!         .record(tx, req)
//!         .await?;
//!     Ok(())
//! })
//! .await
//! # }
//! ```

use std::fmt::Display;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::db::{Client, DbError, FromValue};
use crate::ids::{self, Uuid};
use crate::request;

/// How it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// The caller tried and failed (a wrong password, a reused refresh token).
    Failure,
    /// The caller was not allowed (a 403).
    Denied,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Denied];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not an outcome (success, failure or denied)"))
    }
}

/// The `outcome` column holds the name (its check constraint allows no other).
impl FromValue for Outcome {
    fn from_value(value: &spin_sdk::pg::DbValue) -> Result<Self, String> {
        String::from_value(value)?.parse()
    }
}

/// One record, built up and then [`record`](Self::record)ed.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    action: String,
    outcome: Outcome,
    actor_user_id: Option<Uuid>,
    actor_credential_id: Option<Uuid>,
    target: Option<(String, String)>,
    details: Map<String, Value>,
}

impl AuditEvent {
    /// A record of `action` (`auth.login`, `user.role_changed`, ...).
    pub fn new(action: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            action: action.into(),
            outcome,
            actor_user_id: None,
            actor_credential_id: None,
            target: None,
            details: Map::new(),
        }
    }

    /// Done by the verified caller, with the credential they used.
    pub fn by(mut self, identity: &Identity) -> Self {
        self.actor_user_id = Some(identity.user_id);
        self.actor_credential_id = Some(identity.credential.id());
        self
    }

    /// Done by `user_id` before they hold a credential (a login).
    pub fn by_user(mut self, user_id: Uuid) -> Self {
        self.actor_user_id = Some(user_id);
        self
    }

    /// Done with the credential `id` (the session a login opened).
    pub fn with_credential(mut self, id: Uuid) -> Self {
        self.actor_credential_id = Some(id);
        self
    }

    /// Done to the `kind` (`user`, `session`, `api_key`) with `id`.
    pub fn target(mut self, kind: &str, id: impl Display) -> Self {
        self.target = Some((kind.to_owned(), id.to_string()));
        self
    }

    /// Adds `key: value` to the record's details. A value that does not serialize
    /// is left out: the trail records what it can.
    pub fn detail(mut self, key: &str, value: impl Serialize) -> Self {
        if let Ok(value) = serde_json::to_value(value) {
            self.details.insert(key.to_owned(), value);
        }
        self
    }

    /// Writes the record, with the client address, user agent and request id of
    /// `req`, through `db`: a [`Db`](crate::db::Db) or a [`Tx`](crate::db::Tx).
    pub async fn record<B>(self, db: &impl Client, req: &http::Request<B>) -> Result<(), DbError> {
        let (target_type, target_id) = self.target.unzip();
        db.execute(
            "insert into audit_events (audit_event_id, action, outcome, actor_user_id,
                 actor_credential_id, target_type, target_id, client_addr, user_agent,
                 request_id, details)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                ids::new_id().into(),
                self.action.into(),
                self.outcome.as_str().to_owned().into(),
                self.actor_user_id.into(),
                self.actor_credential_id.into(),
                target_type.into(),
                target_id.into(),
                request::client_ip(req).map(|ip| ip.to_string()).into(),
                request::user_agent(req).into(),
                request::request_id(req).map(str::to_owned).into(),
                spin_sdk::pg::jsonb(&Value::Object(self.details))
                    .map_err(|error| DbError::Encode(format!("audit details: {error}")))?,
            ],
        )
        .await?;
        Ok(())
    }

    /// Records a refusal (`permission.denied`) of `req` by `identity`, naming the
    /// method and path. Components call it for every 403 they answer (see
    /// [`record_if_denied`]).
    pub async fn denial<B>(
        db: &impl Client,
        req: &http::Request<B>,
        identity: &Identity,
        reason: &str,
    ) -> Result<(), DbError> {
        AuditEvent::new("permission.denied", Outcome::Denied)
            .by(identity)
            .detail("method", req.method().as_str())
            .detail("path", request::path(req))
            .detail("role", identity.role)
            .detail("reason", reason)
            .record(db, req)
            .await
    }
}

/// Records `problem` in the audit trail if it is a 403 to a verified caller: what a
/// component's top-level handler calls with every problem it answers, so no
/// permission denial goes unrecorded. The refusal stands whether or not the record
/// could be written: a failure to record is logged, never turned into a 500.
pub async fn record_if_denied<B>(req: &http::Request<B>, problem: &crate::Problem) {
    if problem.code() != crate::ProblemCode::Forbidden {
        return;
    }
    let Ok(identity) = Identity::from_request(req) else {
        return;
    };
    let recorded = match crate::db::Db::connect().await {
        Ok(db) => AuditEvent::denial(&db, req, &identity, problem.detail())
            .await
            .map_err(crate::Problem::from),
        Err(problem) => Err(problem),
    };
    if let Err(error) = recorded {
        eprintln!("recording a permission denial: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_their_names() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse(), Ok(outcome));
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
        }
        assert!("Success".parse::<Outcome>().is_err());
    }
}
