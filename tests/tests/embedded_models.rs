//! The embedded models end to end: `arena models serve` (the Ollama API the host
//! serves where no Ollama runs) with the real SmolLM2 and all-MiniLM models,
//! driven over HTTP as an Ollama client would. Each test starts its own server,
//! so each measures only its own process.
//!
//! The models come from `$ARENA_MODELS_DIR` or the default directory; `./dev test`
//! installs them first (`arena models fetch`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arena_e2e::Arena;
use serde_json::{Value, json};

/// A question the model answers the same way every time at temperature 0.
fn capital_of_france(stream: bool) -> Value {
    json!({
        "model": "smollm2:135m",
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "options": {"temperature": 0, "num_predict": 48}
    })
}

fn post(server: &Arena, path: &str, body: &Value) -> reqwest::blocking::Response {
    server
        .client()
        .post(format!("{}{path}", server.url))
        .json(body)
        .send()
        .unwrap()
}

/// The lines of an NDJSON stream, read to its end.
fn ndjson(response: reqwest::blocking::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    BufReader::new(response)
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

fn error_of(response: reqwest::blocking::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().unwrap();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    body["error"].as_str().unwrap().to_owned()
}

#[test]
fn a_streamed_chat_answers_paris_and_counts_exactly_the_tokens_it_streamed() {
    let server = Arena::start_models(&[]);
    let lines = ndjson(post(&server, "/api/chat", &capital_of_france(true)));

    let (last, tokens) = lines.split_last().unwrap();
    let answer: String = tokens
        .iter()
        .map(|line| {
            assert_eq!(line["done"], false);
            assert_eq!(line["model"], "smollm2:135m");
            assert_eq!(line["message"]["role"], "assistant");
            line["message"]["content"].as_str().unwrap()
        })
        .chain([last["message"]["content"].as_str().unwrap()])
        .collect();
    assert!(answer.contains("Paris"), "{answer:?}");

    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], tokens.len(), "{last}");
    assert!(matches!(
        last["done_reason"].as_str(),
        Some("stop" | "length")
    ));
    assert!(last["prompt_eval_count"].as_u64().unwrap() > 10, "{last}");
    let nanos = |field: &str| last[field].as_u64().unwrap();
    assert!(nanos("prompt_eval_duration") > 0 && nanos("eval_duration") > 0);
    assert!(
        nanos("total_duration")
            >= nanos("load_duration") + nanos("prompt_eval_duration") + nanos("eval_duration"),
        "{last}"
    );
}

#[test]
fn greedy_answers_repeat_and_the_options_are_honoured() {
    let server = Arena::start_models(&[]);
    let answer = |body: &Value| -> Value {
        let response = post(&server, "/api/chat", body);
        assert_eq!(response.status(), 200);
        response.json().unwrap()
    };

    let first = answer(&capital_of_france(false));
    let second = answer(&capital_of_france(false));
    assert_eq!(first["message"], second["message"]);
    assert_eq!(first["eval_count"], second["eval_count"]);

    let mut short = capital_of_france(false);
    short["options"]["num_predict"] = json!(3);
    let short = answer(&short);
    assert_eq!(short["eval_count"], 3);
    assert_eq!(short["done_reason"], "length");

    // A stop sequence taken from the greedy answer ends it just before.
    let text = first["message"]["content"].as_str().unwrap();
    let stop = "Paris";
    let mut stopped = capital_of_france(false);
    stopped["options"]["stop"] = json!([stop]);
    let stopped = answer(&stopped);
    assert_eq!(stopped["done_reason"], "stop");
    assert_eq!(
        stopped["message"]["content"].as_str().unwrap(),
        &text[..text.find(stop).unwrap()]
    );

    // /api/generate: the same model, a prompt, and the conversation as token ids.
    let generated = post(
        &server,
        "/api/generate",
        &json!({"model": "smollm2", "prompt": "Name a colour.", "stream": false,
                "options": {"temperature": 0, "num_predict": 8}}),
    );
    assert_eq!(generated.status(), 200);
    let generated: Value = generated.json().unwrap();
    let context = generated["context"].as_array().unwrap();
    assert_eq!(
        context.len() as u64,
        generated["prompt_eval_count"].as_u64().unwrap()
            + generated["eval_count"].as_u64().unwrap()
    );
    assert!(!generated["response"].as_str().unwrap().is_empty());
}

