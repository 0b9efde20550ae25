//! Authentication and authorization end to end: the auth component and the auth
//! middleware of the real `spin.toml`, run by `arena up` against a fresh database
//! per test, driven over HTTP as a client would.
//!
//! Every request of a test goes through the harness's [`Client`], which keeps
//! each response body, so a test can also check what no body ever shows.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arena_e2e::api::{
    self, ADMIN, ADMIN_PASSWORD, Client, PASSWORD, Response, field_errors, items, unique,
};
use arena_e2e::{Arena, TEST_SIGNING_KID, TEST_SIGNING_SECRET, TestDatabase};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

/// A password the tests change to.
const NEW_PASSWORD: &str = "another quite long passphrase";

/// The access token lifetime when spin.toml's default is in force.
const DEFAULT_TTL_SECS: i64 = 900;

/// What no response body may ever contain.
const NEVER_IN_A_BODY: [&str; 4] = ["$argon2", "password_hash", "token_hash", "key_hash"];

/// What every test's `arena up` gets besides the standard settings of
/// [`api::start`], unless the test overrides it. All requests come from
/// 127.0.0.1, so the per-address login back-off and token-endpoint limit are
/// generous except in the tests about them.
const BASE_ENV: &[(&str, &str)] = &[
    ("SPIN_VARIABLE_OPEN_REGISTRATION", "true"),
    ("SPIN_VARIABLE_LOGIN_LOCKOUT_SECONDS", "1"),
    ("SPIN_VARIABLE_LOGIN_FREE_FAILURES", "1000"),
    ("SPIN_VARIABLE_RATE_LIMIT_TOKEN_PER_ADDRESS", "100000"),
];

// ---------------------------------------------------------------------------
// The harness of this file
// ---------------------------------------------------------------------------

/// `arena up` on spin.toml with a database of its own. The arena is dropped (killed)
/// before the database.
struct Stack {
    arena: Arena,
    db: TestDatabase,
    api: Client,
}

/// The checks of the refusals this file is about, beside [`Response`]'s own.
trait Refusals {
    /// An RFC 6749 token-endpoint error with `status` and `error`; the body.
    fn expect_oauth_error(&self, status: u16, error: &str) -> Value;
    /// A 401 problem with a `WWW-Authenticate: Bearer ...` challenge.
    fn expect_unauthorized(&self) -> String;
    /// A 401 for a credential that was presented and refused.
    fn expect_invalid_token(&self);
    /// A 429 problem with the rate-limit headers; `Retry-After` in seconds.
    fn expect_rate_limited(&self) -> u64;
}

impl Refusals for Response {
    #[track_caller]
    fn expect_oauth_error(&self, status: u16, error: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.context());
        let body = self.json();
        assert_eq!(body["error"], error, "{}", self.context());
        assert!(body["error_description"].is_string(), "{}", self.context());
        body
    }

    #[track_caller]
    fn expect_unauthorized(&self) -> String {
        self.expect_problem(401, "unauthorized");
        let challenge = self
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("no WWW-Authenticate: {}", self.context()));
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        challenge
    }

    #[track_caller]
    fn expect_invalid_token(&self) {
        let challenge = self.expect_unauthorized();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}: {}",
            self.context()
        );
    }

    #[track_caller]
    fn expect_rate_limited(&self) -> u64 {
        self.expect_problem(429, "rate_limited");
        let retry_after: u64 = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {}", self.context()))
            .parse()
            .unwrap();
        retry_after
    }
}

/// A login's tokens.
#[derive(Clone)]
struct Login {
    access: String,
    refresh: String,
    body: Value,
}

impl Login {
    fn from_body(body: Value) -> Login {
        Login {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            body,
        }
    }

    /// The session id the access token carries (`sid`).
    fn session_id(&self) -> String {
        claims_of(&self.access)["sid"].as_str().unwrap().to_owned()
    }

    /// The user id the access token carries (`sub`).
    fn user_id(&self) -> String {
        claims_of(&self.access)["sub"].as_str().unwrap().to_owned()
    }
}

/// A user the test created and logged in.
struct Account {
    user: Value,
    username: String,
    login: Login,
}

impl Account {
    fn id(&self) -> String {
        self.user["user_id"].as_str().unwrap().to_owned()
    }

    fn token(&self) -> &str {
        &self.login.access
    }
}

impl Stack {
    /// `arena up` with [`BASE_ENV`], overridden by `env`.
    fn start(env: &[(&str, &str)]) -> Stack {
        let db = TestDatabase::create();
        let arena = api::start(&db, BASE_ENV, env);
        let api = Client::new(&arena);
        Stack { arena, db, api }
    }

    fn get(&self, path: &str, bearer: Option<&str>) -> Response {
        self.api.get(path, bearer)
    }

    fn delete(&self, path: &str, bearer: Option<&str>) -> Response {
        self.api.delete(path, bearer)
    }

    fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> Response {
        self.api.post(path, bearer, body)
    }

    fn patch(&self, path: &str, bearer: Option<&str>, body: &Value) -> Response {
        self.api.patch(path, bearer, body)
    }

    /// `POST /v1/auth/token` with a form body.
    fn token(&self, pairs: &[(&str, &str)]) -> Response {
        self.api.token(pairs, &[])
    }

