//! SmolLM2 text generation with the real model (run in release), installed
//! where the server finds it (`$ARENA_MODELS_DIR`, else the default
//! directory; `./dev test` runs `arena models fetch` first).

use std::ops::ControlFlow;
use std::sync::OnceLock;

use arena_models::assets::{SMOLLM2, Store};
use arena_models::generation::{
    ChatMessage, ChatModel, DoneReason, GenerateError, Generation, OLLAMA_TEMPLATE, Role,
    SamplingOptions,
};

fn model() -> &'static ChatModel {
    static MODEL: OnceLock<ChatModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let store = Store::from_env();
        let gguf = store.path(&SMOLLM2, SMOLLM2.files[0].path);
        ChatModel::load(&gguf)
            .unwrap_or_else(|error| panic!("{error:#} (`./dev models` installs the models)"))
    })
}

fn user(content: &str) -> Vec<u32> {
    let model = model();
    let prompt = model.render_chat(&[ChatMessage {
        role: Role::User,
        content: content.to_owned(),
    }]);
    model.tokenize(&prompt).unwrap()
}

fn greedy(num_predict: usize) -> SamplingOptions {
    SamplingOptions {
        temperature: 0.0,
        num_predict: Some(num_predict),
        ..SamplingOptions::default()
    }
}

/// A generation, with the texts passed to `on_token`.
struct Run {
    calls: Vec<String>,
    generation: Generation,
}

impl Run {
    /// What the caller saw: every call's text, then the tail.
    fn text(&self) -> String {
        self.calls.concat() + &self.generation.tail
    }

    fn generated_ids(&self) -> &[u32] {
        &self.generation.context[self.generation.prompt_tokens..]
    }
}

/// Generates, breaking after `break_after` calls if given, and checks the
/// streaming invariants that hold for every run.
fn run_with(prompt: &[u32], options: &SamplingOptions, break_after: Option<usize>) -> Run {
    let mut calls = Vec::new();
    let generation = model()
        .generate(prompt, options, &mut |text| {
            calls.push(text.to_owned());
            match break_after {
                Some(n) if calls.len() >= n => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        })
        .unwrap();
    let run = Run { calls, generation };
    let g = &run.generation;
    assert_eq!(run.calls.len(), g.generated_tokens, "one call per token");
    assert_eq!(g.prompt_tokens, prompt.len());
    assert_eq!(&g.context[..prompt.len()], prompt);
    assert_eq!(g.context.len(), prompt.len() + g.generated_tokens);
    let decoded = model().detokenize(run.generated_ids());
    if g.done_reason == DoneReason::Stop && !options.stop.is_empty() {
        assert!(
            decoded.starts_with(&run.text()),
            "{decoded:?} / {:?}",
            run.text()
        );
    } else {
        assert_eq!(run.text(), decoded);
    }
    run
}

fn run(prompt: &[u32], options: &SamplingOptions) -> Run {
    run_with(prompt, options, None)
}

const FRANCE: &str = "What is the capital of France?";

/// The greedy answer to [`FRANCE`], shared by the tests that need it.
fn france() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| run(&user(FRANCE), &greedy(40)))
}

#[test]
fn greedy_answers_paris_reproducibly() {
    let first = france();
    assert!(first.text().contains("Paris"), "{:?}", first.text());
    let second = run(&user(FRANCE), &greedy(40));
    assert_eq!(first.text(), second.text());
    assert_eq!(first.generation.context, second.generation.context);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let prompt = user("Write a short poem about the sea.");
    let sampled = |seed| {
        let options = SamplingOptions {
            seed,
            num_predict: Some(16),
            ..SamplingOptions::default()
        };
        assert_eq!(options.temperature, 0.8);
        run(&prompt, &options).generation.context
    };
    assert_eq!(sampled(42), sampled(42));
    let mut distinct: Vec<_> = (1..=4).map(sampled).collect();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "four seeds gave one output");
}

#[test]
fn num_predict_and_num_ctx_end_with_length() {
    let prompt = user(FRANCE);
    let five = run(&prompt, &greedy(5));
    assert_eq!(five.generation.done_reason, DoneReason::Length);
    assert_eq!(five.generation.generated_tokens, 5);

    let full = SamplingOptions {
        num_ctx: prompt.len() + 3,
        num_predict: None,
        ..greedy(0)
    };
    let three = run(&prompt, &full);
    assert_eq!(three.generation.done_reason, DoneReason::Length);
    assert_eq!(three.generation.generated_tokens, 3);
    assert_eq!(three.generated_ids(), &five.generated_ids()[..3]);

    let none = run(&prompt, &greedy(0));
    assert_eq!(none.generation.done_reason, DoneReason::Length);
    assert_eq!(none.generation.generated_tokens, 0);
}

#[test]
fn stop_sequence_truncates_before_it() {
    let answer = france().text();
    let at = answer.find("Paris").expect("the greedy answer names Paris");
    let options = SamplingOptions {
        stop: vec!["Paris".to_owned()],
        ..greedy(40)
    };
    let stopped = run(&user(FRANCE), &options);
    assert_eq!(stopped.generation.done_reason, DoneReason::Stop);
    assert_eq!(stopped.text(), answer[..at]);
    assert_eq!(stopped.generation.tail, "");
}

