//! HTTP middleware from `dependencies.middleware`, composed in front of a
//! component as Spin 4 does (tests/fixtures/middleware.toml: gate, then
//! tagger, then the echoing component).

use arena_e2e::Arena;
use serde_json::Value;

const MANIFEST: &str = "tests/fixtures/middleware.toml";

#[test]
fn middleware_runs_outermost_first_on_the_way_in_and_last_on_the_way_out() {
    let arena = Arena::start(MANIFEST, &[]);
    let response = arena
        .client()
        .get(format!("{}/faulty/echo", arena.url))
        .header("authorization", "Bearer ok")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tagged"], "yes");
    let body: Value = response.json().unwrap();
    assert_eq!(body["headers"]["x-chain"], "gate, tagger");
}

#[test]
fn middleware_can_short_circuit_with_401_before_the_component_runs() {
    let arena = Arena::start(MANIFEST, &[]);
    let response = arena.get("/faulty/log");
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().unwrap(), "stopped by the gate");
    // The component behind the gate never ran: it would have logged.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = arena.logs();
    assert!(
        !logs
            .iter()
            .any(|e| e["message"] == "to stdout from the fixture"),
        "{logs:?}"
    );
}

#[test]
fn a_middleware_alone_is_refused_because_nothing_answers_its_handler_import() {
    let manifest =
        std::env::temp_dir().join(format!("arena-lone-middleware-{}.toml", std::process::id()));
    let gate = arena_e2e::repo_root().join("target/wasm32-wasip2/release/arena_fixture_gate.wasm");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"lone\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"gate\"\n[component.gate]\nsource = \"{}\"\n",
            gate.display()
        ),
    )
    .unwrap();
    let failure = Arena::try_start(manifest.to_str().unwrap(), &[])
        .err()
        .expect("must be refused");
    let messages = failure.messages();
    assert!(
        messages.contains("`gate`") && messages.contains("wasi:http/handler@0.3.0"),
        "{messages}"
    );
    let _ = std::fs::remove_file(manifest);
}