#[test]
fn paraphrases_embed_closer_than_unrelated_texts_in_one_batch() {
    let server = Arena::start_models(&[]);
    let texts = [
        "The cat sits on the mat.",
        "A cat is sitting on a rug.",
        "Quarterly revenue grew by eight percent.",
        "How do I reset my password?",
        "I forgot my password and need to change it.",
    ];
    let response = post(
        &server,
        "/api/embed",
        &json!({"model": "all-minilm", "input": texts}),
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["model"], "all-minilm:l6-v2");
    assert!(body["prompt_eval_count"].as_u64().unwrap() >= texts.len() as u64);
    let vectors: Vec<Vec<f64>> = serde_json::from_value(body["embeddings"].clone()).unwrap();
    assert_eq!(vectors.len(), texts.len());
    assert!(vectors.iter().all(|vector| vector.len() == 384));
    let cosine = |a: usize, b: usize| -> f64 {
        vectors[a].iter().zip(&vectors[b]).map(|(x, y)| x * y).sum()
    };
    for (a, b) in [(0, 1), (3, 4)] {
        for unrelated in [(0, 2), (1, 3), (2, 4), (0, 4)] {
            assert!(
                cosine(a, b) > cosine(unrelated.0, unrelated.1) + 0.2,
                "paraphrases {a},{b}: {} vs {unrelated:?}: {}",
                cosine(a, b),
                cosine(unrelated.0, unrelated.1)
            );
        }
    }

    // One text alone embeds as it did in the batch.
    let single = post(
        &server,
        "/api/embed",
        &json!({"model": "all-minilm", "input": texts[2]}),
    );
    let single: Value = single.json().unwrap();
    let alone: Vec<f64> = serde_json::from_value(single["embeddings"][0].clone()).unwrap();
    let drift = alone
        .iter()
        .zip(&vectors[2])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(drift < 1e-4, "{drift}");
}

#[test]
fn unknown_models_and_bad_requests_get_ollamas_error_shapes() {
    let server = Arena::start_models(&[]);
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    assert_eq!(
        error_of(post(&server, "/api/chat", &chat("llama3.2:1b")), 404),
        "model 'llama3.2:1b' not found"
    );
    assert_eq!(
        error_of(
            post(
                &server,
                "/api/embed",
                &json!({"model": "nope", "input": "x"})
            ),
            404
        ),
        "model 'nope' not found"
    );
    assert_eq!(
        error_of(post(&server, "/api/show", &json!({"model": "nope"})), 404),
        "model 'nope' not found"
    );
    assert_eq!(
        error_of(post(&server, "/api/chat", &json!({"messages": []})), 400),
        "model is required"
    );
    let embedding_chat = error_of(post(&server, "/api/chat", &chat("all-minilm")), 400);
    assert!(
        embedding_chat.contains("does not support generate"),
        "{embedding_chat}"
    );
    let chat_embed = error_of(
        post(
            &server,
            "/api/embed",
            &json!({"model": "smollm2:135m", "input": "x"}),
        ),
        400,
    );
    assert!(
        chat_embed.contains("does not support embeddings"),
        "{chat_embed}"
    );

    let mut hot = chat("smollm2:135m");
    hot["options"] = json!({"temperature": -1});
    let hot = error_of(post(&server, "/api/chat", &hot), 400);
    assert!(hot.contains("\"temperature\""), "{hot}");
    let mut tools = chat("smollm2:135m");
    tools["tools"] = json!([{"type": "function"}]);
    assert!(error_of(post(&server, "/api/chat", &tools), 400).contains("tools"));
    let mut role = chat("smollm2:135m");
    role["messages"][0]["role"] = json!("narrator");
    assert!(error_of(post(&server, "/api/chat", &role), 400).contains("narrator"));

    let malformed = server
        .client()
        .post(format!("{}/api/chat", server.url))
        .body("{\"model\": ")
        .send()
        .unwrap();
    assert!(!error_of(malformed, 400).is_empty());

    // None of it needed a model loaded.
    let running: Value = server.get("/api/ps").json().unwrap();
    assert_eq!(running["models"], json!([]));

    // A conversation's `context` with an id no token has: refused before any
    // line is streamed.
    for stream in [true, false] {
        let unknown = post(
            &server,
            "/api/generate",
            &json!({"model": "smollm2:135m", "prompt": "hi", "context": [999_999], "stream": stream}),
        );
        assert!(error_of(unknown, 400).contains("999999"));
    }

    // Too long even alone: the latest message is never dropped to make room.
    let mut long = chat("smollm2:135m");
    long["messages"][0]["content"] = json!("word ".repeat(300));
    long["options"] = json!({"num_ctx": 64});
    let long = error_of(post(&server, "/api/chat", &long), 400);
    assert!(long.contains("exceeds the context length"), "{long}");
}

