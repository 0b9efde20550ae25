//! What a handler needs to know about the request it is answering, beyond its body,
//! and what it passes on to the requests it makes in turn.
//!
//! Generic over the body type: spin-sdk's `Request` is an
//! `http::Request<IncomingRequestBody>`, and tests use `http::Request<()>`.

/// The header that carries the request id. The host sets it on every request (taking
/// the caller's when well formed) and echoes it on the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id, if the request has one that is valid text.
pub fn request_id<B>(req: &http::Request<B>) -> Option<&str> {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty())
}

/// The request path, without the query: what a problem's `instance` names. The query
/// is left out because it can hold things that do not belong in an error report.
pub fn path<B>(req: &http::Request<B>) -> &str {
    match req.uri().path() {
        "" => "/",
        path => path,
    }
}

/// The header in which Spin gives the client's address (`ip:port`); the host sets it
/// and drops any the client sent.
pub const CLIENT_ADDR_HEADER: &str = "spin-client-addr";

/// The client's IP address, without the port: what rate limits and the audit log
/// key on. `None` when the host did not say (a chained request).
pub fn client_ip<B>(req: &http::Request<B>) -> Option<std::net::IpAddr> {
    let text = req.headers().get(CLIENT_ADDR_HEADER)?.to_str().ok()?;
    text.parse::<std::net::SocketAddr>()
        .map(|addr| addr.ip())
        .or_else(|_| text.parse())
        .ok()
}

/// The `User-Agent`, cut to a length fit for a log or a session list.
pub fn user_agent<B>(req: &http::Request<B>) -> Option<String> {
    const MAX_CHARS: usize = 256;
    let text = req.headers().get(http::header::USER_AGENT)?.to_str().ok()?;
    Some(text.chars().take(MAX_CHARS).collect()).filter(|text: &String| !text.is_empty())
}

/// Checks a request's `If-Match` precondition (RFC 9110 §13.1.1), given its
/// `headers`, against the resource's current entity tag `current`, quoted (`"4"`).
/// `Ok(false)` when the request has no `If-Match`; `Ok(true)` when one of its tags,
/// or `*`, matches; a 412 `precondition_failed` naming the current tag when none
/// does. Comparison is strong, as If-Match requires: a weak tag (`W/"4"`) never
/// matches.
pub fn if_match(headers: &http::HeaderMap, current: &str) -> Result<bool, crate::Problem> {
    let mut given = headers.get_all(http::header::IF_MATCH).iter().peekable();
    if given.peek().is_none() {
        return Ok(false);
    }
    let tags: Vec<String> = given
        .flat_map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|tag| tag.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|tag| !tag.is_empty())
        .collect();
    if tags.iter().any(|tag| tag == "*" || tag == current) {
        return Ok(true);
    }
    Err(crate::Problem::precondition_failed(format!(
        "If-Match {} does not match the current ETag {current}",
        tags.join(", ")
    )))
}

