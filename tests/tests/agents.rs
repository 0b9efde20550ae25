//! Agents end to end: the agents component behind the auth middleware of the real
//! `spin.toml`, run by `arena up` against a fresh database per test, driven over
//! HTTP as a client would.

use arena_e2e::api::{
    self, ADMIN, ADMIN_PASSWORD, Client, PASSWORD, Response, field_errors, items,
};
use arena_e2e::{Arena, TestDatabase};
use serde_json::{Value, json};

/// `arena up` on spin.toml with a database of its own. The arena is dropped
/// (killed) before the database.
struct Stack {
    /// Held so the host runs as long as the test; declared first, dropped first.
    _arena: Arena,
    db: TestDatabase,
    api: Client,
}

/// A user the test created, logged in.
struct Account {
    id: String,
    token: String,
}

impl Stack {
    fn start() -> Stack {
        let db = TestDatabase::create();
        let arena = api::start(&db, &[], &[]);
        let api = Client::new(&arena);
        Stack {
            _arena: arena,
            db,
            api,
        }
    }

    fn admin(&self) -> Account {
        let token = self.api.login(ADMIN, ADMIN_PASSWORD)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let me = self.api.get("/v1/auth/me", Some(&token)).expect(200);
        Account {
            id: me["user"]["user_id"].as_str().unwrap().to_owned(),
            token,
        }
    }

    fn new_user(&self, admin: &Account, role: &str) -> Account {
        let (username, user) = self.api.create_user(&admin.token, role);
        let token = self.api.login(&username, PASSWORD)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Account {
            id: user["user_id"].as_str().unwrap().to_owned(),
            token,
        }
    }

    fn get(&self, path: &str, who: &Account) -> Response {
        self.api.get(path, Some(&who.token))
    }

    fn post(&self, path: &str, who: &Account, body: &Value) -> Response {
        self.api.post(path, Some(&who.token), body)
    }

    fn patch(&self, path: &str, who: &Account, body: &Value) -> Response {
        self.api.patch(path, Some(&who.token), body)
    }

    fn delete(&self, path: &str, who: &Account) -> Response {
        self.api.delete(path, Some(&who.token))
    }

    /// Creates an agent as `who` from `body` over the defaults; the agent.
    #[track_caller]
    fn create_agent(&self, who: &Account, body: Value) -> Value {
        let mut full = json!({
            "name": "Socrates",
            "persona": "You answer every question with a question.",
            "model": "llama3.2",
        });
        for (key, value) in body.as_object().unwrap() {
            full[key] = value.clone();
        }
        let response = self.post("/v1/agents", who, &full);
        let agent = response.expect(201);
        let id = agent["agent_id"].as_str().unwrap();
        assert_eq!(
            response.header("location").as_deref(),
            Some(format!("/v1/agents/{id}").as_str())
        );
        agent
    }

