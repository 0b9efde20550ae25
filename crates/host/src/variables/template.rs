//! Spin's value templates: literal text with `{{ name }}` expressions, each
//! naming an application variable (`"https://{{ host }}:{{ port }}/x"`).
//!
//! Used by component `variables` and by `allowed_outbound_hosts` entries.
//! There is no escaping: `{{` always opens an expression, and a `}}` outside
//! one is plain text, as in Spin.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// The trimmed text between `{{` and `}}`: an application variable's name.
    Variable(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template with an unclosed `{{`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclosed {
    /// Byte offset of the `{{` that has no `}}`.
    pub at: usize,
}

impl fmt::Display for Unclosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the `{{{{` at byte {} has no closing `}}}}`", self.at)
    }
}

impl std::error::Error for Unclosed {}

impl Template {
    pub fn parse(text: &str) -> Result<Template, Unclosed> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find("{{") else {
                parts.push(Part::Literal(rest.to_owned()));
                break;
            };
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let expression = &rest[open + 2..];
            let Some(close) = expression.find("}}") else {
                return Err(Unclosed {
                    at: text.len() - rest.len() + open,
                });
            };
            parts.push(Part::Variable(expression[..close].trim().to_owned()));
            rest = &expression[close + 2..];
        }
        Ok(Template { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The variable names the template refers to, in order (repeats included).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether the template is plain text, with no expression.
    pub fn is_literal(&self) -> bool {
        self.variables().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(text: &str) -> Part {
        Part::Literal(text.to_owned())
    }

    fn variable(name: &str) -> Part {
        Part::Variable(name.to_owned())
    }

    #[test]
    fn plain_text_is_one_literal_and_empty_text_has_no_parts() {
        assert_eq!(
            Template::parse("plain").unwrap().parts(),
            [literal("plain")]
        );
        assert!(Template::parse("").unwrap().parts().is_empty());
        assert!(Template::parse("plain").unwrap().is_literal());
    }

    #[test]
    fn expressions_are_trimmed_and_split_from_the_text_around_them() {
        let template = Template::parse("https://{{ host }}:{{port}}/x").unwrap();
        assert_eq!(
            template.parts(),
            [
                literal("https://"),
                variable("host"),
                literal(":"),
                variable("port"),
                literal("/x")
            ]
        );
        assert_eq!(template.variables().collect::<Vec<_>>(), ["host", "port"]);
    }

    #[test]
    fn adjacent_expressions_need_no_text_between_them() {
        let template = Template::parse("{{ a }}{{ b }}").unwrap();
        assert_eq!(template.parts(), [variable("a"), variable("b")]);
    }

    #[test]
    fn an_unclosed_expression_is_refused_with_its_position() {
        let error = Template::parse("ok {{ fine }} then {{ broken").unwrap_err();
        assert_eq!(error, Unclosed { at: 19 });
    }

    #[test]
    fn a_lone_closing_brace_pair_is_text() {
        let template = Template::parse("a }} b").unwrap();
        assert_eq!(template.parts(), [literal("a }} b")]);
    }

    #[test]
    fn an_empty_expression_names_the_empty_variable() {
        let template = Template::parse("{{ }}").unwrap();
        assert_eq!(template.parts(), [variable("")]);
    }
}
