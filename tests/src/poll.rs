//! Waiting for something asynchronous to happen, with a deadline rather than a
//! fixed sleep.

use std::time::{Duration, Instant};

/// How long anything asynchronous may take before a test gives up on it.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(25);

/// The first `Some` that `probe` gives, polled every [`POLL`]; a failed test
/// naming `what` after [`DEADLINE`].
#[track_caller]
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        std::thread::sleep(POLL);
    }
}
