//! SmolLM2's ChatML chat template.

use std::fmt::Write;

use super::{ChatMessage, Role};

/// The system prompt SmolLM2's own template adds when the conversation
/// does not start with one.
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// [`render`] in Ollama's Go-template syntax, for `/api/show`.
pub const OLLAMA_TEMPLATE: &str = r#"{{- if .Messages }}
{{- if ne (index .Messages 0).Role "system" }}<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{{ end }}
{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ else }}<|im_start|>system
{{ if .System }}{{ .System }}{{ else }}You are a helpful AI assistant named SmolLM, trained by Hugging Face{{ end }}<|im_end|>
{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"#;

/// Renders the conversation as SmolLM2's `tokenizer.chat_template` does with
/// `add_generation_prompt`, ending with "<|im_start|>assistant\n".
pub(super) fn render(messages: &[ChatMessage]) -> String {
    let mut prompt = String::new();
    if messages.first().is_none_or(|m| m.role != Role::System) {
        turn(&mut prompt, "system", DEFAULT_SYSTEM);
    }
    for message in messages {
        turn(&mut prompt, role_name(message.role), &message.content);
    }
    prompt.push_str("<|im_start|>assistant\n");
    prompt
}

fn turn(prompt: &mut String, role: &str, content: &str) {
    // Writing to a String cannot fail.
    let _ = write!(prompt, "<|im_start|>{role}\n{content}<|im_end|>\n");
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}
