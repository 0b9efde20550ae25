//! The small pieces of HTML the reference is built from. Every piece of text that came
//! from the OpenAPI document goes through [`escape`] (directly or via [`prose`] and
//! [`json`]): descriptions are written by people and may contain `<`, `&` or quotes.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// `text` made safe for element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Hands out unique `id`s, so two names that slug alike (`Agent`, `agent`) still get
/// anchors of their own.
#[derive(Default)]
pub(super) struct Anchors {
    used: HashSet<String>,
    schemas: HashMap<String, String>,
}

impl Anchors {
    /// A fresh id of the form `<prefix>-<slug of name>`, suffixed `-2`, `-3`... if taken.
    pub(super) fn claim(&mut self, prefix: &str, name: &str) -> String {
        let base = format!("{prefix}-{}", slug(name));
        let mut id = base.clone();
        let mut n = 1;
        while !self.used.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }

    /// Claims the anchor of the schema called `name`, for [`json`] to link `$ref`s to.
    pub(super) fn claim_schema(&mut self, name: &str) -> String {
        let id = self.claim("schema", name);
        self.schemas.insert(name.to_owned(), id.clone());
        id
    }

    fn schema(&self, name: &str) -> Option<&str> {
        self.schemas.get(name).map(String::as_str)
    }
}

/// Lowercase ASCII letters and digits, runs of anything else as one `-`.
pub(super) fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// A description as HTML. OpenAPI descriptions are CommonMark; the reference needs
/// only the part Arena's doc comments use: paragraphs (blank-line separated, lines
/// reflowed), `- ` bullet lists, and `code` spans. Anything else shows as plain text.
pub(super) fn prose(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::new();
    for block in text.split("\n\n") {
        let mut paragraph: Vec<&str> = Vec::new();
        let mut items: Vec<String> = Vec::new();
        for line in block.lines() {
            let trimmed = line.trim();
            if let Some(item) = trimmed
                .strip_prefix("- ")
                .or_else(|| trimmed.strip_prefix("* "))
            {
                flush_paragraph(&mut paragraph, &mut out);
                items.push(item.to_owned());
            } else if trimmed.is_empty() {
                continue;
            } else if let (Some(last), true) =
                (items.last_mut(), line.starts_with(char::is_whitespace))
            {
                last.push(' ');
                last.push_str(trimmed);
            } else {
                flush_items(&mut items, &mut out);
                paragraph.push(trimmed);
            }
        }
        flush_paragraph(&mut paragraph, &mut out);
        flush_items(&mut items, &mut out);
    }
    out
}

fn flush_paragraph(lines: &mut Vec<&str>, out: &mut String) {
    if !lines.is_empty() {
        out.push_str("<p>");
        out.push_str(&inline(&lines.join(" ")));
        out.push_str("</p>\n");
        lines.clear();
    }
}

fn flush_items(items: &mut Vec<String>, out: &mut String) {
    if !items.is_empty() {
        out.push_str("<ul>\n");
        for item in items.drain(..) {
            out.push_str("<li>");
            out.push_str(&inline(&item));
            out.push_str("</li>\n");
        }
        out.push_str("</ul>\n");
    }
}

/// One line of prose: escaped, with balanced backticks as `<code>`.
pub(super) fn inline(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len().is_multiple_of(2) {
        // An unmatched backtick: better shown as typed than half in code.
        return escape(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// `value` pretty-printed as JSON in a `<pre>`, every string escaped, and each
/// `"$ref": "#/components/schemas/X"` a link to that schema's section.
pub(super) fn json(value: &Value, anchors: &Anchors) -> String {
    let mut out = String::from("<pre class=\"json\"><code>");
    write_json(value, 0, anchors, &mut out);
    out.push_str("</code></pre>\n");
    out
}

const INDENT: &str = "  ";

fn write_json(value: &Value, depth: usize, anchors: &Anchors, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&value.to_string()),
        // Value's Display writes the string JSON-escaped, quotes included.
        Value::String(_) => out.push_str(&escape(&value.to_string())),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&INDENT.repeat(depth + 1));
                write_json(item, depth + 1, anchors, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&INDENT.repeat(depth));
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            for (i, (key, inner)) in map.iter().enumerate() {
                out.push_str(&INDENT.repeat(depth + 1));
                out.push_str(&escape(&Value::from(key.as_str()).to_string()));
                out.push_str(": ");
                match schema_link(key, inner, anchors) {
                    Some(anchor) => {
                        out.push_str("<a href=\"#");
                        out.push_str(&escape(anchor));
                        out.push_str("\">");
                        write_json(inner, depth + 1, anchors, out);
                        out.push_str("</a>");
                    }
                    None => write_json(inner, depth + 1, anchors, out),
                }
                out.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            out.push_str(&INDENT.repeat(depth));
            out.push('}');
        }
    }
}

/// The anchor a `"$ref"` member points to, when it names a schema on the page.
fn schema_link<'a>(key: &str, value: &Value, anchors: &'a Anchors) -> Option<&'a str> {
    let name = value.as_str()?.strip_prefix("#/components/schemas/")?;
    (key == "$ref").then_some(())?;
    anchors.schema(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escape_neutralises_every_character_html_treats_specially() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain — text"), "plain — text");
    }

    #[test]
    fn slugs_are_lowercase_words_joined_by_dashes() {
        assert_eq!(slug("GET /v1/agents/{id}"), "get-v1-agents-id");
        assert_eq!(slug("<<>>"), "x");
        assert_eq!(slug("Problem"), "problem");
    }

    #[test]
    fn anchors_that_slug_alike_stay_distinct() {
        let mut anchors = Anchors::default();
        assert_eq!(anchors.claim_schema("Agent"), "schema-agent");
        assert_eq!(anchors.claim_schema("agent"), "schema-agent-2");
        assert_eq!(anchors.claim("op", "GET /a"), "op-get-a");
    }

    #[test]
    fn prose_makes_paragraphs_lists_and_code_spans() {
        let html = prose("First line\ncontinues `here`.\n\n- one\n- two `<b>`\n  wrapped\nAfter.");
        assert_eq!(
            html,
            "<p>First line continues <code>here</code>.</p>\n\
             <ul>\n<li>one</li>\n<li>two <code>&lt;b&gt;</code> wrapped</li>\n</ul>\n\
             <p>After.</p>\n"
        );
    }

    #[test]
    fn an_unmatched_backtick_is_shown_as_typed() {
        assert_eq!(inline("a ` <b>"), "a ` &lt;b&gt;");
    }

    #[test]
    fn json_escapes_strings_and_keys() {
        let mut anchors = Anchors::default();
        anchors.claim_schema("Problem");
        let html = json(
            &json!({ "<k>": "</code><script>", "n": [1, true, null] }),
            &anchors,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<k>"), "{html}");
        assert!(
            html.contains("&quot;&lt;/code&gt;&lt;script&gt;&quot;"),
            "{html}"
        );
        assert!(
            html.contains("[\n    1,\n    true,\n    null\n  ]"),
            "{html}"
        );
    }

    #[test]
    fn json_links_schema_refs_to_their_sections() {
        let mut anchors = Anchors::default();
        anchors.claim_schema("Problem");
        let html = json(&json!({ "$ref": "#/components/schemas/Problem" }), &anchors);
        assert!(
            html.contains(
                r##"<a href="#schema-problem">&quot;#/components/schemas/Problem&quot;</a>"##
            ),
            "{html}"
        );
        // A ref to a schema the page does not show stays plain text.
        let html = json(&json!({ "$ref": "#/components/schemas/Missing" }), &anchors);
        assert!(!html.contains("<a "), "{html}");
    }
}
