//! The HTTP front door: accepts connections, routes each request to its
//! component, and logs one line per request. `/v1/realtime/...` goes to the
//! realtime hub instead (upgraded to WebSockets, or streamed as SSE), and
//! `/metrics` is answered by the host itself.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError};
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use arena_common::Problem;

use crate::problem;
use crate::realtime::{self, Realtime, RequestInfo, metrics};
use crate::request_id;
use crate::routes::{RouteMatch, Router};
use crate::runtime::chaining::{Dispatch, Target};
use crate::runtime::{ComponentHandler, RequestTrace};

/// Connections held open at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;

/// After a shutdown signal, how long in-flight requests get to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The body type every response is converted to.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a request needs, shared by all connections.
pub struct Application {
    pub router: Router,
    pub components: HashMap<String, ComponentHandler>,
    /// Bounds the requests in flight (and so the live instances).
    pub requests: Semaphore,
    pub max_request_body: u64,
    /// The manifest's base path, for `spin-base-path`.
    pub base: String,
    /// The realtime hub, serving `/v1/realtime/...`; `None`: those paths go to
    /// the router like any other.
    pub realtime: Option<Arc<Realtime>>,
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight
/// requests, and the realtime hub's connections (told to reconnect), for at
/// most [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    app: Arc<Application>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // hyper-util's `GracefulShutdown` cannot watch a connection that may be
    // upgraded (a WebSocket), so each connection watches this instead. An
    // upgraded connection leaves hyper (and gives back its permit); the hub
    // drains those itself.
    let (stopping, stop) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit?,
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE: back off rather than spin.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Nagle's algorithm would hold back small SSE chunks by ~40 ms.
        stream.set_nodelay(true)?;
        let app = app.clone();
        let service = hyper::service::service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(request, peer).await) }
        });
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let stopped = async move {
                // Only fails once `serve` has returned: stopping is right then too.
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopped => {
                    // Finishes the request in flight, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    app.requests.close();
    if let Some(realtime) = &app.realtime {
        // Realtime connections close (told to reconnect elsewhere); SSE
        // responses end, so the connections carrying them can finish.
        realtime.shutdown.trigger();
    }
    stopping.send_replace(true);
    let drained = async {
        // Every connection gives its permit back when it ends.
        let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
        let _all = connections.acquire_many(all).await;
        if let Some(realtime) = &app.realtime {
            realtime.drained().await;
        }
    };
    tokio::select! {
        () = drained => tracing::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway")
        }
    }
    Ok(())
}

