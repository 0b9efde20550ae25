//! Channels a client subscribes to, and who may: the REST API's read rules,
//! checked against PostgreSQL at subscribe time.
//!
//! | Channel | Carries | Who may subscribe |
//! |---|---|---|
//! | `discussion:<id>` | messages, turns, status changes | its owner, admins, anyone if shared, its present human participants |
//! | `user:<id>` | personal notifications (`session.revoked`, ...) | that user, admins |
//! | `job:<id>` | a job's progress | nobody yet: no job exists (not found) |
//!
//! A channel the caller may not read answers as the REST API does: a private
//! discussion is "not found" (its existence is not revealed), another user's
//! channel is "forbidden".

use std::fmt;

use arena_common::auth::{Identity, Role};
use uuid::Uuid;

/// Longest channel name accepted, as the `events.stream` column allows.
const MAX_LEN: usize = 256;

/// A parsed channel name. [`Display`](fmt::Display) gives the canonical name
/// (lowercase hyphenated UUID), which is what `events.stream` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Discussion(Uuid),
    User(Uuid),
    Job(Uuid),
}

impl Channel {
    /// Parses `text` as `kind:<uuid>`. The error says what is wrong, for a
    /// `validation_failed` answer.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the channel is empty; expected e.g. `discussion:<id>`".to_owned());
        }
        if text.len() > MAX_LEN {
            return Err(format!("the channel is longer than {MAX_LEN} bytes"));
        }
        let Some((kind, id)) = text.split_once(':') else {
            return Err(format!(
                "`{}` is not a channel: expected `discussion:<id>`, `user:<id>` or `job:<id>`",
                shown(text)
            ));
        };
        let make: fn(Uuid) -> Channel = match kind {
            "discussion" => Channel::Discussion,
            "user" => Channel::User,
            "job" => Channel::Job,
            _ => {
                return Err(format!(
                    "`{}` is not a kind of channel: expected `discussion`, `user` or `job`",
                    shown(kind)
                ));
            }
        };
        // Only the hyphenated form: `events.stream` is compared as text.
        let uuid = match Uuid::try_parse(id) {
            Ok(uuid) if id.len() == 36 => uuid,
            _ => {
                return Err(format!(
                    "`{}` in channel `{kind}:...` is not a UUID",
                    shown(id)
                ));
            }
        };
        Ok(make(uuid))
    }

    /// The kind: `discussion`, `user` or `job`.
    pub fn kind(self) -> &'static str {
        match self {
            Channel::Discussion(_) => "discussion",
            Channel::User(_) => "user",
            Channel::Job(_) => "job",
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Channel::Discussion(id) | Channel::User(id) | Channel::Job(id) => id,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id().as_hyphenated())
    }
}

/// At most 64 characters of client input, for messages.
fn shown(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Why a subscription is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The channel does not exist, or the caller may not know it does.
    NotFound(String),
    /// The caller may not read it.
    Forbidden(String),
}

impl Refusal {
    /// The stable code of the refusal (as in problem+json).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound(_) => "not_found",
            Refusal::Forbidden(_) => "forbidden",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Refusal::NotFound(detail) | Refusal::Forbidden(detail) => detail,
        }
    }
}

/// What the database says about a discussion and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscussionAccess {
    pub owner_id: Uuid,
    pub shared: bool,
    /// The caller is a present (not left) human participant.
    pub participant: bool,
}

/// The rule of `Discussion::readable_by` in the discussions component.
pub fn may_read_discussion(caller: &Identity, discussion: &DiscussionAccess) -> bool {
    caller.can_read(discussion.owner_id, discussion.shared) || discussion.participant
}

/// The decision for a channel given what the database says (`discussion` is
/// `None` when the channel is not a discussion or it does not exist).
pub fn decide(
    caller: &Identity,
    channel: Channel,
    discussion: Option<&DiscussionAccess>,
) -> Result<(), Refusal> {
    match channel {
        Channel::Discussion(id) => match discussion {
            Some(discussion) if may_read_discussion(caller, discussion) => Ok(()),
            _ => Err(Refusal::NotFound(format!("there is no discussion {id}"))),
        },
        Channel::User(id) => {
            if id == caller.user_id || caller.role == Role::Admin {
                Ok(())
            } else {
                Err(Refusal::Forbidden(
                    "a user channel is only for that user (and admins)".to_owned(),
                ))
            }
        }
        Channel::Job(id) => Err(Refusal::NotFound(format!("there is no job {id}"))),
    }
}

/// Whether `caller` may subscribe to `channel`: `Ok(Err(refusal))` when not,
/// `Err` when the database could not say.
pub async fn authorize(
    db: &deadpool_postgres::Client,
    caller: &Identity,
    channel: Channel,
) -> anyhow::Result<Result<(), Refusal>> {
    let discussion = match channel {
        Channel::Discussion(id) => discussion_access(db, id, caller.user_id).await?,
        Channel::User(_) | Channel::Job(_) => None,
    };
    Ok(decide(caller, channel, discussion.as_ref()))
}

