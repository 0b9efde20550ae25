//! `GET /v1/ready`: whether this deployment can serve, dependency by dependency.
//!
//! Every dependency in [`dependencies`] is probed at once, each bounded by
//! [`PROBE_TIMEOUT`], so the answer comes within that limit however many there are
//! and whatever state they are in. The answer is the same [`Readiness`] document
//! either way: `200` when every required dependency is up, `503` with `Retry-After`
//! when one is down (a load balancer reads the status, an operator the document).
//!
//! `/v1/health` stays the liveness probe: it touches nothing, so a database outage
//! takes a deployment out of rotation (not ready) without getting it restarted (not
//! alive).

mod ollama;
mod postgres;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use arena_common::problem::responses::MethodNotAllowed;
use arena_common::{Problem, json};
use futures::FutureExt as _;
use futures::future::{self, Either, LocalBoxFuture};
use http::header::{CACHE_CONTROL, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

/// How long one probe may take before its dependency counts as down. Below the
/// host's PostgreSQL connect timeout (5 s), so a database that accepts connections
/// but never answers is reported, not waited for; and short enough for the usual
/// orchestrator probe timeouts.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Seconds a `503` asks the caller to wait before asking again.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Longest `reason` sent, in characters: a reason is a hint, not a log.
const MAX_REASON_CHARS: usize = 200;

/// What a probe found: `Err` says why the dependency is down, in a sentence that
/// holds no secret (see [`redact`]).
type Verdict = Result<(), String>;

/// A dependency this deployment needs, and the probe that checks it.
struct Dependency<'a> {
    /// Its key in the document (`postgres`).
    name: &'static str,
    /// Whether the deployment is not ready while it is down.
    required: bool,
    probe: LocalBoxFuture<'a, Verdict>,
}

/// Every dependency, with its probe ready to run for `req` (whose request id the
/// probes' own requests carry). Adding one (Qdrant) is a module beside [`postgres`]
/// with an `async fn probe() -> Verdict`, and a line here.
fn dependencies<B>(req: &http::Request<B>) -> Vec<Dependency<'_>> {
    vec![
        Dependency {
            name: "postgres",
            required: true,
            probe: postgres::probe().boxed_local(),
        },
        // Without language models Arena still serves everything but model calls,
        // so a load balancer keeps it in rotation; the document still says so.
        Dependency {
            name: "ollama",
            required: false,
            probe: ollama::probe(req).boxed_local(),
        },
    ]
}

/// Check that the API can serve
///
/// Probes every service the API depends on (PostgreSQL, required: connects and runs
/// `select 1`; Ollama, optional: asks its version),
/// all at once and each for at most 2 seconds, and reports each as `up` or `down`
/// with the probe's latency. `200` when every required dependency is up; otherwise
/// `503` with the same document, saying which is down and why, and `Retry-After`.
/// A readiness probe for load balancers and orchestrators; `/v1/health` is the
/// liveness probe, which checks nothing beyond the API itself.
#[utoipa::path(
    get,
    path = "/v1/ready",
    tag = "meta",
    operation_id = "retrieveReadiness",
    security(()),
    responses(
        (status = 200, description = "Every required dependency is up.", body = Readiness),
        (
            status = 503,
            description = "A required dependency is down: the same document, saying which and why.",
            body = Readiness,
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again.")),
            example = json!({
                "status": "not_ready",
                "dependencies": {
                    "postgres": {
                        "status": "down",
                        "required": true,
                        "latency_ms": 1.87,
                        "reason": "connecting: error connecting to server: Connection refused (os error 111)"
                    }
                }
            }),
        ),
        MethodNotAllowed,
    ),
)]
pub(crate) async fn get<B>(req: &http::Request<B>) -> Result<http::Response<String>, Problem> {
    let checks = dependencies(req).into_iter().map(|dependency| async move {
        let report = check(dependency.probe, PROBE_TIMEOUT, spin_sdk::time::sleep).await;
        if let Some(reason) = &report.reason {
            // The host tags the line with the component and the request id.
            eprintln!("readiness: {} is down: {reason}", dependency.name);
        }
        (dependency.name, dependency.required, report)
    });
    Readiness::new(future::join_all(checks).await).to_response()
}

/// Runs `probe` for at most `limit`, timed with `timer` (Spin's clock in a
/// component, a stand-in in tests). A probe still running then is dropped: the
/// component stops waiting for the host call it was in.
async fn check<T: Future<Output = ()>>(
    probe: impl Future<Output = Verdict>,
    limit: Duration,
    timer: impl FnOnce(Duration) -> T,
) -> Probed {
    let started = Instant::now();
    let verdict = match future::select(pin!(probe), pin!(timer(limit))).await {
        Either::Left((verdict, _)) => verdict,
        Either::Right(((), _)) => Err(format!("no answer within {} ms", limit.as_millis())),
    };
    Probed {
        latency_ms: milliseconds(started.elapsed()),
        reason: verdict
            .err()
            .map(|reason| truncate(reason, MAX_REASON_CHARS)),
    }
}

