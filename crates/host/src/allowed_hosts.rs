//! `allowed_outbound_hosts`: the destinations a component may reach, in
//! Spin's syntax.
//!
//! An entry is `scheme://host[:port]`:
//!
//! | part   | forms                                                                  |
//! |--------|------------------------------------------------------------------------|
//! | scheme | `https`, `postgres`, ... or `*` for any                                 |
//! | host   | a name or IP, `*.example.com` (subdomains only), `*`, a CIDR range (`127.0.0.0/8`), `self` |
//! | port   | a number, a range `8000..9000` (end excluded), `*`; omitted: the scheme's default |
//!
//! Entries may hold `{{ variable }}` templates, filled in at start-up.
//! `self` (or `self.alt`) allows requests to the application itself
//! (`http://self.alt/path`); `http://NAME.spin.internal` allows Spin's
//! service chaining to component NAME. Invalid entries stop start-up,
//! quoted as written in the manifest.

use std::fmt;
use std::net::IpAddr;

use anyhow::{Context, bail};

use crate::variables::{self, Variables};

/// A component's parsed `allowed_outbound_hosts`.
#[derive(Debug, Default, Clone)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, kept as `.example.com`: subdomains, not the domain itself.
    Subdomains(String),
    Exact(String),
    /// `self`: the application itself, reached without a network hop.
    ToSelf,
    Cidr {
        network: IpAddr,
        prefix: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
    /// `start..end`, end excluded, as in Spin.
    Range(u16, u16),
}

/// Where a request or connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Lowercase.
    pub scheme: String,
    /// Lowercase; an IPv6 address keeps its brackets (`[::1]`).
    pub host: String,
    pub port: Option<u16>,
}

/// The port a scheme uses when a URL or entry names none.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" | "postgresql" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    /// Every entry of every part (components composed into one instance).
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a AllowedHosts>) -> AllowedHosts {
        let entries = parts
            .into_iter()
            .flat_map(|part| part.entries.iter().cloned())
            .collect();
        AllowedHosts { entries }
    }

    /// Parses a component's entries, filling templates in from `variables`.
    /// An error quotes the entry as written (never a value built from a
    /// secret variable).
    pub fn parse(entries: &[String], variables: &Variables) -> anyhow::Result<AllowedHosts> {
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            let template = variables::parse_declared(entry, |name| variables.is_declared(name))
                .with_context(|| format!("allowed_outbound_hosts entry \"{entry}\""))?;
            let rendered = variables.render(&template)?;
            match AllowedHost::parse(&rendered.text) {
                Ok(host) => parsed.push(host),
                Err(_) if rendered.secret => bail!(
                    "allowed_outbound_hosts entry \"{entry}\" is not a valid destination once its (secret) variables are filled in"
                ),
                Err(reason) if template.is_literal() => {
                    bail!("allowed_outbound_hosts entry \"{entry}\" is invalid: {reason}")
                }
                Err(reason) => bail!(
                    "allowed_outbound_hosts entry \"{entry}\" (filled in: \"{}\") is invalid: {reason}",
                    rendered.text
                ),
            }
        }
        Ok(AllowedHosts { entries: parsed })
    }

    /// Parses entries without templates (tests, and callers with no variables).
    #[cfg(test)]
    pub fn parse_literal(entries: &[&str]) -> anyhow::Result<AllowedHosts> {
        let entries = entries
            .iter()
            .map(|entry| AllowedHost::parse(entry).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
        Ok(AllowedHosts { entries })
    }

    /// Whether a connection to `url` (`scheme://[user@]host[:port][/...]`,
    /// such as `postgres://app:pw@db:5432/arena`) is allowed.
    ///
    /// Refuses what it cannot read unambiguously: a URL whose host differs
    /// between the RFC 3986 reading and the "userinfo ends at the first `@`"
    /// reading some clients (tokio-postgres) use, and a URL whose query names
    /// another destination (`?host=`, `?hostaddr=`, `?port=`, which
    /// libpq-style clients connect to as well).
    #[cfg_attr(not(test), expect(dead_code, reason = "the outbound PostgreSQL check"))]
    pub fn allows(&self, url: &str) -> bool {
        match Destination::from_url(url) {
            Some(destination) => self.allows_destination(&destination),
            None => false,
        }
    }

    /// Whether a connection to `destination` is allowed (`self` never
    /// matches here: see [`Self::allows_self`]).
    pub fn allows_destination(&self, destination: &Destination) -> bool {
        self.entries.iter().any(|entry| entry.allows(destination))
    }

    /// Whether the component may send HTTP requests to its own application
    /// (`self`, or any host on an `http`/`https` entry: Spin's rule).
    pub fn allows_self(&self) -> bool {
        self.entries.iter().any(|entry| {
            matches!(entry.host, HostPattern::ToSelf | HostPattern::Any)
                && match &entry.scheme {
                    SchemePattern::Any => true,
                    SchemePattern::Exact(scheme) => scheme == "http" || scheme == "https",
                }
        })
    }
}

