//! Serving a `wasi:http/incoming-handler` component over HTTP/1.1, the way `wasmtime serve` does.
//!
//! A component that exports `wasi:http/incoming-handler@0.2.x` (and is not given a function to
//! call) is a server: it is pre-instantiated once, then every request gets a fresh store and
//! instance, so no state leaks from one request into the next. The listening address is
//! `wasmbox.io/http-address`, else the container's `WASMBOX_HTTP_ADDRESS`, else `0.0.0.0:8080`
//! (worked out in [`crate::config::http_address`]).
//!
//! Requests share the container: their linear memories together stay within the container's
//! memory limit (a request that would pass it has its `memory.grow` refused), and each request
//! may run for `wasmbox.io/http-request-timeout` (60 s unless set): the engine's epoch ticks
//! every [`EPOCH_TICK`], a running guest yields to the other requests at every tick, and one
//! past its time is stopped and answered `500`.
//!
//! SIGTERM (and SIGINT) stop the server gracefully: it stops accepting, lets the requests in
//! flight finish (for at most [`DRAIN_TIMEOUT`]), and the container exits 0.

use std::convert::Infallible;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use wasmtime::component::Linker;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::code::{Program, ProgramKind};
use crate::config::RunConfig;
use crate::engine::Engine;
use crate::error::{ExitStatus, RunError};
use crate::limits::MemoryBudget;
use crate::wasi::{self, ComponentState};

/// How long requests in flight may take to finish after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the engine's epoch ticks: how soon a running request yields, and how precisely
/// its time limit is kept.
pub const EPOCH_TICK: Duration = Duration::from_millis(50);

/// The store data of one request: a component's state (WASI, resources, memory limiter) plus WASI HTTP.
struct RequestState {
    component: ComponentState,
    http: WasiHttpCtx,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.component.ctx()
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.component.table, hooks: Default::default() }
    }
}

/// What every request needs: the pre-instantiated component, the configuration, the memory
/// budget all requests share.
struct Server {
    pre: ProxyPre<RequestState>,
    config: RunConfig,
    origin: String,
    budget: Arc<MemoryBudget>,
}

/// A request that ran past its time limit.
#[derive(Debug)]
struct RequestTimedOut(Duration);

impl std::fmt::Display for RequestTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request ran longer than its limit of {} (wasmbox.io/http-request-timeout)",
            humantime::format_duration(self.0)
        )
    }
}

impl std::error::Error for RequestTimedOut {}

/// Serves `program` on `config.http_address` until SIGTERM or SIGINT; returns the exit status.
///
/// Instances come from wasmtime's pooling allocator when the machine allows it (as with
/// `wasmtime serve`): the loader put the component's code into a pooling engine too.
pub fn serve(engine: &Engine, program: &Program, config: &RunConfig) -> Result<ExitStatus, RunError> {
    let origin = &program.origin;
    let (engine, component) = match (&program.server, &program.kind) {
        (Some(server), _) => (&server.engine, &server.component),
        (None, ProgramKind::Component(component)) => (engine.wasmtime(), component),
        (None, ProgramKind::Module(_)) => {
            return Err(RunError::invalid(anyhow!("{origin}: a core module cannot serve HTTP")));
        }
    };
    let mut linker: Linker<RequestState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
        .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI HTTP")))?;
    let pre = linker
        .instantiate_pre(component)
        .and_then(ProxyPre::new)
        .map_err(|err| RunError::invalid(anyhow!("{origin}: cannot serve it: {err:#}")))?;
    // Check now that a WASI context can be built from the configuration (preopens exist…).
    wasi::builder(config).map_err(RunError::invalid)?;
    let budget = MemoryBudget::for_container(config.memory_limit);
    let server = Arc::new(Server { pre, config: config.clone(), origin: origin.clone(), budget });
    // A worker per core the container may use (its cgroup's CPU quota, its affinity), whatever
    // TOKIO_WORKER_THREADS the shim set for its own runtimes.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name("http")
        .build()
        .context("starting the HTTP server's runtime")
        .map_err(RunError::internal)?;
    // The epoch ticks on a thread of its own: on the runtime, it would wait for a worker, and
    // spinning guests that yield only at a tick could hold every worker.
    let ticking = engine.clone();
    std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })
        .context("starting the epoch thread")
        .map_err(RunError::internal)?;
    let outcome = runtime.block_on(accept_loop(server));
    runtime.shutdown_background();
    outcome
}

