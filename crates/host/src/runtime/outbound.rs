//! Outbound HTTP from components.
//!
//! A component may reach only the destinations its `allowed_outbound_hosts`
//! names. Until that check exists, every outbound request is refused, so
//! nothing can leave the host unchecked.

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub struct OutboundHttp {
    pub component: std::sync::Arc<str>,
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
        _options: Option<RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        tracing::warn!(
            component = %self.component,
            uri = %request.uri(),
            "outbound request refused: connection to disallowed destination"
        );
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