impl AllowedHost {
    /// Parses one entry (templates already filled in). The error says what
    /// is wrong, quoting the faulty part.
    fn parse(entry: &str) -> Result<AllowedHost, String> {
        let entry = entry.trim();
        if entry == "insecure:allow-all" {
            return Err(
                "`insecure:allow-all` is not supported; `*://*:*` allows everything".into(),
            );
        }
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err(format!(
                "it has no scheme: write `scheme://host[:port]`, e.g. `https://{entry}`, or `*://{entry}` for any scheme"
            ));
        };
        let scheme = match scheme {
            "*" => SchemePattern::Any,
            _ if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic()) => {
                SchemePattern::Exact(scheme.to_ascii_lowercase())
            }
            _ => return Err(format!("scheme `{scheme}` is not a scheme name or `*`")),
        };
        // A trailing `/` is harmless (`https://example.com/`); any other path is not.
        let rest = rest.trim_end_matches('/');
        let (host, port) = split_host_port(rest)?;
        let host = HostPattern::parse(host)?;
        let port = match port {
            Some(port) => PortPattern::parse(port)?,
            None => match &scheme {
                SchemePattern::Exact(name) => {
                    PortPattern::Exact(default_port(name).ok_or_else(|| {
                        format!("it names no port, and scheme `{name}` has no default port")
                    })?)
                }
                SchemePattern::Any => {
                    return Err(
                        "it names no port, and `*://` has no default port: add `:PORT` or `:*`"
                            .into(),
                    );
                }
            },
        };
        Ok(AllowedHost { scheme, host, port })
    }

    fn allows(&self, destination: &Destination) -> bool {
        let scheme = match &self.scheme {
            SchemePattern::Any => true,
            SchemePattern::Exact(scheme) => *scheme == destination.scheme,
        };
        let port = match self.port {
            PortPattern::Any => true,
            _ => destination
                .port
                .or_else(|| default_port(&destination.scheme))
                .is_some_and(|port| self.port.allows(port)),
        };
        scheme && port && self.host.allows(&destination.host)
    }
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 address or a
/// CIDR range (`10.0.0.0/8:5432`).
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if text.starts_with('[') {
        let close = text
            .find(']')
            .ok_or_else(|| format!("host `{text}` has no closing `]`"))?;
        let (host, after) = text.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("`{after}` after host `{host}` is not `:PORT`")),
            },
        };
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

impl HostPattern {
    fn parse(host: &str) -> Result<HostPattern, String> {
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err("it names no host".into());
        }
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(HostPattern::ToSelf);
        }
        if let Some((address, prefix)) = host.split_once('/') {
            let network = address.parse::<IpAddr>().ok();
            let prefix = prefix.parse::<u8>().ok();
            return match (network, prefix) {
                (Some(network), Some(prefix))
                    if prefix <= if network.is_ipv4() { 32 } else { 128 } =>
                {
                    Ok(HostPattern::Cidr { network, prefix })
                }
                _ => Err(format!(
                    "`{host}` has a path; entries are `scheme://host[:port]` (or a CIDR range such as `10.0.0.0/8`)"
                )),
            };
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(format!(
                    "host `{host}`: a wildcard may only be a leading `*.` before a domain"
                ));
            }
            return Ok(HostPattern::Subdomains(format!(".{domain}")));
        }
        if host.contains('*') {
            return Err(format!(
                "host `{host}`: a wildcard may only be the whole host (`*`) or a leading `*.`"
            ));
        }
        if !is_host(&host) {
            return Err(format!("`{host}` is not a host name or IP address"));
        }
        Ok(HostPattern::Exact(host))
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(exact) => exact == host,
            HostPattern::ToSelf => false,
            HostPattern::Cidr { network, prefix } => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                bare.parse::<IpAddr>()
                    .is_ok_and(|address| in_network(address, *network, *prefix))
            }
        }
    }
}

