//! Failures a test can make the fake have, to see how its client copes.

/// A failure applied to every request that arrives after [`FakeOllama::set_fault`], until
/// [`FakeOllama::clear_fault`]. Requests already being answered are not affected.
///
/// [`FakeOllama::set_fault`]: crate::FakeOllama::set_fault
/// [`FakeOllama::clear_fault`]: crate::FakeOllama::clear_fault
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Ollama is down: the listening socket is closed, so connecting fails at once with
    /// "connection refused" (the same port is listened on again when the fault is cleared).
    /// A request on a connection that was already open is dropped unanswered and unrecorded.
    Refuse,
    /// Ollama hangs: requests are read and recorded but never answered, until the client
    /// gives up (its timeout) or the fake is dropped.
    Stall,
    /// Ollama dies mid-reply: a streamed chat, generate or pull sends its first lines, this
    /// many at most, and then the connection is dropped; the last line (`"done": true`, or
    /// `success`) is never sent. A non-streamed one takes as long, then the connection
    /// drops unanswered. Other endpoints answer normally.
    CutAfter(usize),
    /// Ollama fails: every request is answered `{"error": message}` with this status (500
    /// if it is not a valid HTTP status).
    Error { status: u16, message: String },
}

impl Fault {
    /// [`Fault::Error`] from a `&str`: `Fault::error(500, "out of memory")`.
    pub fn error(status: u16, message: impl Into<String>) -> Fault {
        Fault::Error {
            status,
            message: message.into(),
        }
    }
}
