//! A fake Ollama server for tests and benchmarks, which cannot run the real one.
//!
//! It speaks Ollama's HTTP API as clients see it (paths, JSON field names, NDJSON streams
//! as `application/x-ndjson`, `{"error": "..."}` answers with Ollama's statuses and
//! messages) so the code under test makes its real HTTP calls; its replies are
//! deterministic, and a test can slow them down or make them fail.
//!
//! | Endpoint | Answer |
//! |---|---|
//! | `GET /api/version` | `{"version": OLLAMA_VERSION}` |
//! | `GET /api/tags` | the installed models |
//! | `POST /api/show` | a model's details, `model_info` and `capabilities` |
//! | `GET /api/ps` | models used within their `keep_alive` |
//! | `POST /api/pull` | NDJSON progress, then the model is installed ([`FakeOllama::add_pullable`]) |
//! | `DELETE /api/delete` | 200, empty |
//! | `POST /api/chat`, `POST /api/generate` | the reply ([`Reply`]), streamed or whole |
//! | `POST /api/embed` | deterministic unit vectors |
//! | anything else | `404 page not found` (or `405 method not allowed`) |
//!
//! ```no_run
//! use arena_fake_ollama::{FakeOllama, Fault, Reply};
//! use std::time::{Duration, SystemTime};
//!
//! let fake = FakeOllama::start();
//! fake.script("llama3.2:1b", Reply::from_tokens(["Hello", ",", " world"]));
//! fake.set_token_delay(Duration::from_millis(20));
//! // ... point the code under test at fake.url() and run it ...
//! fake.set_fault(Fault::CutAfter(1));
//! // ... see how it copes with a reply cut short ...
//! assert_eq!(fake.requests().last().unwrap().path, "/api/chat");
//! ```

mod api;
mod clock;
mod fault;
mod http;
mod model;
mod reply;
mod server;
mod state;
mod vectors;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime};

pub use api::OLLAMA_VERSION;
pub use fault::Fault;
pub use model::{DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, Model, ModelKind};
pub use reply::Reply;
pub use state::Recorded;

use server::{Listen, Server};
use state::{Shared, name_key};

/// How long dropping the fake waits for its tasks to end (it closes the port with them).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// A running fake Ollama on 127.0.0.1, on a free port; it stops when dropped.
///
/// It starts with [`Model::defaults`] installed and pullable, no scripts (every reply is
/// [`Reply::echo`]), no delay and no fault. All methods take `&self` and apply at once to
/// requests that arrive afterwards.
pub struct FakeOllama {
    shared: Arc<Shared>,
    /// `None` only while dropping.
    server: Option<Server>,
    address: SocketAddr,
}

impl FakeOllama {
    /// Starts a fake, panicking if it cannot (as a test helper should).
    pub fn start() -> FakeOllama {
        FakeOllama::try_start().expect("start the fake Ollama server on 127.0.0.1")
    }

    /// Starts a fake, or says why it could not (no runtime threads, no free port).
    pub fn try_start() -> io::Result<FakeOllama> {
        let shared = Arc::new(Shared::new());
        let server = server::start(shared.clone())?;
        Ok(FakeOllama {
            shared,
            address: server.address,
            server: Some(server),
        })
    }

    /// The base URL to give clients, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address it listens on, e.g. `127.0.0.1:41234`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Installs `model`, replacing an installed model of the same name.
    pub fn add_model(&self, model: Model) {
        self.shared.state().install(model, SystemTime::now());
    }

    /// Uninstalls the model `name` means (tag optional, case-insensitive); whether there was one.
    pub fn remove_model(&self, name: &str) -> bool {
        self.shared.state().remove(name)
    }

    /// Lets `/api/pull` fetch `model`. Names the registry lacks fail as in Ollama
    /// (`pull model manifest: file does not exist`).
    pub fn add_pullable(&self, model: Model) {
        let mut state = self.shared.state();
        state.registry.retain(|known| !known.is_named(&model.name));
        state.registry.push(model);
    }

    /// Makes the chat model `model` answer `reply` to every chat and generate request from
    /// now on, instead of [`Reply::echo`].
    pub fn script(&self, model: &str, reply: Reply) {
        self.shared.state().scripts.insert(name_key(model), reply);
    }

    /// Waits `delay` before each streamed token and pull progress line (and as long in
    /// total before a non-streamed reply), as a model generating at that pace would.
    pub fn set_token_delay(&self, delay: Duration) {
        self.shared.state().conditions.token_delay = delay;
    }

    /// Makes requests that arrive from now on fail this way, until [`FakeOllama::clear_fault`].
    ///
    /// # Panics
    ///
    /// When leaving [`Fault::Refuse`] and the port can no longer be listened on (another
    /// process took it meanwhile).
    pub fn set_fault(&self, fault: Fault) {
        let listening = fault != Fault::Refuse;
        self.shared.state().conditions.fault = Some(fault);
        self.listen(listening);
    }

    /// Ends the fault: requests arriving from now on are answered normally.
    pub fn clear_fault(&self) {
        self.shared.state().conditions.fault = None;
        self.listen(true);
    }

    /// Every request received so far, in order (those refused by [`Fault::Refuse`] never
    /// arrive, so are not among them).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state().requests.clone()
    }

    /// Chat and generate replies the client abandoned before their end: the connection
    /// closed (a write failed) before the final object was handed to it.
    pub fn cancelled_generations(&self) -> usize {
        self.shared.cancelled()
    }

    /// Chat and generate replies sent to their end, final object included.
    pub fn completed_generations(&self) -> usize {
        self.shared.completed()
    }

    /// Opens or closes the listening socket, returning once it is done.
    fn listen(&self, open: bool) {
        let server = self.server.as_ref().expect("the server runs until drop");
        let (done, finished) = std_mpsc::channel();
        server
            .listen
            .send(Listen { open, done })
            .expect("the accept loop runs until drop");
        finished
            .recv()
            .expect("the accept loop answers every command")
            .unwrap_or_else(|error| panic!("listen on {} again: {error}", self.address));
    }
}

impl Drop for FakeOllama {
    /// Stops the server: its connections close and its port is freed. Outside an async
    /// context this waits (briefly) for that to be done; inside one, where blocking is not
    /// allowed, it happens in the background.
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                server.runtime.shutdown_background();
            } else {
                server.runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
            }
        }
    }
}
