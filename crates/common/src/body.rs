//! Reading a JSON request body into a typed, validated value.
//!
//! [`read_json`] turns every way a body can be wrong into a 4xx problem, never a 5xx:
//!
//! | The body | Answer |
//! |---|---|
//! | larger than the limit ([`DEFAULT_BODY_LIMIT`], or the one given) | 413 `payload_too_large` |
//! | without `Content-Type: application/json` | 415 `unsupported_media_type` |
//! | empty, or not JSON | 400 `validation_failed`, with the line and column |
//! | a wrong type, a missing or an unknown field | 400 `validation_failed`, `errors` naming the field's path (`agents[2].model`) |
//! | against the type's [`Validate`] rules | 400 `validation_failed`, every invalid field listed |
//! | cut short by the client or the host | 400 `validation_failed` (413 when the host's own cap cut it) |
//!
//! Unknown fields are refused only where the type says so: put
//! `#[serde(deny_unknown_fields)]` on every request body, so a misspelt optional
//! field is an error rather than silently ignored.
//!
//! ```no_run
//! use arena_common::body::read_json;
//! use arena_common::validate::{Validate, Validator};
//! use arena_common::Problem;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct CreateAgent { name: String, model: String }
//!
//! impl Validate for CreateAgent {
//!     fn validate(&self, v: &mut Validator) {
//!         v.length("name", &self.name, 1..=100);
//!     }
//! }
//!
//! async fn create(mut req: spin_sdk::http::Request) -> Result<(), Problem> {
//!     let agent: CreateAgent = read_json(&mut req).await?;
//!     // ... agent.name has 1 to 100 characters here.
//!     # let _ = agent; Ok(())
//! }
//! ```

use std::fmt::Display;

