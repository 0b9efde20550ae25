//! The first admin, from the Spin variables `admin_username` and `admin_password`.
//!
//! Components have no start-up hook (a Spin host may start them anywhere, any
//! number of times), so the admin is created on the first login attempt that
//! finds no admin at all. The check is one indexed query; the variables are read,
//! checked and hashed only while no admin exists. There is no default password:
//! with the variables empty, no one is created.

use arena_common::audit::{AuditEvent, Outcome};
use arena_common::auth::Role;
use arena_common::db::{Db, Row, transaction};
use arena_common::validate::Validator;
use arena_common::{Problem, ids, variables};

use crate::{Request, password, user};

/// Creates the admin the variables describe if there is no admin yet. Invalid
/// variables are a 500 whose logged cause says which rule they break.
pub(crate) async fn ensure_first_admin(db: &Db, req: &Request) -> Result<(), Problem> {
    let row: Row = db
        .query_one(
            "select exists (select 1 from users where role = 'admin') as found",
            &[],
        )
        .await?;
    if row.get::<bool>("found")? {
        return Ok(());
    }
    let username = variables::text("admin_username").await?;
    let secret = variables::text("admin_password").await?;
    if username.is_empty() || secret.is_empty() {
        return Ok(());
    }
    let mut v = Validator::default();
    user::check_username(&mut v, "admin_username", &username);
    password::check_strength(&mut v, "admin_password", &secret, &username);
    if let Err(problem) = v.finish() {
        let reasons: Vec<String> = problem
            .errors()
            .iter()
            .map(|error| format!("{} {}", error.field, error.message))
            .collect();
        return Err(Problem::internal(format!(
            "the first admin's variables are invalid: {}",
            reasons.join("; ")
        )));
    }
    let hash = password::hash(&secret)?;
    transaction(db, async |tx| {
        let user_id = ids::new_id();
        // Someone may have taken the name, or another replica made the admin in
        // the meantime: then there is nothing to do.
        let created = tx
            .execute(
                "insert into users (user_id, username, role, password_hash)
                 select $1, $2, $3, $4
                 where not exists (select 1 from users where role = 'admin')
                 on conflict (username) do nothing",
                &[
                    user_id.into(),
                    username.clone().into(),
                    Role::Admin.into(),
                    hash.clone().into(),
                ],
            )
            .await?;
        if created > 0 {
            AuditEvent::new("user.created", Outcome::Success)
                .target("user", user_id)
                .detail("username", &username)
                .detail("role", Role::Admin)
                .detail("source", "admin_variables")
                .record(tx, req)
                .await?;
        }
        Ok(())
    })
    .await
}
