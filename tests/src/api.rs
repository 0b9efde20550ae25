//! Arena's HTTP API as the end-to-end suites drive it: `arena up` on the real
//! spin.toml configured as a deployment is ([`start`]), a [`Client`] that sends
//! requests and keeps every exchange, the [`Response`] read whole with the checks
//! tests make of it, and the small helpers of request and response bodies.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use reqwest::blocking::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::{Arena, TestDatabase};

/// The manifest the API suites run: the real one.
pub const MANIFEST: &str = "spin.toml";

/// The first admin, as the deployment configures them.
pub const ADMIN: &str = "root-admin";
pub const ADMIN_PASSWORD: &str = "Adm1n pass phrase for e2e tests";

/// The password of every other user the tests create.
pub const PASSWORD: &str = "Zebra-lamp quartz 4711 river";

/// `arena up` on [`MANIFEST`] against `db`, with the standard settings (the first
/// admin, [`ADMIN`] with [`ADMIN_PASSWORD`], and the database's host for
/// `allowed_outbound_hosts`), then a suite's `defaults`, each of them overridden
/// by `env`.
pub fn start(db: &TestDatabase, defaults: &[(&str, &str)], env: &[(&str, &str)]) -> Arena {
    let database_host = db.address();
    let standard = [
        ("SPIN_VARIABLE_ADMIN_USERNAME", ADMIN),
        ("SPIN_VARIABLE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SPIN_VARIABLE_DATABASE_HOST", database_host.as_str()),
    ];
    let mut all: Vec<(&str, &str)> = standard
        .iter()
        .chain(defaults)
        .filter(|(key, _)| !env.iter().any(|(k, _)| k == key))
        .copied()
        .collect();
    all.extend_from_slice(env);
    Arena::start_with_database_and_env(MANIFEST, &db.url(), &[], &all)
}

/// Sends requests to one [`Arena`] and keeps every exchange, so a test can also
/// check what no response ever shows.
pub struct Client {
    url: String,
    http: reqwest::blocking::Client,
    exchanges: Mutex<Vec<Exchange>>,
}

/// One request and its response's body, as [`Client::exchanges`] keeps them.
#[derive(Clone)]
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub body: String,
}

impl Client {
    /// A client of `arena`, sharing its connection pool.
    pub fn new(arena: &Arena) -> Client {
        Client {
            url: arena.url.clone(),
            http: arena.client().clone(),
            exchanges: Mutex::new(Vec::new()),
        }
    }

    /// A request to `path`, with `bearer` as its access token if any.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
    ) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match bearer {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// Sends one request and reads its response whole; every other request
    /// method goes through here. `body` is a content type (none if empty) and
    /// the bytes; `headers` come last.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.request(method.clone(), path, bearer);
        if let Some((content_type, bytes)) = body {
            if !content_type.is_empty() {
                request = request.header("content-type", content_type);
            }
            request = request.body(bytes);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let response = Response::read(method, path, response);
        self.exchanges.lock().unwrap().push(Exchange {
            method: response.method.clone(),
            path: response.path.clone(),
            status: response.status,
            body: response.text.clone(),
        });
        response
    }

    pub fn get(&self, path: &str, bearer: Option<&str>) -> Response {
        self.send(Method::GET, path, bearer, None, &[])
    }

    pub fn delete(&self, path: &str, bearer: Option<&str>) -> Response {
        self.send(Method::DELETE, path, bearer, None, &[])
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> Response {
        self.json(Method::POST, path, bearer, body)
    }

    pub fn patch(&self, path: &str, bearer: Option<&str>, body: &Value) -> Response {
        self.json(Method::PATCH, path, bearer, body)
    }

    /// A request with `body` as `application/json`.
    pub fn json(&self, method: Method, path: &str, bearer: Option<&str>, body: &Value) -> Response {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(method, path, bearer, Some(("application/json", bytes)), &[])
    }

    /// `POST /v1/auth/token` with `pairs` as a [`form`], and `headers`.
    pub fn token(&self, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Response {
        let body = form(pairs).into_bytes();
        self.send(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(("application/x-www-form-urlencoded", body)),
            headers,
        )
    }

    /// The password grant of `username` and `password`, whatever it answers.
    pub fn password_grant(&self, username: &str, password: &str) -> Response {
        self.token(
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
            &[],
        )
    }

    /// A password grant that must succeed; the token response (`access_token`,
    /// `refresh_token`, `expires_in`, ...).
    #[track_caller]
    pub fn login(&self, username: &str, password: &str) -> Value {
        self.password_grant(username, password).expect(200)
    }

    /// Creates a user with `role`, a [`unique`] name and [`PASSWORD`] as the admin
    /// whose access token is `admin`, which must work; the username, and the user
    /// as the API shows it.
    #[track_caller]
    pub fn create_user(&self, admin: &str, role: &str) -> (String, Value) {
        let username = unique(role);
        let user = self
            .post(
                "/v1/users",
                Some(admin),
                &json!({ "username": username, "password": PASSWORD, "role": role }),
            )
            .expect(201);
        assert_eq!(user["role"], role, "{user}");
        (username, user)
    }

    /// Every exchange [`Self::send`] has made so far, oldest first.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().unwrap().clone()
    }
}

/// A response, read whole.
pub struct Response {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Response {
    /// Reads `response` to the end; `method` and `path` say what it answers.
    pub(crate) fn read(
        method: Method,
        path: &str,
        response: reqwest::blocking::Response,
    ) -> Response {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap();
        Response {
            method,
            path: path.to_owned(),
            status,
            headers,
            text,
        }
    }

    /// The body as JSON, which it must be.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|error| panic!("{}: not JSON ({error})", self.context()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    /// The request, the status and the body, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "{} {} → {} {}",
            self.method, self.path, self.status, self.text
        )
    }

    /// Panics unless the status is `status`; the JSON body (Null if none).
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.context());
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// An RFC 9457 problem with `status` and `code`; the body.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.context());
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/problem+json"),
            "content-type {content_type:?}: {}",
            self.context()
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{}", self.context());
        assert_eq!(body["status"], status, "{}", self.context());
        body
    }
}

/// A name no other call in this process returns: `prefix`, a dash and a number.
/// A user logged in: who they are and the access token they call with.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl Client {
    /// The configured admin ([`ADMIN`]), logged in.
    #[track_caller]
    pub fn admin(&self) -> Account {
        let token = id_of(&self.login(ADMIN, ADMIN_PASSWORD), "access_token");
        let me = self.get("/v1/auth/me", Some(&token)).expect(200);
        Account {
            id: me["user"]["user_id"].as_str().unwrap().to_owned(),
            username: ADMIN.to_owned(),
            token,
        }
    }

    /// A new user with `role`, created by `admin`, logged in.
    #[track_caller]
    pub fn new_user(&self, admin: &Account, role: &str) -> Account {
        let (username, user) = self.create_user(&admin.token, role);
        Account {
            id: id_of(&user, "user_id"),
            token: id_of(&self.login(&username, PASSWORD), "access_token"),
            username,
        }
    }
}

/// The string `value[key]` (an id, a token), or a failed test showing `value`.
#[track_caller]
pub fn id_of(value: &Value, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value:#}"))
        .to_owned()
}

pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones escaped.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let escape = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", escape(key), escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The fields a validation problem names (its `errors[].field`), in order; none
/// if it has no `errors`.
pub fn field_errors(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|error| error["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A list's `items`, which it must have.
pub fn items(body: &Value) -> Vec<Value> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .clone()
}
