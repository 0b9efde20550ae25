//! The models the embedded server offers, under the names Ollama's library
//! gives them, so a deployment can switch between a real Ollama and this one
//! without renaming its agents' models.

use crate::assets::{self, Asset};

/// What a model is for: Ollama's `capabilities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Chat and completion (`/api/chat`, `/api/generate`).
    Completion,
    /// Sentence embeddings (`/api/embed`).
    Embedding,
}

impl Kind {
    pub fn capability(self) -> &'static str {
        match self {
            Kind::Completion => "completion",
            Kind::Embedding => "embedding",
        }
    }
}

/// One embedded model and how `/api/tags` describes it.
#[derive(Debug)]
pub struct Entry {
    /// The canonical `name:tag`.
    pub name: &'static str,
    /// Other names it answers to (Ollama adds `:latest` to a bare name).
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub asset: &'static Asset,
    /// The file whose size and digest `/api/tags` reports.
    pub weights: &'static str,
    pub format: &'static str,
    pub family: &'static str,
    pub parameter_size: &'static str,
    pub quantization_level: &'static str,
    pub license: &'static str,
}

pub const SMOLLM2: Entry = Entry {
    name: "smollm2:135m",
    aliases: &["smollm2", "smollm2:latest", "smollm2:135m-instruct-q4_1"],
    kind: Kind::Completion,
    asset: &assets::SMOLLM2,
    weights: "SmolLM2-135M-Instruct.Q4_1.gguf",
    format: "gguf",
    family: "llama",
    parameter_size: "135M",
    quantization_level: "Q4_1",
    license: "Apache-2.0",
};

pub const MINILM: Entry = Entry {
    name: "all-minilm:l6-v2",
    aliases: &["all-minilm", "all-minilm:latest", "all-minilm:22m"],
    kind: Kind::Embedding,
    asset: &assets::MINILM,
    weights: "model.safetensors",
    format: "safetensors",
    family: "bert",
    parameter_size: "23M",
    quantization_level: "F32",
    license: "Apache-2.0",
};

pub const ALL: [&Entry; 2] = [&SMOLLM2, &MINILM];

/// The entry a request's model name means; names are case-insensitive, as in Ollama.
pub fn find(name: &str) -> Option<&'static Entry> {
    let name = name.trim().to_ascii_lowercase();
    ALL.into_iter()
        .find(|entry| entry.name == name || entry.aliases.contains(&name.as_str()))
}

impl Entry {
    /// The weights file's pinned digest, as Ollama's `digest` (hex sha256).
    pub fn digest(&self) -> &'static str {
        self.asset
            .files
            .iter()
            .find(|file| file.path == self.weights)
            .map_or("", |file| file.sha256)
    }

    pub fn size(&self) -> u64 {
        self.asset.files.iter().map(|file| file.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_find_their_model_whatever_the_case() {
        assert_eq!(find("smollm2:135m").unwrap().name, SMOLLM2.name);
        assert_eq!(find("SmolLM2").unwrap().name, SMOLLM2.name);
        assert_eq!(find("all-minilm:latest").unwrap().name, MINILM.name);
        assert!(find("llama3.2:1b").is_none());
        assert!(find("smollm2:1.7b").is_none());
    }

    #[test]
    fn every_entry_names_a_file_of_its_asset() {
        for entry in ALL {
            assert!(!entry.digest().is_empty(), "{}", entry.name);
        }
    }
}
