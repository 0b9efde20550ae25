//! The server: a tokio runtime of its own (so synchronous tests can use the fake), an
//! accept loop that can stop and resume listening (for [`Fault::Refuse`]), and the
//! per-request steps every endpoint shares: faults, recording, routing.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::Fault;
use crate::api::{self, Ctx};
use crate::http::{self, ApiError, Hangup, HttpResponse};
use crate::state::{Recorded, Shared};

/// Runtime worker threads: enough that a benchmark's concurrent streams are not serialised
/// behind one thread, few enough to leave the machine to the code under test.
const WORKER_THREADS: usize = 2;

/// How long the accept loop waits after a failed accept (e.g. out of file descriptors)
/// before trying again, rather than spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Tells the accept loop to close (`false`) or reopen (`true`) its listening socket, and
/// answers once that is done, so [`FakeOllama::set_fault`] returns with it in effect.
///
/// [`FakeOllama::set_fault`]: crate::FakeOllama::set_fault
pub(crate) struct Listen {
    pub open: bool,
    pub done: std_mpsc::Sender<io::Result<()>>,
}

/// A running server.
pub(crate) struct Server {
    pub runtime: Runtime,
    pub address: SocketAddr,
    pub listen: mpsc::UnboundedSender<Listen>,
}

/// Binds a free port on 127.0.0.1 and starts serving it. Binding happens here, before any
/// thread starts, so a failure is returned rather than lost in the background.
pub(crate) fn start(shared: Arc<Shared>) -> io::Result<Server> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("fake-ollama")
        .enable_all()
        .build()?;
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let listener = {
        let _entered = runtime.enter();
        TcpListener::from_std(listener)?
    };
    let (listen, commands) = mpsc::unbounded_channel();
    runtime.spawn(accept_loop(listener, address, shared, commands));
    Ok(Server {
        runtime,
        address,
        listen,
    })
}

/// Accepts connections until the handle goes away, closing and reopening the listening
/// socket on command. Closed, connecting to the port is refused by the kernel.
async fn accept_loop(
    listener: TcpListener,
    address: SocketAddr,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Listen>,
) {
    let mut listener = Some(listener);
    loop {
        let accepting = async {
            match &listener {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        let command = tokio::select! {
            accepted = accepting => {
                match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_connection(stream, shared.clone()));
                    }
                    Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
                }
                continue;
            }
            command = commands.recv() => command,
        };
        let Some(Listen { open, done }) = command else {
            return;
        };
        let result = match (open, listener.is_some()) {
            (true, false) => TcpListener::bind(address).await.map(|l| listener = Some(l)),
            (false, true) => {
                listener = None;
                Ok(())
            }
            _ => Ok(()),
        };
        // The handle waits for this answer; if it has gone, there is no one to tell.
        let _ = done.send(result);
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // NDJSON lines are small writes: without this, Nagle's algorithm holds each one back
    // until the previous is acknowledged (~40 ms with delayed ACKs), skewing delays.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| answer(shared.clone(), request));
    // A connection ends in an error when the client goes away or a fault drops it; either
    // way there is nothing left to do with it.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// One request: the fault in effect decides whether it is answered at all; then it is
/// recorded and routed. An `Err` makes hyper drop the connection unanswered.
async fn answer(shared: Arc<Shared>, request: Request<Incoming>) -> Result<HttpResponse, Hangup> {
    let started = Instant::now();
    let conditions = shared.state().conditions.clone();
    if conditions.fault == Some(Fault::Refuse) {
        return Err(Hangup);
    }
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The client stopped sending: nothing to answer.
        Err(_) => return Err(Hangup),
    };
    shared.state().requests.push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    match &conditions.fault {
        Some(Fault::Stall) => std::future::pending().await,
        Some(Fault::Error { status, message }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(http::error(status, message));
        }
        _ => {}
    }
    let ctx = Ctx {
        shared,
        started,
        conditions,
    };
    match api::route(ctx, &parts.method, parts.uri.path(), body).await {
        Ok(response) => Ok(response),
        Err(ApiError::Status(status, message)) => Ok(http::error(status, &message)),
        Err(ApiError::Hangup) => Err(Hangup),
    }
}