#[test]
fn end_of_turn_is_not_streamed() {
    // Short enough that the model finishes its turn within the budget.
    let done = run(&user("Reply with just the word: yes"), &greedy(40));
    assert_eq!(done.generation.done_reason, DoneReason::Stop);
    assert!(!done.text().contains("<|im_end|>"), "{:?}", done.text());
}

#[test]
fn break_cancels_at_once() {
    let cancelled = run_with(&user(FRANCE), &greedy(40), Some(3));
    assert_eq!(cancelled.generation.done_reason, DoneReason::Cancelled);
    assert_eq!(cancelled.generation.generated_tokens, 3);
}

#[test]
fn bad_prompts_are_typed_errors() {
    let model = model();
    let prompt = user(FRANCE);
    let mut never = |_: &str| -> ControlFlow<()> { panic!("no token expected") };
    let options = SamplingOptions {
        num_ctx: prompt.len(),
        ..greedy(10)
    };
    match model.generate(&prompt, &options, &mut never) {
        Err(GenerateError::PromptTooLong { tokens, limit }) => {
            assert_eq!((tokens, limit), (prompt.len(), prompt.len()));
        }
        other => panic!("{other:?}"),
    }
    let huge = vec![prompt[0]; model.context_length()];
    assert!(matches!(
        model.generate(&huge, &SamplingOptions::default(), &mut never),
        Err(GenerateError::PromptTooLong { .. })
    ));
    assert!(matches!(
        model.generate(&[], &greedy(10), &mut never),
        Err(GenerateError::EmptyPrompt)
    ));
    assert!(matches!(
        model.generate(&[1, u32::MAX], &greedy(10), &mut never),
        Err(GenerateError::UnknownToken { id: u32::MAX })
    ));
}

#[test]
fn tokenizer_round_trips() {
    let model = model();
    let texts = [
        "",
        "Hello, world!",
        "  leading, trailing   and\t\ttabs \n\n\n  ",
        "Crème brûlée à la française, naïve façade, Ærøskøbing",
        "Emoji: 👍🏽 🇫🇷 👩‍👩‍👧 ✨",
        "中文，日本語のテキスト、한국어",
        "fn main() {\n    println!(\"{}\", 1_000_000 + 42);\n}\n",
        "Numbers 1234567890 3.14159 -0.5e10",
        "<|im_start|>user\nHi<|im_end|>\n",
        "\u{0}\u{7f}\u{ad}\u{fffd}",
    ];
    for text in texts {
        let ids = model.tokenize(text).unwrap();
        assert_eq!(model.detokenize(&ids), text, "{ids:?}");
    }
    assert_eq!(model.tokenize("<|im_start|>").unwrap(), [1]);
    assert_eq!(model.tokenize("<|im_end|>").unwrap(), [2]);
    assert_eq!(model.tokenize("<|endoftext|>").unwrap(), [0]);
    assert_eq!(model.tokenize("").unwrap(), Vec::<u32>::new());
    // Unknown ids are skipped rather than panicking.
    assert_eq!(model.detokenize(&[u32::MAX, 1]), "<|im_start|>");
}

#[test]
fn chat_template_is_smollm2_chatml() {
    let model = model();
    let message = |role, content: &str| ChatMessage {
        role,
        content: content.to_owned(),
    };
    assert_eq!(
        model.render_chat(&[message(Role::User, "Hi")]),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        model.render_chat(&[
            message(Role::System, "Be brief."),
            message(Role::User, "Hi"),
            message(Role::Assistant, "Hello!"),
            message(Role::Tool, "42"),
        ]),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>tool\n42<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    assert!(OLLAMA_TEMPLATE.contains("<|im_start|>"));
}

#[test]
fn description_matches_the_file() {
    let d = model().description();
    assert_eq!(d.architecture, "llama");
    assert_eq!(d.quantization, "Q4_1");
    assert_eq!(d.context_length, 4096);
    assert_eq!(model().context_length(), 4096);
    assert_eq!(d.embedding_length, 576);
    assert!(
        (130_000_000..140_000_000).contains(&d.parameter_count),
        "{}",
        d.parameter_count
    );
    assert_eq!(d.file_size, SMOLLM2.files[0].size);
    assert_eq!(d.metadata["llama.block_count"], 30);
    assert_eq!(d.metadata["general.parameter_count"], d.parameter_count);
    assert_eq!(d.metadata["tokenizer.ggml.model"], "gpt2");
    assert!(d.metadata["tokenizer.ggml.tokens"].is_null());
    assert!(!d.metadata.contains_key("tokenizer.chat_template"));
}

#[test]
fn concurrent_generations_match_sequential_ones() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ChatModel>();
    let other = user("Name three colors.");
    let alone = run(&other, &greedy(24));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&user(FRANCE), &greedy(40)));
        let b = s.spawn(|| run(&other, &greedy(24)));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.text(), france().text());
    assert_eq!(b.text(), alone.text());
}
