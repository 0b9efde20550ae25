//! Rate limits, counted in PostgreSQL so every replica of a stateless component
//! shares them.
//!
//! Each bucket (`user:<id>`, `addr:<ip>`, `login:<ip>`) counts requests in a
//! fixed window of `rate_limit_window_seconds`; one statement counts a request
//! against all of a request's buckets at once. The tightest bucket is reported in
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until
//! the window ends), and a request over any limit gets a `429` with `Retry-After`.

use std::net::IpAddr;

use arena_common::Problem;
use arena_common::auth::Identity;
use arena_common::db::{Db, DbError, Row};
use arena_common::variables::parsed;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::policy::Policy;

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The limits, from Spin variables.
pub(crate) struct Limits {
    window_secs: u32,
    per_user: i32,
    per_address: i32,
    login_per_address: i32,
}

impl Limits {
    pub(crate) async fn from_variables() -> Result<Self, Problem> {
        Ok(Self {
            window_secs: parsed::<u32>("rate_limit_window_seconds").await?.max(1),
            per_user: parsed("rate_limit_per_user").await?,
            per_address: parsed("rate_limit_per_address").await?,
            login_per_address: parsed("rate_limit_token_per_address").await?,
        })
    }

    /// The buckets a request counts against, with their limits.
    pub(crate) fn buckets(
        &self,
        policy: Policy,
        identity: Option<&Identity>,
        ip: Option<IpAddr>,
    ) -> Vec<(String, i32)> {
        let mut buckets = Vec::new();
        match policy {
            Policy::Open => {}
            Policy::Login => {
                buckets.extend(ip.map(|ip| (format!("login:{ip}"), self.login_per_address)))
            }
            Policy::Protected => {
                buckets
                    .extend(identity.map(|who| (format!("user:{}", who.user_id), self.per_user)));
                buckets.extend(ip.map(|ip| (format!("addr:{ip}"), self.per_address)));
            }
        }
        buckets
    }

    /// Counts one request against `buckets`; the verdict of the tightest.
    pub(crate) async fn hit(
        &self,
        db: &Db,
        buckets: &[(String, i32)],
    ) -> Result<Option<Verdict>, DbError> {
        if buckets.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = buckets.iter().map(|(name, _)| name.clone()).collect();
        let rows: Vec<Row> = db
            .query(
                "insert into rate_limits as r (bucket, window_start, hits)
                 select bucket, to_timestamp(floor(extract(epoch from now())::float8 / $2) * $2), 1
                 from unnest($1::text[]) as bucket
                 on conflict (bucket) do update set
                     hits = case when r.window_start = excluded.window_start
                                 then r.hits + 1 else 1 end,
                     window_start = excluded.window_start
                 returning bucket, hits,
                     ceil(extract(epoch from
                         window_start + make_interval(secs => $2) - now()))::bigint as reset",
                &[names.into(), f64::from(self.window_secs).into()],
            )
            .await?;
        let mut tightest: Option<Verdict> = None;
        for row in rows {
            let bucket: String = row.get("bucket")?;
            let hits: i32 = row.get("hits")?;
            let reset: i64 = row.get("reset")?;
            let Some((_, limit)) = buckets.iter().find(|(name, _)| *name == bucket) else {
                continue;
            };
            let verdict = Verdict {
                bucket,
                limit: *limit,
                hits,
                reset_secs: reset.clamp(1, i64::from(self.window_secs)) as u64,
            };
            if tightest
                .as_ref()
                .is_none_or(|t| verdict.remaining() < t.remaining())
            {
                tightest = Some(verdict);
            }
        }
        Ok(tightest)
    }
}

/// Where a request leaves its tightest bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub bucket: String,
    pub limit: i32,
    pub hits: i32,
    pub reset_secs: u64,
}

impl Verdict {
    fn remaining(&self) -> i32 {
        (self.limit - self.hits).max(0)
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.hits > self.limit
    }

    /// Whether this request is the first over the limit in its window: the one
    /// worth an audit record (later ones would only repeat it).
    pub(crate) fn first_excess(&self) -> bool {
        self.hits == self.limit + 1
    }

    /// Adds the `RateLimit-*` headers.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, HeaderValue::from(self.limit.max(0)));
        headers.insert(REMAINING, HeaderValue::from(self.remaining()));
        headers.insert(RESET, HeaderValue::from(self.reset_secs));
    }

    /// The `429` for a request over the limit.
    pub(crate) fn problem(&self) -> Problem {
        let mut problem = Problem::rate_limited(format!(
            "too many requests: the limit is {} per window; try again in {} seconds",
            self.limit, self.reset_secs
        ))
        .with_retry_after(self.reset_secs);
        let mut headers = HeaderMap::new();
        self.write_headers(&mut headers);
        for (name, value) in headers {
            if let Some(name) = name {
                problem = problem.with_header(name, value);
            }
        }
        problem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arena_common::auth::{Credential, Role};
    use arena_common::ids::Uuid;

    fn limits() -> Limits {
        Limits {
            window_secs: 60,
            per_user: 100,
            per_address: 300,
            login_per_address: 10,
        }
    }

    #[test]
    fn each_policy_counts_against_its_own_buckets() {
        let ip = Some([10, 0, 0, 7].into());
        let who = Identity {
            user_id: Uuid::from_u128(3),
            role: Role::Member,
            credential: Credential::Session(Uuid::from_u128(4)),
        };
        assert!(limits().buckets(Policy::Open, None, ip).is_empty());
        assert_eq!(
            limits().buckets(Policy::Login, None, ip),
            [("login:10.0.0.7".to_owned(), 10)]
        );
        assert_eq!(
            limits().buckets(Policy::Protected, Some(&who), ip),
            [
                (format!("user:{}", who.user_id), 100),
                ("addr:10.0.0.7".to_owned(), 300)
            ]
        );
    }

    #[test]
    fn a_verdict_over_the_limit_is_a_429_with_every_header() {
        let verdict = Verdict {
            bucket: "user:x".into(),
            limit: 5,
            hits: 6,
            reset_secs: 17,
        };
        assert!(verdict.exceeded() && verdict.first_excess());
        let problem = verdict.problem();
        assert_eq!(problem.status(), http::StatusCode::TOO_MANY_REQUESTS);
        let headers = problem.headers();
        assert_eq!(headers["retry-after"], "17");
        assert_eq!(headers["ratelimit-limit"], "5");
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert_eq!(headers["ratelimit-reset"], "17");
    }

    #[test]
    fn only_the_first_request_over_the_limit_is_the_first_excess() {
        let at = |hits| Verdict {
            bucket: "b".into(),
            limit: 5,
            hits,
            reset_secs: 1,
        };
        assert!(!at(5).exceeded());
        assert!(at(6).first_excess());
        assert!(at(7).exceeded() && !at(7).first_excess());
    }
}