impl Application {
    /// A client's request.
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let trace = RequestTrace::new(&request_id::from_request(request.headers()));
        let path = request.uri().path();
        let to_hub = self.realtime.as_ref().filter(|_| realtime::handles(path));
        let response = if path == realtime::METRICS_PATH {
            self.host_route(request, peer, &trace, "metrics", async |request| {
                self.metrics(&request)
            })
            .await
        } else if let Some(hub) = to_hub {
            self.host_route(request, peer, &trace, "realtime", async |request| {
                realtime::http::serve(hub.clone(), request).await
            })
            .await
        } else {
            let request =
                request.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
            self.respond(request, Target::Router, Caller::Client(peer), trace)
                .await
        };
        metrics::HTTP.record(response.status());
        response
    }

    /// A request the host answers itself (`/metrics`, the realtime hub): the
    /// request id and the log line as for a component's.
    async fn host_route(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        trace: &RequestTrace,
        route: &'static str,
        answer: impl AsyncFnOnce(Request<Incoming>) -> Response<Body>,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        request.extensions_mut().insert(RequestInfo {
            peer,
            request_id: trace.id.clone(),
        });
        let mut response = answer(request).await;
        if let Ok(value) = HeaderValue::from_str(&trace.id) {
            response.headers_mut().insert(request_id::HEADER, value);
        }
        tracing::info!(
            target: "arena::request",
            request_id = %trace.id,
            method = %method,
            path = %path,
            route,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        response
    }

    /// `GET /metrics`: Prometheus' text format.
    fn metrics(&self, request: &Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        if !matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
            let problem = Problem::method_not_allowed(
                request.method(),
                &[http::Method::GET, http::Method::HEAD],
            );
            let id = request_id::from_request(request.headers());
            return problem::render(problem, path, &id);
        }
        let hub = self
            .realtime
            .as_ref()
            .map(|realtime| realtime.hub.metrics());
        let text = metrics::render(hub, &metrics::HTTP);
        let mut response = Response::new(
            http_body_util::Full::from(text)
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        response.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        response
    }

    /// Routes `request` to its component, answers problems the host raises
    /// itself, and logs the request.
    async fn respond(
        &self,
        request: GuestRequest,
        target: Target,
        caller: Caller,
        trace: Arc<RequestTrace>,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let route = match &target {
            Target::Router => self.router.route(&path),
            Target::Component(name) => self.component_route(name, &path),
        };

        let outcome = match &route {
            Some(route) => self.dispatch(request, route, &caller, &trace).await,
            None => Err(problem::no_route(&path)),
        };
        let mut response =
            outcome.unwrap_or_else(|problem| problem::render(problem, &path, &trace.id));
        if let Ok(value) = HeaderValue::from_str(&trace.id) {
            response.headers_mut().insert(request_id::HEADER, value);
        }

        tracing::info!(
            target: "arena::request",
            request_id = %trace.id,
            method = %method,
            path = %path,
            route = route.as_ref().map(|r| r.route),
            component = route.as_ref().map(|r| r.component),
            caller = caller.component(),
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        response
    }

    /// Spin's route for a request chained straight to a component
    /// (`NAME.spin.internal`): the whole path is its path info.
    fn component_route<'a>(&'a self, name: &str, path: &str) -> Option<RouteMatch<'a>> {
        let (component, _) = self.components.get_key_value(name)?;
        Some(RouteMatch {
            component,
            route: "/...",
            component_route: "",
            path_info: path.to_owned(),
            params: Vec::new(),
        })
    }

    async fn dispatch(
        &self,
        request: GuestRequest,
        route: &RouteMatch<'_>,
        caller: &Caller,
        trace: &Arc<RequestTrace>,
    ) -> Result<Response<Body>, Problem> {
        let handler = self
            .components
            .get(route.component)
            .ok_or_else(problem::component_failed)?;
        if declared_length(request.headers()).is_some_and(|length| length > self.max_request_body) {
            return Err(problem::body_too_large(self.max_request_body));
        }
        // Only clients wait for a permit: a chained request waiting for one
        // while its caller holds another could deadlock a saturated host.
        // Chained requests are bounded by the instance pool and the chain depth.
        let _permit = match caller {
            Caller::Client(_) => Some(
                self.requests
                    .acquire()
                    .await
                    .map_err(|_closed| problem::shutting_down())?,
            ),
            Caller::Component(_) => None,
        };
        let peer = match caller {
            Caller::Client(peer) => Some(*peer),
            Caller::Component(_) => None,
        };
        let request = guest_request(request, route, peer, &trace.id, &self.base)?;
        let request = limit_body(request, self.max_request_body);
        match handler.handle(trace.clone(), request).await {
            Ok(response) => Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync())),
            Err(error) => {
                let problem = classify_failure(&error, trace);
                // `{:#}`, not `{:?}`: resolving the error's backtrace costs
                // hundreds of milliseconds and the trap is already logged.
                tracing::error!(
                    request_id = %trace.id,
                    component = route.component,
                    status = problem.status().as_u16(),
                    "component failed: {error:#}"
                );
                Err(problem)
            }
        }
    }
}

/// A request on its way to a component, from a client or a component.
type GuestRequest = wasmtime_wasi_http::handler::Request;

/// Who sent a request.
enum Caller {
    Client(SocketAddr),
    /// A component of this application (a chained request).
    Component(Arc<str>),
}

impl Caller {
    fn component(&self) -> Option<&str> {
        match self {
            Caller::Client(_) => None,
            Caller::Component(name) => Some(name),
        }
    }
}