    fn token_with_headers(&self, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Response {
        self.api.token(pairs, headers)
    }

    fn password_grant(&self, username: &str, password: &str) -> Response {
        self.api.password_grant(username, password)
    }

    fn refresh(&self, refresh_token: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
    }

    /// A successful password grant.
    #[track_caller]
    fn login(&self, username: &str, password: &str) -> Login {
        Login::from_body(self.api.login(username, password))
    }

    #[track_caller]
    fn login_as_admin(&self) -> Login {
        self.login(ADMIN, ADMIN_PASSWORD)
    }

    fn register(&self, username: &str, password: &str) -> Response {
        self.post(
            "/v1/auth/register",
            None,
            &json!({ "username": username, "password": password }),
        )
    }

    /// A new member, through open registration, logged in.
    #[track_caller]
    fn new_member(&self) -> Account {
        let username = unique("member");
        let user = self.register(&username, PASSWORD).expect(201);
        let login = self.login(&username, PASSWORD);
        Account {
            user,
            username,
            login,
        }
    }

    /// A new user with `role`, created by `admin`, logged in.
    #[track_caller]
    fn new_user(&self, admin: &Login, role: &str) -> Account {
        let (username, user) = self.api.create_user(&admin.access, role);
        let login = self.login(&username, PASSWORD);
        Account {
            user,
            username,
            login,
        }
    }

    /// `GET /v1/auth/me` with `bearer`, which must work.
    #[track_caller]
    fn me(&self, bearer: &str) -> Value {
        self.get("/v1/auth/me", Some(bearer)).expect(200)
    }

    /// Audit events matching `query` (`action=...&...`), as the admin sees them.
    #[track_caller]
    fn audit(&self, admin: &Login, query: &str) -> Vec<Value> {
        let body = self
            .get(&format!("/v1/audit-events?{query}"), Some(&admin.access))
            .expect(200);
        body["items"].as_array().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------
// JWTs by hand
// ---------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(jwt: &str, index: usize) -> Value {
    let part = jwt
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn header_of(jwt: &str) -> Value {
    decode_part(jwt, 0)
}

fn claims_of(jwt: &str) -> Value {
    decode_part(jwt, 1)
}

/// An HS256 JWT of `header` and `claims`, signed with `secret`.
fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    let signature = mac.finalize().into_bytes();
    format!("{signing_input}.{}", b64(&signature))
}

fn hs256_header(kid: &str) -> Value {
    json!({ "alg": "HS256", "typ": "JWT", "kid": kid })
}

/// Claims as Arena's own tokens have them, for `sub` and `sid`.
fn arena_claims(sub: &str, sid: &str, role: &str) -> Value {
    json!({
        "iss": "arena",
        "aud": "arena-api",
        "sub": sub,
        "sid": sid,
        "role": role,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 300,
        "jti": unique("jti"),
    })
}

/// `aud` as a string or a one-element array (both are valid JWT forms).
fn audience(claims: &Value) -> Value {
    match &claims["aud"] {
        Value::Array(items) if items.len() == 1 => items[0].clone(),
        other => other.clone(),
    }
}

fn sleep_secs(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}

// ---------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------

#[test]
fn the_configured_admin_logs_in_and_gets_a_bearer_token_pair() {
    let stack = Stack::start(&[]);
    let reply = stack.password_grant(ADMIN, ADMIN_PASSWORD);
    let body = reply.expect(200);
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    assert!(
        reply
            .header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "{}",
        reply.context()
    );
    assert!(
        body["token_type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("bearer"),
        "{body}"
    );
    assert_eq!(body["expires_in"], DEFAULT_TTL_SECS, "{body}");
    assert_eq!(body["scope"], "admin", "{body}");
    let login = Login::from_body(body);
    assert!(login.refresh.starts_with("arena_rt_"), "{}", login.refresh);
    assert_eq!(login.refresh.len(), "arena_rt_".len() + 43);

    // An HS256 JWT signed with the configured key, with Arena's claims.
    let header = header_of(&login.access);
    assert_eq!(header["alg"], "HS256", "{header}");
    assert_eq!(header["kid"], TEST_SIGNING_KID, "{header}");
    let claims = claims_of(&login.access);
    assert_eq!(claims["iss"], "arena", "{claims}");
    assert_eq!(audience(&claims), "arena-api", "{claims}");
    assert_eq!(claims["role"], "admin", "{claims}");
    let expires_in = claims["exp"].as_i64().unwrap() - now();
    assert!(
        (DEFAULT_TTL_SECS - 30..=DEFAULT_TTL_SECS + 5).contains(&expires_in),
        "{claims}"
    );

    let me = stack.me(&login.access);
    assert_eq!(me["user"]["username"], ADMIN, "{me}");
    assert_eq!(me["user"]["role"], "admin", "{me}");
    assert_eq!(me["role"], "admin", "{me}");
    assert_eq!(me["user"]["user_id"], claims["sub"], "{me}");
    assert_eq!(me["credential"]["kind"], "session", "{me}");
    assert_eq!(me["credential"]["id"], claims["sid"], "{me}");

    // Logging in again neither fails nor makes a second admin.
    let again = stack.login_as_admin();
    assert_ne!(again.refresh, login.refresh);
    assert_eq!(again.user_id(), login.user_id());
    let users = stack
        .get("/v1/users?limit=200", Some(&login.access))
        .expect(200);
    let admins = items(&users)
        .iter()
        .filter(|user| user["role"] == "admin")
        .count();
    assert_eq!(admins, 1, "{users}");

    // The configured name with another password is just a wrong password.
    stack
        .password_grant(ADMIN, "not the admin password at all")
        .expect_oauth_error(400, "invalid_grant");
}

#[test]
fn without_a_configured_admin_nobody_can_log_in_as_admin() {
    let stack = Stack::start(&[
        ("SPIN_VARIABLE_ADMIN_USERNAME", ""),
        ("SPIN_VARIABLE_ADMIN_PASSWORD", ""),
    ]);
    for (username, password) in [
        (ADMIN, ADMIN_PASSWORD),
        ("admin", "admin"),
        ("admin", "password1234"),
        ("root", "root"),
    ] {
        stack
            .password_grant(username, password)
            .expect_oauth_error(400, "invalid_grant");
    }
    let empty = stack.password_grant("admin", "");
    assert_eq!(empty.status, 400, "{}", empty.context());
    assert!(
        ["invalid_grant", "invalid_request"].contains(&empty.json()["error"].as_str().unwrap()),
        "{}",
        empty.context()
    );

    // Anyone who gets in is a member, who cannot reach the admin routes.
    let member = stack.new_member();
    assert_eq!(member.user["role"], "member");
    stack
        .get("/v1/users", Some(member.token()))
        .expect_problem(403, "forbidden");
    stack
        .get("/v1/audit-events", Some(member.token()))
        .expect_problem(403, "forbidden");

    let admins: i64 = stack
        .db
        .connect()
        .query_one("select count(*) from users where role = 'admin'", &[])
        .unwrap()
        .get(0);
    assert_eq!(admins, 0);
}

#[test]
fn token_errors_are_in_rfc_6749_form_and_do_not_tell_which_users_exist() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();

    // Wrong password and unknown user: the same answer.
    let wrong = stack
        .password_grant(&member.username, "not my password at all")
        .expect_oauth_error(400, "invalid_grant");
    let unknown = stack
        .password_grant("nobody-by-this-name", "not my password at all")
        .expect_oauth_error(400, "invalid_grant");
    assert_eq!(wrong["error_description"], unknown["error_description"]);
    assert!(
        !wrong.to_string().contains(&member.username),
        "{wrong}: names the user"
    );

    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[], "invalid_request"),
        (
            &[("username", &member.username), ("password", PASSWORD)],
            "invalid_request",
        ),
        (
            &[("grant_type", "password"), ("username", &member.username)],
            "invalid_request",
        ),
        (
            &[("grant_type", "password"), ("password", PASSWORD)],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "password"),
                ("username", &member.username),
                ("username", &member.username),
                ("password", PASSWORD),
            ],
            "invalid_request",
        ),
        (&[("grant_type", "refresh_token")], "invalid_request"),
        (
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            "unsupported_grant_type",
        ),
    ];
    for (pairs, error) in cases {
        let reply = stack.token(pairs);
        reply.expect_oauth_error(400, error);
        assert!(
            reply
                .header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{}",
            reply.context()
        );
    }

    // The body must be a form.
    let as_json = stack.post(
        "/v1/auth/token",
        None,
        &json!({ "grant_type": "password", "username": member.username, "password": PASSWORD }),
    );
    as_json.expect_oauth_error(415, "invalid_request");
    // A body that is not UTF-8 is no form.
    stack
        .api
        .send(
            Method::POST,
            "/v1/auth/token",
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"grant_type=password&username=\xff\xfe&password=x".to_vec(),
            )),
            &[],
        )
        .expect_oauth_error(400, "invalid_request");

    // A refresh token nobody was given.
    stack
        .refresh("arena_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .expect_oauth_error(400, "invalid_grant");
    stack
        .refresh(&member.login.access)
        .expect_oauth_error(400, "invalid_grant");
}

#[test]
fn a_login_may_ask_for_a_lower_scope_but_never_a_higher_one() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();

    let body = stack
        .token(&[
            ("grant_type", "password"),
            ("username", ADMIN),
            ("password", ADMIN_PASSWORD),
            ("scope", "viewer"),
        ])
        .expect(200);
    assert_eq!(body["scope"], "viewer", "{body}");
    let narrowed = Login::from_body(body);
    let me = stack.me(&narrowed.access);
    assert_eq!(me["role"], "viewer", "{me}");
    assert_eq!(me["user"]["role"], "admin", "{me}");
    stack
        .post(
            "/v1/users",
            Some(&narrowed.access),
            &json!({ "username": unique("x"), "password": PASSWORD, "role": "member" }),
        )
        .expect_problem(403, "forbidden");
    // The scope survives a refresh.
    let refreshed = stack.refresh(&narrowed.refresh).expect(200);
    assert_eq!(refreshed["scope"], "viewer", "{refreshed}");

    for (scope, status) in [("member", 200), ("viewer", 200)] {
        let reply = stack.token(&[
            ("grant_type", "password"),
            ("username", &member.username),
            ("password", PASSWORD),
            ("scope", scope),
        ]);
        assert_eq!(reply.expect(status)["scope"], scope);
    }
    for scope in ["admin", "superuser"] {
        stack
            .token(&[
                ("grant_type", "password"),
                ("username", &member.username),
                ("password", PASSWORD),
                ("scope", scope),
            ])
            .expect_oauth_error(400, "invalid_scope");
    }
}

// ---------------------------------------------------------------------------
// Refresh tokens, logout and sessions
// ---------------------------------------------------------------------------

#[test]
fn a_refresh_token_is_exchanged_once_for_a_new_pair_of_the_same_session() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let first = member.login.clone();

    let reply = stack.refresh(&first.refresh);
    let body = reply.expect(200);
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(body["scope"], "member", "{body}");
    assert!(body["expires_in"].as_i64().unwrap() > 0, "{body}");
    let second = Login::from_body(body);
    assert!(second.refresh.starts_with("arena_rt_"));
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(second.session_id(), first.session_id());
    let me = stack.me(&second.access);
    assert_eq!(me["user"]["username"], member.username.as_str(), "{me}");

    // The new refresh token rotates in turn.
    let third = Login::from_body(stack.refresh(&second.refresh).expect(200));
    assert_ne!(third.refresh, second.refresh);
    stack.me(&third.access);
}