#[test]
fn the_models_are_listed_shown_and_loaded_on_first_use() {
    let server = Arena::start_models(&[]);
    assert_eq!(server.get("/").text().unwrap(), "Ollama is running");
    let version: Value = server.get("/api/version").json().unwrap();
    assert!(version["version"].as_str().unwrap().starts_with("0."));

    let tags: Value = server.get("/api/tags").json().unwrap();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["smollm2:135m", "all-minilm:l6-v2"]);
    let smollm = &tags["models"][0];
    assert_eq!(smollm["details"]["family"], "llama");
    assert_eq!(smollm["details"]["quantization_level"], "Q4_1");
    assert_eq!(smollm["digest"].as_str().unwrap().len(), 64);
    assert!(smollm["size"].as_u64().unwrap() > 90_000_000);

    let running: Value = server.get("/api/ps").json().unwrap();
    assert_eq!(
        running["models"],
        json!([]),
        "nothing is loaded before it is used"
    );

    let show = post(&server, "/api/show", &json!({"model": "smollm2:135m"}));
    let show: Value = show.json().unwrap();
    assert_eq!(show["capabilities"], json!(["completion"]));
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert_eq!(show["model_info"]["llama.context_length"], 4096);
    assert!(show["template"].as_str().unwrap().contains("<|im_start|>"));
    let show = post(&server, "/api/show", &json!({"name": "all-minilm"}));
    let show: Value = show.json().unwrap();
    assert_eq!(show["capabilities"], json!(["embedding"]));
    assert_eq!(show["model_info"]["bert.embedding_length"], 384);

    // The chat model was described from its file's header, without loading it;
    // a first chat loads it.
    let loaded = |server: &Arena| -> Vec<String> {
        let running: Value = server.get("/api/ps").json().unwrap();
        running["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|model| model["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(loaded(&server), ["all-minilm:l6-v2"]);
    assert_eq!(
        post(&server, "/api/chat", &capital_of_france(false)).status(),
        200
    );
    assert_eq!(loaded(&server), ["smollm2:135m", "all-minilm:l6-v2"]);

    // keep_alive 0 unloads, as in Ollama.
    let unloaded = post(
        &server,
        "/api/generate",
        &json!({"model": "smollm2:135m", "keep_alive": 0}),
    );
    let unloaded: Value = unloaded.json().unwrap();
    assert_eq!(unloaded["done_reason"], "unload");
    assert_eq!(loaded(&server), ["all-minilm:l6-v2"]);

    let pull = post(
        &server,
        "/api/pull",
        &json!({"model": "smollm2:135m", "stream": false}),
    );
    assert_eq!(pull.status(), 200);
    assert_eq!(pull.json::<Value>().unwrap(), json!({"status": "success"}));
    let pull = post(&server, "/api/pull", &json!({"model": "llama3.2:1b"}));
    assert!(error_of(pull, 400).contains("built-in models"));
    let delete = server
        .client()
        .delete(format!("{}/api/delete", server.url))
        .json(&json!({"model": "smollm2:135m"}))
        .send()
        .unwrap();
    assert!(error_of(delete, 400).contains("cannot be deleted"));
}

#[test]
fn a_dropped_stream_stops_the_generation_and_the_cpu_goes_quiet() {
    let server = Arena::start_models(&[]);
    let mut endless = capital_of_france(true);
    endless["messages"][0]["content"] = json!("Write a very long story about the sea.");
    endless["options"] = json!({"temperature": 0.8, "seed": 7, "num_predict": -1});
    let response = post(&server, "/api/chat", &endless);
    let mut lines = BufReader::new(response).lines();
    for _ in 0..5 {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(line["done"], false);
    }
    // Generating, the process is busy, even sharing the cores with other tests:
    // the measure below can tell.
    let busy = cpu_share(server.pid(), Duration::from_millis(500));
    assert!(busy > 0.2, "a generating server used {busy:.2} of a core");

    drop(lines);
    std::thread::sleep(Duration::from_millis(300));
    let quiet = cpu_share(server.pid(), Duration::from_secs(1));
    assert!(
        quiet < 0.05,
        "after the client left the server used {quiet:.2} of a core"
    );

    // And it still answers.
    let answer = post(&server, "/api/chat", &capital_of_france(false));
    assert_eq!(answer.status(), 200);
}

#[test]
fn missing_or_corrupt_model_files_say_how_to_fetch_them() {
    let empty = TempDir::new("empty");
    let server = Arena::start_models(&[("ARENA_MODELS_DIR", empty.path())]);
    let tags: Value = server.get("/api/tags").json().unwrap();
    assert_eq!(tags["models"], json!([]));
    let missing = error_of(post(&server, "/api/chat", &capital_of_france(false)), 404);
    assert!(missing.contains("arena models fetch"), "{missing}");
    drop(server);

    // A store whose embedding tokenizer lost a byte: the rest links to the real files.
    let installed = models_dir();
    let corrupt = TempDir::new("corrupt");
    link_tree(&installed, &corrupt.0);
    let tokenizer = corrupt.0.join("all-minilm-l6-v2/tokenizer.json");
    let mut bytes = std::fs::read(&tokenizer).unwrap();
    std::fs::remove_file(&tokenizer).unwrap();
    bytes[1000] ^= 0x20;
    std::fs::write(&tokenizer, bytes).unwrap();
    let server = Arena::start_models(&[("ARENA_MODELS_DIR", corrupt.path())]);
    let error = error_of(
        post(
            &server,
            "/api/embed",
            &json!({"model": "all-minilm", "input": "hello"}),
        ),
        500,
    );
    assert!(error.contains("tokenizer.json"), "{error}");
    assert!(error.contains("arena models fetch"), "{error}");
    // The chat model is intact and still works.
    assert_eq!(
        post(&server, "/api/chat", &capital_of_france(false)).status(),
        200
    );
}

/// The share of one core `pid` used over `window`, from /proc.
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name (which may hold spaces): utime, stime are 14, 15.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let ticks_per_second: f64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let (before, started) = (ticks(), Instant::now());
    std::thread::sleep(window);
    let used = (ticks() - before) as f64 / ticks_per_second;
    used / started.elapsed().as_secs_f64()
}

/// Where the installed models are, as the server finds them.
fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARENA_MODELS_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("arena/models")
}

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("arena-models-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mirrors `from` into `to` with a symbolic link per file.
fn link_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            link_tree(&entry.path(), &target);
        } else {
            std::os::unix::fs::symlink(entry.path(), &target).unwrap();
        }
    }
}
