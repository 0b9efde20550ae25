//! `spin:variables` through the `arena` host: where values come from, what
//! a component may read, and what stops start-up.

use std::time::Duration;

use arena_e2e::{Arena, repo_root};
use serde_json::Value;

const MANIFEST: &str = "tests/fixtures/outbound.toml";

/// The value of the fixture's required secret in these tests (the `/`s
/// make it an invalid host, for the start-up failure below).
const TOKEN: &str = "tok/7f3a9c/not-for-logs";

/// Starts the fixture with its required variable set, plus `env`.
fn start(args: &[&str], env: &[(&str, &str)]) -> Arena {
    let mut env = env.to_vec();
    env.push(("SPIN_VARIABLE_API_TOKEN", TOKEN));
    Arena::start_with_env(MANIFEST, args, &env)
}

fn variable(arena: &Arena, name: &str) -> (u16, Value) {
    let response = arena.get(&format!("/outbound/variable/{name}"));
    (response.status().as_u16(), response.json().unwrap())
}

fn value(arena: &Arena, name: &str) -> String {
    let (status, body) = variable(arena, name);
    assert_eq!(status, 200, "{body}");
    body["value"].as_str().unwrap().to_owned()
}

#[test]
fn a_variable_from_the_environment_overrides_the_default() {
    let arena = start(&[], &[]);
    assert_eq!(value(&arena, "greeting"), "hello from the manifest");
    drop(arena);
    let arena = start(
        &[],
        &[("SPIN_VARIABLE_GREETING", "hello from the environment")],
    );
    assert_eq!(value(&arena, "greeting"), "hello from the environment");
}

#[test]
fn a_component_variable_template_resolves() {
    let arena = start(&[], &[("SPIN_VARIABLE_PORT", "9443")]);
    assert_eq!(
        value(&arena, "endpoint"),
        "https://api.example.test:9443/v1"
    );
    assert_eq!(value(&arena, "literal"), "no template here");
    assert_eq!(value(&arena, "token"), TOKEN);
}

#[test]
fn the_runtime_config_gives_values_below_the_environment() {
    let config = std::env::temp_dir().join(format!("arena-vars-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        r#"
        [[variables_provider]]
        type = "static"
        values = { greeting = "hello from the file", host = "file.example.test" }
        "#,
    )
    .unwrap();
    let arena = start(
        &["--runtime-config", config.to_str().unwrap()],
        &[("SPIN_VARIABLE_GREETING", "hello from the environment")],
    );
    assert_eq!(value(&arena, "greeting"), "hello from the environment");
    assert_eq!(
        value(&arena, "endpoint"),
        "https://file.example.test:8443/v1"
    );
    let _ = std::fs::remove_file(config);
}

#[test]
fn a_component_reads_only_variables_of_its_own_table() {
    let arena = start(&[], &[]);
    // `host` is an application variable, but not in the component's table.
    let (status, body) = variable(&arena, "host");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "undefined");
    let (status, body) = variable(&arena, "Greeting");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid-name");
}

#[test]
fn a_required_variable_missing_stops_start_up_with_its_name() {
    let failure = Arena::try_start(MANIFEST, &[])
        .err()
        .expect("arena up must refuse to start");
    assert!(!failure.status.unwrap().success());
    let messages = failure.messages();
    assert!(messages.contains("`api_token`"), "{messages}");
    assert!(messages.contains("SPIN_VARIABLE_API_TOKEN"), "{messages}");
    assert!(!messages.contains("\"listening\""), "{messages}");
}

#[test]
fn a_secret_value_does_not_show_in_logs() {
    let arena = start(&[], &[]);
    assert_eq!(value(&arena, "token"), TOKEN);
    variable(&arena, "undefined_one");
    // Wait for the request lines, so everything the requests logged is in.
    let logged = arena.wait_for_log(Duration::from_secs(5), |entry| {
        entry["path"] == "/outbound/variable/undefined_one"
    });
    assert!(logged.is_some());
    for entry in arena.logs() {
        assert!(!entry.to_string().contains(TOKEN), "secret logged: {entry}");
    }
    // Nor in the error refusing an entry built from it.
    let manifest = BrokenManifest::new(
        "secret-host",
        r#""http://self","#,
        r#""http://self", "https://{{ api_token }}","#,
    );
    let messages = manifest.failure();
    assert!(messages.contains("https://{{ api_token }}"), "{messages}");
    assert!(!messages.contains(TOKEN), "secret logged: {messages}");
}

/// A variant of the fixture's manifest in the temporary directory, for
/// start-up failures (removed on drop).
struct BrokenManifest(std::path::PathBuf);

impl BrokenManifest {
    /// The fixture's manifest with `from` replaced by `to`.
    fn new(name: &str, from: &str, to: &str) -> BrokenManifest {
        let text = std::fs::read_to_string(repo_root().join(MANIFEST)).unwrap();
        assert!(text.contains(from), "the fixture no longer holds {from:?}");
        let target = repo_root().join("target");
        let text = text
            .replace(from, to)
            .replace("../../target", target.to_str().unwrap());
        let path = std::env::temp_dir().join(format!("arena-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        BrokenManifest(path)
    }

    fn failure(&self) -> String {
        let failure = Arena::try_start_with_env(
            self.0.to_str().unwrap(),
            &[],
            &[("SPIN_VARIABLE_API_TOKEN", TOKEN)],
        )
        .err()
        .expect("arena up must refuse to start");
        failure.messages()
    }
}

impl Drop for BrokenManifest {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_template_naming_an_undeclared_variable_stops_start_up() {
    let manifest = BrokenManifest::new(
        "undeclared",
        r#"greeting = "{{ greeting }}""#,
        r#"greeting = "{{ greting }}""#,
    );
    let messages = manifest.failure();
    assert!(messages.contains("`greting`"), "{messages}");
    assert!(messages.contains("`greeting`"), "{messages}");
}

#[test]
fn a_malformed_template_stops_start_up() {
    let manifest = BrokenManifest::new(
        "malformed",
        r#"literal = "no template here""#,
        r#"literal = "{{ host""#,
    );
    let messages = manifest.failure();
    assert!(messages.contains("`literal`"), "{messages}");
    assert!(messages.contains("malformed"), "{messages}");
}

#[test]
fn an_invalid_allowed_host_stops_start_up_quoting_it() {
    let manifest = BrokenManifest::new(
        "allowed-host",
        r#""http://self","#,
        r#""http://self", "ftp://files.example.test","#,
    );
    let messages = manifest.failure();
    assert!(messages.contains("ftp://files.example.test"), "{messages}");
    assert!(messages.contains("`outbound`"), "{messages}");
}