/// `duration` in milliseconds, to the nearest 10 µs: a pooled local connection
/// answers in well under one.
fn milliseconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

/// One probe's outcome, before it is placed in the document.
#[derive(Debug)]
struct Probed {
    latency_ms: f64,
    /// Why the dependency is down; `None` when it is up.
    reason: Option<String>,
}

/// Whether the deployment can serve, and the state of each dependency it needs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "status": "ready",
    "dependencies": {
        "postgres": { "status": "up", "required": true, "latency_ms": 0.42 }
    }
}))]
pub(crate) struct Readiness {
    #[schema(inline)]
    status: ReadinessStatus,
    /// Each dependency by name: `postgres` (`ollama` and `qdrant` join as the API comes
    /// to use them).
    dependencies: BTreeMap<&'static str, ReadinessDependency>,
}

/// `ready` when every required dependency is up (answered with `200`), else
/// `not_ready` (`503`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadinessStatus {
    Ready,
    NotReady,
}

/// The state of one dependency, as its probe found it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadinessDependency {
    #[schema(inline)]
    status: DependencyStatus,
    /// Whether the API needs it to serve: a required dependency that is down makes the
    /// deployment `not_ready`.
    required: bool,
    /// How long the probe took, in milliseconds (about the probe's 2 s limit when the
    /// dependency did not answer).
    latency_ms: f64,
    /// Why the dependency is down, in a short sentence; absent when it is up.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<String>,
}

/// Whether the probe succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum DependencyStatus {
    Up,
    Down,
}

impl Readiness {
    /// The document for these outcomes: `(name, required, outcome)` each.
    fn new(outcomes: impl IntoIterator<Item = (&'static str, bool, Probed)>) -> Self {
        let dependencies: BTreeMap<_, _> = outcomes
            .into_iter()
            .map(|(name, required, probed)| {
                let status = match probed.reason {
                    None => DependencyStatus::Up,
                    Some(_) => DependencyStatus::Down,
                };
                let dependency = ReadinessDependency {
                    status,
                    required,
                    latency_ms: probed.latency_ms,
                    reason: probed.reason,
                };
                (name, dependency)
            })
            .collect();
        let blocked = dependencies
            .values()
            .any(|dependency| dependency.required && dependency.status == DependencyStatus::Down);
        let status = match blocked {
            false => ReadinessStatus::Ready,
            true => ReadinessStatus::NotReady,
        };
        Self {
            status,
            dependencies,
        }
    }

    /// `200` or `503` with the document as the body. Never cached: the answer is about
    /// this moment only.
    fn to_response(&self) -> Result<http::Response<String>, Problem> {
        let status = match self.status {
            ReadinessStatus::Ready => StatusCode::OK,
            ReadinessStatus::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = json(status, self)?;
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == ReadinessStatus::NotReady {
            headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        Ok(response)
    }
}

/// `reason` with every secret in `secrets` replaced by `***`; empty secrets are
/// ignored. A probe passes the address it connected to and the credentials in it,
/// whatever the error text it got from its client may quote.
fn redact(reason: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|secret| !secret.is_empty())
        .collect();
    // Longest first, so a password inside the URL cannot leave the rest of it behind.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets
        .into_iter()
        .fold(reason.to_owned(), |reason, secret| {
            reason.replace(secret, "***")
        })
}

/// At most `max` characters of `text`, with `…` at the end when cut.
fn truncate(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((end, _)) => {
            let mut cut = text[..end].trim_end().to_owned();
            cut.push('…');
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use serde_json::{Value, json};

    fn up(latency_ms: f64) -> Probed {
        Probed {
            latency_ms,
            reason: None,
        }
    }

    fn down(reason: &str) -> Probed {
        Probed {
            latency_ms: 3.5,
            reason: Some(reason.to_owned()),
        }
    }

    fn body(response: &http::Response<String>) -> Value {
        serde_json::from_str(response.body()).unwrap()
    }

    #[test]
    fn every_required_dependency_up_is_200_ready() {
        let readiness = Readiness::new([("postgres", true, up(0.42)), ("qdrant", true, up(4.0))]);
        let response = readiness.to_response().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert_eq!(
            body(&response),
            json!({
                "status": "ready",
                "dependencies": {
                    "postgres": { "status": "up", "required": true, "latency_ms": 0.42 },
                    "qdrant": { "status": "up", "required": true, "latency_ms": 4.0 }
                }
            })
        );
    }

    #[test]
    fn a_required_dependency_down_is_503_with_the_same_document_and_retry_after() {
        let readiness = Readiness::new([
            ("postgres", true, down("connection refused")),
            ("qdrant", true, up(4.0)),
        ]);
        let response = readiness.to_response().unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The readiness document, not a problem: a prober reads one shape either way.
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()[RETRY_AFTER], "5");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let body = body(&response);
        assert_eq!(body["status"], "not_ready");
        assert_eq!(
            body["dependencies"]["postgres"],
            json!({
                "status": "down",
                "required": true,
                "latency_ms": 3.5,
                "reason": "connection refused"
            })
        );
        assert_eq!(body["dependencies"]["qdrant"]["status"], "up");
    }

    #[test]
    fn an_optional_dependency_down_is_reported_but_leaves_the_deployment_ready() {
        let readiness = Readiness::new([
            ("ollama", false, down("no answer within 2000 ms")),
            ("postgres", true, up(1.0)),
        ]);
        let response = readiness.to_response().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = body(&response);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["dependencies"]["ollama"]["status"], "down");
        assert_eq!(body["dependencies"]["ollama"]["required"], false);
    }

    #[test]
    fn no_dependencies_is_ready() {
        let response = Readiness::new([]).to_response().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            body(&response),
            json!({ "status": "ready", "dependencies": {} })
        );
    }

