//! The HTTP front door: accepts connections, routes each request to its
//! component, and logs one line per request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError};
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use arena_common::Problem;

use crate::problem;
use crate::request_id;
use crate::routes::{RouteMatch, Router};
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
}

/// Serves `listener` until `shutdown` resolves, then drains in-flight
/// requests for at most [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    app: Arc<Application>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = connections.clone().acquire_owned().await?;
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
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    app.requests.close();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all requests finished"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway")
        }
    }
    Ok(())
}

impl Application {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id::from_request(request.headers());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let route = self.router.route(&path);

        let outcome = match &route {
            Some(route) => self.dispatch(request, route, peer, &request_id).await,
            None => Err(problem::no_route(&path)),
        };
        let mut response =
            outcome.unwrap_or_else(|problem| problem::render(problem, &path, &request_id));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(request_id::HEADER, value);
        }

        tracing::info!(
            target: "arena::request",
            request_id = %request_id,
            method = %method,
            path = %path,
            route = route.as_ref().map(|r| r.route),
            component = route.as_ref().map(|r| r.component),
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        response
    }

    async fn dispatch(
        &self,
        request: Request<Incoming>,
        route: &RouteMatch<'_>,
        peer: SocketAddr,
        request_id: &str,
    ) -> Result<Response<Body>, Problem> {
        let handler = self
            .components
            .get(route.component)
            .ok_or_else(problem::component_failed)?;
        if declared_length(&request).is_some_and(|length| length > self.max_request_body) {
            return Err(problem::body_too_large(self.max_request_body));
        }
        let _permit = self
            .requests
            .acquire()
            .await
            .map_err(|_closed| problem::shutting_down())?;
        let request = guest_request(request, route, peer, request_id, &self.base)?;
        let request = limit_body(request, self.max_request_body);
        let trace = RequestTrace::new(request_id);
        match handler.handle(trace.clone(), request).await {
            Ok(response) => Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync())),
            Err(error) => {
                let problem = classify_failure(&error, &trace);
                // `{:#}`, not `{:?}`: resolving the error's backtrace costs
                // hundreds of milliseconds and the trap is already logged.
                tracing::error!(
                    request_id,
                    component = route.component,
                    status = problem.status().as_u16(),
                    "component failed: {error:#}"
                );
                Err(problem)
            }
        }
    }
}

fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
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
/// URL, Spin's metadata headers and the request id.
fn guest_request(
    request: Request<Incoming>,
    route: &RouteMatch<'_>,
    peer: SocketAddr,
    request_id: &str,
    base: &str,
) -> Result<wasmtime_wasi_http::handler::Request, Problem> {
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
    set(spin_headers::CLIENT_ADDR, &peer.to_string());
    for (name, value) in &route.params {
        set(&format!("{}{name}", spin_headers::PATH_MATCH_PREFIX), value);
    }
    set(request_id::HEADER, request_id);

    let body = body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync();
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
