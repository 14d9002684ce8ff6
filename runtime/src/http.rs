//! Serving a `wasi:http/incoming-handler` component over HTTP/1.1, the way `wasmtime serve` does.
//!
//! A component that exports `wasi:http/incoming-handler@0.2.x` (and is not given a function to
//! call) is a server: it is pre-instantiated once, then every request gets a fresh store and
//! instance, so no state leaks from one request into the next. The listening address is
//! `wasmbox.io/http-address`, else the container's `WASMBOX_HTTP_ADDRESS`, else `0.0.0.0:8080`.
//!
//! SIGTERM (and SIGINT) stop the server gracefully: it stops accepting, lets the requests in
//! flight finish (for at most [`DRAIN_TIMEOUT`]), and the container exits 0.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::config::RunConfig;
use crate::run::{ExitStatus, RunError};
use crate::wasi::{self, ComponentState};

/// How long requests in flight may take to finish after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The export that makes a component an HTTP server.
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// Whether `component` exports `wasi:http/incoming-handler` (any 0.2.x version).
pub fn is_http_handler(engine: &wasmtime::Engine, component: &Component) -> bool {
    component.component_type().exports(engine).any(|(name, _)| name.starts_with(INCOMING_HANDLER))
}

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

/// What every request needs: the pre-instantiated component and the configuration.
struct Server {
    pre: ProxyPre<RequestState>,
    config: RunConfig,
    origin: String,
}

/// Serves `component` on `config.http_address` until SIGTERM or SIGINT; returns the exit status.
///
/// Instances come from wasmtime's pooling allocator when the machine allows it (as with
/// `wasmtime serve`): the component's code is moved to a pooling engine of the same configuration.
pub fn serve(engine: &crate::Engine, component: &Component, origin: &str, config: &RunConfig) -> Result<ExitStatus, RunError> {
    let pooled = engine.pooling().and_then(|pooling| {
        let code = component.serialize().ok()?;
        // SAFETY: the code was just serialized by an engine with the same compatibility hash.
        let moved = unsafe { Component::deserialize(&pooling, &code) };
        moved.map_err(|err| log::info!("{origin}: not served from a pool: {err}")).ok().map(|c| (pooling, c))
    });
    let (engine, component) = match &pooled {
        Some((pooling, moved)) => (pooling, moved),
        None => (engine.wasmtime(), component),
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
    let server = Arc::new(Server { pre, config: config.clone(), origin: origin.to_owned() });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("starting the HTTP server's runtime")
        .map_err(RunError::internal)?;
    runtime.block_on(accept_loop(server))
}

async fn accept_loop(server: Arc<Server>) -> Result<ExitStatus, RunError> {
    let address = server.config.http_address;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("{}: cannot listen on {address}", server.origin))
        .map_err(RunError::invalid)?;
    // Take SIGTERM and SIGINT over: back to their defaults first, so that the handlers tokio
    // installs do not chain to a handler that ends the process at once.
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: resetting a signal disposition to its default.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler").map_err(RunError::internal)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler").map_err(RunError::internal)?;
    log::info!("{}: serving wasi:http on http://{address}/", server.origin);
    eprintln!("wasmbox: serving HTTP on {address}");
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
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(listener);
    log::info!("{}: stopping: finishing the requests in flight", server.origin);
    match tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await {
        Ok(()) => eprintln!("wasmbox: HTTP server stopped"),
        Err(_) => eprintln!("wasmbox: HTTP server stopped; requests still running after {DRAIN_TIMEOUT:?} were cut off"),
    }
    Ok(0)
}

/// Handles one request with a fresh instance; a guest that fails answers 500 and is logged.
async fn handle(
    server: Arc<Server>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<HyperOutgoingBody>, Infallible> {
    match call_guest(&server, request).await {
        Ok(response) => Ok(response),
        Err(err) => {
            log::warn!("{}: request failed: {err:#}", server.origin);
            Ok(error_response(&err))
        }
    }
}

async fn call_guest(
    server: &Server,
    request: hyper::Request<Incoming>,
) -> anyhow::Result<hyper::Response<HyperOutgoingBody>> {
    let component = ComponentState::with_ctx(wasi::async_builder(&server.config)?.build(), &server.config);
    let state = RequestState { component, http: WasiHttpCtx::new() };
    let mut store = Store::new(server.pre.engine(), state);
    store.limiter(|state| &mut state.component.limiter);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let request = store.data_mut().http().new_incoming_request(Scheme::Http, request).map_err(anyhow::Error::from)?;
    let out = store.data_mut().http().new_response_outparam(sender).map_err(anyhow::Error::from)?;
    let pre = server.pre.clone();
    // The guest may go on writing the body after it has set the response: run it on its own task.
    let task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
    });
    match receiver.await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(code)) => Err(anyhow!("the guest answered with error {code:?}")),
        Err(_) => {
            let cause = match task.await {
                Ok(Ok(())) => anyhow!("it returned without setting a response"),
                Ok(Err(err)) => anyhow::Error::from(err),
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
