//! The models in memory: each loaded once, on first use, on the blocking pool,
//! and shared by every request until unloaded; and the inference slots that
//! queue requests so at most one inference runs per core.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::catalog::{self, Entry};
use super::error::ApiError;
use crate::assets::Store;
use crate::embedding::Embedder;
use crate::generation::{ChatModel, ModelDescription};

pub struct Models {
    store: Store,
    chat: Slot<ChatModel>,
    embedder: Slot<Embedder>,
    inference: Arc<Semaphore>,
}

/// A model that is in memory, and since when (for `/api/ps`).
pub struct Loaded<T> {
    pub model: Arc<T>,
    pub since: SystemTime,
    /// How long this request waited for the model to load (zero when it was in memory).
    pub load_duration: Duration,
}

impl Models {
    /// Models from `store`, running at most `parallelism` inferences at once.
    pub fn new(store: Store, parallelism: usize) -> Models {
        Models {
            store,
            chat: Slot::default(),
            embedder: Slot::default(),
            inference: Arc::new(Semaphore::new(parallelism.max(1))),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The models whose files are in the store (verified when they load).
    pub fn installed(&self) -> Vec<&'static Entry> {
        catalog::ALL
            .into_iter()
            .filter(|entry| self.is_installed(entry))
            .collect()
    }

    pub fn is_installed(&self, entry: &Entry) -> bool {
        entry
            .asset
            .files
            .iter()
            .all(|file| self.store.path(entry.asset, file.path).is_file())
    }

    pub async fn chat_model(&self) -> Result<Loaded<ChatModel>, ApiError> {
        self.require(&catalog::SMOLLM2)?;
        let store = self.store.clone();
        self.chat
            .get_or_load(move || {
                let asset = catalog::SMOLLM2.asset;
                store.verify(asset)?;
                ChatModel::load(&store.path(asset, catalog::SMOLLM2.weights))
            })
            .await
    }

    /// The chat model's description, without loading its weights.
    pub async fn chat_description(&self) -> Result<ModelDescription, ApiError> {
        self.require(&catalog::SMOLLM2)?;
        let gguf = self
            .store
            .path(catalog::SMOLLM2.asset, catalog::SMOLLM2.weights);
        tokio::task::spawn_blocking(move || ChatModel::describe(&gguf))
            .await
            .context("reading the model's header panicked")
            .and_then(|result| result)
            .map_err(ApiError::internal)
    }

    pub async fn embedder(&self) -> Result<Loaded<Embedder>, ApiError> {
        self.require(&catalog::MINILM)?;
        let store = self.store.clone();
        self.embedder
            .get_or_load(move || Embedder::load(&store))
            .await
    }

    /// A 404 saying how to install a model whose files are not there; files
    /// that are there but corrupt fail their check when the model loads.
    fn require(&self, entry: &Entry) -> Result<(), ApiError> {
        match self.is_installed(entry) {
            true => Ok(()),
            false => Err(ApiError::not_installed(entry)),
        }
    }

    /// Frees a model's memory (`keep_alive: 0`); the next request loads it again.
    pub async fn unload(&self, entry: &Entry) {
        match entry.kind {
            catalog::Kind::Completion => self.chat.unload().await,
            catalog::Kind::Embedding => self.embedder.unload().await,
        }
    }

    /// The models in memory and since when.
    pub async fn running(&self) -> Vec<(&'static Entry, SystemTime)> {
        let mut running = Vec::new();
        if let Some(since) = self.chat.since().await {
            running.push((&catalog::SMOLLM2, since));
        }
        if let Some(since) = self.embedder.since().await {
            running.push((&catalog::MINILM, since));
        }
        running
    }

    /// Waits for an inference slot. Dropping the future leaves the queue.
    pub async fn inference_slot(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.inference)
            .acquire_owned()
            .await
            .expect("the inference semaphore is never closed")
    }
}

struct Slot<T> {
    loaded: Mutex<Option<(Arc<T>, SystemTime)>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            loaded: Mutex::new(None),
        }
    }
}

impl<T: Send + Sync + 'static> Slot<T> {
    /// The model, loading it first if needed. Requests arriving during a load
    /// wait for it (the lock is held across it) rather than load it again.
    async fn get_or_load(
        &self,
        load: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<Loaded<T>, ApiError> {
        let started = Instant::now();
        let mut loaded = self.loaded.lock().await;
        if let Some((model, since)) = loaded.as_ref() {
            return Ok(Loaded {
                model: Arc::clone(model),
                since: *since,
                load_duration: started.elapsed(),
            });
        }
        let model = tokio::task::spawn_blocking(load)
            .await
            .context("loading the model panicked")
            .and_then(|result| result)
            .map_err(|error| {
                tracing::error!(
                    error = format!("{error:#}"),
                    "embedded model failed to load"
                );
                ApiError::internal(error)
            })?;
        let model = Arc::new(model);
        let since = SystemTime::now();
        *loaded = Some((Arc::clone(&model), since));
        Ok(Loaded {
            model,
            since,
            load_duration: started.elapsed(),
        })
    }

    async fn unload(&self) {
        self.loaded.lock().await.take();
    }

    async fn since(&self) -> Option<SystemTime> {
        self.loaded.lock().await.as_ref().map(|(_, since)| *since)
    }
}