    /// The ids of the agents a list shows `who`, in order.
    #[track_caller]
    fn listed(&self, query: &str, who: &Account) -> Vec<String> {
        let page = self.get(&format!("/v1/agents{query}"), who).expect(200);
        items(&page)
            .iter()
            .map(|agent| agent["agent_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn id(agent: &Value) -> String {
    agent["agent_id"].as_str().unwrap().to_owned()
}

#[test]
fn an_agent_is_created_read_listed_with_filters_and_paginated() {
    let stack = Stack::start();
    let admin = stack.admin();
    let ada = stack.new_user(&admin, "member");

    let socrates = stack.create_agent(
        &ada,
        json!({
            "description": "Asks.",
            "parameters": {"temperature": 0.7, "top_k": 40},
            "tags": ["philosophy", "greek"],
        }),
    );
    assert_eq!(socrates["owner_id"], ada.id.as_str());
    assert_eq!(socrates["version"], 1);
    assert_eq!(socrates["visibility"], "private");
    assert_eq!(
        socrates["parameters"],
        json!({"temperature": 0.7, "top_k": 40})
    );
    assert_eq!(socrates["tags"], json!(["philosophy", "greek"]));
    assert_eq!(socrates["description"], "Asks.");
    for key in ["created_at", "updated_at"] {
        assert!(socrates[key].is_string(), "{socrates}");
    }

    let path = format!("/v1/agents/{}", id(&socrates));
    assert_eq!(stack.get(&path, &ada).expect(200), socrates);

    let plato = stack.create_agent(
        &ada,
        json!({"name": "Plato", "model": "qwen3:8b", "tags": ["greek"], "visibility": "shared"}),
    );
    assert_eq!(plato["parameters"], json!({}));
    assert_eq!(plato["tags"], json!(["greek"]));
    let hume = stack.create_agent(&ada, json!({"name": "Hume_50%", "tags": ["scottish"]}));

    // Newest first, and each filter narrows.
    let all = vec![id(&hume), id(&plato), id(&socrates)];
    assert_eq!(stack.listed("", &ada), all);
    assert_eq!(
        stack.listed("?tag=greek", &ada),
        [id(&plato), id(&socrates)]
    );
    assert_eq!(stack.listed("?model=qwen3:8b", &ada), [id(&plato)]);
    assert_eq!(stack.listed("?q=SOC", &ada), [id(&socrates)]);
    assert_eq!(stack.listed("?q=hume_5", &ada), [id(&hume)]);
    // A `_` or `%` in `q` is itself, not a wildcard.
    assert!(stack.listed("?q=p_ato", &ada).is_empty());
    assert_eq!(stack.listed("?visibility=shared", &ada), [id(&plato)]);
    assert_eq!(
        stack.listed(
            &format!("?owner_id={}&tag=greek&visibility=private", ada.id),
            &ada
        ),
        [id(&socrates)]
    );
    assert_eq!(stack.listed("?tag=", &ada), all);

    // Pages of two, then one.
    let first = stack.get("/v1/agents?limit=2", &ada).expect(200);
    assert_eq!(items(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = stack
        .get(&format!("/v1/agents?limit=2&cursor={cursor}"), &ada)
        .expect(200);
    assert_eq!(items(&second)[0]["agent_id"], id(&socrates).as_str());
    assert!(second["next_cursor"].is_null());

    // Strict filters.
    for (query, field) in [
        ("?owner=1", "owner"),
        ("?owner_id=nope", "owner_id"),
        ("?visibility=public", "visibility"),
        ("?limit=0", "limit"),
    ] {
        let problem = stack
            .get(&format!("/v1/agents{query}"), &ada)
            .expect_problem(400, "validation_failed");
        assert_eq!(field_errors(&problem), [field], "{query}");
    }

    // The creation was announced on the owner's stream, in the same transaction.
    let mut pg = stack.db.connect();
    let stream = format!("user:{}", ada.id);
    let rows = pg
        .query(
            "select payload->>'agent_id' as agent_id from events
             where stream = $1 and type = 'agent.created' order by event_id",
            &[&stream],
        )
        .unwrap();
    let announced: Vec<String> = rows.iter().map(|row| row.get("agent_id")).collect();
    assert_eq!(announced, [id(&socrates), id(&plato), id(&hume)]);
}

#[test]
fn who_sees_and_changes_an_agent_follows_the_ownership_rule() {
    let stack = Stack::start();
    let admin = stack.admin();
    let ada = stack.new_user(&admin, "member");
    let bob = stack.new_user(&admin, "member");
    let vic = stack.new_user(&admin, "viewer");

    let private = stack.create_agent(&ada, json!({"name": "Private"}));
    let shared = stack.create_agent(&ada, json!({"name": "Shared", "visibility": "shared"}));
    let bobs = stack.create_agent(&bob, json!({"name": "Bob's"}));
    let private_path = format!("/v1/agents/{}", id(&private));
    let shared_path = format!("/v1/agents/{}", id(&shared));

    // Reading: own and shared; admins everything.
    assert_eq!(stack.listed("", &ada), [id(&shared), id(&private)]);
    assert_eq!(stack.listed("", &bob), [id(&bobs), id(&shared)]);
    assert_eq!(stack.listed("", &vic), [id(&shared)]);
    assert_eq!(
        stack.listed("", &admin),
        [id(&bobs), id(&shared), id(&private)]
    );
    for who in [&bob, &vic] {
        stack
            .get(&private_path, who)
            .expect_problem(404, "not_found");
        stack.get(&shared_path, who).expect(200);
        stack
            .get(&format!("{private_path}/versions"), who)
            .expect_problem(404, "not_found");
    }
    stack.get(&private_path, &admin).expect(200);

    // Writing: the owner and admins; another member gets 403 on what they see and
    // 404 on what they do not; a viewer may write nothing.
    let rename = json!({"version": 1, "name": "Renamed"});
    stack
        .patch(&shared_path, &bob, &rename)
        .expect_problem(403, "forbidden");
    stack
        .patch(&private_path, &bob, &rename)
        .expect_problem(404, "not_found");
    stack
        .delete(&shared_path, &bob)
        .expect_problem(403, "forbidden");
    stack
        .delete(&private_path, &bob)
        .expect_problem(404, "not_found");
    stack
        .patch(&shared_path, &vic, &rename)
        .expect_problem(403, "forbidden");
    stack
        .post(
            "/v1/agents",
            &vic,
            &json!({"name": "V", "persona": "p", "model": "m"}),
        )
        .expect_problem(403, "forbidden");
    let renamed = stack.patch(&private_path, &admin, &rename).expect(200);
    assert_eq!(renamed["version"], 2);
    assert_eq!(renamed["owner_id"], ada.id.as_str());

    // Deleting: soft, then gone from every lookup and list.
    stack.delete(&private_path, &ada).expect(204);
    stack
        .get(&private_path, &ada)
        .expect_problem(404, "not_found");
    stack
        .get(&private_path, &admin)
        .expect_problem(404, "not_found");
    stack
        .patch(&private_path, &ada, &json!({"version": 2, "name": "Again"}))
        .expect_problem(404, "not_found");
    stack
        .delete(&private_path, &ada)
        .expect_problem(404, "not_found");
    assert_eq!(stack.listed("", &ada), [id(&shared)]);
    stack.delete(&shared_path, &admin).expect(204);
    assert_eq!(stack.listed("", &bob), [id(&bobs)]);
}

#[test]
fn a_change_makes_a_version_kept_in_the_history_and_a_stale_one_is_409() {
    let stack = Stack::start();
    let admin = stack.admin();
    let ada = stack.new_user(&admin, "member");
    let agent = stack.create_agent(&ada, json!({"description": "First.", "tags": ["a"]}));
    let path = format!("/v1/agents/{}", id(&agent));

    let changed = stack
        .patch(
            &path,
            &ada,
            &json!({
                "version": 1, "description": null, "persona": "Be brief.",
                "parameters": {"seed": 7}, "tags": ["a", "b"], "visibility": "shared"
            }),
        )
        .expect(200);
    assert_eq!(changed["version"], 2);
    assert!(changed["description"].is_null());
    assert_eq!(changed["persona"], "Be brief.");
    assert_eq!(changed["parameters"], json!({"seed": 7}));
    assert_eq!(changed["tags"], json!(["a", "b"]));
    assert_eq!(changed["visibility"], "shared");
    assert_eq!(changed["name"], agent["name"]);

    // A stale version changes nothing and names the current one.
    let problem = stack
        .patch(&path, &ada, &json!({"version": 1, "name": "Late"}))
        .expect_problem(409, "conflict");
    assert_eq!(field_errors(&problem), ["version"]);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the current version is 2"),
        "{problem}"
    );

    // A change that changes nothing keeps the version.
    let same = stack
        .patch(&path, &ada, &json!({"version": 2, "persona": "Be brief."}))
        .expect(200);
    assert_eq!(same["version"], 2);
    assert_eq!(same["updated_at"], changed["updated_at"]);

    // The history, newest first, paginated, each version as it was.
    let history = stack.get(&format!("{path}/versions"), &ada).expect(200);
    let versions = items(&history);
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["persona"], "Be brief.");
    assert_eq!(versions[0]["created_by"], ada.id.as_str());
    assert_eq!(versions[1]["version"], 1);
    assert_eq!(versions[1]["description"], "First.");
    assert_eq!(versions[1]["tags"], json!(["a"]));
    assert_eq!(versions[1]["visibility"], "private");
    let page = stack
        .get(&format!("{path}/versions?limit=1"), &ada)
        .expect(200);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = stack
        .get(&format!("{path}/versions?limit=1&cursor={cursor}"), &ada)
        .expect(200);
    assert_eq!(items(&rest)[0]["version"], 1);
    let first = stack.get(&format!("{path}/versions/1"), &ada).expect(200);
    assert_eq!(first, versions[1]);
    stack
        .get(&format!("{path}/versions/3"), &ada)
        .expect_problem(404, "not_found");
    stack
        .get(&format!("{path}/versions/zero"), &ada)
        .expect_problem(400, "validation_failed");

    // Shared now: another user reads its history too.
    let bob = stack.new_user(&admin, "viewer");
    stack.get(&format!("{path}/versions/2"), &bob).expect(200);
}

#[test]
fn bad_bodies_are_400_and_parameters_out_of_range_are_422_naming_the_field() {
    let stack = Stack::start();
    let admin = stack.admin();
    let ada = stack.new_user(&admin, "member");
    let valid = json!({"name": "A", "persona": "p", "model": "m"});

    for (body, fields) in [
        (
            json!({"name": "", "persona": "p", "model": "m"}),
            vec!["name"],
        ),
        (
            json!({"name": "a", "persona": "p", "model": "m", "tags": ["UP", "ok", "ok"]}),
            vec!["tags[0]", "tags[2]"],
        ),
        (
            json!({"name": "a".repeat(101), "persona": "", "model": "m"}),
            vec!["name", "persona"],
        ),
    ] {
        let problem = stack
            .post("/v1/agents", &ada, &body)
            .expect_problem(400, "validation_failed");
        assert_eq!(field_errors(&problem), fields, "{body}");
    }
    for body in [
        json!({"name": "a", "model": "m"}),
        json!({"name": "a", "persona": "p", "model": "m", "owner_id": ada.id}),
        json!({"name": "a", "persona": "p", "model": "m", "visibility": "public"}),
        json!({"name": "a", "persona": "p", "model": "m", "parameters": {"temp": 1}}),
    ] {
        stack
            .post("/v1/agents", &ada, &body)
            .expect_problem(400, "validation_failed");
    }

    let mut hot = valid.clone();
    hot["parameters"] = json!({"temperature": 3.5, "top_p": 0.5, "num_ctx": 1});
    let problem = stack
        .post("/v1/agents", &ada, &hot)
        .expect_problem(422, "invalid_parameters");
    assert_eq!(
        field_errors(&problem),
        ["parameters.temperature", "parameters.num_ctx"]
    );
    assert!(stack.listed("", &ada).is_empty());

    let agent = stack.create_agent(&ada, json!({}));
    let path = format!("/v1/agents/{}", id(&agent));
    let problem = stack
        .patch(
            &path,
            &ada,
            &json!({"version": 1, "parameters": {"top_p": 2}}),
        )
        .expect_problem(422, "invalid_parameters");
    assert_eq!(field_errors(&problem), ["parameters.top_p"]);
    let problem = stack
        .patch(&path, &ada, &json!({"name": "no version"}))
        .expect_problem(400, "validation_failed");
    assert!(!problem["detail"].as_str().unwrap().is_empty());
    stack
        .get("/v1/agents/not-a-uuid", &ada)
        .expect_problem(400, "validation_failed");
    assert_eq!(stack.get(&path, &ada).expect(200)["version"], 1);
}