impl Dispatch for Application {
    fn dispatch(
        self: Arc<Self>,
        target: Target,
        request: GuestRequest,
        caller: Arc<str>,
        parent: Option<Arc<RequestTrace>>,
    ) -> BoxFuture<'static, Result<wasmtime_wasi_http::handler::Response, wasmtime_wasi_http::Error>>
    {
        Box::pin(async move {
            let trace = match parent {
                Some(parent) => parent
                    .chained()
                    .ok_or(wasmtime_wasi_http::Error::LoopDetected)?,
                None => RequestTrace::new(&uuid::Uuid::now_v7().to_string()),
            };
            if let Target::Component(name) = &target
                && !self.components.contains_key(name)
            {
                return Err(wasmtime_wasi_http::Error::DestinationNotFound);
            }
            let response = self
                .respond(request, target, Caller::Component(caller), trace)
                .await;
            Ok(response.map(|body| body.map_err(into_wasi_error).boxed_unsync()))
        })
    }
}

/// Bodies the host answers with fail with `wasi:http` errors, or with
/// errors of their own that the calling component sees as internal.
fn into_wasi_error(error: BoxError) -> wasmtime_wasi_http::Error {
    match error.downcast::<wasmtime_wasi_http::Error>() {
        Ok(error) => *error,
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Spin's request metadata headers, set by the host and never by the client.
mod spin_headers {
    pub const FULL_URL: &str = "spin-full-url";
    pub const PATH_INFO: &str = "spin-path-info";
    pub const MATCHED_ROUTE: &str = "spin-matched-route";
    pub const COMPONENT_ROUTE: &str = "spin-component-route";
    pub const RAW_COMPONENT_ROUTE: &str = "spin-raw-component-route";
    pub const BASE_PATH: &str = "spin-base-path";
    pub const CLIENT_ADDR: &str = "spin-client-addr";
    pub const PATH_MATCH_PREFIX: &str = "spin-path-match-";
}

/// Turns the client's request into the one the component sees: an absolute
/// URL, Spin's metadata headers and the request id. `peer` is `None` for a
/// chained request, which has no client address.
fn guest_request(
    request: GuestRequest,
    route: &RouteMatch<'_>,
    peer: Option<SocketAddr>,
    request_id: &str,
    base: &str,
) -> Result<GuestRequest, Problem> {
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let full_url = format!("http://{authority}{path_and_query}");
    parts.uri = full_url
        .parse()
        .map_err(|_| problem::invalid_url(&full_url))?;

    let headers = &mut parts.headers;
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    };
    set(spin_headers::FULL_URL, &full_url);
    set(spin_headers::PATH_INFO, &route.path_info);
    set(spin_headers::MATCHED_ROUTE, route.route);
    set(spin_headers::COMPONENT_ROUTE, route.component_route);
    set(spin_headers::RAW_COMPONENT_ROUTE, route.route);
    set(spin_headers::BASE_PATH, base);
    if let Some(peer) = peer {
        set(spin_headers::CLIENT_ADDR, &peer.to_string());
    }
    for (name, value) in &route.params {
        set(&format!("{}{name}", spin_headers::PATH_MATCH_PREFIX), value);
    }
    set(request_id::HEADER, request_id);

    Ok(Request::from_parts(parts, body))
}

/// Cuts a body without `Content-Length` (chunked) off at `limit` bytes: the
/// component sees a body error instead of the host buffering without bound.
fn limit_body(
    request: wasmtime_wasi_http::handler::Request,
    limit: u64,
) -> wasmtime_wasi_http::handler::Request {
    request.map(|body| {
        http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
            .map_err(
                move |error| match error.downcast::<wasmtime_wasi_http::Error>() {
                    Ok(inner) => *inner,
                    Err(_over_limit) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit)),
                },
            )
            .boxed_unsync()
    })
}

/// Maps a failed component call to what the client is told. Details stay in
/// the log (with the request id); the client gets a stable code.
fn classify_failure(error: &wasmtime::Error, trace: &RequestTrace) -> Problem {
    if trace.timed_out() || error.is::<ExpirationError>() {
        return problem::component_timed_out();
    }
    if error.is::<InstantiationError<Arc<RequestTrace>>>() {
        return problem::no_capacity();
    }
    match error.downcast_ref::<ErrorCode>() {
        Some(ErrorCode::HttpRequestBodySize(_)) => {
            Problem::validation_failed("The request body did not match its declared length.")
        }
        _ => problem::component_failed(),
    }
}
