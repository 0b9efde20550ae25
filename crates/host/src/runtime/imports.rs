//! The interfaces this host provides, and the check that refuses a component
//! importing anything else before the server starts.
//!
//! A component that imported, say, `spin:key-value` would otherwise fail only
//! when a request first reached it; refusing it at start-up, naming the
//! import, turns a latent production error into an immediate one.

use wasmtime::Engine;
use wasmtime::component::Component;

/// A family of interfaces: every interface of `package` at a version that is
/// semver-compatible with `version` (`0.2` accepts `0.2.0`..`0.2.x`).
struct Provided {
    package: &'static str,
    version: &'static str,
}

/// What Wasmtime's WASI and `wasi:http` implementations give every component,
/// and the Spin interfaces this host implements. Rust's standard library
/// imports the WASI 0.2 families; spin-sdk 7 imports the `wasi:http` 0.3 ones.
const PROVIDED: &[Provided] = &[
    Provided {
        package: "wasi:cli",
        version: "0.2",
    },
    Provided {
        package: "wasi:clocks",
        version: "0.2",
    },
    Provided {
        package: "wasi:filesystem",
        version: "0.2",
    },
    Provided {
        package: "wasi:io",
        version: "0.2",
    },
    Provided {
        package: "wasi:random",
        version: "0.2",
    },
    Provided {
        package: "wasi:sockets",
        version: "0.2",
    },
    Provided {
        package: "wasi:cli",
        version: "0.3.0",
    },
    Provided {
        package: "wasi:clocks",
        version: "0.3.0",
    },
    Provided {
        package: "wasi:random",
        version: "0.3.0",
    },
    Provided {
        package: "wasi:http",
        version: "0.3.0",
    },
    Provided {
        package: "spin:variables",
        version: "3.0.0",
    },
    Provided {
        package: "spin:postgres",
        version: "4.2.0",
    },
];

/// Whether an import name such as `wasi:http/types@0.3.0` is provided.
fn is_provided(import: &str) -> bool {
    let Some((path, version)) = import.split_once('@') else {
        return false;
    };
    let Some((package, _interface)) = path.split_once('/') else {
        return false;
    };
    PROVIDED.iter().any(|provided| {
        provided.package == package
            && (version == provided.version
                || version
                    .strip_prefix(provided.version)
                    .is_some_and(|rest| rest.starts_with('.')))
    })
}

/// Fails, naming every offending import, when `component` imports an
/// interface this host does not provide.
pub fn check(name: &str, component: &Component, engine: &Engine) -> anyhow::Result<()> {
    let missing: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(import, _)| import)
        .filter(|import| !is_provided(import))
        .map(|import| format!("`{import}`"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "component `{name}` imports {}, which this host does not provide",
        missing.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::is_provided;

    #[test]
    fn compatible_patch_versions_of_wasi_0_2_are_provided() {
        assert!(is_provided("wasi:cli/environment@0.2.6"));
        assert!(is_provided("wasi:io/streams@0.2.0"));
    }

    #[test]
    fn wasi_http_0_3_is_provided_exactly() {
        assert!(is_provided("wasi:http/types@0.3.0"));
        assert!(!is_provided("wasi:http/types@0.3.1-rc"));
        assert!(!is_provided("wasi:http/types@0.2.0"));
    }

    #[test]
    fn spin_variables_3_is_provided() {
        assert!(is_provided("spin:variables/variables@3.0.0"));
        assert!(!is_provided("spin:variables/variables@2.0.0"));
    }

    #[test]
    fn only_the_spin_interfaces_the_host_implements_are_provided() {
        assert!(is_provided("spin:postgres/postgres@4.2.0"));
        assert!(!is_provided("spin:postgres/postgres@3.0.0"));
        assert!(!is_provided("spin:key-value/key-value@3.0.0"));
        assert!(!is_provided("fermyon:spin/llm@2.0.0"));
    }

    #[test]
    fn a_version_prefix_is_not_mistaken_for_a_family() {
        assert!(!is_provided("wasi:cli/environment@0.20.0"));
        assert!(!is_provided("wasi:cli/environment"));
    }
}
