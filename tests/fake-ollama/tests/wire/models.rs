use arena_fake_ollama::{FakeOllama, Model, OLLAMA_VERSION};
use reqwest::blocking::Client;
use serde_json::json;

use super::{client, get, json, ndjson, post};

#[test]
fn version_and_root_answer_like_a_running_ollama() {
    let fake = FakeOllama::start();
    assert_eq!(
        json(get(&fake, "/api/version")),
        (200, json!({ "version": OLLAMA_VERSION }))
    );
    assert_eq!(get(&fake, "/").text().unwrap(), "Ollama is running");
}

#[test]
fn tags_list_the_default_models_with_their_details() {
    let fake = FakeOllama::start();
    let (status, body) = json(get(&fake, "/api/tags"));
    assert_eq!(status, 200);
    let models = body["models"].as_array().unwrap();
    let llama = models.iter().find(|m| m["name"] == "llama3.2:1b").unwrap();
    assert_eq!(llama["model"], "llama3.2:1b");
    assert_eq!(llama["digest"].as_str().unwrap().len(), 64);
    assert!(llama["modified_at"].as_str().unwrap().ends_with('Z'));
    assert!(llama["size"].as_u64().unwrap() > 0);
    assert_eq!(
        llama["details"],
        json!({
            "parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "1.2B", "quantization_level": "Q8_0"
        })
    );
    let minilm = models
        .iter()
        .find(|m| m["name"] == "all-minilm:latest")
        .unwrap();
    assert_eq!(minilm["details"]["family"], "bert");
}

#[test]
fn show_describes_a_model_by_model_or_legacy_name() {
    let fake = FakeOllama::start();
    let (status, llama) = json(post(&fake, "/api/show", &json!({ "model": "llama3.2:1b" })));
    assert_eq!(status, 200);
    assert_eq!(llama["capabilities"], json!(["completion"]));
    assert_eq!(llama["model_info"]["general.architecture"], "llama");
    assert_eq!(llama["model_info"]["llama.context_length"], 131072);
    assert_eq!(llama["details"]["quantization_level"], "Q8_0");
    assert!(llama["modelfile"].as_str().unwrap().contains("FROM "));
    assert!(
        llama["template"]
            .as_str()
            .unwrap()
            .contains("{{ .Prompt }}")
    );

    let (status, minilm) = json(post(&fake, "/api/show", &json!({ "name": "all-minilm" })));
    assert_eq!(status, 200);
    assert_eq!(minilm["capabilities"], json!(["embedding"]));
    assert_eq!(minilm["model_info"]["bert.embedding_length"], 384);
    assert_eq!(minilm["model_info"]["bert.context_length"], 512);
}

#[test]
fn an_unknown_model_is_404_with_ollamas_message() {
    let fake = FakeOllama::start();
    let not_found = |path: &str| json(post(&fake, path, &json!({ "model": "nope" })));
    assert_eq!(
        not_found("/api/show"),
        (404, json!({ "error": "model 'nope' not found" }))
    );
    assert_eq!(
        not_found("/api/chat"),
        (404, json!({ "error": "model 'nope' not found" }))
    );
    assert_eq!(
        not_found("/api/generate"),
        (404, json!({ "error": "model 'nope' not found" }))
    );
    assert_eq!(
        not_found("/api/embed"),
        (404, json!({ "error": "model 'nope' not found" }))
    );
}

#[test]
fn bad_bodies_are_400_with_an_error() {
    let fake = FakeOllama::start();
    let send = |body: &'static str| {
        let response = client()
            .post(format!("{}/api/chat", fake.url()))
            .body(body)
            .send()
            .unwrap();
        json(response)
    };
    assert_eq!(send(""), (400, json!({ "error": "missing request body" })));
    let (status, body) = send("{\"model\": ");
    assert_eq!(status, 400);
    assert!(body["error"].is_string());
    let (status, _) = send("{\"model\": \"llama3.2:1b\", \"messages\": \"hi\"}");
    assert_eq!(status, 400);
}

#[test]
fn unknown_paths_are_plain_404_and_wrong_methods_405() {
    let fake = FakeOllama::start();
    let missing = get(&fake, "/api/nothing");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.text().unwrap(), "404 page not found");
    let wrong = get(&fake, "/api/chat");
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.text().unwrap(), "405 method not allowed");
}