use bytes::{Buf, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body::Body;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_path_to_error::{Path, Segment};

use crate::Problem;
use crate::validate::{Validate, join};

/// The largest body [`read_json`] accepts: 1 MiB, far above any Arena resource
/// (the largest, a knowledge document, is uploaded in pieces) and small enough that
/// a component's memory limit is never the one that trips.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The one media type JSON bodies are accepted in.
const JSON: &str = "application/json";

/// A failure reading a body's bytes, as the body type reports it.
pub trait BodyError: Display {
    /// Whether the bytes stopped because a size cap upstream (the host's) cut them off,
    /// which the client is told as a 413 rather than a 400.
    fn is_over_limit(&self) -> bool {
        false
    }
}

/// Bodies already in memory never fail.
impl BodyError for std::convert::Infallible {}

/// The error of Spin's incoming bodies: the host reports its own size cap as
/// `HttpRequestBodySize`.
#[cfg(feature = "spin")]
impl BodyError for spin_sdk::wasip3::http::types::ErrorCode {
    fn is_over_limit(&self) -> bool {
        matches!(self, Self::HttpRequestBodySize(_))
    }
}

/// Reads the body of `req` as JSON into a `T` and validates it, with the size limit
/// [`DEFAULT_BODY_LIMIT`]. See the [module docs](self) for what each failure answers.
///
/// Takes the request by `&mut` so the handler keeps its headers and path; the body is
/// consumed.
pub async fn read_json<T, B>(req: &mut http::Request<B>) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate,
    B: Body + Unpin,
    B::Error: BodyError,
{
    read_json_limited(req, DEFAULT_BODY_LIMIT).await
}

/// [`read_json`] with another size limit, in bytes.
pub async fn read_json_limited<T, B>(req: &mut http::Request<B>, limit: usize) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate,
    B: Body + Unpin,
    B::Error: BodyError,
{
    check_content_type(req.headers(), JSON)?;
    check_declared_length(req.headers(), limit)?;
    let bytes = read_limited(req.body_mut(), limit).await?;
    let value: T = parse_json(&bytes)?;
    value.validated()?;
    Ok(value)
}

/// [`read_json`] for a body that may be left out: an empty body (with any
/// `Content-Type`, or none) is `None`; any other is read as [`read_json`] reads it.
pub async fn read_optional_json<T, B>(req: &mut http::Request<B>) -> Result<Option<T>, Problem>
where
    T: DeserializeOwned + Validate,
    B: Body + Unpin,
    B::Error: BodyError,
{
    check_declared_length(req.headers(), DEFAULT_BODY_LIMIT)?;
    let bytes = read_limited(req.body_mut(), DEFAULT_BODY_LIMIT).await?;
    if bytes.is_empty() {
        return Ok(None);
    }
    check_content_type(req.headers(), JSON)?;
    let value: T = parse_json(&bytes)?;
    value.validated()?;
    Ok(Some(value))
}

/// The media type of HTML-form bodies, which the OAuth2 token endpoint takes.
const FORM: &str = "application/x-www-form-urlencoded";

/// Reads an `application/x-www-form-urlencoded` body (RFC 6749's token requests) as
/// its name-value pairs, in order, with the size limit `limit`. Failures answer as
/// [`read_json`]'s do: 413 over the limit, 415 another media type, 400 a body that
/// is not UTF-8.
pub async fn read_form<B>(
    req: &mut http::Request<B>,
    limit: usize,
) -> Result<Vec<(String, String)>, Problem>
where
    B: Body + Unpin,
    B::Error: BodyError,
{
    check_content_type(req.headers(), FORM)?;
    check_declared_length(req.headers(), limit)?;
    let bytes = read_limited(req.body_mut(), limit).await?;
    std::str::from_utf8(&bytes)
        .map_err(|_| Problem::validation_failed("the form body is not UTF-8"))?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Reads a field that is there, `null` included, as `Some`. With
/// `#[serde(default, deserialize_with = "arena_common::body::present")]` on an
/// `Option<Option<T>>`, an update body tells "leave it" (the field left out:
/// `None`) from "clear it" (`null`: `Some(None)`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// 415 unless the body is declared as `expected`. A `charset` parameter is allowed
/// if it says UTF-8, the only encoding JSON has (RFC 8259) and the one Arena's
/// forms are read in.
fn check_content_type(headers: &http::HeaderMap, expected: &str) -> Result<(), Problem> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(Problem::unsupported_media_type(format!(
            "expected a body with Content-Type: {expected}, got no Content-Type"
        )));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let mut parts = text.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    let charset_ok = parts.all(|parameter| match parameter.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    if essence.eq_ignore_ascii_case(expected) && charset_ok {
        Ok(())
    } else {
        Err(Problem::unsupported_media_type(format!(
            "expected Content-Type: {expected}, got {text:?}"
        )))
    }
}

/// 413 at once when `Content-Length` already says the body is over the limit.
fn check_declared_length(headers: &http::HeaderMap, limit: usize) -> Result<(), Problem> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

fn too_large(limit: usize) -> Problem {
    Problem::payload_too_large(format!(
        "the request body is over the limit of {limit} bytes"
    ))
}

/// The whole body, refusing it as soon as it passes `limit` bytes, so a client that
/// sends more (or lies in `Content-Length`) never makes the component buffer it.
async fn read_limited<B>(body: &mut B, limit: usize) -> Result<BytesMut, Problem>
where
    B: Body + Unpin,
    B::Error: BodyError,
{
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            if error.is_over_limit() {
                too_large(limit)
            } else {
                Problem::validation_failed(format!("the request body could not be read: {error}"))
            }
        })?;
        // Trailers carry nothing a JSON body needs.
        if let Ok(mut data) = frame.into_data() {
            if bytes.len() + data.remaining() > limit {
                return Err(too_large(limit));
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                bytes.extend_from_slice(chunk);
                let read = chunk.len();
                data.advance(read);
            }
        }
    }
    Ok(bytes)
}

/// Parses `bytes` as a `T`, naming the offending field's path on a type error.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::validation_failed(
            "the request body is empty; expected a JSON document",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| json_problem(render(error.path()), error.inner()))?;
    // Text after the document is malformed JSON too.
    deserializer
        .end()
        .map_err(|error| json_problem(String::new(), &error))?;
    Ok(value)
}

/// The problem for a parse error at the field path `at`: malformed JSON names where
/// it broke, a type error names the field.
fn json_problem(at: String, error: &serde_json::Error) -> Problem {
    let message = message_of(error);
    match error.classify() {
        // The body as a whole is the wrong kind of value (a string for an object).
        Category::Data if at.is_empty() && quoted_name(&message, "missing field `").is_none() => {
            Problem::validation_failed(format!("the request body is of the wrong type: {message}"))
        }
        Category::Data => {
            let (field, message) = field_error(at, &message);
            Problem::validation_failed(format!("{field}: {message}"))
                .with_field_error(field, message)
        }
        Category::Syntax | Category::Eof | Category::Io => Problem::validation_failed(format!(
            "the request body is not valid JSON: {message} at line {}, column {}",
            error.line(),
            error.column()
        )),
    }
}