async fn discussion_access(
    db: &deadpool_postgres::Client,
    discussion_id: Uuid,
    user_id: Uuid,
) -> anyhow::Result<Option<DiscussionAccess>> {
    let statement = db
        .prepare_cached(
            "select d.owner_id, d.visibility = 'shared' as shared,
                    exists (select 1 from discussion_participants p
                            where p.discussion_id = d.discussion_id and p.user_id = $2
                              and p.left_at is null) as participant
             from discussions d where d.discussion_id = $1",
        )
        .await?;
    let row = db
        .query_opt(&statement, &[&discussion_id, &user_id])
        .await?;
    Ok(match row {
        Some(row) => Some(DiscussionAccess {
            owner_id: row.try_get("owner_id")?,
            shared: row.try_get("shared")?,
            participant: row.try_get("participant")?,
        }),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::auth::Credential;

    const ID: &str = "0191f0c4-8d5e-7c1a-9b7e-3f2a1c4d5e6f";

    fn caller(role: Role) -> Identity {
        Identity {
            user_id: Uuid::from_u128(1),
            role,
            credential: Credential::Session(Uuid::from_u128(9)),
        }
    }

    #[test]
    fn channels_parse_and_print_canonically() {
        let id = Uuid::parse_str(ID).unwrap();
        assert_eq!(
            Channel::parse(&format!("discussion:{ID}")),
            Ok(Channel::Discussion(id))
        );
        assert_eq!(Channel::parse(&format!("user:{ID}")), Ok(Channel::User(id)));
        assert_eq!(Channel::parse(&format!("job:{ID}")), Ok(Channel::Job(id)));
        let upper = format!("discussion:{}", ID.to_uppercase());
        assert_eq!(
            Channel::parse(&upper).unwrap().to_string(),
            format!("discussion:{ID}")
        );
    }

    #[test]
    fn malformed_channels_say_what_is_wrong() {
        for (text, wanted) in [
            ("", "empty"),
            ("discussion", "not a channel"),
            (&format!("room:{ID}"), "not a kind"),
            ("discussion:42", "not a UUID"),
            (&format!("discussion:{}", ID.replace('-', "")), "not a UUID"),
            (&format!("discussion:{{{ID}}}"), "not a UUID"),
            (&format!("discussion: {ID}"), "not a UUID"),
            (&format!("user:{}", "x".repeat(300)), "longer than"),
        ] {
            let error = Channel::parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text:?}: {error}");
        }
    }

    #[test]
    fn discussions_follow_the_rest_read_rule() {
        let me = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let channel = Channel::Discussion(Uuid::from_u128(7));
        let private = |owner_id, participant| DiscussionAccess {
            owner_id,
            shared: false,
            participant,
        };
        let member = caller(Role::Member);
        assert_eq!(decide(&member, channel, Some(&private(me, false))), Ok(()));
        assert_eq!(
            decide(&member, channel, Some(&private(other, true))),
            Ok(())
        );
        let shared = DiscussionAccess {
            shared: true,
            ..private(other, false)
        };
        assert_eq!(
            decide(&caller(Role::Viewer), channel, Some(&shared)),
            Ok(())
        );
        assert_eq!(
            decide(&caller(Role::Admin), channel, Some(&private(other, false))),
            Ok(())
        );
        let refused = decide(&member, channel, Some(&private(other, false))).unwrap_err();
        assert_eq!(refused.code(), "not_found");
        // Missing and unreadable look the same.
        assert_eq!(decide(&member, channel, None), Err(refused));
    }

    #[test]
    fn user_channels_are_their_users_and_admins() {
        let mine = Channel::User(Uuid::from_u128(1));
        let theirs = Channel::User(Uuid::from_u128(2));
        assert_eq!(decide(&caller(Role::Viewer), mine, None), Ok(()));
        assert_eq!(decide(&caller(Role::Admin), theirs, None), Ok(()));
        assert_eq!(
            decide(&caller(Role::Member), theirs, None)
                .unwrap_err()
                .code(),
            "forbidden"
        );
    }

    #[test]
    fn jobs_are_not_found_until_they_exist() {
        let job = Channel::Job(Uuid::from_u128(3));
        assert_eq!(
            decide(&caller(Role::Admin), job, None).unwrap_err().code(),
            "not_found"
        );
    }

    /// Against a real PostgreSQL with every migration applied.
    #[tokio::test]
    async fn discussions_are_authorized_against_the_database() {
        let test = crate::realtime::test_db::TestDb::create().await;
        let sql = test.connect().await;
        let pool = test.pool();
        let db = pool.get().await.unwrap();
        let mut users = Vec::new();
        for role in ["member", "member", "member"] {
            let id = Uuid::now_v7();
            sql.execute(
                "insert into users (user_id, username, role, password_hash)
                 values ($1, $2, $3, 'x')",
                &[&id, &format!("u{}", id.simple()), &role],
            )
            .await
            .unwrap();
            users.push(id);
        }
        let (owner, guest, stranger) = (users[0], users[1], users[2]);
        let discussion = Uuid::now_v7();
        sql.execute(
            "insert into discussions (discussion_id, owner_id, title, topic)
             values ($1, $2, 't', 't')",
            &[&discussion, &owner],
        )
        .await
        .unwrap();
        sql.execute(
            "insert into discussion_participants (participant_id, discussion_id, position, kind, user_id)
             values ($1, $2, 0, 'user', $3)",
            &[&Uuid::now_v7(), &discussion, &guest],
        )
        .await
        .unwrap();
        let as_member = |user_id| Identity {
            user_id,
            role: Role::Member,
            credential: Credential::Session(Uuid::from_u128(9)),
        };
        let channel = Channel::Discussion(discussion);
        for (who, allowed) in [(owner, true), (guest, true), (stranger, false)] {
            let decision = authorize(&db, &as_member(who), channel).await.unwrap();
            assert_eq!(decision.is_ok(), allowed, "{who}");
        }
        let missing = Channel::Discussion(Uuid::now_v7());
        assert_eq!(
            authorize(&db, &as_member(owner), missing)
                .await
                .unwrap()
                .unwrap_err()
                .code(),
            "not_found"
        );
        sql.execute(
            "update discussions set visibility = 'shared' where discussion_id = $1",
            &[&discussion],
        )
        .await
        .unwrap();
        assert!(
            authorize(&db, &as_member(stranger), channel)
                .await
                .unwrap()
                .is_ok()
        );
    }
}
