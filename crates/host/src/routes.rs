//! Spin's HTTP routing: exact routes, `:name` parameters and trailing `/...`
//! wildcards, the most specific route winning.
//!
//! Specificity is decided segment by segment from the left: a literal segment
//! beats a parameter, a longer pattern beats its own prefix, and an exact
//! route beats a wildcard over the same prefix. So for `/v1/health`, the route
//! `/v1/health` wins over `/v1/:name`, which wins over `/v1/...`, which wins
//! over `/...`.

use std::cmp::Reverse;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed route such as `/v1/agents/:id` or `/v1/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    segments: Vec<Segment>,
    wildcard: bool,
}

impl Pattern {
    fn parse(route: &str) -> Pattern {
        let (prefix, wildcard) = match route.strip_suffix("/...") {
            Some(prefix) => (prefix, true),
            None => (route, false),
        };
        let segments = split_path(prefix)
            .map(|segment| match segment.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(segment.to_owned()),
            })
            .collect();
        Pattern { segments, wildcard }
    }

    /// Orders patterns from least to most specific (see the module docs).
    fn specificity(&self) -> (Vec<u8>, bool) {
        let ranks = self
            .segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(_) => 2,
                Segment::Param(_) => 1,
            })
            .collect();
        (ranks, !self.wildcard)
    }

    /// Matches `path`; on success returns the parameters and the path info
    /// (what the wildcard covered, `""` for exact routes).
    fn matches(&self, path: &str) -> Option<(Vec<(String, String)>, String)> {
        let mut rest = split_path(path);
        let mut params = Vec::new();
        for segment in &self.segments {
            let actual = rest.next()?;
            match segment {
                Segment::Literal(expected) if expected == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), actual.to_owned())),
            }
        }
        let remainder: Vec<&str> = rest.collect();
        match (self.wildcard, remainder.is_empty()) {
            (_, true) => Some((params, String::new())),
            (true, false) => Some((params, format!("/{}", remainder.join("/")))),
            (false, false) => None,
        }
    }
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

/// Which component serves a request, and the Spin metadata about the match.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub component: &'a str,
    /// The route as written in the manifest (with the base path), e.g. `/v1/...`.
    pub route: &'a str,
    /// The route without its trailing `/...`, e.g. `/v1`.
    pub component_route: &'a str,
    pub path_info: String,
    pub params: Vec<(String, String)>,
}

#[derive(Debug)]
struct Entry {
    pattern: Pattern,
    route: String,
    component_route: String,
    component: String,
}

/// The application's routing table.
#[derive(Debug, Default)]
pub struct Router {
    /// Most specific first.
    entries: Vec<Entry>,
}

/// A route given twice: like Spin, the later one wins; callers should warn.
#[derive(Debug, PartialEq, Eq)]
pub struct DuplicateRoute {
    pub route: String,
    pub replaced: String,
    pub by: String,
}

impl Router {
    /// Builds the table from `(route, component)` pairs in manifest order,
    /// each route prefixed with the application's `base` path.
    pub fn build<'a>(
        base: &str,
        routes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (Router, Vec<DuplicateRoute>) {
        let mut entries: Vec<Entry> = Vec::new();
        let mut duplicates = Vec::new();
        for (route, component) in routes {
            let route = join_base(base, route);
            let entry = Entry {
                pattern: Pattern::parse(&route),
                component_route: route.strip_suffix("/...").unwrap_or(&route).to_owned(),
                route,
                component: component.to_owned(),
            };
            match entries.iter_mut().find(|e| e.pattern == entry.pattern) {
                Some(existing) => {
                    duplicates.push(DuplicateRoute {
                        route: entry.route.clone(),
                        replaced: existing.component.clone(),
                        by: entry.component.clone(),
                    });
                    *existing = entry;
                }
                None => entries.push(entry),
            }
        }
        entries.sort_by_key(|entry| Reverse(entry.pattern.specificity()));
        (Router { entries }, duplicates)
    }

    /// The most specific route matching `path`, if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        self.entries.iter().find_map(|entry| {
            let (params, path_info) = entry.pattern.matches(path)?;
            Some(RouteMatch {
                component: &entry.component,
                route: &entry.route,
                component_route: &entry.component_route,
                path_info,
                params,
            })
        })
    }

    /// Every routed pattern with its component, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.route.as_str(), entry.component.as_str()))
    }
}

fn join_base(base: &str, route: &str) -> String {
    let base = base.trim_end_matches('/');
    if route == "/" && !base.is_empty() {
        base.to_owned()
    } else {
        format!("{base}{route}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build("/", routes.iter().copied()).0
    }

    fn component_for<'a>(router: &'a Router, path: &str) -> Option<&'a str> {
        router.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_routes_beat_parameters_which_beat_wildcards() {
        let router = router(&[
            ("/...", "fallback"),
            ("/v1/...", "v1"),
            ("/v1/:name", "param"),
            ("/v1/health", "health"),
        ]);
        assert_eq!(component_for(&router, "/v1/health"), Some("health"));
        assert_eq!(component_for(&router, "/v1/other"), Some("param"));
        assert_eq!(component_for(&router, "/v1/a/b"), Some("v1"));
        assert_eq!(component_for(&router, "/elsewhere"), Some("fallback"));
    }

    #[test]
    fn a_wildcard_matches_its_own_prefix_with_empty_path_info() {
        let router = router(&[("/v1/agents/...", "agents")]);
        let m = router.route("/v1/agents").unwrap();
        assert_eq!(m.path_info, "");
        let m = router.route("/v1/agents/42/versions").unwrap();
        assert_eq!(m.path_info, "/42/versions");
        assert_eq!(m.route, "/v1/agents/...");
        assert_eq!(m.component_route, "/v1/agents");
        assert!(router.route("/v1/agentsx").is_none());
    }

    #[test]
    fn an_exact_route_beats_a_wildcard_over_the_same_path() {
        let router = router(&[("/docs/...", "wild"), ("/docs", "exact")]);
        assert_eq!(component_for(&router, "/docs"), Some("exact"));
        assert_eq!(component_for(&router, "/docs/x"), Some("wild"));
    }

    #[test]
    fn exact_routes_do_not_match_longer_paths() {
        let router = router(&[("/v1/health", "health")]);
        assert_eq!(component_for(&router, "/v1/health/extra"), None);
        assert_eq!(component_for(&router, "/v1"), None);
    }

    #[test]
    fn parameters_are_captured_by_name() {
        let router = router(&[("/users/:id/keys/:key", "keys")]);
        let m = router.route("/users/7/keys/abc").unwrap();
        assert_eq!(
            m.params,
            [("id".into(), "7".into()), ("key".into(), "abc".into())]
        );
    }

    #[test]
    fn duplicate_routes_last_one_wins() {
        let (router, duplicates) =
            Router::build("/", [("/v1/...", "first"), ("/v1/...", "second")]);
        assert_eq!(component_for(&router, "/v1/x"), Some("second"));
        assert_eq!(
            duplicates,
            [DuplicateRoute {
                route: "/v1/...".into(),
                replaced: "first".into(),
                by: "second".into()
            }]
        );
    }

    #[test]
    fn the_base_path_prefixes_every_route() {
        let (router, _) = Router::build("/api/", [("/health", "meta"), ("/...", "all")]);
        assert_eq!(component_for(&router, "/api/health"), Some("meta"));
        assert_eq!(component_for(&router, "/api/x"), Some("all"));
        assert_eq!(component_for(&router, "/health"), None);
    }

    #[test]
    fn the_root_route_matches_only_the_root() {
        let router = router(&[("/", "root")]);
        assert_eq!(component_for(&router, "/"), Some("root"));
        assert_eq!(component_for(&router, "/x"), None);
    }
}
