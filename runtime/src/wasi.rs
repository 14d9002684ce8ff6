//! The WASI context of a guest, built from a [`RunConfig`]: args, env, cwd, stdio, preopens and
//! the network policy; and the store data that carries it.

use std::sync::Arc;

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::RunConfig;
use crate::limits::{MemoryBudget, MemoryLimiter};
use crate::settings::NetworkPolicy;

/// A WASI builder filled in from `config`, with the process's own stdio (the container's FIFOs),
/// for a guest that runs alone on its thread.
pub fn builder(config: &RunConfig) -> Result<WasiCtxBuilder> {
    // The guest is the only thing this thread runs: let file I/O block it instead of
    // bouncing through a thread pool.
    builder_with(config, true)
}

/// A WASI builder filled in from `config` for guests that share an async runtime (HTTP requests).
pub fn async_builder(config: &RunConfig) -> Result<WasiCtxBuilder> {
    builder_with(config, false)
}

fn builder_with(config: &RunConfig, blocking: bool) -> Result<WasiCtxBuilder> {
    let mut builder = WasiCtxBuilder::new();
    // Must come before the preopens, which take the setting when they are added.
    builder.allow_blocking_current_thread(blocking);
    builder.inherit_stdio();
    builder.args(&config.args);
    builder.envs(&config.env);
    builder.initial_cwd(&config.cwd);
    if config.network != NetworkPolicy::None {
        let policy = config.network.clone();
        builder.allow_tcp(true);
        builder.allow_udp(true);
        builder.allow_ip_name_lookup(policy == NetworkPolicy::All);
        builder.socket_addr_check(move |addr, use_| {
            let binding = matches!(use_, SocketAddrUse::TcpBind | SocketAddrUse::UdpBind);
            let allowed = policy.allows(addr.ip(), binding);
            Box::pin(async move { allowed })
        });
    }
    for preopen in &config.preopens {
        let perms = if preopen.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("preopening {} as {}", preopen.host.display(), preopen.guest))?;
    }
    Ok(builder)
}

/// Store data of a core module: its WASI preview 1 context and its memory limiter.
pub struct ModuleState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryLimiter,
}

/// Store data of a component: the WASI context, the table of its resources, the memory limiter.
pub struct ComponentState {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
}

impl ComponentState {
    /// The state around a WASI context, drawing linear memory from `budget`.
    pub fn new(ctx: WasiCtx, budget: Arc<MemoryBudget>) -> Self {
        ComponentState { ctx, table: ResourceTable::new(), limiter: MemoryLimiter::new(budget) }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}
