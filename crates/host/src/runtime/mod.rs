//! The Wasmtime side of the host: one engine, one linker, and for each
//! component a handler that runs every request in a fresh instance.

mod cache;
pub mod chaining;
pub mod compose;
mod imports;
mod outbound;
mod output;
pub mod postgres;
mod variables;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::{GuestTaskId, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    StoreContextMut, StoreLimits, StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use cache::{CompileCache, Origin};
use chaining::ApplicationHandle;
use outbound::OutboundHttp;
use output::ComponentOutput;
use postgres::{Pools, PostgresCtx, PostgresView};

use crate::allowed_hosts::AllowedHosts;
use crate::variables::ComponentVariables;

/// How often the epoch advances. A guest stuck in a loop yields to the host
/// at the next tick, which is what lets a request time limit fire.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances and memories a Rust component needs besides its own (the
/// shim modules `wit-component` adds); sizes the pooling allocator.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Linear memory and table bytes reset in place (instead of `madvise`) when
/// an instance ends, so the next instance in that slot skips the TLB flush and
/// page faults. With `PAGEMAP_SCAN` (Linux 6.7+) only the pages the instance
/// touched are reset, so a generous window costs nothing when unused. Every
/// request gets a fresh instance: this is on the hot path.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// Limits that apply to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a component has to produce the response head.
    pub request_timeout: Duration,
    /// Time a component has to finish streaming the response body.
    pub response_timeout: Duration,
    /// Largest linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Instances alive at once; the pooling allocator reserves this many slots.
    pub max_instances: u32,
}

/// What the host tracks about one request while a component handles it.
pub struct RequestTrace {
    pub id: Arc<str>,
    timed_out: AtomicBool,
    /// Requests chained before this one (see `chaining`); 0 for a client's.
    depth: u32,
}

impl RequestTrace {
    pub fn new(id: &str) -> Arc<RequestTrace> {
        Arc::new(RequestTrace {
            id: id.into(),
            timed_out: AtomicBool::new(false),
            depth: 0,
        })
    }

    /// Whether the instance was ended for overrunning the request time limit.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// The request an instance serves, known only once it starts: instances
/// are created before they are handed a request.
type RequestSlot = Arc<OnceLock<Arc<RequestTrace>>>;

/// Per-request store data: each request gets its own, dropped with its instance.
pub struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    limits: StoreLimits,
    outbound: OutboundHttp,
    postgres: PostgresCtx,
    request: RequestSlot,
    variables: Arc<ComponentVariables>,
}

impl InstanceState {
    fn postgres(&mut self) -> PostgresView<'_> {
        PostgresView {
            ctx: &self.postgres,
            table: &mut self.table,
        }
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The engine and linker shared by every component of the application.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InstanceState>,
    limits: Arc<Limits>,
    application: ApplicationHandle,
    /// PostgreSQL connections, pooled across every instance of the app.
    pools: Arc<Pools>,
    _epoch: EpochTicker,
}

/// What a component may read and reach, from its manifest table.
#[derive(Clone)]
pub struct ComponentConfig {
    /// What its WASI environment holds.
    pub environment: Vec<(String, String)>,
    pub variables: Arc<ComponentVariables>,
    pub allowed_hosts: Arc<AllowedHosts>,
}

impl ComponentConfig {
    /// The configuration of components composed into one (middleware in
    /// front of a handler): they share an instance, so the host cannot tell
    /// them apart and each may use what any of them declares.
    pub fn merged(configs: &[&ComponentConfig]) -> ComponentConfig {
        ComponentConfig {
            environment: configs
                .iter()
                .flat_map(|c| c.environment.iter().cloned())
                .collect(),
            variables: Arc::new(ComponentVariables::merged(
                configs.iter().map(|c| &*c.variables),
            )),
            allowed_hosts: Arc::new(AllowedHosts::merged(
                configs.iter().map(|c| &*c.allowed_hosts),
            )),
        }
    }
}

impl Runtime {
    pub fn new(limits: Limits) -> anyhow::Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances * CORE_INSTANCES_PER_COMPONENT)
            .total_memories(limits.max_instances * CORE_INSTANCES_PER_COMPONENT)
            .total_tables(limits.max_instances * CORE_INSTANCES_PER_COMPONENT)
            .total_stacks(limits.max_instances)
            .max_memory_size(limits.memory_bytes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES)
            .pagemap_scan(Enabled::Auto);

        let mut config = Config::new();
        config
            .wasm_component_model_async(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot configure Wasmtime")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        variables::add_to_linker(&mut linker)?;
        postgres::add_to_linker(&mut linker, InstanceState::postgres)?;

        Ok(Runtime {
            _epoch: EpochTicker::start(engine.clone()),
            engine,
            linker,
            limits: Arc::new(limits),
            application: ApplicationHandle::default(),
            pools: Arc::default(),
        })
    }

    /// Where components send requests to their own application; connect it
    /// once the server exists.
    pub fn application(&self) -> &ApplicationHandle {
        &self.application
    }

    /// Compiles (or loads from `cache`) the component at `path` and checks
    /// that this host can run it.
    pub fn load(
        &self,
        name: &str,
        path: &std::path::Path,
        config: ComponentConfig,
        cache: &CompileCache,
    ) -> anyhow::Result<(ComponentHandler, Origin)> {
        let (component, origin) = cache
            .load(&self.engine, path)
            .with_context(|| format!("component `{name}`"))?;
        imports::check(name, &component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("component `{name}` cannot be linked"))?;
        let pre = wasmtime_wasi_http::p3::bindings::ServicePre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("component `{name}` does not export `wasi:http/handler@0.3.0`")
            })?;
        let state = ComponentState {
            name: name.into(),
            pre: ProxyPre::P3(pre),
            config,
            application: self.application.clone(),
            pools: self.pools.clone(),
            engine: self.engine.clone(),
            limits: self.limits.clone(),
        };
        Ok((ComponentHandler(ProxyHandler::new(state)), origin))
    }
}

