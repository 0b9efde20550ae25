//! Outbound HTTP from components (`wasi:http/client`).
//!
//! A request leaves only for a destination the component's
//! `allowed_outbound_hosts` names; anything else fails with
//! `HttpRequestDenied` and a warning saying which entry would allow it.
//! Requests to the application itself (`self.alt`, `NAME.spin.internal`)
//! are dispatched in process (see [`super::chaining`]).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::RequestSlot;
use super::chaining::{self, ApplicationHandle, Target};
use crate::allowed_hosts::{AllowedHosts, Destination};

/// Time to establish a connection (TCP and TLS) unless the guest sets its
/// own: an unreachable service (Ollama not running, a firewalled port)
/// must fail the request quickly, not hold it until the request time limit.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time from sending the request to the response head unless the guest
/// sets its own. Generous: a language model may think before answering.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest silence between two chunks of a response body unless the guest
/// sets its own.
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(120);

/// The outbound side of one instance.
pub struct OutboundHttp {
    component: Arc<str>,
    allowed_hosts: Arc<AllowedHosts>,
    /// The request the instance serves, for chained requests' ids.
    request: RequestSlot,
    application: ApplicationHandle,
}

impl OutboundHttp {
    pub fn new(
        component: Arc<str>,
        allowed_hosts: Arc<AllowedHosts>,
        request: RequestSlot,
        application: ApplicationHandle,
    ) -> Self {
        OutboundHttp {
            component,
            allowed_hosts,
            request,
            application,
        }
    }

    /// Where `uri` may go, or the `allowed_outbound_hosts` entry that would
    /// have allowed it.
    fn route(&self, uri: &http::Uri) -> Result<Route, Refusal> {
        let Some(destination) = Destination::from_uri(uri) else {
            return Err(Refusal::Unreadable);
        };
        match chaining::target_of(&destination.host) {
            Some(Target::Router) if self.allowed_hosts.allows_self() => {
                Ok(Route::Chained(Target::Router))
            }
            Some(Target::Router) => Err(Refusal::Disallowed("http://self".into())),
            _ if !self.allowed_hosts.allows_destination(&destination) => {
                Err(Refusal::Disallowed(destination.to_string()))
            }
            Some(target) => Ok(Route::Chained(target)),
            None => Ok(Route::Network),
        }
    }
}

enum Route {
    Network,
    Chained(Target),
}

enum Refusal {
    /// No scheme, or a host that is not a host name or IP address.
    Unreadable,
    /// Carries the entry that would allow the destination.
    Disallowed(String),
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let url = display_url(request.uri());
        match self.route(request.uri()) {
            Err(refusal) => {
                let allow = match &refusal {
                    Refusal::Disallowed(entry) => entry.as_str(),
                    Refusal::Unreadable => "(none: the URL names no valid host)",
                };
                tracing::warn!(
                    component = %self.component,
                    %url,
                    "connection to disallowed destination {url} refused; to allow it, add \"{allow}\" to `allowed_outbound_hosts` of component `{}`",
                    self.component
                );
                Box::new(async { Err(Error::HttpRequestDenied) })
            }
            Ok(Route::Chained(target)) => {
                tracing::debug!(component = %self.component, %url, "chained request");
                let application = self.application.get();
                let caller = self.component.clone();
                let parent = self.request.get().cloned();
                Box::new(async move {
                    let application = application.ok_or(Error::InternalError(Some(
                        "the application is not serving yet".into(),
                    )))?;
                    let response = application
                        .dispatch(target, request, caller, parent)
                        .await?;
                    Ok((response, done()))
                })
            }
            Ok(Route::Network) => {
                tracing::debug!(component = %self.component, %url, "outbound request");
                let options = with_default_timeouts(options);
                Box::new(async move {
                    let (response, io) =
                        wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                    let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(io);
                    Ok((response.map(BodyExt::boxed_unsync), io))
                })
            }
        }
    }
}

/// The guest's timeouts where it set them, this host's elsewhere.
fn with_default_timeouts(options: Option<RequestOptions>) -> RequestOptions {
    let options = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: options.connect_timeout.or(Some(CONNECT_TIMEOUT)),
        first_byte_timeout: options.first_byte_timeout.or(Some(FIRST_BYTE_TIMEOUT)),
        between_bytes_timeout: options
            .between_bytes_timeout
            .or(Some(BETWEEN_BYTES_TIMEOUT)),
    }
}

/// A finished I/O future: a chained response has no connection to drive.
fn done() -> Box<dyn Future<Output = Result<(), Error>> + Send> {
    Box::new(async { Ok(()) })
}

/// The URL as logged: without the query, which may carry credentials
/// (`?api_key=`).
fn display_url(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("?");
    let authority = uri.authority().map_or("", |authority| authority.as_str());
    // Userinfo may hold a password too.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{authority}{}", uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(entries: &[&str]) -> OutboundHttp {
        OutboundHttp::new(
            "test".into(),
            Arc::new(AllowedHosts::parse_literal(entries).unwrap()),
            RequestSlot::default(),
            ApplicationHandle::default(),
        )
    }

    fn route(outbound: &OutboundHttp, url: &str) -> Result<Route, Refusal> {
        outbound.route(&url.parse().unwrap())
    }

    #[test]
    fn an_allowed_host_goes_to_the_network() {
        let outbound = outbound(&["http://127.0.0.1:*"]);
        assert!(matches!(
            route(&outbound, "http://127.0.0.1:8080/x"),
            Ok(Route::Network)
        ));
    }

    #[test]
    fn a_refusal_names_the_entry_that_would_allow_it() {
        let outbound = outbound(&["http://127.0.0.1:*"]);
        match route(&outbound, "http://localhost:8080/x") {
            Err(Refusal::Disallowed(entry)) => assert_eq!(entry, "http://localhost:8080"),
            _ => panic!("must be refused"),
        }
    }

    #[test]
    fn self_requests_need_a_self_entry() {
        assert!(matches!(
            route(&outbound(&["http://self"]), "http://self.alt/v1/health"),
            Ok(Route::Chained(Target::Router))
        ));
        match route(
            &outbound(&["http://127.0.0.1:*"]),
            "http://self.alt/v1/health",
        ) {
            Err(Refusal::Disallowed(entry)) => assert_eq!(entry, "http://self"),
            _ => panic!("must be refused"),
        }
    }

    #[test]
    fn service_chaining_needs_the_component_host_allowed() {
        assert!(matches!(
            route(&outbound(&["http://meta.spin.internal"]), "http://meta.spin.internal/v1"),
            Ok(Route::Chained(Target::Component(name))) if name == "meta"
        ));
        assert!(matches!(
            route(&outbound(&["http://self"]), "http://meta.spin.internal/v1"),
            Err(Refusal::Disallowed(_))
        ));
    }

    #[test]
    fn the_guests_timeouts_win_and_the_rest_default() {
        let options = with_default_timeouts(Some(RequestOptions {
            connect_timeout: Some(Duration::from_millis(10)),
            ..RequestOptions::default()
        }));
        assert_eq!(options.connect_timeout, Some(Duration::from_millis(10)));
        assert_eq!(options.first_byte_timeout, Some(FIRST_BYTE_TIMEOUT));
        assert_eq!(options.between_bytes_timeout, Some(BETWEEN_BYTES_TIMEOUT));
    }

    #[test]
    fn logged_urls_drop_the_query_and_userinfo() {
        let uri: http::Uri = "https://user:pw@api.test:8443/v1/x?api_key=s3cret"
            .parse()
            .unwrap();
        assert_eq!(display_url(&uri), "https://api.test:8443/v1/x");
    }
}
