//! all-MiniLM-L6-v2 embeddings against the real model, installed where the
//! server finds it (`$ARENA_MODELS_DIR`, else the default directory; `./dev
//! test` runs `arena models fetch` first).

use std::sync::OnceLock;

use arena_models::assets::Store;
use arena_models::embedding::{EmbedError, Embedder, Embeddings};

fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        Embedder::load(&Store::from_env())
            .unwrap_or_else(|error| panic!("{error:#} (`./dev models` installs the models)"))
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
        0.0634959,
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
