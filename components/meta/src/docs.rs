//! `GET /docs`: the API reference, rendered on the server from the same OpenAPI
//! document `/v1/openapi.json` serves.
//!
//! One self-contained page: inline CSS, no scripts, nothing fetched from elsewhere
//! (the `Content-Security-Policy` forbids it), so it works offline and behind any
//! firewall. Operations are grouped by tag with a table of contents; each shows its
//! parameters, request body and responses, with schemas as JSON linking to the schema
//! sections at the end.

mod html;

use arena_common::Problem;
use arena_common::problem::responses::MethodNotAllowed;
use http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use html::{Anchors, escape, inline, json, prose};

/// Only the inline stylesheet may load; no script, frame, form or remote resource.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Browse the API reference
///
/// A human-readable HTML rendering of `/v1/openapi.json`: every operation grouped by
/// tag, with parameters, request bodies, responses and schemas.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    operation_id = "retrieveDocs",
    security(()),
    responses(
        (status = 200, description = "The reference as one HTML page.", body = String, content_type = "text/html"),
        MethodNotAllowed,
    ),
)]
pub(crate) fn get() -> Result<http::Response<String>, Problem> {
    let document: serde_json::Value = serde_json::from_str(crate::openapi::DOCUMENT)
        .map_err(|error| Problem::internal(format!("reading the OpenAPI document: {error}")))?;
    let mut response = http::Response::new(render(&document));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// The methods an OpenAPI path item may hold, in the order the page lists them.
const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// Where an operation goes when it has no tag.
const UNTAGGED: &str = "other";

/// One operation of the document.
struct Operation<'a> {
    method: &'static str,
    path: &'a str,
    item: &'a Value,
    operation: &'a Value,
    anchor: String,
}

/// A tag's section: its name, description and operations, in document order.
struct Section<'a> {
    name: String,
    description: Option<&'a str>,
    anchor: String,
    operations: Vec<Operation<'a>>,
}