/// A builder for a request made on behalf of `incoming` (to Ollama, Qdrant or another
/// component), carrying its request id, so one id follows the work through every
/// service's logs. Set the method, URI, other headers and body as usual:
///
/// ```no_run
/// use arena_common::request::outbound;
/// use spin_sdk::http::{FullBody, send};
///
/// # async fn embed(req: &spin_sdk::http::Request) -> anyhow::Result<()> {
/// let call = outbound(req)
///     .method("POST")
///     .uri("http://127.0.0.1:11434/api/embed")
///     .header("content-type", "application/json")
///     .body(FullBody::new(bytes::Bytes::from(r#"{"model":"all-minilm","input":"hi"}"#)))?;
/// let response = send(call).await?;
/// # let _ = response; Ok(()) }
/// ```
pub fn outbound<B>(incoming: &http::Request<B>) -> http::request::Builder {
    let builder = http::Request::builder();
    match incoming.headers().get(REQUEST_ID_HEADER) {
        Some(id) if !id.is_empty() => builder.header(REQUEST_ID_HEADER, id),
        _ => builder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, id: Option<&[u8]>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(id) = id {
            builder = builder.header(REQUEST_ID_HEADER, id);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn request_id_is_read_from_the_header() {
        let req = request("/v1/health", Some(b"0191f0c4-9a00-7000-8000-000000000001"));
        assert_eq!(
            request_id(&req),
            Some("0191f0c4-9a00-7000-8000-000000000001")
        );
    }

    #[test]
    fn missing_empty_or_non_text_request_ids_are_none() {
        assert_eq!(request_id(&request("/", None)), None);
        assert_eq!(request_id(&request("/", Some(b""))), None);
        assert_eq!(request_id(&request("/", Some(b"caf\xe9"))), None);
    }

    #[test]
    fn path_leaves_out_scheme_authority_and_query() {
        let req = request("http://localhost:3000/v1/agents?limit=5&cursor=x", None);
        assert_eq!(path(&req), "/v1/agents");
    }

    #[test]
    fn outbound_requests_carry_the_incoming_request_id() {
        let incoming = request("/v1/ai/complete", Some(b"0191f0c4-req"));
        let call = outbound(&incoming)
            .method("POST")
            .uri("http://127.0.0.1:11434/api/chat")
            .body(())
            .unwrap();
        assert_eq!(call.headers()[REQUEST_ID_HEADER], "0191f0c4-req");
        assert_eq!(call.uri(), "http://127.0.0.1:11434/api/chat");
    }

    #[test]
    fn outbound_requests_without_an_incoming_id_carry_none() {
        let call = outbound(&request("/", None)).body(()).unwrap();
        assert!(call.headers().get(REQUEST_ID_HEADER).is_none());
    }

    #[test]
    fn client_ip_drops_the_port_and_reads_both_families() {
        let with = |addr: &str| {
            http::Request::builder()
                .header(CLIENT_ADDR_HEADER, addr)
                .body(())
                .unwrap()
        };
        assert_eq!(
            client_ip(&with("10.1.2.3:5555")),
            Some([10, 1, 2, 3].into())
        );
        assert_eq!(
            client_ip(&with("[::1]:80")),
            Some(std::net::Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(client_ip(&with("10.1.2.3")), Some([10, 1, 2, 3].into()));
        assert_eq!(client_ip(&with("not an address")), None);
        assert_eq!(client_ip(&request("/", None)), None);
    }

    #[test]
    fn user_agent_is_cut_to_a_bounded_length() {
        let long = "a".repeat(1000);
        let req = http::Request::builder()
            .header("user-agent", &long)
            .body(())
            .unwrap();
        assert_eq!(user_agent(&req).unwrap().len(), 256);
        assert_eq!(user_agent(&request("/", None)), None);
    }

    #[test]
    fn if_match_passes_without_the_header_or_with_a_matching_tag() {
        let with = |values: &[&str]| {
            let mut builder = http::Request::builder();
            for value in values {
                builder = builder.header(http::header::IF_MATCH, *value);
            }
            builder.body(()).unwrap().headers().clone()
        };
        assert!(!if_match(&with(&[]), "\"4\"").unwrap());
        assert!(if_match(&with(&["\"4\""]), "\"4\"").unwrap());
        assert!(if_match(&with(&["\"3\", \"4\""]), "\"4\"").unwrap());
        assert!(if_match(&with(&["\"1\"", "*"]), "\"4\"").unwrap());
        for stale in ["\"3\"", "W/\"4\"", "4", ""] {
            let problem = if_match(&with(&[stale]), "\"4\"").unwrap_err();
            assert_eq!(
                problem.status(),
                http::StatusCode::PRECONDITION_FAILED,
                "{stale}"
            );
            assert!(problem.detail().contains("\"4\""), "{}", problem.detail());
        }
    }

    #[test]
    fn path_of_an_authority_only_uri_is_the_root() {
        let req = request("http://localhost:3000", None);
        assert_eq!(path(&req), "/");
    }
}