#[test]
fn reusing_a_rotated_refresh_token_revokes_the_whole_session() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let other_session = stack.login(&member.username, PASSWORD);
    let first = member.login.clone();
    let second = Login::from_body(stack.refresh(&first.refresh).expect(200));

    // The first refresh token again: someone copied it.
    stack
        .refresh(&first.refresh)
        .expect_oauth_error(400, "invalid_grant");
    // The thief's or the owner's newest token is dead too, and so are the access
    // tokens of the session.
    stack
        .refresh(&second.refresh)
        .expect_oauth_error(400, "invalid_grant");
    stack
        .get("/v1/auth/me", Some(&second.access))
        .expect_invalid_token();
    stack
        .get("/v1/auth/me", Some(&first.access))
        .expect_invalid_token();

    // Another login of the same user is another session: untouched.
    stack.me(&other_session.access);
    stack.refresh(&other_session.refresh).expect(200);

    let admin = stack.login_as_admin();
    let reused = stack.audit(&admin, "action=auth.refresh_token_reused");
    assert_eq!(reused.len(), 1, "{reused:?}");
    assert_eq!(reused[0]["outcome"], "failure", "{reused:?}");
    assert_eq!(
        reused[0]["actor_user_id"],
        member.id().as_str(),
        "{reused:?}"
    );
}

#[test]
fn logout_ends_the_session_and_both_of_its_tokens() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let other = stack.login(&member.username, PASSWORD);

    let reply = stack.api.send(
        Method::POST,
        "/v1/auth/logout",
        Some(member.token()),
        None,
        &[],
    );
    reply.expect(204);
    assert_eq!(reply.text, "");
    stack
        .get("/v1/auth/me", Some(member.token()))
        .expect_invalid_token();
    stack
        .refresh(&member.login.refresh)
        .expect_oauth_error(400, "invalid_grant");
    // Logging out twice: the token is no longer valid.
    stack
        .api
        .send(
            Method::POST,
            "/v1/auth/logout",
            Some(member.token()),
            None,
            &[],
        )
        .expect_invalid_token();

    // Only that session.
    stack.me(&other.access);
    stack
        .api
        .send(Method::POST, "/v1/auth/logout", None, None, &[])
        .expect_unauthorized();
}