/// The whole page. Takes the document as JSON so it reads any valid OpenAPI document,
/// and a malformed one (a missing member, a wrong type) only loses the parts that are
/// malformed.
fn render(doc: &Value) -> String {
    let mut anchors = Anchors::default();
    let schemas: Vec<(&str, &Value, String)> = object(&doc["components"]["schemas"])
        .map(|(name, schema)| (name.as_str(), schema, anchors.claim_schema(name)))
        .collect();
    let sections = sections(doc, &mut anchors);

    let info = &doc["info"];
    let title = info["title"].as_str().unwrap_or("API reference");
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>{} reference</title>\n", escape(title)));
    out.push_str(STYLE);
    out.push_str("</head>\n<body>\n");

    contents(&sections, &schemas, &mut out);

    out.push_str("<main>\n<header>\n");
    out.push_str(&format!("<h1>{}</h1>\n", escape(title)));
    let mut facts = Vec::new();
    if let Some(version) = info["version"].as_str() {
        facts.push(format!("version <code>{}</code>", escape(version)));
    }
    if let Some(openapi) = doc["openapi"].as_str() {
        facts.push(format!("OpenAPI <code>{}</code>", escape(openapi)));
    }
    for server in array(&doc["servers"]) {
        if let Some(url) = server["url"].as_str() {
            facts.push(format!("server <code>{}</code>", escape(url)));
        }
    }
    facts.push(
        "machine-readable: <a href=\"/v1/openapi.json\"><code>/v1/openapi.json</code></a>".into(),
    );
    out.push_str(&format!("<p class=\"facts\">{}</p>\n", facts.join(" · ")));
    if let Some(description) = info["description"].as_str() {
        out.push_str(&prose(description));
    }
    out.push_str("</header>\n");

    for section in &sections {
        out.push_str(&format!(
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            escape(&section.anchor),
            escape(&section.name)
        ));
        if let Some(description) = section.description {
            out.push_str(&prose(description));
        }
        for operation in &section.operations {
            render_operation(doc, operation, &anchors, &mut out);
        }
        out.push_str("</section>\n");
    }

    if !schemas.is_empty() {
        out.push_str("<section id=\"schemas\">\n<h2>Schemas</h2>\n");
        for (name, schema, anchor) in &schemas {
            out.push_str(&format!(
                "<article id=\"{}\">\n<h3>{}</h3>\n",
                escape(anchor),
                escape(name)
            ));
            let mut shown = (*schema).clone();
            // Shown as prose just above; the JSON need not repeat it.
            if let Some(description) = shown.as_object_mut().and_then(|s| s.remove("description")) {
                out.push_str(&prose(description.as_str().unwrap_or_default()));
            }
            out.push_str(&json(&shown, &anchors));
            out.push_str("</article>\n");
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The operations grouped by their first tag: declared tags first, in declaration
/// order, then tags only operations name, then the untagged.
fn sections<'a>(doc: &'a Value, anchors: &mut Anchors) -> Vec<Section<'a>> {
    let mut sections: Vec<Section<'a>> = array(&doc["tags"])
        .filter_map(|tag| {
            Some(Section {
                name: tag["name"].as_str()?.to_owned(),
                description: tag["description"].as_str(),
                anchor: String::new(),
                operations: Vec::new(),
            })
        })
        .collect();
    for (path, item) in object(&doc["paths"]) {
        for method in METHODS {
            let operation = &item[method];
            if !operation.is_object() {
                continue;
            }
            let tag = operation["tags"][0].as_str().unwrap_or(UNTAGGED);
            let index = match sections.iter().position(|section| section.name == tag) {
                Some(index) => index,
                None => {
                    sections.push(Section {
                        name: tag.to_owned(),
                        description: None,
                        anchor: String::new(),
                        operations: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            sections[index].operations.push(Operation {
                method,
                path,
                item,
                operation,
                anchor: anchors.claim("op", &format!("{method} {path}")),
            });
        }
    }
    sections.retain(|section| !section.operations.is_empty());
    for section in &mut sections {
        section.anchor = anchors.claim("tag", &section.name);
    }
    sections
}

/// The table of contents: each tag with its operations, then the schemas.
fn contents(sections: &[Section], schemas: &[(&str, &Value, String)], out: &mut String) {
    out.push_str("<nav id=\"contents\">\n<h2>Contents</h2>\n<ul>\n");
    for section in sections {
        out.push_str(&format!(
            "<li><a href=\"#{}\">{}</a>\n<ul>\n",
            escape(&section.anchor),
            escape(&section.name)
        ));
        for operation in &section.operations {
            out.push_str(&format!(
                "<li><a href=\"#{}\">{} <code>{}</code></a></li>\n",
                escape(&operation.anchor),
                method_badge(operation.method),
                escape(operation.path)
            ));
        }
        out.push_str("</ul>\n</li>\n");
    }
    if !schemas.is_empty() {
        out.push_str("<li><a href=\"#schemas\">Schemas</a>\n<ul>\n");
        for (name, _, anchor) in schemas {
            out.push_str(&format!(
                "<li><a href=\"#{}\">{}</a></li>\n",
                escape(anchor),
                escape(name)
            ));
        }
        out.push_str("</ul>\n</li>\n");
    }
    out.push_str("</ul>\n</nav>\n");
}

fn method_badge(method: &str) -> String {
    format!(
        "<span class=\"method {method}\">{}</span>",
        method.to_ascii_uppercase()
    )
}

fn render_operation(doc: &Value, op: &Operation, anchors: &Anchors, out: &mut String) {
    let operation = op.operation;
    out.push_str(&format!(
        "<article class=\"operation\" id=\"{}\">\n<h3>{} <code>{}</code></h3>\n",
        escape(&op.anchor),
        method_badge(op.method),
        escape(op.path)
    ));
    if let Some(summary) = operation["summary"].as_str() {
        out.push_str(&format!("<p class=\"summary\">{}</p>\n", inline(summary)));
    }
    if let Some(description) = operation["description"].as_str() {
        out.push_str(&prose(description));
    }
    if let Some(id) = operation["operationId"].as_str() {
        out.push_str(&format!(
            "<p class=\"facts\">operation id <code>{}</code></p>\n",
            escape(id)
        ));
    }
    if operation["deprecated"] == Value::Bool(true) {
        out.push_str("<p class=\"deprecated\">Deprecated.</p>\n");
    }

    // Path-level parameters apply to every operation on the path.
    let parameters: Vec<&Value> = array(&op.item["parameters"])
        .chain(array(&operation["parameters"]))
        .map(|parameter| resolve(doc, parameter).1)
        .collect();
    if !parameters.is_empty() {
        out.push_str("<h4>Parameters</h4>\n<table>\n<tr><th>Name</th><th>In</th><th>Required</th><th>Description</th><th>Schema</th></tr>\n");
        for parameter in parameters {
            out.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(parameter["name"].as_str().unwrap_or("?")),
                escape(parameter["in"].as_str().unwrap_or("?")),
                if parameter["required"] == Value::Bool(true) {
                    "yes"
                } else {
                    "no"
                },
                parameter["description"]
                    .as_str()
                    .map(prose)
                    .unwrap_or_default(),
                if parameter["schema"].is_null() {
                    String::new()
                } else {
                    json(&parameter["schema"], anchors)
                },
            ));
        }
        out.push_str("</table>\n");
    }

    if !operation["requestBody"].is_null() {
        let (_, body) = resolve(doc, &operation["requestBody"]);
        let required = if body["required"] == Value::Bool(true) {
            "required"
        } else {
            "optional"
        };
        out.push_str(&format!(
            "<h4>Request body <span class=\"note\">{required}</span></h4>\n"
        ));
        if let Some(description) = body["description"].as_str() {
            out.push_str(&prose(description));
        }
        render_content(&body["content"], anchors, out);
    }

    let responses: Vec<_> = object(&operation["responses"]).collect();
    if !responses.is_empty() {
        out.push_str("<h4>Responses</h4>\n<dl class=\"responses\">\n");
        for (status, response) in responses {
            let (shared, response) = resolve(doc, response);
            let class = status.chars().next().map_or('x', |c| c);
            out.push_str(&format!(
                "<dt><span class=\"status s{class}\">{}</span>",
                escape(status)
            ));
            if let Some(name) = shared.and_then(|target| target.rsplit('/').next()) {
                out.push_str(&format!(
                    " <span class=\"note\">shared response {}</span>",
                    escape(name)
                ));
            }
            out.push_str("</dt>\n<dd>\n");
            if let Some(description) = response["description"].as_str() {
                out.push_str(&prose(description));
            }
            let headers: Vec<_> = object(&response["headers"]).collect();
            if !headers.is_empty() {
                out.push_str("<p>Headers:</p>\n<ul>\n");
                for (name, header) in headers {
                    let (_, header) = resolve(doc, header);
                    out.push_str(&format!("<li><code>{}</code>", escape(name)));
                    if let Some(description) = header["description"].as_str() {
                        out.push_str(&format!(": {}", inline(description)));
                    }
                    out.push_str("</li>\n");
                }
                out.push_str("</ul>\n");
            }
            render_content(&response["content"], anchors, out);
            out.push_str("</dd>\n");
        }
        out.push_str("</dl>\n");
    }
    out.push_str("</article>\n");
}

/// A `content` map: each media type with its schema and, if given, an example.
fn render_content(content: &Value, anchors: &Anchors, out: &mut String) {
    for (media_type, media) in object(content) {
        out.push_str(&format!(
            "<p class=\"media\"><code>{}</code></p>\n",
            escape(media_type)
        ));
        if !media["schema"].is_null() {
            out.push_str(&json(&media["schema"], anchors));
        }
        if !media["example"].is_null() {
            out.push_str("<p class=\"note\">Example</p>\n");
            out.push_str(&json(&media["example"], anchors));
        }
    }
}

/// Follows a local `$ref` (a few hops at most, so a cycle cannot hang the page),
/// returning the last reference followed and what it points at.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> (Option<&'a str>, &'a Value) {
    let mut current = value;
    let mut via = None;
    for _ in 0..8 {
        let Some(target) = current["$ref"].as_str() else {
            break;
        };
        match target
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
        {
            Some(next) => {
                via = Some(target);
                current = next;
            }
            None => break,
        }
    }
    (via, current)
}

fn object(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flatten()
}

fn array(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

const STYLE: &str = r#"<style>
:root { color-scheme: light dark; --fg: #1d1f23; --muted: #5d6470; --bg: #fff; --panel: #f5f6f8; --line: #dde1e6; --link: #0b5cad; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --muted: #9aa3ad; --bg: #16181c; --panel: #1f2227; --line: #30353c; --link: #6cb0ff; } }
* { box-sizing: border-box; }
body { margin: 0; display: flex; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--link); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre { font: 13px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
nav { position: sticky; top: 0; height: 100vh; overflow-y: auto; flex: 0 0 19rem; padding: 1rem; border-right: 1px solid var(--line); background: var(--panel); }
nav h2 { margin-top: 0; font-size: 1rem; }
nav ul { list-style: none; margin: 0; padding-left: 0.8rem; }
nav > ul { padding-left: 0; }
nav li { margin: 0.2rem 0; }
main { flex: 1; min-width: 0; max-width: 60rem; padding: 1rem 2rem 4rem; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: 0.3rem; margin-top: 2.5rem; }
article { margin: 1.5rem 0; padding: 0.2rem 1rem 0.6rem; border: 1px solid var(--line); border-radius: 6px; }
h3 code { font-size: 1rem; }
h4 { margin: 1rem 0 0.4rem; }
pre.json { background: var(--panel); padding: 0.6rem 0.8rem; border-radius: 4px; overflow-x: auto; margin: 0.3rem 0 0.8rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid var(--line); padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
td p, dd p { margin: 0.2rem 0; }
.facts, .note { color: var(--muted); font-size: 0.9em; }
.summary { font-weight: 600; }
.deprecated { color: #b3261e; font-weight: 600; }
.method { display: inline-block; min-width: 4.2em; text-align: center; border-radius: 3px; padding: 0 0.3em; color: #fff; font: 700 12px/1.6 ui-monospace, monospace; background: #6b7280; }
.method.get { background: #1f7a4d; } .method.post { background: #0b5cad; } .method.put, .method.patch { background: #a15c00; } .method.delete { background: #b3261e; }
.status { font: 700 13px ui-monospace, monospace; padding: 0 0.35em; border-radius: 3px; background: var(--panel); }
.s2 { color: #1f7a4d; } .s4 { color: #a15c00; } .s5 { color: #b3261e; }
dd { margin: 0 0 0.8rem 1rem; }
@media (max-width: 50rem) { body { display: block; } nav { position: static; height: auto; border-right: 0; border-bottom: 1px solid var(--line); } main { padding: 1rem; } }
</style>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page() -> String {
        render(&serde_json::from_str(crate::openapi::DOCUMENT).unwrap())
    }

    /// Each `id="..."` on the page.
    fn ids(html: &str) -> Vec<&str> {
        html.split(" id=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    #[test]
    fn the_page_lists_every_route_with_an_anchor_and_a_contents_entry() {
        let html = page();
        for anchor in ["op-get-v1-health", "op-get-v1-openapi-json", "op-get-docs"] {
            assert!(
                html.contains(&format!("id=\"{anchor}\"")),
                "{anchor} missing"
            );
            assert!(
                html.contains(&format!("href=\"#{anchor}\"")),
                "{anchor} not in contents"
            );
        }
        assert!(html.contains("id=\"tag-meta\""));
        assert!(html.contains("Check that the API is up"));
    }

    #[test]
    fn every_anchor_is_unique_and_every_link_lands() {
        let html = page();
        let ids = ids(&html);
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        for link in html
            .split("href=\"#")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
        {
            assert!(ids.contains(&link), "link to missing #{link}");
        }
    }

    #[test]
    fn shared_problem_responses_are_shown_where_they_are_used() {
        let html = page();
        assert!(html.contains("shared response MethodNotAllowed"));
        assert!(html.contains("<code>application/problem+json</code>"));
        assert!(html.contains("<code>Allow</code>"));
        assert!(html.contains(r##"<a href="#schema-problem">"##));
        assert!(html.contains("id=\"schema-problemcode\""));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let html = page();
        assert!(!html.contains("<script"));
        assert!(!html.contains("src="));
        assert!(!html.contains("<link"));
        assert!(!html.contains("http://") && !html.contains("https://cdn"));
    }

    #[test]
    fn text_from_the_document_is_escaped_everywhere() {
        let evil = "<script>alert('x')</script>&\"";
        let doc = json!({
            "openapi": evil,
            "info": { "title": evil, "version": evil, "description": evil },
            "servers": [{ "url": evil }],
            "tags": [{ "name": evil, "description": evil }],
            "paths": {
                evil: {
                    "parameters": [{ "name": evil, "in": evil, "description": evil, "schema": { "title": evil } }],
                    "get": {
                        "tags": [evil],
                        "summary": evil,
                        "description": evil,
                        "operationId": evil,
                        "requestBody": { "description": evil, "content": { evil: { "schema": { "$ref": evil }, "example": evil } } },
                        "responses": { evil: { "description": evil, "headers": { evil: { "description": evil } }, "content": { evil: { "schema": { evil: evil } } } } }
                    }
                }
            },
            "components": { "schemas": { evil: { "description": evil, "enum": [evil] } } }
        });
        let html = render(&doc);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert('x')"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    }

    #[test]
    fn a_malformed_document_renders_what_it_can_without_panicking() {
        for doc in [
            json!(null),
            json!([]),
            json!({ "paths": [], "tags": {}, "info": 3 }),
            json!({ "paths": { "/x": { "get": { "responses": { "200": { "$ref": "#/nowhere" } }, "parameters": [3] } } } }),
            json!({ "paths": { "/loop": { "get": { "responses": { "200": { "$ref": "#/paths/~1loop/get/responses/200" } } } } } }),
        ] {
            let html = render(&doc);
            assert!(html.starts_with("<!doctype html>"));
            assert!(html.ends_with("</html>\n"));
        }
    }

    #[test]
    fn untagged_operations_get_a_section_of_their_own() {
        let doc = json!({ "paths": { "/a": { "get": { "summary": "A" } } } });
        let html = render(&doc);
        assert!(html.contains("id=\"tag-other\""));
        assert!(html.contains("id=\"op-get-a\""));
    }

    #[test]
    fn docs_response_forbids_loading_anything_else() {
        let response = get().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            response.headers()[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
    }
}