/// Where a type error is and what it says. serde reports a missing field at the
/// object that lacks it; the field's own path is more useful to a client.
fn field_error(at: String, message: &str) -> (String, String) {
    if let Some(name) = quoted_name(message, "missing field `") {
        return (join(&at, name), "is required".to_owned());
    }
    if quoted_name(message, "unknown field `").is_some() {
        // The path already ends in the unknown key.
        let expected = message
            .split_once(", expected ")
            .map(|(_, expected)| format!("; expected {}", expected.replace('`', "")))
            .unwrap_or_default();
        return (at, format!("is not a known field{expected}"));
    }
    (at, message.to_owned())
}

/// The name between `prefix` and the next backtick, if `message` starts with `prefix`.
fn quoted_name<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// A path as `agents[2].model`; the root is the empty string.
fn render(path: &Path) -> String {
    path.iter()
        .fold(String::new(), |at, segment| match segment {
            Segment::Seq { index } => format!("{at}[{index}]"),
            Segment::Map { key } => join(&at, key),
            Segment::Enum { variant } => join(&at, variant),
            Segment::Unknown => join(&at, "?"),
        })
}

/// serde_json's message without the " at line L column C" it appends.
fn message_of(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProblemCode;
    use crate::validate::Validator;
    use bytes::Bytes;
    use futures::executor::block_on;
    use http_body_util::{Full, StreamBody};
    use serde::Deserialize;
    use std::convert::Infallible;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Seat {
        model: String,
        temperature: Option<f64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct CreateDiscussion {
        title: String,
        agents: Vec<Seat>,
    }

    impl Validate for CreateDiscussion {
        fn validate(&self, v: &mut Validator) {
            v.length("title", &self.title, 1..=20);
            for (i, seat) in self.agents.iter().enumerate() {
                if let Some(temperature) = seat.temperature {
                    v.range(
                        format_args!("agents[{i}].temperature"),
                        temperature,
                        0.0..=2.0,
                    );
                }
            }
        }
    }

    fn request(content_type: Option<&str>, body: &str) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("/v1/discussions");
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    fn read(content_type: Option<&str>, body: &str) -> Result<CreateDiscussion, Problem> {
        block_on(read_json(&mut request(content_type, body)))
    }

    fn json_body(body: &str) -> Result<CreateDiscussion, Problem> {
        read(Some("application/json"), body)
    }

    #[test]
    fn an_optional_body_may_be_empty_and_is_otherwise_read_as_json() {
        let optional = |content_type: Option<&str>, body: &str| {
            block_on(read_optional_json::<CreateDiscussion, _>(&mut request(
                content_type,
                body,
            )))
        };
        assert_eq!(optional(None, "").unwrap(), None);
        assert_eq!(optional(Some("application/json"), "").unwrap(), None);
        let body = r#"{"title": "t", "agents": []}"#;
        assert_eq!(
            optional(Some("application/json"), body)
                .unwrap()
                .unwrap()
                .title,
            "t"
        );
        let untyped = optional(None, body).unwrap_err();
        assert_eq!(untyped.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let unknown = optional(Some("application/json"), r#"{"x": 1}"#).unwrap_err();
        assert_eq!(unknown.code(), ProblemCode::ValidationFailed);
    }

    fn fields(problem: &Problem) -> Vec<(&str, &str)> {
        problem
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect()
    }

    #[test]
    fn present_tells_a_null_from_a_field_left_out() {
        #[derive(Deserialize)]
        struct Update {
            #[serde(default, deserialize_with = "present")]
            description: Option<Option<String>>,
        }
        let read = |json| serde_json::from_value::<Update>(json).unwrap().description;
        assert_eq!(read(serde_json::json!({})), None);
        assert_eq!(read(serde_json::json!({"description": null})), Some(None));
        assert_eq!(
            read(serde_json::json!({"description": "x"})),
            Some(Some("x".to_owned()))
        );
    }

    #[test]
    fn a_valid_body_is_read_into_the_type() {
        let body = json_body(r#"{"title": "Tabs or spaces", "agents": [{"model": "llama"}]}"#);
        assert_eq!(
            body.unwrap(),
            CreateDiscussion {
                title: "Tabs or spaces".into(),
                agents: vec![Seat {
                    model: "llama".into(),
                    temperature: None
                }],
            }
        );
    }

    #[test]
    fn json_with_a_utf_8_charset_or_any_case_is_accepted() {
        let body = r#"{"title": "t", "agents": []}"#;
        for content_type in [
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(read(Some(content_type), body).is_ok(), "{content_type}");
        }
    }

    #[test]
    fn a_form_body_is_read_as_ordered_decoded_pairs() {
        let mut req = request(
            Some("application/x-www-form-urlencoded"),
            "grant_type=password&username=ada%40x&password=a+b&scope=",
        );
        let pairs = block_on(read_form(&mut req, 1024)).unwrap();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(
            pairs,
            [
                ("grant_type", "password"),
                ("username", "ada@x"),
                ("password", "a b"),
                ("scope", "")
            ]
        );
    }

    #[test]
    fn a_form_with_another_content_type_or_invalid_utf_8_is_refused() {
        let mut json = request(Some("application/json"), "grant_type=password");
        let problem = block_on(read_form(&mut json, 1024)).unwrap_err();
        assert_eq!(problem.status(), http::StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let mut latin1 = request(Some("application/x-www-form-urlencoded"), "name=%E9");
        assert!(
            block_on(read_form(&mut latin1, 1024)).is_ok(),
            "escapes decode lossily"
        );
        let mut raw: http::Request<Full<Bytes>> = http::Request::builder()
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(&[b'n', b'=', 0xe9])))
            .unwrap();
        let problem = block_on(read_form(&mut raw, 1024)).unwrap_err();
        assert_eq!(problem.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_missing_or_other_content_type_is_415() {
        let body = r#"{"title": "t", "agents": []}"#;
        let problem = read(None, body).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::UnsupportedMediaType);
        assert_eq!(
            problem.detail(),
            "expected a body with Content-Type: application/json, got no Content-Type"
        );
        for content_type in [
            "text/plain",
            "application/json-patch+json",
            "application/json; charset=latin1",
        ] {
            let problem = read(Some(content_type), body).unwrap_err();
            assert_eq!(problem.code(), ProblemCode::UnsupportedMediaType);
            assert!(
                problem.detail().contains(content_type),
                "{}",
                problem.detail()
            );
        }
    }

    #[test]
    fn malformed_json_is_400_with_line_and_column() {
        let problem = json_body("{\n  \"title\": \"t\",\n  \"agents\": [,]\n}").unwrap_err();
        assert_eq!(problem.code(), ProblemCode::ValidationFailed);
        assert_eq!(
            problem.detail(),
            "the request body is not valid JSON: expected value at line 3, column 14"
        );
        assert!(problem.errors().is_empty());
    }

    #[test]
    fn truncated_json_and_trailing_text_are_malformed() {
        let truncated = json_body(r#"{"title": "t""#).unwrap_err();
        assert!(
            truncated
                .detail()
                .starts_with("the request body is not valid JSON: EOF")
        );
        let trailing = json_body(r#"{"title": "t", "agents": []} {}"#).unwrap_err();
        assert_eq!(
            trailing.detail(),
            "the request body is not valid JSON: trailing characters at line 1, column 30"
        );
    }

    #[test]
    fn an_empty_body_says_so() {
        let problem = json_body(" \n").unwrap_err();
        assert_eq!(
            problem.detail(),
            "the request body is empty; expected a JSON document"
        );
    }

    #[test]
    fn a_wrong_type_names_the_path_to_the_field() {
        let problem = json_body(
            r#"{"title": "t", "agents": [{"model": "a"}, {"model": "b"}, {"model": 7}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&problem),
            [(
                "agents[2].model",
                "invalid type: integer `7`, expected a string"
            )]
        );
        assert_eq!(
            problem.detail(),
            "agents[2].model: invalid type: integer `7`, expected a string"
        );
    }

    #[test]
    fn a_missing_field_is_named_by_its_own_path() {
        let problem = json_body(r#"{"title": "t", "agents": [{"temperature": 1}]}"#).unwrap_err();
        assert_eq!(fields(&problem), [("agents[0].model", "is required")]);
        let problem = json_body(r#"{"agents": []}"#).unwrap_err();
        assert_eq!(fields(&problem), [("title", "is required")]);
    }

    #[test]
    fn an_unknown_field_is_named_with_what_was_expected() {
        let problem = json_body(r#"{"title": "t", "agents": [{"model": "a", "temprature": 1}]}"#)
            .unwrap_err();
        assert_eq!(
            fields(&problem),
            [(
                "agents[0].temprature",
                "is not a known field; expected model or temperature"
            )]
        );
    }

    #[test]
    fn a_body_of_the_wrong_kind_is_reported_as_a_whole() {
        let problem = json_body(r#""a discussion""#).unwrap_err();
        assert_eq!(
            problem.detail(),
            "the request body is of the wrong type: invalid type: string \"a discussion\", expected struct CreateDiscussion"
        );
        assert!(problem.errors().is_empty());
    }

    #[test]
    fn an_unknown_top_level_field_is_named() {
        let problem = json_body(r#"{"title": "t", "agents": [], "extra": 1}"#).unwrap_err();
        assert_eq!(
            fields(&problem),
            [("extra", "is not a known field; expected title or agents")]
        );
    }

    #[test]
    fn validation_rules_report_every_invalid_field() {
        let problem = json_body(
            r#"{"title": "", "agents": [{"model": "a", "temperature": 3}, {"model": "b", "temperature": -1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&problem),
            [
                ("title", "must have 1 to 20 characters, got 0"),
                ("agents[0].temperature", "must be between 0 and 2, got 3"),
                ("agents[1].temperature", "must be between 0 and 2, got -1"),
            ]
        );
    }

    #[test]
    fn a_declared_length_over_the_limit_is_413_before_reading() {
        let mut req = request(Some("application/json"), "{}");
        req.headers_mut().insert(CONTENT_LENGTH, 2_000_000.into());
        let problem = block_on(read_json::<CreateDiscussion, _>(&mut req)).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::PayloadTooLarge);
        assert_eq!(
            problem.detail(),
            "the request body is over the limit of 1048576 bytes"
        );
    }

    /// A chunked body: `chunks` frames of `size` bytes, counting how many were read.
    fn chunked(
        chunks: usize,
        size: usize,
        read: std::rc::Rc<std::cell::Cell<usize>>,
    ) -> http::Request<impl Body<Data = Bytes, Error = Infallible> + Unpin> {
        let frames = futures::stream::iter((0..chunks).map(move |_| {
            read.set(read.get() + 1);
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![b' '; size])))
        }));
        http::Request::builder()
            .header(CONTENT_TYPE, JSON)
            .body(StreamBody::new(frames))
            .unwrap()
    }

    #[test]
    fn a_body_without_length_is_cut_off_once_past_the_limit() {
        let read = std::rc::Rc::default();
        let mut req = chunked(100, 1000, std::rc::Rc::clone(&read));
        let problem =
            block_on(read_json_limited::<CreateDiscussion, _>(&mut req, 4500)).unwrap_err();
        assert_eq!(problem.code(), ProblemCode::PayloadTooLarge);
        assert_eq!(read.get(), 5, "stops at the first chunk past the limit");
    }

    #[test]
    fn a_body_exactly_at_the_limit_is_read() {
        let body = r#"{"title": "t", "agents": []}"#;
        let mut req = request(Some(JSON), body);
        let read = block_on(read_json_limited::<CreateDiscussion, _>(
            &mut req,
            body.len(),
        ));
        assert!(read.is_ok());
    }

    #[derive(Debug)]
    struct Broken {
        over_limit: bool,
    }

    impl Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection reset")
        }
    }

    impl BodyError for Broken {
        fn is_over_limit(&self) -> bool {
            self.over_limit
        }
    }

    fn failing(over_limit: bool) -> Problem {
        let frames = futures::stream::iter([
            Ok(http_body::Frame::data(Bytes::from_static(b"{\"ti"))),
            Err(Broken { over_limit }),
        ]);
        let mut req = http::Request::builder()
            .header(CONTENT_TYPE, JSON)
            .body(StreamBody::new(frames))
            .unwrap();
        block_on(read_json::<CreateDiscussion, _>(&mut req)).unwrap_err()
    }

    #[test]
    fn a_body_cut_short_is_400() {
        let problem = failing(false);
        assert_eq!(problem.code(), ProblemCode::ValidationFailed);
        assert_eq!(
            problem.detail(),
            "the request body could not be read: connection reset"
        );
    }

    #[test]
    fn a_body_cut_off_by_the_hosts_cap_is_413() {
        assert_eq!(failing(true).code(), ProblemCode::PayloadTooLarge);
    }

    #[cfg(feature = "spin")]
    #[test]
    fn spins_body_size_error_counts_as_over_the_limit() {
        use spin_sdk::wasip3::http::types::ErrorCode;
        assert!(ErrorCode::HttpRequestBodySize(Some(10)).is_over_limit());
        assert!(!ErrorCode::ConnectionTerminated.is_over_limit());
    }
}
