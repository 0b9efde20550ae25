//! What each path asks of a caller.

/// How the middleware treats a request, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Public documents and probes: passed on at once, touching nothing, so a load
    /// balancer's probes cost no database work.
    Open,
    /// The login and registration endpoints: public, but rate limited per client
    /// address more strictly than anything else (password guessing).
    Login,
    /// Everything else: a valid credential, then the caller's rate limits.
    Protected,
}

/// The open paths (exact; no trailing slash, no sub-paths).
const OPEN: &[&str] = &["/v1/health", "/v1/ready", "/v1/openapi.json", "/docs"];
/// The login paths.
const LOGIN: &[&str] = &["/v1/auth/token", "/v1/auth/register"];

impl Policy {
    pub(crate) fn for_path(path: &str) -> Self {
        if OPEN.contains(&path) {
            Policy::Open
        } else if LOGIN.contains(&path) {
            Policy::Login
        } else {
            Policy::Protected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_paths_are_public() {
        assert_eq!(Policy::for_path("/v1/health"), Policy::Open);
        assert_eq!(Policy::for_path("/docs"), Policy::Open);
        assert_eq!(Policy::for_path("/v1/auth/token"), Policy::Login);
        for path in [
            "/v1/health/",
            "/v1/healthz",
            "/v1/auth/me",
            "/v1/users",
            "/v1/unknown",
            "/",
        ] {
            assert_eq!(Policy::for_path(path), Policy::Protected, "{path}");
        }
    }
}
