//! Login back-off against password guessing.
//!
//! Failures are counted per account (`user:<name>`, whether or not it exists, so a
//! lockout says nothing about existence) and per client address (`addr:<ip>`).
//! The `login_free_failures`th failure locks the subject out for
//! `login_lockout_seconds`, and each later one for twice as long as the one before,
//! up to [`MAX_LOCKOUT_SECS`]. While locked, a password is not even checked. A success
//! clears the account's count but not the address's, so an attacker holding one
//! valid account cannot reset their address between guesses at others. Counts
//! older than an hour start over.

use std::net::IpAddr;

use arena_common::Problem;
use arena_common::db::{Db, DbError, Row};

use crate::settings::{Backoff, MAX_LOCKOUT_SECS};

/// The subjects a login attempt for `username` from `ip` counts against.
pub(crate) fn subjects(username: &str, ip: Option<IpAddr>) -> Vec<String> {
    let mut subjects = vec![format!("user:{username}")];
    subjects.extend(ip.map(|ip| format!("addr:{ip}")));
    subjects
}

/// `Some(seconds)` to wait if any subject is locked out now.
pub(crate) async fn locked_for(db: &Db, subjects: &[String]) -> Result<Option<u64>, DbError> {
    let row: Row = db
        .query_one(
            "select ceil(extract(epoch from max(locked_until) - now()))::bigint as wait
             from login_throttles
             where subject = any($1) and locked_until > now()",
            &[subjects.to_vec().into()],
        )
        .await?;
    let wait: Option<i64> = row.get("wait")?;
    Ok(wait.map(|seconds| seconds.max(1) as u64))
}

/// Counts a failed attempt against every subject, and locks out each one that
/// has reached its free failures: `login_lockout_seconds` at the last free one,
/// doubled by each failure after it.
pub(crate) async fn record_failure(
    db: &Db,
    subjects: &[String],
    backoff: &Backoff,
) -> Result<(), DbError> {
    db.execute(
        "insert into login_throttles as t (subject, failures, last_failure_at)
         select subject, 1, now() from unnest($1::text[]) as subject
         on conflict (subject) do update set
             failures = case when t.last_failure_at < now() - interval '1 hour'
                             then 1 else t.failures + 1 end,
             last_failure_at = now()",
        &[subjects.to_vec().into()],
    )
    .await?;
    db.execute(
        "update login_throttles
         set locked_until = now() + make_interval(secs => least(
             $3::float8 * power(2, failures - $2), $4::float8))
         where subject = any($1) and failures >= $2",
        &[
            subjects.to_vec().into(),
            backoff.free_failures.into(),
            (backoff.first_lockout_secs as f64).into(),
            (MAX_LOCKOUT_SECS as f64).into(),
        ],
    )
    .await?;
    Ok(())
}

/// Clears the account's count after a successful login.
pub(crate) async fn record_success(db: &Db, username: &str) -> Result<(), DbError> {
    db.execute(
        "delete from login_throttles where subject = $1",
        &[format!("user:{username}").into()],
    )
    .await?;
    Ok(())
}

/// The 429 for a locked-out login.
pub(crate) fn locked_out(wait_secs: u64) -> Problem {
    Problem::rate_limited(format!(
        "too many failed logins; try again in {wait_secs} seconds"
    ))
    .with_retry_after(wait_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_count_against_the_account_and_the_address() {
        assert_eq!(
            subjects("ada", Some([10, 0, 0, 1].into())),
            ["user:ada", "addr:10.0.0.1"]
        );
        assert_eq!(subjects("ada", None), ["user:ada"]);
    }
}