#[test]
fn pull_streams_progress_then_the_model_is_installed() {
    let fake = FakeOllama::start();
    fake.add_pullable(Model::chat("qwen2.5:0.5b"));
    let response = post(&fake, "/api/pull", &json!({ "model": "qwen2.5:0.5b" }));
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let lines = ndjson(response);
    let statuses: Vec<&str> = lines
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"pulling manifest"));
    assert_eq!(
        &statuses[statuses.len() - 3..],
        ["verifying sha256 digest", "writing manifest", "success"]
    );
    let layer = &lines[1];
    let digest = layer["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:"));
    assert_eq!(layer["status"], format!("pulling {}", &digest[7..19]));
    let last_layer = &lines[lines.len() - 4];
    assert_eq!(last_layer["completed"], last_layer["total"]);

    let (_, tags) = json(get(&fake, "/api/tags"));
    assert_eq!(tags["models"][0]["name"], "qwen2.5:0.5b", "newest first");
    assert_eq!(
        json(post(
            &fake,
            "/api/show",
            &json!({ "model": "qwen2.5:0.5b" })
        ))
        .0,
        200
    );
}

#[test]
fn pull_without_streaming_answers_one_success() {
    let fake = FakeOllama::start();
    assert!(fake.remove_model("all-minilm"));
    let body = json!({ "model": "all-minilm", "stream": false });
    assert_eq!(
        json(post(&fake, "/api/pull", &body)),
        (200, json!({ "status": "success" }))
    );
    assert_eq!(
        json(post(&fake, "/api/show", &json!({ "model": "all-minilm" }))).0,
        200
    );
}

#[test]
fn pulling_a_model_the_registry_lacks_fails_as_ollama_does() {
    let fake = FakeOllama::start();
    let error = json!({ "error": "pull model manifest: file does not exist" });
    let streamed = post(&fake, "/api/pull", &json!({ "model": "nope:7b" }));
    assert_eq!(
        streamed.status(),
        200,
        "a stream has begun before the registry answers"
    );
    assert_eq!(
        ndjson(streamed),
        [json!({ "status": "pulling manifest" }), error.clone()]
    );
    let whole = post(
        &fake,
        "/api/pull",
        &json!({ "model": "nope:7b", "stream": false }),
    );
    assert_eq!(json(whole), (500, error));
    assert_eq!(
        json(post(&fake, "/api/show", &json!({ "model": "nope:7b" }))).0,
        404
    );
}

#[test]
fn delete_removes_a_model_and_an_unknown_one_is_404() {
    let fake = FakeOllama::start();
    let delete = |model: &str| {
        Client::new()
            .delete(format!("{}/api/delete", fake.url()))
            .json(&json!({ "model": model }))
            .send()
            .unwrap()
    };
    let deleted = delete("llama3.2:1b");
    assert_eq!(deleted.status(), 200);
    assert_eq!(deleted.text().unwrap(), "");
    assert_eq!(
        json(delete("llama3.2:1b")),
        (404, json!({ "error": "model 'llama3.2:1b' not found" }))
    );
    let (_, tags) = json(get(&fake, "/api/tags"));
    assert_eq!(tags["models"].as_array().unwrap().len(), 1);
}

#[test]
fn ps_lists_models_used_within_their_keep_alive() {
    let fake = FakeOllama::start();
    assert_eq!(json(get(&fake, "/api/ps")), (200, json!({ "models": [] })));
    let chat = json!({
        "model": "llama3.2:1b", "stream": false, "keep_alive": "10m",
        "messages": [{ "role": "user", "content": "hi" }], "options": { "num_ctx": 8192 }
    });
    assert_eq!(post(&fake, "/api/chat", &chat).status(), 200);
    let (_, ps) = json(get(&fake, "/api/ps"));
    let running = &ps["models"][0];
    assert_eq!(running["name"], "llama3.2:1b");
    assert_eq!(running["size_vram"], running["size"]);
    assert_eq!(running["context_length"], 8192);
    assert_eq!(running["details"]["family"], "llama");
    assert!(running["expires_at"].as_str().unwrap().ends_with('Z'));

    let unload = json!({ "model": "llama3.2:1b", "messages": [], "keep_alive": 0 });
    let (status, body) = json(post(&fake, "/api/chat", &unload));
    assert_eq!(
        (status, &body["done_reason"], &body["done"]),
        (200, &json!("unload"), &json!(true))
    );
    assert_eq!(json(get(&fake, "/api/ps")).1, json!({ "models": [] }));
}
