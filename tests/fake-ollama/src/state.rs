//! What the fake server and its handle share: the models, scripts and faults the test
//! sets, and what the server saw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::clock::KeepAlive;
use crate::model::{Model, with_tag};
use crate::{Fault, Reply};

/// How long a "forever" `keep_alive` lasts: Go's largest duration, as Ollama uses.
const FOREVER: Duration = Duration::from_nanos(i64::MAX as u64);

/// One request as the fake received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// `"GET"`, `"POST"`, ...
    pub method: String,
    /// The path without the query, e.g. `"/api/chat"`.
    pub path: String,
    /// The body parsed as JSON; `Null` when it was empty or not JSON.
    pub body: serde_json::Value,
}

/// A model on the fake's "disk".
#[derive(Clone)]
pub(crate) struct Installed {
    pub model: Model,
    pub modified_at: SystemTime,
}

/// A model in memory, as `/api/ps` lists it until `expires_at`.
pub(crate) struct Loaded {
    pub expires_at: SystemTime,
    pub context_length: u64,
}

/// What a request is answered under: taken once when it arrives, so a test changing the
/// fault or the delay affects only later requests.
#[derive(Clone, Debug)]
pub(crate) struct Conditions {
    pub fault: Option<Fault>,
    pub token_delay: Duration,
}

impl Conditions {
    /// How many lines a stream sends before the connection is cut, if it is.
    pub fn cut_after(&self) -> Option<usize> {
        match self.fault {
            Some(Fault::CutAfter(lines)) => Some(lines),
            _ => None,
        }
    }
}

pub(crate) struct State {
    /// Installed models, in the order they were installed.
    pub models: Vec<Installed>,
    /// What `/api/pull` can fetch.
    pub registry: Vec<Model>,
    /// Replies by model name (tagged, lower-cased).
    pub scripts: HashMap<String, Reply>,
    /// Loaded models by name, as the client named them in `/api/ps`.
    pub loaded: HashMap<String, Loaded>,
    pub conditions: Conditions,
    pub requests: Vec<Recorded>,
}

impl State {
    pub fn find(&self, name: &str) -> Option<&Installed> {
        self.models
            .iter()
            .find(|installed| installed.model.is_named(name))
    }

    /// Installs `model`, replacing one of the same name (a pull of a model already there).
    pub fn install(&mut self, model: Model, modified_at: SystemTime) {
        self.remove(&model.name);
        self.models.push(Installed { model, modified_at });
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.models.len();
        self.models
            .retain(|installed| !installed.model.is_named(name));
        self.loaded.remove(&name_key(name));
        self.models.len() < before
    }

    /// Marks `model` as loaded for `keep_alive` from now.
    pub fn load(&mut self, model: &Model, keep_alive: KeepAlive, context_length: u64) {
        let lasts = match keep_alive {
            KeepAlive::For(duration) => duration,
            KeepAlive::Forever => FOREVER,
        };
        let now = SystemTime::now();
        let expires_at = now.checked_add(lasts).unwrap_or(now + FOREVER);
        self.loaded.insert(
            name_key(&model.name),
            Loaded {
                expires_at,
                context_length,
            },
        );
    }

    pub fn unload(&mut self, model: &Model) {
        self.loaded.remove(&name_key(&model.name));
    }

    /// The loaded models that have not expired, with how long they stay.
    pub fn running(&self) -> Vec<(&Installed, &Loaded)> {
        let now = SystemTime::now();
        self.models
            .iter()
            .filter_map(|installed| {
                let loaded = self.loaded.get(&name_key(&installed.model.name))?;
                (loaded.expires_at > now).then_some((installed, loaded))
            })
            .collect()
    }

    /// The scripted reply for `model`, if the test set one.
    pub fn script(&self, model: &Model) -> Option<Reply> {
        self.scripts.get(&name_key(&model.name)).cloned()
    }
}

/// The key a model's script and load state are kept under: its tagged, lower-cased name.
pub(crate) fn name_key(name: &str) -> String {
    with_tag(name).to_lowercase()
}

/// The state behind a lock (never held across an `.await`), and the generation counters.
pub(crate) struct Shared {
    state: Mutex<State>,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
}

impl Shared {
    pub fn new() -> Shared {
        let now = SystemTime::now();
        Shared {
            state: Mutex::new(State {
                models: Model::defaults()
                    .into_iter()
                    .map(|model| Installed {
                        model,
                        modified_at: now,
                    })
                    .collect(),
                registry: Model::defaults(),
                scripts: HashMap::new(),
                loaded: HashMap::new(),
                conditions: Conditions {
                    fault: None,
                    token_delay: Duration::ZERO,
                },
                requests: Vec::new(),
            }),
            completed: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
        }
    }

    /// The state. A panic while it was held (a failed test thread) leaves nothing half
    /// done worth refusing over, so a poisoned lock is used as is.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::SeqCst)
    }

    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// One chat or generate reply being produced. Dropped before [`GenerationGuard::completed`]
/// or [`GenerationGuard::cut`] means it was abandoned: the client went away (its connection
/// failed a write, or the request was dropped), which is what a test of cancellation wants
/// to observe.
pub(crate) struct GenerationGuard {
    shared: Arc<Shared>,
    settled: bool,
}

impl GenerationGuard {
    pub fn new(shared: Arc<Shared>) -> GenerationGuard {
        GenerationGuard {
            shared,
            settled: false,
        }
    }

    /// The final object was handed to the connection.
    pub fn completed(mut self) {
        self.settled = true;
        self.shared.completed.fetch_add(1, Ordering::SeqCst);
    }

    /// The fake itself cut the reply ([`Fault::CutAfter`]): neither completed nor cancelled.
    pub fn cut(mut self) {
        self.settled = true;
    }
}

impl Drop for GenerationGuard {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}