async fn accept_loop(server: Arc<Server>) -> Result<ExitStatus, RunError> {
    let address = server.config.http_address;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("{}: cannot listen on {address}", server.origin))
        .map_err(RunError::invalid)?;
    // From now on SIGTERM and SIGINT stop the server (see `crate::signals`).
    let mut stop = crate::signals::stop_gracefully()
        .and_then(|stop| {
            stop.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(stop)
        })
        .context("handling SIGTERM and SIGINT")
        .map_err(RunError::internal)?;
    log::info!("{}: serving wasi:http on http://{address}/", server.origin);
    say(&format!("serving HTTP on {address}"));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        log::warn!("accepting a connection: {err}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                let service = hyper::service::service_fn(move |request| handle(server.clone(), request));
                let connection = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        log::debug!("connection from {peer}: {err}");
                    }
                });
            }
            _ = stop.read_u8() => break,
        }
    }
    drop(listener);
    log::info!("{}: stopping: finishing the requests in flight", server.origin);
    match tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await {
        Ok(()) => say("HTTP server stopped"),
        Err(_) => say(&format!("HTTP server stopped; requests still running after {DRAIN_TIMEOUT:?} were cut off")),
    }
    Ok(0)
}

/// A line on the container's stderr, where the server's users look (`ctr`, `kubectl logs`).
fn say(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "wasmbox: {line}");
}

/// Handles one request with a fresh instance; a guest that fails answers 500, said on stderr.
async fn handle(
    server: Arc<Server>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>, Infallible> {
    let what = format!("{} {}", request.method(), request.uri());
    match call_guest(&server, request).await {
        Ok(response) => Ok(response),
        Err(err) => {
            say(&format!("{}: {what}: {err:#}", server.origin));
            Ok(error_response(&err))
        }
    }
}

async fn call_guest(
    server: &Server,
    request: hyper::Request<Incoming>,
) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
    let component = ComponentState::new(wasi::async_builder(&server.config)?.build(), server.budget.clone());
    let state = RequestState { component, http: WasiHttpCtx::new() };
    let mut store = Store::new(server.pre.engine(), state);
    store.limiter(|state| &mut state.component.limiter);
    let started = Instant::now();
    let limit = server.config.http_request_timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if started.elapsed() >= limit {
            return Err(wasmtime::Error::new(RequestTimedOut(limit)));
        }
        Ok(UpdateDeadline::Yield(1))
    });
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let request = store.data_mut().http().new_incoming_request(Scheme::Http, request).map_err(anyhow::Error::from)?;
    let out = store.data_mut().http().new_response_outparam(sender).map_err(anyhow::Error::from)?;
    let pre = server.pre.clone();
    let origin = server.origin.clone();
    // The guest may go on writing the body after it has set the response: run it on its own task.
    let task = tokio::spawn(async move {
        let proxy = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|err| anyhow!("{:#}", RunError::from_instantiation(&origin, err)))?;
        let outcome = proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await;
        outcome.map_err(|err| {
            if let Some(timed_out) = err.downcast_ref::<RequestTimedOut>() {
                return anyhow!("{timed_out}");
            }
            let failure = store.data().component.limiter.explain_trap(RunError::from_guest(&origin, err));
            anyhow!("{failure}")
        })
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(anyhow!("the guest answered with error {code:?}")),
        Err(_) => {
            let cause = match task.await {
                Ok(Ok(())) => anyhow!("it returned without setting a response"),
                Ok(Err(err)) => err,
                Err(err) => anyhow::Error::from(err),
            };
            Err(cause.context("the guest did not answer"))
        }
    }
}

/// A plain-text 500 response saying why.
fn error_response(err: &anyhow::Error) -> hyper::Response<HyperOutgoingBody> {
    use http_body_util::BodyExt;
    let cause = format!("{err:#}");
    let text = format!("wasmbox: {}\n", cause.lines().next().unwrap_or_default());
    let body = http_body_util::Full::new(bytes::Bytes::from(text))
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
    response
}
