//! Requests a component sends to its own application: Spin's self requests
//! (`http://self.alt/path`, routed like a client's request) and service
//! chaining (`http://NAME.spin.internal/path`, straight to component NAME,
//! private ones included). Both are served in process, without a network
//! hop, by whatever implements [`Dispatch`] (the server's `Application`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock, Weak};

use futures::future::BoxFuture;
use wasmtime_wasi_http::Error;
use wasmtime_wasi_http::handler::{Request, Response};

use super::RequestTrace;

/// Requests chained within one client request (A calls B calls C ...)
/// before the next is refused with `loop-detected`: a component calling
/// itself would otherwise recurse until no instance is left.
pub const MAX_CHAIN_DEPTH: u32 = 10;

/// Where a chained request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Through the application's router, as a client's request would.
    Router,
    /// To this component, whatever its route (`NAME.spin.internal`).
    Component(String),
}

/// Serves a request a component sent to its own application.
pub trait Dispatch: Send + Sync {
    /// `caller` is the sending component; `parent` the request it is serving
    /// (its id carries over, so the chain shares one request id in the logs).
    fn dispatch(
        self: Arc<Self>,
        target: Target,
        request: Request,
        caller: Arc<str>,
        parent: Option<Arc<RequestTrace>>,
    ) -> BoxFuture<'static, Result<Response, Error>>;
}

/// The application, as components reach it. Set once the server exists,
/// after every component is loaded; weak because the application owns the
/// components (and so, through them, this handle).
#[derive(Clone, Default)]
pub struct ApplicationHandle(Arc<OnceLock<Weak<dyn Dispatch>>>);

impl ApplicationHandle {
    /// Connects the handle; later calls are ignored.
    pub fn set(&self, application: Weak<dyn Dispatch>) {
        let _ = self.0.set(application);
    }

    /// The application, unless it is not set yet or already gone.
    pub fn get(&self) -> Option<Arc<dyn Dispatch>> {
        self.0.get()?.upgrade()
    }
}

impl RequestTrace {
    /// The trace of a request chained from this one: same id, one deeper;
    /// `None` past [`MAX_CHAIN_DEPTH`].
    pub fn chained(&self) -> Option<Arc<RequestTrace>> {
        let depth = self.depth + 1;
        (depth <= MAX_CHAIN_DEPTH).then(|| {
            Arc::new(RequestTrace {
                id: self.id.clone(),
                timed_out: AtomicBool::new(false),
                depth,
            })
        })
    }
}

/// The chaining target a request host names: `self.alt` is the application,
/// `NAME.spin.internal` component NAME; any other host is not chained.
pub fn target_of(host: &str) -> Option<Target> {
    if host == "self.alt" {
        return Some(Target::Router);
    }
    let (component, domain) = host.split_once('.')?;
    (domain == "spin.internal" && !component.is_empty())
        .then(|| Target::Component(component.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_alt_is_the_router_and_spin_internal_names_a_component() {
        assert_eq!(target_of("self.alt"), Some(Target::Router));
        assert_eq!(
            target_of("meta.spin.internal"),
            Some(Target::Component("meta".into()))
        );
    }

    #[test]
    fn other_hosts_are_not_chained() {
        for host in [
            "self",
            "example.com",
            "a.b.spin.internal",
            ".spin.internal",
            "spin.internal",
        ] {
            assert_eq!(target_of(host), None, "{host}");
        }
    }

    #[test]
    fn chained_traces_keep_the_id_and_stop_at_the_depth_limit() {
        let mut trace = RequestTrace::new("req-1");
        for depth in 1..=MAX_CHAIN_DEPTH {
            trace = trace.chained().unwrap();
            assert_eq!(trace.depth, depth);
            assert_eq!(&*trace.id, "req-1");
        }
        assert!(trace.chained().is_none());
    }

    #[test]
    fn an_unset_handle_gives_no_application() {
        assert!(ApplicationHandle::default().get().is_none());
    }
}