/// Dispatches requests to one component.
#[derive(Clone)]
pub struct ComponentHandler(ProxyHandler<ComponentState>);

impl ComponentHandler {
    /// Runs `request` in a fresh instance; `trace` tags its log lines and
    /// records whether it timed out.
    pub async fn handle(
        &self,
        trace: Arc<RequestTrace>,
        request: wasmtime_wasi_http::handler::Request,
    ) -> wasmtime::Result<wasmtime_wasi_http::handler::Response> {
        self.0.handle(trace, request).await
    }
}

pub struct ComponentState {
    name: Arc<str>,
    pre: ProxyPre<InstanceState>,
    config: ComponentConfig,
    application: ApplicationHandle,
    pools: Arc<Pools>,
    engine: Engine,
    limits: Arc<Limits>,
}

impl ComponentState {
    fn new_store(&self, request: &RequestSlot) -> Store<InstanceState> {
        let output = |stream| ComponentOutput::new(self.name.clone(), request.clone(), stream);
        let wasi = WasiCtx::builder()
            .stdout(output("stdout"))
            .stderr(output("stderr"))
            .envs(&self.config.environment)
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .build();
        let state = InstanceState {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            limits,
            outbound: OutboundHttp::new(
                self.name.clone(),
                self.config.allowed_hosts.clone(),
                request.clone(),
                self.application.clone(),
            ),
            postgres: PostgresCtx {
                pools: self.pools.clone(),
                destinations: self.config.allowed_hosts.clone(),
                component: self.name.clone(),
            },
            request: request.clone(),
            variables: self.config.variables.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Yield to the executor at every epoch tick so a busy guest cannot
        // starve other requests or its own time limit.
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

impl HandlerState for ComponentState {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiration;
    type WorkerState = SingleRequest;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<InstanceState, Expiration, SingleRequest>> {
        let request = RequestSlot::default();
        let mut store = self.new_store(&request);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: WasiHttpView::http,
            expiration: Expiration::new(self.limits.clone(), request),
            state: SingleRequest {
                component: self.name.clone(),
                request_timeout: self.limits.request_timeout,
            },
        })
    }
}

/// Worker policy: exactly one request per instance, so no state can leak
/// from one request (or one user) to the next.
pub struct SingleRequest {
    component: Arc<str>,
    request_timeout: Duration,
}

impl WorkerState for SingleRequest {
    type StoreData = InstanceState;
    type RequestData = Arc<RequestTrace>;

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, InstanceState>,
        trace: Arc<RequestTrace>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let _ = store.data_mut().request.set(trace);
        Box::pin(tokio::time::sleep(self.request_timeout))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            let request = store.data().request.get().cloned();
            tracing::error!(
                component = %self.component,
                request_id = request.as_ref().map_or("-", |request| &request.id),
                "instance failed: {error:#}"
            );
        }
    }
}

/// Ends an instance that overruns its time limits. Polled outside the
/// instance's event loop, so it fires even while a guest is busy.
pub struct Expiration {
    limits: Arc<Limits>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    request: RequestSlot,
}

impl Expiration {
    fn new(limits: Arc<Limits>, request: RequestSlot) -> Self {
        let deadline = Box::pin(tokio::time::sleep(Duration::MAX / 4));
        Expiration {
            limits,
            deadline,
            request,
        }
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let allowed = match status {
            // The single request is done: nothing left to wait for.
            WorkerStatus::Idle => Duration::ZERO,
            WorkerStatus::Requests => self.limits.request_timeout,
            // Still streaming the response body.
            WorkerStatus::PostReturn => self.limits.response_timeout,
        };
        let Some(deadline) = start.checked_add(allowed) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.deadline.deadline() != deadline {
            self.deadline.as_mut().reset(deadline);
        }
        let expired = self.deadline.as_mut().poll(cx);
        if expired.is_ready()
            && status == WorkerStatus::Requests
            && let Some(request) = self.request.get()
        {
            request.timed_out.store(true, Ordering::Relaxed);
        }
        expired
    }
}

/// Advances the engine's epoch on a background thread until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