#[test]
fn a_user_sees_their_own_sessions_and_revokes_one_of_them() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let laptop = Login::from_body(
        stack
            .token_with_headers(
                &[
                    ("grant_type", "password"),
                    ("username", &member.username),
                    ("password", PASSWORD),
                ],
                &[("user-agent", "laptop-browser/1.0")],
            )
            .expect(200),
    );
    let phone = Login::from_body(
        stack
            .token_with_headers(
                &[
                    ("grant_type", "password"),
                    ("username", &member.username),
                    ("password", PASSWORD),
                ],
                &[("user-agent", "phone-app/2.0")],
            )
            .expect(200),
    );
    let stranger = stack.new_member();

    let list = stack
        .get("/v1/auth/sessions", Some(&laptop.access))
        .expect(200);
    let sessions = items(&list);
    // The registration login, the laptop and the phone; not the stranger's.
    assert_eq!(sessions.len(), 3, "{list}");
    assert!(list.get("next_cursor").is_some(), "{list}");
    let find = |id: &str| {
        sessions
            .iter()
            .find(|session| session["session_id"] == id)
            .unwrap_or_else(|| panic!("no session {id} in {list}"))
            .clone()
    };
    let current = find(&laptop.session_id());
    assert_eq!(current["current"], true, "{current}");
    assert_eq!(current["user_agent"], "laptop-browser/1.0", "{current}");
    assert!(
        current["client_addr"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{current}"
    );
    for field in ["created_at", "last_used_at", "expires_at"] {
        assert!(current[field].is_string(), "{field}: {current}");
    }
    let phone_session = find(&phone.session_id());
    assert_eq!(phone_session["current"], false, "{phone_session}");
    assert_eq!(phone_session["user_agent"], "phone-app/2.0");
    assert_eq!(
        sessions
            .iter()
            .filter(|session| session["current"] == true)
            .count(),
        1,
        "{list}"
    );

    // Signing the phone out from the laptop.
    stack
        .delete(
            &format!("/v1/auth/sessions/{}", phone.session_id()),
            Some(&laptop.access),
        )
        .expect(204);
    stack
        .get("/v1/auth/me", Some(&phone.access))
        .expect_invalid_token();
    stack
        .refresh(&phone.refresh)
        .expect_oauth_error(400, "invalid_grant");
    let after = items(
        &stack
            .get("/v1/auth/sessions", Some(&laptop.access))
            .expect(200),
    );
    assert_eq!(after.len(), 2, "{after:?}");
    stack.me(&laptop.access);

    // Someone else's session is not there to revoke.
    stack
        .delete(
            &format!("/v1/auth/sessions/{}", stranger.login.session_id()),
            Some(&laptop.access),
        )
        .expect_problem(404, "not_found");
    stack.me(stranger.token());
    stack
        .delete(
            "/v1/auth/sessions/0190a000-0000-7000-8000-000000000000",
            Some(&laptop.access),
        )
        .expect_problem(404, "not_found");
    stack
        .delete("/v1/auth/sessions/not-a-uuid", Some(&laptop.access))
        .expect_problem(400, "validation_failed");
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

#[test]
fn open_registration_creates_a_member_who_can_log_in() {
    let stack = Stack::start(&[]);
    let reply = stack.post(
        "/v1/auth/register",
        None,
        &json!({ "username": "ada.lovelace_1-x", "password": PASSWORD, "display_name": "Ada" }),
    );
    let user = reply.expect(201);
    assert_eq!(user["username"], "ada.lovelace_1-x", "{user}");
    assert_eq!(user["display_name"], "Ada", "{user}");
    assert_eq!(user["role"], "member", "{user}");
    assert_eq!(user["disabled_at"], Value::Null, "{user}");
    assert_eq!(user["version"], 1, "{user}");
    assert_eq!(
        user["user_id"].as_str().unwrap().len(),
        36,
        "a UUID: {user}"
    );
    for field in ["created_at", "updated_at"] {
        assert!(user[field].is_string(), "{field}: {user}");
    }
    let keys: HashSet<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(keys.iter().all(|key| !key.contains("password")), "{user}");

    let login = stack.login("ada.lovelace_1-x", PASSWORD);
    assert_eq!(login.body["scope"], "member");
    assert_eq!(login.user_id(), user["user_id"].as_str().unwrap());

    // Taken, whether exactly or by a name that differs only in case.
    stack
        .register("ada.lovelace_1-x", NEW_PASSWORD)
        .expect_problem(409, "conflict");
    let upper = stack.register("Ada.Lovelace_1-x", NEW_PASSWORD);
    assert!(
        upper.status == 400 || upper.status == 409,
        "{}",
        upper.context()
    );
    // The edges of the length rule.
    stack.register("abc", PASSWORD).expect(201);
    stack.register(&"a".repeat(64), PASSWORD).expect(201);
}

#[test]
fn registration_refuses_usernames_that_are_not_lowercase_ascii_words() {
    let stack = Stack::start(&[]);
    let long = "a".repeat(65);
    for username in [
        "Ada",
        "ADA",
        "ada lovelace",
        " ada",
        "ádá",
        "\u{0430}da", // Cyrillic а
        "ada\u{200b}",
        "ada\u{0}",
        "ab",
        "",
        long.as_str(),
        "-ada",
        ".ada",
        "_ada",
        "ada/x",
        "ada@example.com",
    ] {
        let reply = stack.register(username, PASSWORD);
        let body = reply.expect_problem(400, "validation_failed");
        assert!(
            field_errors(&body).contains(&"username".to_owned()),
            "{username:?}: {}",
            reply.context()
        );
    }
    let users: i64 = stack
        .db
        .connect()
        .query_one("select count(*) from users", &[])
        .unwrap()
        .get(0);
    assert_eq!(users, 0);
}

#[test]
fn registration_refuses_weak_passwords_and_says_why() {
    let stack = Stack::start(&[]);
    let too_long = "Ab1-".repeat(65);
    for password in [
        "short-pw",
        "eleven-char",
        "aaaaaabbbbbbcccc",
        "my name is grace-hopper!",
        "GRACE-HOPPER and more",
        "Password1234",
        "password1234",
        too_long.as_str(),
    ] {
        let reply = stack.register("grace-hopper", password);
        let body = reply.expect_problem(400, "validation_failed");
        assert!(
            field_errors(&body).contains(&"password".to_owned()),
            "{password:?}: {}",
            reply.context()
        );
    }
    // Twelve characters of five kinds is enough, and Unicode counts as characters.
    stack.register("grace-hopper", "abcdeabcdeab").expect(201);
    stack
        .register("grace-two", "ünïcødé pässwörd ✓")
        .expect(201);
}

#[test]
fn malformed_registrations_are_refused_without_a_server_error() {
    let stack = Stack::start(&[]);
    let raw = |content_type: &str, body: &[u8]| {
        stack.api.send(
            Method::POST,
            "/v1/auth/register",
            None,
            Some((content_type, body.to_vec())),
            &[],
        )
    };
    raw("application/json", br#"{"username": "ada", "password": "#)
        .expect_problem(400, "validation_failed");
    raw(
        "text/plain",
        format!(r#"{{"username": "ada", "password": "{PASSWORD}"}}"#).as_bytes(),
    )
    .expect_problem(415, "unsupported_media_type");
    let huge = format!(
        r#"{{"username": "ada", "password": "{PASSWORD}", "display_name": "{}"}}"#,
        "x".repeat(1024 * 1024 + 1)
    );
    raw("application/json", huge.as_bytes()).expect_problem(413, "payload_too_large");

    let bodies = [
        json!(null),
        json!([]),
        json!("ada"),
        json!({}),
        json!({ "username": "ada" }),
        json!({ "password": PASSWORD }),
        json!({ "username": 42, "password": PASSWORD }),
        json!({ "username": "ada", "password": ["x"] }),
        json!({ "username": "ada", "password": PASSWORD, "display_name": "x".repeat(101) }),
        json!({ "username": "ada", "password": PASSWORD, "display_name": "" }),
        json!({ "username": "ada", "password": PASSWORD, "display_name": "a\u{7}b" }),
        // Unknown fields: above all, no one picks their own role.
        json!({ "username": "ada", "password": PASSWORD, "role": "admin" }),
        json!({ "username": "ada", "password": PASSWORD, "user_id": "0190a000-0000-7000-8000-000000000000" }),
    ];
    for body in bodies {
        let reply = stack.post("/v1/auth/register", None, &body);
        reply.expect_problem(400, "validation_failed");
    }
    // An absent content type is no JSON either.
    let untyped = raw(
        "",
        format!(r#"{{"username": "ada", "password": "{PASSWORD}"}}"#).as_bytes(),
    );
    assert!(
        (400..500).contains(&untyped.status),
        "{}",
        untyped.context()
    );

    let users: i64 = stack
        .db
        .connect()
        .query_one("select count(*) from users", &[])
        .unwrap()
        .get(0);
    assert_eq!(users, 0, "a malformed registration created a user");
}

#[test]
fn registration_is_forbidden_unless_it_is_open_but_an_admin_can_still_add_users() {
    let stack = Stack::start(&[("SPIN_VARIABLE_OPEN_REGISTRATION", "false")]);
    stack
        .register("would-be-member", PASSWORD)
        .expect_problem(403, "forbidden");
    stack
        .password_grant("would-be-member", PASSWORD)
        .expect_oauth_error(400, "invalid_grant");

    let admin = stack.login_as_admin();
    let added = stack.new_user(&admin, "member");
    stack.me(added.token());
}

// ---------------------------------------------------------------------------
// The middleware: who gets through
// ---------------------------------------------------------------------------

#[test]
fn every_route_but_the_public_ones_needs_a_bearer_credential() {
    let stack = Stack::start(&[]);
    for path in ["/v1/health", "/v1/ready", "/v1/openapi.json", "/docs"] {
        let reply = stack.get(path, None);
        assert_eq!(reply.status, 200, "{}", reply.context());
    }
    for path in [
        "/v1/auth/me",
        "/v1/auth/sessions",
        "/v1/auth/api-keys",
        "/v1/users",
        "/v1/audit-events",
        "/v1/no-such-thing",
    ] {
        let challenge = stack.get(path, None).expect_unauthorized();
        assert!(!challenge.contains("invalid_token"), "{path}: {challenge}");
        stack.get(path, Some("not-a-token")).expect_invalid_token();
        stack
            .get(
                path,
                Some("arena_ak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            )
            .expect_invalid_token();
    }
    // Another scheme, or the scheme with nothing after it.
    let admin = stack.login_as_admin();
    for authorization in [
        format!(
            "Basic {}",
            b64(format!("{ADMIN}:{ADMIN_PASSWORD}").as_bytes())
        ),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        admin.access.clone(),
    ] {
        stack
            .api
            .send(
                Method::GET,
                "/v1/auth/me",
                None,
                None,
                &[("authorization", &authorization)],
            )
            .expect_unauthorized();
    }
    // A write without a credential is refused before it does anything.
    stack
        .post(
            "/v1/users",
            None,
            &json!({ "username": "sneaky", "password": PASSWORD, "role": "admin" }),
        )
        .expect_unauthorized();
    // The scheme's name is case-insensitive (RFC 9110).
    stack
        .api
        .send(
            Method::GET,
            "/v1/auth/me",
            None,
            None,
            &[("authorization", &format!("bearer {}", admin.access))],
        )
        .expect(200);
}

#[test]
fn identity_headers_sent_by_a_client_are_never_believed() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let member = stack.new_member();
    let forged = [
        ("arena-user-id", admin.user_id()),
        ("arena-role", "admin".to_owned()),
        (
            "arena-credential",
            format!("session:{}", admin.session_id()),
        ),
    ];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();

    stack
        .api
        .send(Method::GET, "/v1/users", None, None, &forged)
        .expect_unauthorized();
    stack
        .api
        .send(
            Method::GET,
            "/v1/users",
            Some(member.token()),
            None,
            &forged,
        )
        .expect_problem(403, "forbidden");
    let me = stack
        .api
        .send(
            Method::GET,
            "/v1/auth/me",
            Some(member.token()),
            None,
            &forged,
        )
        .expect(200);
    assert_eq!(me["user"]["username"], member.username.as_str(), "{me}");
    assert_eq!(me["role"], "member", "{me}");
}

#[test]
fn forged_tampered_and_expired_access_tokens_are_refused() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let sub = member.login.user_id();
    let sid = member.login.session_id();
    let secret = TEST_SIGNING_SECRET.as_bytes();

    // A token signed here the way Arena signs works: the cases below fail for the
    // one thing each changes.
    let good = sign(
        &hs256_header(TEST_SIGNING_KID),
        &arena_claims(&sub, &sid, "member"),
        secret,
    );
    let me = stack.me(&good);
    assert_eq!(me["user"]["user_id"], sub.as_str(), "{me}");

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = arena_claims(&sub, &sid, "member");
        change(&mut claims);
        sign(&hs256_header(TEST_SIGNING_KID), &claims, secret)
    };
    let flip = |text: &str, at: usize| {
        let mut bytes = text.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let [header, payload, signature] = member
        .token()
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let mut escalated = claims_of(member.token());
    escalated["role"] = json!("admin");

    let cases: Vec<(&str, String)> = vec![
        (
            "expired a minute ago",
            with(&|c| {
                c["exp"] = json!(now() - 60);
                c["iat"] = json!(now() - 120);
                c["nbf"] = json!(now() - 120);
            }),
        ),
        (
            "for another audience",
            with(&|c| c["aud"] = json!("other-api")),
        ),
        ("from another issuer", with(&|c| c["iss"] = json!("evil"))),
        (
            "not valid for an hour yet",
            with(&|c| c["nbf"] = json!(now() + 3600)),
        ),
        (
            "of a session that does not exist",
            with(&|c| c["sid"] = json!("0190a000-0000-7000-8000-000000000000")),
        ),
        (
            "with a flipped signature character",
            format!("{header}.{payload}.{}", flip(signature, 0)),
        ),
        ("without a signature", format!("{header}.{payload}.")),
        (
            "with a payload changed after signing",
            format!(
                "{header}.{}.{signature}",
                b64(escalated.to_string().as_bytes())
            ),
        ),
        (
            "with alg none",
            format!(
                "{}.{payload}.",
                b64(
                    json!({ "alg": "none", "typ": "JWT", "kid": TEST_SIGNING_KID })
                        .to_string()
                        .as_bytes()
                )
            ),
        ),
        (
            "with an unknown kid",
            sign(
                &hs256_header("test-2"),
                &arena_claims(&sub, &sid, "member"),
                secret,
            ),
        ),
        (
            "without a kid",
            sign(
                &json!({ "alg": "HS256", "typ": "JWT" }),
                &arena_claims(&sub, &sid, "member"),
                secret,
            ),
        ),
        (
            "signed with another secret under the right kid",
            sign(
                &hs256_header(TEST_SIGNING_KID),
                &arena_claims(&sub, &sid, "member"),
                b"some-other-secret-of-forty-bytes-000000",
            ),
        ),
        ("that is not a JWT", "abc.def".to_owned()),
    ];
    for (what, token) in cases {
        let reply = stack.get("/v1/auth/me", Some(&token));
        assert_eq!(reply.status, 401, "a token {what}: {}", reply.context());
        reply.expect_invalid_token();
    }
    // The real token is unharmed by all of that.
    stack.me(member.token());
}

#[test]
fn an_access_token_stops_working_once_it_expires_and_a_refresh_renews_it() {
    let stack = Stack::start(&[("SPIN_VARIABLE_ACCESS_TOKEN_TTL_SECONDS", "1")]);
    let member = stack.new_member();
    assert_eq!(member.login.body["expires_in"], 1, "{}", member.login.body);
    let claims = claims_of(member.token());
    let exp = claims["exp"].as_i64().unwrap();
    assert!((now() - 2..=now() + 2).contains(&exp), "{claims}");
    stack.me(member.token());

    // Past `exp` and the verifier's few seconds of clock tolerance.
    sleep_secs(7.5);
    stack
        .get("/v1/auth/me", Some(member.token()))
        .expect_invalid_token();
    let renewed = Login::from_body(stack.refresh(&member.login.refresh).expect(200));
    stack.me(&renewed.access);
}

// ---------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------

#[test]
fn an_api_key_works_as_a_bearer_credential_until_it_is_revoked() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let stranger = stack.new_member();

    let reply = stack.post(
        "/v1/auth/api-keys",
        Some(member.token()),
        &json!({ "name": "ci job", "expires_in_days": 30 }),
    );
    let created = reply.expect(201);
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["api_key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("arena_ak_"), "{created}");
    assert_eq!(key.len(), "arena_ak_".len() + 43, "{created}");
    assert_eq!(created["name"], "ci job", "{created}");
    assert_eq!(created["role"], "member", "{created}");
    let prefix = created["key_prefix"].as_str().unwrap();
    assert!(
        key.starts_with(prefix) && prefix.len() < key.len() - 20,
        "{created}"
    );
    assert!(created["expires_at"].is_string(), "{created}");
    assert!(created["created_at"].is_string(), "{created}");

    let me = stack.me(&key);
    assert_eq!(me["user"]["username"], member.username.as_str(), "{me}");
    assert_eq!(me["credential"]["kind"], "api_key", "{me}");
    assert_eq!(me["credential"]["id"], key_id.as_str(), "{me}");
    assert_eq!(me["role"], "member", "{me}");

    // Listed by the owner, without the key itself.
    let list_reply = stack.get("/v1/auth/api-keys", Some(member.token()));
    let list = list_reply.expect(200);
    let listed = items(&list);
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["api_key_id"], key_id.as_str());
    assert!(listed[0].get("key").is_none(), "{list}");
    assert!(!list_reply.text.contains(&key), "{list}");
    assert!(
        items(
            &stack
                .get("/v1/auth/api-keys", Some(stranger.token()))
                .expect(200)
        )
        .is_empty()
    );

    // A lower role works, a higher one is refused.
    let viewer_key = stack
        .post(
            "/v1/auth/api-keys",
            Some(member.token()),
            &json!({ "name": "read only", "role": "viewer" }),
        )
        .expect(201);
    assert_eq!(viewer_key["role"], "viewer");
    let viewer_me = stack.me(viewer_key["key"].as_str().unwrap());
    assert_eq!(viewer_me["role"], "viewer", "{viewer_me}");
    stack
        .post(
            "/v1/auth/api-keys",
            Some(member.token()),
            &json!({ "name": "too strong", "role": "admin" }),
        )
        .expect_problem(403, "forbidden");
    for body in [
        json!({}),
        json!({ "name": "" }),
        json!({ "name": "x", "role": "root" }),
        json!({ "name": "x", "expires_in_days": -1 }),
        json!({ "name": "x", "key": "arena_ak_mine" }),
    ] {
        stack
            .post("/v1/auth/api-keys", Some(member.token()), &body)
            .expect_problem(400, "validation_failed");
    }

    // Another user cannot revoke it, nor see that it exists.
    stack
        .delete(
            &format!("/v1/auth/api-keys/{key_id}"),
            Some(stranger.token()),
        )
        .expect_problem(404, "not_found");
    stack.me(&key);

    stack
        .delete(&format!("/v1/auth/api-keys/{key_id}"), Some(member.token()))
        .expect(204);
    stack.get("/v1/auth/me", Some(&key)).expect_invalid_token();
    stack
        .delete("/v1/auth/api-keys/not-a-uuid", Some(member.token()))
        .expect_problem(400, "validation_failed");
}

#[test]
fn an_admins_viewer_key_cannot_do_what_an_admin_can() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let admin_key = stack
        .post(
            "/v1/auth/api-keys",
            Some(&admin.access),
            &json!({ "name": "ops", "role": "admin" }),
        )
        .expect(201);
    let viewer_key = stack
        .post(
            "/v1/auth/api-keys",
            Some(&admin.access),
            &json!({ "name": "dashboards", "role": "viewer" }),
        )
        .expect(201);
    let admin_key = admin_key["key"].as_str().unwrap();
    let viewer_key = viewer_key["key"].as_str().unwrap();

    let new_user = |key: &str| {
        stack.post(
            "/v1/users",
            Some(key),
            &json!({ "username": unique("keyed"), "password": PASSWORD, "role": "member" }),
        )
    };
    new_user(admin_key).expect(201);
    new_user(viewer_key).expect_problem(403, "forbidden");
    stack
        .get("/v1/audit-events", Some(viewer_key))
        .expect_problem(403, "forbidden");
    stack.get("/v1/audit-events", Some(admin_key)).expect(200);
}

// ---------------------------------------------------------------------------
// Users and roles
// ---------------------------------------------------------------------------

#[test]
fn an_admin_creates_reads_lists_and_updates_users_with_versions() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let token = Some(admin.access.as_str());

    let created = stack
        .post(
            "/v1/users",
            token,
            &json!({ "username": "vee", "password": PASSWORD, "role": "viewer", "display_name": "Vee" }),
        )
        .expect(201);
    assert_eq!(created["username"], "vee");
    assert_eq!(created["role"], "viewer");
    assert_eq!(created["display_name"], "Vee");
    assert_eq!(created["version"], 1);
    let id = created["user_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/users/{id}");

    stack
        .post(
            "/v1/users",
            token,
            &json!({ "username": "vee", "password": PASSWORD, "role": "viewer" }),
        )
        .expect_problem(409, "conflict");
    for body in [
        json!({ "username": "vee2", "password": PASSWORD, "role": "root" }),
        json!({ "username": "Vee2", "password": PASSWORD, "role": "member" }),
        json!({ "username": "vee2", "password": "short", "role": "member" }),
        json!({ "username": "vee2", "role": "member" }),
    ] {
        stack
            .post("/v1/users", token, &body)
            .expect_problem(400, "validation_failed");
    }

    assert_eq!(stack.get(&path, token).expect(200), created);
    let all = stack.get("/v1/users", token).expect(200);
    let usernames: Vec<String> = items(&all)
        .iter()
        .map(|user| user["username"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        usernames.iter().any(|name| name == "vee") && usernames.iter().any(|name| name == ADMIN),
        "{all}"
    );
    let page = stack.get("/v1/users?limit=1", token).expect(200);
    assert_eq!(items(&page).len(), 1, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = stack
        .get(&format!("/v1/users?limit=1&cursor={cursor}"), token)
        .expect(200);
    assert_eq!(items(&next).len(), 1, "{next}");
    assert_ne!(items(&next)[0]["user_id"], items(&page)[0]["user_id"]);

    stack
        .get("/v1/users/not-a-uuid", token)
        .expect_problem(400, "validation_failed");
    stack
        .get("/v1/users/0190a000-0000-7000-8000-000000000000", token)
        .expect_problem(404, "not_found");

    // Promote, with the version read.
    let promoted = stack
        .patch(&path, token, &json!({ "version": 1, "role": "member" }))
        .expect(200);
    assert_eq!(promoted["role"], "member", "{promoted}");
    assert_eq!(promoted["version"], 2, "{promoted}");
    // A stale version changes nothing.
    stack
        .patch(
            &path,
            token,
            &json!({ "version": 1, "display_name": "Lost" }),
        )
        .expect_problem(409, "conflict");
    assert_eq!(stack.get(&path, token).expect(200)["display_name"], "Vee");
    stack
        .patch(&path, token, &json!({ "display_name": "No version" }))
        .expect_problem(400, "validation_failed");
    stack
        .patch(&path, token, &json!({ "version": 2, "role": "root" }))
        .expect_problem(400, "validation_failed");

    let renamed = stack
        .patch(
            &path,
            token,
            &json!({ "version": 2, "display_name": "Vera", "password": NEW_PASSWORD }),
        )
        .expect(200);
    assert_eq!(renamed["display_name"], "Vera");
    assert_eq!(renamed["version"], 3);
    let login = stack.login("vee", NEW_PASSWORD);
    assert_eq!(login.body["scope"], "member");
    stack
        .password_grant("vee", PASSWORD)
        .expect_oauth_error(400, "invalid_grant");
}

#[test]
fn disabling_or_deleting_a_user_stops_their_credentials_at_once() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let token = Some(admin.access.as_str());
    let alice = stack.new_user(&admin, "member");
    let bob = stack.new_user(&admin, "member");
    let alice_key = stack
        .post(
            "/v1/auth/api-keys",
            Some(alice.token()),
            &json!({ "name": "script" }),
        )
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    stack.me(&alice_key);

    let disabled = stack
        .patch(
            &format!("/v1/users/{}", alice.id()),
            token,
            &json!({ "version": 1, "disabled": true }),
        )
        .expect(200);
    assert!(disabled["disabled_at"].is_string(), "{disabled}");
    stack
        .get("/v1/auth/me", Some(alice.token()))
        .expect_invalid_token();
    stack
        .get("/v1/auth/me", Some(&alice_key))
        .expect_invalid_token();
    stack
        .refresh(&alice.login.refresh)
        .expect_oauth_error(400, "invalid_grant");
    stack
        .password_grant(&alice.username, PASSWORD)
        .expect_oauth_error(400, "invalid_grant");
    // Others are unaffected.
    stack.me(bob.token());

    let enabled = stack
        .patch(
            &format!("/v1/users/{}", alice.id()),
            token,
            &json!({ "version": disabled["version"], "disabled": false }),
        )
        .expect(200);
    assert_eq!(enabled["disabled_at"], Value::Null, "{enabled}");
    stack.login(&alice.username, PASSWORD);

    let bob_path = format!("/v1/users/{}", bob.id());
    stack.delete(&bob_path, token).expect(204);
    stack.get(&bob_path, token).expect_problem(404, "not_found");
    stack
        .get("/v1/auth/me", Some(bob.token()))
        .expect_invalid_token();
    stack
        .password_grant(&bob.username, PASSWORD)
        .expect_oauth_error(400, "invalid_grant");
    stack
        .delete(&bob_path, token)
        .expect_problem(404, "not_found");
}

#[test]
fn members_and_viewers_cannot_manage_users_or_read_the_audit_log() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let viewer = stack.new_user(&admin, "viewer");
    let member = stack.new_member();
    let new_user = json!({ "username": "made-by-me", "password": PASSWORD, "role": "member" });

    for who in [&member, &viewer] {
        stack
            .post("/v1/users", Some(who.token()), &new_user)
            .expect_problem(403, "forbidden");
        stack
            .get("/v1/audit-events", Some(who.token()))
            .expect_problem(403, "forbidden");
        // Each may read themselves.
        let own = stack
            .get(&format!("/v1/users/{}", who.id()), Some(who.token()))
            .expect(200);
        assert_eq!(own["username"], who.username.as_str(), "{own}");
    }
    let me = stack.me(viewer.token());
    assert_eq!(me["role"], "viewer", "{me}");

    // Another user is not there for them.
    stack
        .get(&format!("/v1/users/{}", viewer.id()), Some(member.token()))
        .expect_problem(404, "not_found");
    stack
        .get(
            &format!("/v1/users/{}", admin.user_id()),
            Some(viewer.token()),
        )
        .expect_problem(404, "not_found");

    // A viewer writes nothing, not even their own record.
    stack
        .patch(
            &format!("/v1/users/{}", viewer.id()),
            Some(viewer.token()),
            &json!({ "version": 1, "display_name": "Me" }),
        )
        .expect_problem(403, "forbidden");
    // Nobody promotes themselves.
    let promoted = stack.patch(
        &format!("/v1/users/{}", member.id()),
        Some(member.token()),
        &json!({ "version": 1, "role": "admin" }),
    );
    assert!(
        promoted.status == 403 || promoted.status == 404,
        "{}",
        promoted.context()
    );
    let relogin = stack.login(&member.username, PASSWORD);
    assert_eq!(relogin.body["scope"], "member");
    let deleted = stack.delete(&format!("/v1/users/{}", viewer.id()), Some(member.token()));
    assert!(
        deleted.status == 403 || deleted.status == 404,
        "{}",
        deleted.context()
    );
    stack.me(viewer.token());

    let users: i64 = stack
        .db
        .connect()
        .query_one(
            "select count(*) from users where username = 'made-by-me'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(users, 0);

    // Every refusal is on record.
    let denied = stack.audit(&admin, "action=permission.denied&limit=200");
    assert!(denied.len() >= 5, "{denied:?}");
    assert!(denied.iter().all(|event| event["outcome"] == "denied"));
    assert!(
        denied
            .iter()
            .any(|event| event["actor_user_id"] == viewer.id().as_str()),
        "{denied:?}"
    );
}

#[test]
fn changing_the_password_ends_the_other_sessions_and_the_old_password() {
    let stack = Stack::start(&[]);
    let member = stack.new_member();
    let other = stack.login(&member.username, PASSWORD);
    let change = |current: &str, new: &str| {
        stack.post(
            "/v1/auth/password",
            Some(member.token()),
            &json!({ "current_password": current, "new_password": new }),
        )
    };

    let wrong = change("not my password at all", NEW_PASSWORD);
    assert_eq!(wrong.status, 400, "{}", wrong.context());
    change(PASSWORD, "short").expect_problem(400, "validation_failed");
    // Nothing changed so far.
    stack.me(&other.access);

    change(PASSWORD, NEW_PASSWORD).expect(204);
    stack.me(member.token());
    stack
        .get("/v1/auth/me", Some(&other.access))
        .expect_invalid_token();
    stack
        .refresh(&other.refresh)
        .expect_oauth_error(400, "invalid_grant");
    stack
        .password_grant(&member.username, PASSWORD)
        .expect_oauth_error(400, "invalid_grant");
    stack.login(&member.username, NEW_PASSWORD);
}

// ---------------------------------------------------------------------------
// Rate limits and back-off
// ---------------------------------------------------------------------------

/// The window of the rate-limit tests, in seconds.
const WINDOW_SECS: u64 = 2;

/// Waits until just after a multiple of [`WINDOW_SECS`] since the epoch, so that
/// a burst sent now falls in one window, whether windows are aligned to the clock
/// or start at a bucket's first request.
fn at_start_of_window() {
    let window_ms = WINDOW_SECS * 1000;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    std::thread::sleep(Duration::from_millis(window_ms - now_ms % window_ms + 50));
}

/// Sends `request` until it is rate limited, at most `tries` times; the number of
/// requests let through before and the 429.
fn until_limited(tries: usize, request: impl Fn(usize) -> Response) -> (usize, Response) {
    for n in 0..tries {
        let reply = request(n);
        if reply.status == 429 {
            return (n, reply);
        }
    }
    panic!("no 429 after {tries} requests");
}

#[test]
fn token_requests_past_the_per_address_limit_wait_for_the_next_window() {
    let window = WINDOW_SECS.to_string();
    let stack = Stack::start(&[
        ("SPIN_VARIABLE_RATE_LIMIT_WINDOW_SECONDS", &window),
        ("SPIN_VARIABLE_RATE_LIMIT_TOKEN_PER_ADDRESS", "5"),
    ]);
    let bad_grant = [("grant_type", "client_credentials")];
    at_start_of_window();
    let (passed, limited) = until_limited(12, |_| stack.token(&bad_grant));
    assert_eq!(passed, 5);
    let retry_after = limited.expect_rate_limited();
    assert!(
        (1..=WINDOW_SECS).contains(&retry_after),
        "{}",
        limited.context()
    );
    assert_eq!(limited.header("ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(limited.header("ratelimit-remaining").as_deref(), Some("0"));
    assert!(limited.header("ratelimit-reset").is_some());
    // Registration counts against the same allowance.
    stack
        .register("patient-person", PASSWORD)
        .expect_rate_limited();

    sleep_secs(retry_after as f64 + 0.3);
    let admin = stack.login_as_admin();
    let exceeded = stack.audit(&admin, "action=rate_limit.exceeded");
    assert!(!exceeded.is_empty());
    assert!(exceeded.iter().all(|event| event["outcome"] == "denied"));
    assert!(
        exceeded[0]["client_addr"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{exceeded:?}"
    );
}

#[test]
fn each_user_has_their_own_request_allowance_per_window() {
    let window = WINDOW_SECS.to_string();
    let stack = Stack::start(&[
        ("SPIN_VARIABLE_RATE_LIMIT_WINDOW_SECONDS", &window),
        ("SPIN_VARIABLE_RATE_LIMIT_PER_USER", "5"),
    ]);
    let busy = stack.new_member();
    let calm = stack.new_member();

    at_start_of_window();
    let first = stack.get("/v1/auth/me", Some(busy.token()));
    first.expect(200);
    let limit: u64 = first.header("ratelimit-limit").unwrap().parse().unwrap();
    let remaining: u64 = first
        .header("ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    let reset: u64 = first.header("ratelimit-reset").unwrap().parse().unwrap();
    assert_eq!(limit, 5, "{:?}", first.headers);
    assert_eq!(remaining, 4, "{:?}", first.headers);
    assert!((1..=WINDOW_SECS).contains(&reset), "{:?}", first.headers);

    let (passed, limited) = until_limited(12, |_| stack.get("/v1/auth/me", Some(busy.token())));
    assert_eq!(passed, 4);
    let retry_after = limited.expect_rate_limited();
    assert_eq!(limited.header("ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(limited.header("ratelimit-remaining").as_deref(), Some("0"));
    assert!(limited.header("ratelimit-reset").is_some());
    // The allowance is the user's: another one is not held back.
    stack.me(calm.token());

    sleep_secs(retry_after as f64 + 0.3);
    stack.me(busy.token());
}

#[test]
fn one_client_address_has_an_allowance_across_all_its_users() {
    let window = WINDOW_SECS.to_string();
    let stack = Stack::start(&[
        ("SPIN_VARIABLE_RATE_LIMIT_WINDOW_SECONDS", &window),
        ("SPIN_VARIABLE_RATE_LIMIT_PER_ADDRESS", "8"),
    ]);
    let users = [stack.new_member(), stack.new_member()];
    at_start_of_window();
    let (passed, limited) =
        until_limited(30, |n| stack.get("/v1/auth/me", Some(users[n % 2].token())));
    assert_eq!(passed, 8);
    let retry_after = limited.expect_rate_limited();
    assert_eq!(limited.header("ratelimit-limit").as_deref(), Some("8"));
    assert_eq!(limited.header("ratelimit-remaining").as_deref(), Some("0"));
    // Both users come from 127.0.0.1: both are held back.
    for user in &users {
        stack
            .get("/v1/auth/me", Some(user.token()))
            .expect_rate_limited();
    }
    sleep_secs(retry_after as f64 + 0.3);
    stack.me(users[0].token());
}

#[test]
fn repeated_failed_logins_back_off_for_longer_and_longer() {
    let stack = Stack::start(&[("SPIN_VARIABLE_LOGIN_FREE_FAILURES", "5")]);
    let member = stack.new_member();

    for _ in 0..5 {
        stack
            .password_grant(&member.username, "a wrong password, again")
            .expect_oauth_error(400, "invalid_grant");
    }
    // Locked out, even with the right password.
    let locked = stack.password_grant(&member.username, PASSWORD);
    let first_wait = locked.expect_rate_limited();
    assert!(first_wait <= 1, "{}", locked.context());

    sleep_secs(first_wait as f64 + 0.5);
    // One more failure doubles the lockout.
    stack
        .password_grant(&member.username, "a wrong password, again")
        .expect_oauth_error(400, "invalid_grant");
    let locked = stack.password_grant(&member.username, PASSWORD);
    let second_wait = locked.expect_rate_limited();
    assert!(second_wait > first_wait, "{}", locked.context());
    assert!(second_wait <= 2, "{}", locked.context());

    sleep_secs(second_wait as f64 + 0.5);
    stack.login(&member.username, PASSWORD);
    let admin = stack.login_as_admin();
    let failures = stack.audit(&admin, "action=auth.login&outcome=failure&limit=200");
    assert!(failures.len() >= 6, "{failures:?}");
}

// ---------------------------------------------------------------------------
// The audit log
// ---------------------------------------------------------------------------

#[test]
fn the_audit_log_records_who_did_what_newest_first() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let token = Some(admin.access.as_str());
    stack
        .password_grant(ADMIN, "a wrong admin password")
        .expect_oauth_error(400, "invalid_grant");

    let username = unique("audited");
    let create = stack.post(
        "/v1/users",
        token,
        &json!({ "username": username, "password": PASSWORD, "role": "viewer" }),
    );
    let user = create.expect(201);
    let create_request_id = create.header("x-request-id").unwrap();
    let user_id = user["user_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/users/{user_id}");
    stack
        .patch(&path, token, &json!({ "version": 1, "role": "member" }))
        .expect(200);

    let first = stack.login(&username, PASSWORD);
    let second = Login::from_body(stack.refresh(&first.refresh).expect(200));
    stack
        .refresh(&first.refresh)
        .expect_oauth_error(400, "invalid_grant");
    let login = stack.login(&username, PASSWORD);
    let key = stack
        .post(
            "/v1/auth/api-keys",
            Some(&login.access),
            &json!({ "name": "audited key" }),
        )
        .expect(201);
    let key_id = key["api_key_id"].as_str().unwrap();
    stack
        .delete(&format!("/v1/auth/api-keys/{key_id}"), Some(&login.access))
        .expect(204);
    stack
        .get("/v1/audit-events", Some(&login.access))
        .expect_problem(403, "forbidden");
    stack
        .api
        .send(
            Method::POST,
            "/v1/auth/logout",
            Some(&login.access),
            None,
            &[],
        )
        .expect(204);
    stack
        .patch(&path, token, &json!({ "version": 2, "disabled": true }))
        .expect(200);
    let _ = second;

    let body = stack.get("/v1/audit-events?limit=200", token).expect(200);
    let events = items(&body);
    assert_eq!(body["next_cursor"], Value::Null, "{body}");
    for event in &events {
        for field in [
            "audit_event_id",
            "occurred_at",
            "action",
            "outcome",
            "actor_user_id",
            "actor_credential_id",
            "target_type",
            "target_id",
            "client_addr",
            "user_agent",
            "request_id",
            "details",
        ] {
            assert!(event.get(field).is_some(), "{field} missing: {event}");
        }
    }
    // Newest first: UUID v7 ids sort by time.
    let ids: Vec<&str> = events
        .iter()
        .map(|event| event["audit_event_id"].as_str().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");

    let find = |action: &str, outcome: &str| -> Value {
        events
            .iter()
            .find(|event| event["action"] == action && event["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {body}"))
            .clone()
    };
    find("auth.login", "success");
    find("auth.login", "failure");
    find("auth.token_refreshed", "success");
    let reused = find("auth.refresh_token_reused", "failure");
    assert_eq!(reused["actor_user_id"], user_id.as_str(), "{reused}");
    let created = find("user.created", "success");
    assert_eq!(
        created["actor_user_id"],
        admin.user_id().as_str(),
        "{created}"
    );
    assert_eq!(
        created["actor_credential_id"],
        admin.session_id().as_str(),
        "{created}"
    );
    assert_eq!(created["target_type"], "user", "{created}");
    assert_eq!(created["target_id"], user_id.as_str(), "{created}");
    assert_eq!(
        created["request_id"],
        create_request_id.as_str(),
        "{created}"
    );
    assert!(
        created["client_addr"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{created}"
    );
    let role_changed = find("user.role_changed", "success");
    assert_eq!(
        role_changed["target_id"],
        user_id.as_str(),
        "{role_changed}"
    );
    find("user.disabled", "success");
    let key_created = find("api_key.created", "success");
    assert_eq!(key_created["target_id"], key_id, "{key_created}");
    find("api_key.revoked", "success");
    // Logging out; disabling the user may revoke other sessions too.
    assert!(
        events
            .iter()
            .any(|event| event["action"] == "session.revoked"
                && event["outcome"] == "success"
                && event["target_id"] == login.session_id().as_str()),
        "no session.revoked of the logged-out session in {body}"
    );
    let denied = find("permission.denied", "denied");
    assert_eq!(denied["actor_user_id"], user_id.as_str(), "{denied}");

    // Filters, each on its own.
    let by_action = stack.audit(&admin, "action=user.role_changed");
    assert_eq!(by_action.len(), 1, "{by_action:?}");
    let by_outcome = stack.audit(&admin, "outcome=failure");
    assert!(by_outcome.len() >= 2, "{by_outcome:?}");
    assert!(by_outcome.iter().all(|event| event["outcome"] == "failure"));
    let by_actor = stack.audit(&admin, &format!("actor_user_id={user_id}&limit=200"));
    assert!(!by_actor.is_empty());
    assert!(
        by_actor
            .iter()
            .all(|event| event["actor_user_id"] == user_id.as_str())
    );
    let by_target = stack.audit(
        &admin,
        &format!("target_type=user&target_id={user_id}&limit=200"),
    );
    let target_actions: HashSet<&str> = by_target
        .iter()
        .map(|event| event["action"].as_str().unwrap())
        .collect();
    assert!(
        ["user.created", "user.role_changed", "user.disabled"]
            .iter()
            .all(|action| target_actions.contains(action)),
        "{by_target:?}"
    );
    assert!(
        by_target
            .iter()
            .all(|event| event["target_id"] == user_id.as_str())
    );
    assert!(stack.audit(&admin, "since=2999-01-01T00:00:00Z").is_empty());
    assert!(stack.audit(&admin, "until=2000-01-01T00:00:00Z").is_empty());
    assert!(
        stack
            .audit(&admin, "since=2000-01-01T00:00:00Z&limit=200")
            .len()
            >= events.len()
    );

    // Pages follow one another without overlap.
    let page = stack.get("/v1/audit-events?limit=2", token).expect(200);
    let first_page = items(&page);
    assert_eq!(first_page.len(), 2, "{page}");
    assert_eq!(first_page[0]["audit_event_id"], ids[0]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = stack
        .get(&format!("/v1/audit-events?limit=2&cursor={cursor}"), token)
        .expect(200);
    let next_page = items(&next);
    assert_eq!(next_page[0]["audit_event_id"], ids[2], "{next}");

    for query in [
        "limit=0",
        "limit=100000",
        "since=yesterday",
        "outcome=maybe",
        "cursor=%%%",
    ] {
        stack
            .get(&format!("/v1/audit-events?{query}"), token)
            .expect_problem(400, "validation_failed");
    }
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

#[test]
fn no_response_shows_a_hash_a_password_or_a_secret_it_did_not_just_issue() {
    let stack = Stack::start(&[]);
    let admin = stack.login_as_admin();
    let token = Some(admin.access.as_str());
    let member = stack.new_member();
    let viewer = stack.new_user(&admin, "viewer");
    let refreshed = Login::from_body(stack.refresh(&member.login.refresh).expect(200));
    stack.refresh(&member.login.refresh); // reuse: revokes that session
    let login = stack.login(&member.username, PASSWORD);
    let key = stack
        .post(
            "/v1/auth/api-keys",
            Some(&login.access),
            &json!({ "name": "scan" }),
        )
        .expect(201);
    let key_id = key["api_key_id"].as_str().unwrap();

    // Everything a client can read, as each kind of caller.
    for who in [
        &admin.access,
        &login.access,
        viewer.token(),
        &refreshed.access,
    ] {
        for path in [
            "/v1/auth/me".to_owned(),
            "/v1/auth/sessions".to_owned(),
            "/v1/auth/api-keys".to_owned(),
            "/v1/users".to_owned(),
            format!("/v1/users/{}", member.id()),
            format!("/v1/users/{}", viewer.id()),
            "/v1/audit-events?limit=200".to_owned(),
            "/v1/openapi.json".to_owned(),
        ] {
            stack.get(&path, Some(who));
        }
    }
    stack.me(key["key"].as_str().unwrap());
    stack.patch(
        &format!("/v1/users/{}", viewer.id()),
        token,
        &json!({ "version": 1, "display_name": "Scanned", "password": NEW_PASSWORD }),
    );
    stack.post(
        "/v1/users",
        token,
        &json!({ "username": viewer.username, "password": PASSWORD, "role": "member" }),
    );
    stack.register(&member.username, PASSWORD);
    stack.register("weak-one", "password1234");
    stack.password_grant(&member.username, "wrong password here");
    stack.post(
        "/v1/auth/password",
        Some(&login.access),
        &json!({ "current_password": "wrong password here", "new_password": NEW_PASSWORD }),
    );
    stack.delete(&format!("/v1/auth/api-keys/{key_id}"), Some(&login.access));
    stack.get("/v1/audit-events?limit=200", token);

    let seen = stack.api.exchanges();
    // Every secret handed out, and the response that handed it out.
    let mut secrets: Vec<(String, usize)> = Vec::new();
    for (n, exchange) in seen.iter().enumerate() {
        if let Ok(body) = serde_json::from_str::<Value>(&exchange.body) {
            for field in ["refresh_token", "key", "access_token"] {
                if let Some(secret) = body[field].as_str() {
                    secrets.push((secret.to_owned(), n));
                }
            }
        }
    }
    assert!(secrets.len() >= 10, "{} secrets", secrets.len());
    for (n, exchange) in seen.iter().enumerate() {
        let what = format!(
            "{} {} → {}",
            exchange.method, exchange.path, exchange.status
        );
        for needle in NEVER_IN_A_BODY {
            assert!(
                !exchange.body.contains(needle),
                "{what} shows {needle}: {}",
                exchange.body
            );
        }
        for password in [
            ADMIN_PASSWORD,
            PASSWORD,
            NEW_PASSWORD,
            "wrong password here",
        ] {
            assert!(
                !exchange.body.contains(password),
                "{what} shows a password: {}",
                exchange.body
            );
        }
        for (secret, issued_by) in &secrets {
            assert!(
                *issued_by == n || !exchange.body.contains(secret.as_str()),
                "{what} shows a secret issued by another response: {}",
                exchange.body
            );
        }
    }

    // Nor the log.
    let logs = serde_json::to_string(&stack.arena.logs()).unwrap();
    for password in [ADMIN_PASSWORD, PASSWORD, NEW_PASSWORD] {
        assert!(!logs.contains(password), "the log shows a password");
    }
    for (secret, _) in &secrets {
        assert!(!logs.contains(secret.as_str()), "the log shows a token");
    }

    // And the database keeps only hashes.
    let mut db = stack.db.connect();
    for row in db.query("select password_hash from users", &[]).unwrap() {
        let hash: String = row.get(0);
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }
    let short: i64 = db
        .query_one(
            "select (select count(*) from refresh_tokens where length(token_hash) <> 32)
                  + (select count(*) from api_keys where length(key_hash) <> 32)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(short, 0);
    let audit: String = db
        .query_one(
            "select coalesce(string_agg(details::text, ' '), '') from audit_events",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        !audit.contains("arena_rt_") && !audit.contains("arena_ak_"),
        "{audit}"
    );
    for password in [ADMIN_PASSWORD, PASSWORD, NEW_PASSWORD] {
        assert!(!audit.contains(password), "{audit}");
    }
}