fn in_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (address, network) {
        (IpAddr::V4(address), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(address) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(address), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(address) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address. Anything else
/// (commas, `@`, spaces) is refused: some clients read such a "host" as
/// several destinations.
fn is_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl PortPattern {
    fn parse(port: &str) -> Result<PortPattern, String> {
        if port == "*" {
            return Ok(PortPattern::Any);
        }
        let number = |text: &str| {
            text.parse::<u16>()
                .map_err(|_| format!("port `{port}` is not a number, a range `A..B` or `*`"))
        };
        match port.split_once("..") {
            Some((start, end)) => Ok(PortPattern::Range(number(start)?, number(end)?)),
            None => Ok(PortPattern::Exact(number(port)?)),
        }
    }

    fn allows(&self, port: u16) -> bool {
        match *self {
            PortPattern::Any => true,
            PortPattern::Exact(exact) => exact == port,
            PortPattern::Range(start, end) => (start..end).contains(&port),
        }
    }
}

impl Destination {
    /// The destination of a parsed request URI (`None` without a scheme and
    /// a well-formed host).
    pub fn from_uri(uri: &http::Uri) -> Option<Destination> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        let host = authority.host().to_ascii_lowercase();
        if !is_host(&host) {
            return None;
        }
        Some(Destination {
            scheme,
            host,
            port: authority.port_u16(),
        })
    }

    /// The destination of a connection URL; `None` when it cannot be read
    /// unambiguously (see [`AllowedHosts::allows`]).
    pub fn from_url(url: &str) -> Option<Destination> {
        let (scheme, rest) = url.trim().split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let rfc_authority = &rest[..end];
        let rfc_host_port = rfc_authority
            .rsplit_once('@')
            .map_or(rfc_authority, |(_, hp)| hp);
        let first_at_host_port = match rest.split_once('@') {
            Some((_, after)) => &after[..after.find(['/', '?', '#']).unwrap_or(after.len())],
            None => rfc_authority,
        };
        if rfc_host_port != first_at_host_port {
            return None;
        }
        if let Some(query) = rest[end..].split_once('?').map(|(_, query)| query) {
            let names_destination = query.split(['&', '#']).any(|pair| {
                let key = pair.split('=').next().unwrap_or("");
                matches!(key, "host" | "hostaddr" | "port")
            });
            if names_destination {
                return None;
            }
        }
        let (host, port) = split_host_port(rfc_host_port).ok()?;
        let host = host.to_ascii_lowercase();
        if !is_host(&host) {
            return None;
        }
        let port = match port {
            None => None,
            Some(port) => Some(port.parse().ok()?),
        };
        Some(Destination {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest;
    use crate::variables::providers::StaticProvider;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse_literal(entries).unwrap()
    }

    fn refusal(entry: &str) -> String {
        AllowedHost::parse(entry).unwrap_err()
    }

    /// Each row: entry, URL, whether the URL is allowed.
    #[test]
    fn the_matching_table() {
        let table: &[(&str, &str, bool)] = &[
            // Exact scheme, host and port; default ports from the scheme.
            ("https://example.com", "https://example.com/x", true),
            ("https://example.com", "https://example.com:443/x", true),
            ("https://example.com", "https://example.com:8443/x", false),
            ("https://example.com", "http://example.com/x", false),
            ("http://example.com", "http://example.com/", true),
            ("http://example.com", "http://example.com:80", true),
            ("http://example.com:8080", "http://example.com:8080/", true),
            ("http://example.com:8080", "http://example.com/", false),
            ("https://example.com/", "https://example.com", true),
            ("https://Example.COM", "https://example.com", true),
            ("https://example.com", "https://EXAMPLE.com", true),
            ("https://example.com", "https://other.com", false),
            // Wildcard schemes, hosts and ports.
            ("*://localhost:11434", "http://localhost:11434/api", true),
            ("*://localhost:11434", "https://localhost:11434/api", true),
            ("*://localhost:11434", "http://localhost:11435/api", false),
            ("http://127.0.0.1:*", "http://127.0.0.1:6333/", true),
            ("http://127.0.0.1:*", "http://127.0.0.1/", true),
            ("http://127.0.0.1:*", "https://127.0.0.1:6333/", false),
            ("http://127.0.0.1:*", "http://localhost:6333/", false),
            ("https://*.example.com", "https://api.example.com/", true),
            ("https://*.example.com", "https://a.b.example.com/", true),
            ("https://*.example.com", "https://example.com/", false),
            ("https://*.example.com", "https://evilexample.com/", false),
            ("http://*", "http://anything.test/", true),
            ("http://*", "http://anything.test:81/", false),
            ("*://*:*", "ftp://anything.test:21/", true),
            // Port ranges exclude their end, as in Spin.
            ("http://localhost:8000..8002", "http://localhost:8001", true),
            (
                "http://localhost:8000..8002",
                "http://localhost:8002",
                false,
            ),
            // CIDR ranges and IP literals.
            ("*://127.0.0.0/8:*", "http://127.1.2.3:9000/", true),
            ("*://127.0.0.0/8:*", "http://128.0.0.1:9000/", false),
            ("*://127.0.0.0/8:*", "http://localhost:9000/", false),
            ("http://[::1]:8001", "http://[::1]:8001/", true),
            ("http://[::1]", "http://[::1]/", true),
            ("*://fd00::/8:*", "http://[fd12::1]:80/", true),
            // Other schemes, for PostgreSQL.
            (
                "postgres://db.internal",
                "postgres://app:pw@db.internal/arena",
                true,
            ),
            (
                "postgres://db.internal",
                "postgres://app:pw@db.internal:5432/arena",
                true,
            ),
            (
                "postgres://db.internal",
                "postgres://app:pw@db.internal:5433/arena",
                false,
            ),
            (
                "postgres://localhost:5432",
                "postgres://localhost/arena?sslmode=disable",
                true,
            ),
            // `self` is for the application itself, never a network host.
            ("http://self", "http://self/", false),
            ("http://self", "http://self.alt/", false),
            // Service chaining names are ordinary hosts.
            (
                "http://meta.spin.internal",
                "http://meta.spin.internal/v1",
                true,
            ),
            (
                "http://*.spin.internal",
                "http://meta.spin.internal/v1",
                true,
            ),
            (
                "http://meta.spin.internal",
                "http://other.spin.internal/v1",
                false,
            ),
        ];
        for (entry, url, expected) in table {
            let allows = allowed(&[entry]).allows(url);
            assert_eq!(allows, *expected, "entry `{entry}`, url `{url}`");
        }
    }

    #[test]
    fn no_entries_allow_nothing() {
        assert!(!AllowedHosts::default().allows("https://example.com"));
        assert!(!AllowedHosts::default().allows_self());
    }

    #[test]
    fn any_entry_may_allow_the_destination() {
        let hosts = allowed(&["https://a.test", "postgres://db:5433"]);
        assert!(hosts.allows("https://a.test/"));
        assert!(hosts.allows("postgres://db:5433/x"));
        assert!(!hosts.allows("postgres://db/x"));
    }

    #[test]
    fn self_is_allowed_by_self_entries_and_by_any_host_on_http() {
        assert!(allowed(&["http://self"]).allows_self());
        assert!(allowed(&["https://self"]).allows_self());
        assert!(allowed(&["http://self.alt"]).allows_self());
        assert!(allowed(&["*://*:*"]).allows_self());
        assert!(allowed(&["http://*"]).allows_self());
        assert!(!allowed(&["http://localhost:3000"]).allows_self());
        assert!(!allowed(&["postgres://self"]).allows_self());
    }

    #[test]
    fn userinfo_is_not_mistaken_for_the_host() {
        let hosts = allowed(&["postgres://allowed.test"]);
        assert!(!hosts.allows("postgres://allowed.test@evil.test/db"));
        assert!(!hosts.allows("postgres://evil.test/@allowed.test"));
        assert!(hosts.allows("postgres://user%40x:p%2Fw@allowed.test/db"));
    }

    #[test]
    fn urls_readable_two_ways_are_refused() {
        let hosts = allowed(&["postgres://allowed.test", "https://allowed.test"]);
        // tokio-postgres ends the userinfo at the first `@`, even in the path.
        assert!(!hosts.allows("postgres://allowed.test/db@evil.test"));
        // Several hosts in one authority.
        assert!(!hosts.allows("postgres://evil.test,x.allowed.test/db"));
        assert!(
            !allowed(&["postgres://*.allowed.test"])
                .allows("postgres://evil.test,x.allowed.test/db")
        );
        // libpq-style clients also connect to hosts named in the query.
        assert!(!hosts.allows("postgres://allowed.test/db?host=evil.test"));
        assert!(!hosts.allows("postgres://allowed.test/db?sslmode=disable&hostaddr=10.0.0.1"));
        assert!(hosts.allows("postgres://allowed.test/db?sslmode=disable"));
        assert!(hosts.allows("https://allowed.test/search?q=host"));
    }

    #[test]
    fn urls_without_a_scheme_or_host_are_refused() {
        let hosts = allowed(&["*://*:*"]);
        assert!(!hosts.allows("example.com:443"));
        assert!(!hosts.allows("https://"));
        assert!(!hosts.allows("https://:443/"));
        assert!(!hosts.allows("https://example.com:notaport/"));
    }

    #[test]
    fn invalid_entries_say_what_is_wrong() {
        assert!(refusal("example.com").contains("no scheme"));
        assert!(refusal("localhost:3000").contains("no scheme"));
        assert!(refusal("*").contains("no scheme"));
        assert!(refusal("insecure:allow-all").contains("*://*:*"));
        assert!(refusal("htt ps://example.com").contains("`htt ps`"));
        assert!(refusal("https://example.com/api").contains("path"));
        assert!(refusal("https://example.com:80/api").contains("port `80/api`"));
        assert!(refusal("https://api.*.example.com").contains("wildcard"));
        assert!(refusal("https://*.").contains("wildcard"));
        assert!(refusal("https://exa*mple.com").contains("wildcard"));
        assert!(refusal("https://example.com:http").contains("port `http`"));
        assert!(refusal("https://example.com:70000").contains("port `70000`"));
        assert!(refusal("ftp://example.com").contains("no default port"));
        assert!(refusal("*://example.com").contains("no default port"));
        assert!(refusal("https://").contains("no host"));
        assert!(refusal("https://a,b.test").contains("`a,b.test`"));
        assert!(refusal("https://[::1").contains("`]`"));
    }

    fn variables(declared: &str, values: &[(&str, &str)]) -> Variables {
        let declared: BTreeMap<String, manifest::Variable> = toml::from_str(declared).unwrap();
        let values = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Variables::resolve(&declared, &[&StaticProvider::new(values)]).unwrap()
    }

    fn entries(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|entry| (*entry).to_owned()).collect()
    }

    #[test]
    fn templates_are_filled_in_before_parsing() {
        let variables = variables(
            r#"
            ollama_host = { default = "localhost" }
            ollama_port = { default = "11434" }
            "#,
            &[("ollama_port", "11435")],
        );
        let hosts = AllowedHosts::parse(
            &entries(&["http://{{ ollama_host }}:{{ ollama_port }}"]),
            &variables,
        )
        .unwrap();
        assert!(hosts.allows("http://localhost:11435/api/chat"));
        assert!(!hosts.allows("http://localhost:11434/api/chat"));
    }

    #[test]
    fn an_entry_naming_an_undeclared_variable_is_refused_quoting_the_entry() {
        let variables = variables("a = { default = \"x\" }", &[]);
        let error = AllowedHosts::parse(&entries(&["http://{{ b }}"]), &variables).unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("\"http://{{ b }}\""), "{error}");
        assert!(error.contains("`b`"), "{error}");
    }

    #[test]
    fn an_invalid_entry_quotes_the_template_and_its_filled_in_form() {
        let variables = variables("host = { default = \"db/path\" }", &[]);
        let error = AllowedHosts::parse(&entries(&["postgres://{{ host }}"]), &variables)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"postgres://{{ host }}\""), "{error}");
        assert!(error.contains("postgres://db/path"), "{error}");
    }

    #[test]
    fn an_invalid_entry_built_from_a_secret_does_not_show_the_secret() {
        let variables = variables(
            "token = { required = true, secret = true }",
            &[("token", "hunter2/x")],
        );
        let error = AllowedHosts::parse(&entries(&["https://{{ token }}"]), &variables)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"https://{{ token }}\""), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn destinations_of_request_uris_are_lowercased_with_optional_ports() {
        let uri: http::Uri = "HTTP://Example.COM:8080/x?y".parse().unwrap();
        assert_eq!(
            Destination::from_uri(&uri),
            Some(Destination {
                scheme: "http".into(),
                host: "example.com".into(),
                port: Some(8080)
            })
        );
        let uri: http::Uri = "/relative".parse().unwrap();
        assert_eq!(Destination::from_uri(&uri), None);
    }
}
