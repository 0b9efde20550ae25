//! The models the fake knows: what `/api/tags`, `/api/show` and `/api/ps` describe, and
//! how a name the client sends is matched against them.

/// The chat model every fake starts with.
pub const DEFAULT_CHAT_MODEL: &str = "llama3.2:1b";

/// The embedding model every fake starts with.
pub const DEFAULT_EMBEDDING_MODEL: &str = "all-minilm:latest";

/// What a model can be asked to do, which is what Ollama reports as its `capabilities`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Answers `/api/chat` and `/api/generate` (capability `completion`).
    Chat,
    /// Only embeds (capability `embedding`): chat and generate answer 400.
    Embedding,
}

/// A model as Ollama describes it. The figures only shape the wire answers; nothing is
/// computed from them except the embedding dimension and the context limit of `/api/embed`.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// `name:tag`; a name without a tag means `:latest`, as in Ollama.
    pub name: String,
    pub kind: ModelKind,
    /// The architecture: `details.family` and the prefix of the `model_info` keys.
    pub family: String,
    /// `details.parameter_size`, e.g. `"1.2B"`.
    pub parameter_size: String,
    /// `details.quantization_level`, e.g. `"Q8_0"`.
    pub quantization_level: String,
    /// `<family>.context_length`, in tokens.
    pub context_length: u64,
    /// `<family>.embedding_length`: also the length of the vectors `/api/embed` returns.
    pub embedding_length: usize,
    /// Bytes on disk (`size` in `/api/tags`, `size` and `size_vram` in `/api/ps`).
    pub size: u64,
}

impl Model {
    /// A chat model shaped like `llama3.2:1b` (llama, 1.2B parameters, Q8_0, 128k context).
    pub fn chat(name: impl Into<String>) -> Model {
        Model {
            name: with_tag(&name.into()),
            kind: ModelKind::Chat,
            family: "llama".into(),
            parameter_size: "1.2B".into(),
            quantization_level: "Q8_0".into(),
            context_length: 131_072,
            embedding_length: 2048,
            size: 1_321_098_329,
        }
    }

    /// An embedding model shaped like `all-minilm` (bert, 23M parameters, F16, 512-token
    /// context) returning vectors of `dimensions` numbers.
    pub fn embedding(name: impl Into<String>, dimensions: usize) -> Model {
        Model {
            name: with_tag(&name.into()),
            kind: ModelKind::Embedding,
            family: "bert".into(),
            parameter_size: "23M".into(),
            quantization_level: "F16".into(),
            context_length: 512,
            embedding_length: dimensions,
            size: 45_960_996,
        }
    }

    /// The models a fake starts with (and can pull again after deleting them):
    /// [`DEFAULT_CHAT_MODEL`] and [`DEFAULT_EMBEDDING_MODEL`] with 384 dimensions.
    pub fn defaults() -> Vec<Model> {
        vec![
            Model::chat(DEFAULT_CHAT_MODEL),
            Model::embedding(DEFAULT_EMBEDDING_MODEL, 384),
        ]
    }

    /// Whether `name`, as a client sent it, means this model: case-insensitive, with a
    /// missing tag read as `:latest` (`all-minilm` is `all-minilm:latest`).
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(&with_tag(name))
    }
}

/// `name` with `:latest` added when it has no tag. A colon before the last `/` belongs to a
/// registry host's port (`localhost:5000/m`), not to a tag.
pub(crate) fn with_tag(name: &str) -> String {
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if last_segment.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_a_tag_means_latest() {
        assert_eq!(with_tag("all-minilm"), "all-minilm:latest");
        assert_eq!(with_tag("llama3.2:1b"), "llama3.2:1b");
        assert_eq!(with_tag("localhost:5000/m"), "localhost:5000/m:latest");
        assert!(Model::embedding("all-minilm", 384).is_named("ALL-MINILM"));
        assert!(!Model::chat("llama3.2:1b").is_named("llama3.2"));
    }
}