    #[test]
    fn a_probe_that_answers_is_up_with_its_latency() {
        let probed = block_on(check(async { Ok(()) }, PROBE_TIMEOUT, |_| {
            future::pending()
        }));
        assert!(probed.reason.is_none());
        assert!((0.0..1000.0).contains(&probed.latency_ms), "{probed:?}");
    }

    #[test]
    fn a_probe_that_fails_is_down_with_its_reason() {
        let probed = block_on(check(
            async { Err("connection refused".to_owned()) },
            PROBE_TIMEOUT,
            |_| future::pending(),
        ));
        assert_eq!(probed.reason.as_deref(), Some("connection refused"));
    }

    #[test]
    fn a_probe_still_running_at_the_limit_is_down_and_abandoned() {
        let mut asked_for = None;
        let probed = block_on(check(
            future::pending(),
            Duration::from_millis(1500),
            |limit| {
                asked_for = Some(limit);
                future::ready(())
            },
        ));
        assert_eq!(asked_for, Some(Duration::from_millis(1500)));
        assert_eq!(probed.reason.as_deref(), Some("no answer within 1500 ms"));
    }

    #[test]
    fn a_long_reason_is_cut_to_a_hint() {
        let long = "x".repeat(1000);
        let probed = block_on(check(async { Err(long) }, PROBE_TIMEOUT, |_| {
            future::pending()
        }));
        let reason = probed.reason.unwrap();
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn latency_is_in_milliseconds_to_the_nearest_ten_microseconds() {
        assert_eq!(milliseconds(Duration::from_micros(421)), 0.42);
        assert_eq!(milliseconds(Duration::from_micros(426)), 0.43);
        assert_eq!(milliseconds(Duration::from_millis(2003)), 2003.0);
        assert_eq!(milliseconds(Duration::ZERO), 0.0);
    }

    #[test]
    fn truncate_cuts_on_a_character_boundary() {
        assert_eq!(truncate("héllo wörld".to_owned(), 7), "héllo w…");
        // No space left dangling before the ellipsis.
        assert_eq!(truncate("héllo wörld".to_owned(), 6), "héllo…");
        assert_eq!(truncate("short".to_owned(), 7), "short");
        assert_eq!(truncate("exactly".to_owned(), 7), "exactly");
    }

    #[test]
    fn redact_replaces_every_secret_and_the_longest_first() {
        let url = "postgres://arena:s3cret@db:5432/arena";
        let reason = format!("invalid address {url}; password s3cret refused");
        assert_eq!(
            redact(&reason, &["s3cret", url, ""]),
            "invalid address ***; password *** refused"
        );
        assert_eq!(redact("connection refused", &[""]), "connection refused");
    }

    #[test]
    fn the_documented_example_of_a_503_is_what_a_down_database_looks_like() {
        let readiness = Readiness::new([(
            "postgres",
            true,
            Probed {
                latency_ms: 1.87,
                reason: Some(
                    "connecting: error connecting to server: Connection refused (os error 111)"
                        .to_owned(),
                ),
            },
        )]);
        let document = serde_json::to_value(crate::openapi::generate::assemble()).unwrap();
        let example = &document["paths"]["/v1/ready"]["get"]["responses"]["503"]["content"]["application/json"]
            ["example"];
        assert_eq!(serde_json::to_value(&readiness).unwrap(), *example);
    }

    #[test]
    fn the_reason_is_documented_as_an_optional_string_never_null() {
        let document = serde_json::to_value(crate::openapi::generate::assemble()).unwrap();
        let schema = &document["components"]["schemas"]["ReadinessDependency"];
        assert_eq!(schema["properties"]["reason"]["type"], "string");
        assert_eq!(
            schema["required"],
            json!(["status", "required", "latency_ms"])
        );
    }
}
