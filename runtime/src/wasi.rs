//! The WASI context of a guest, built from a [`RunConfig`]: args, env, cwd, stdio and preopens.

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::annotations::NetworkPolicy;
use crate::config::RunConfig;

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

/// Keeps a guest's linear memories within what is left of the container's memory limit.
///
/// A refused `memory.grow` returns -1 to the guest, which may handle it; the refusal is
/// remembered so that a trap that follows can be reported as the memory limit being hit.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    /// Bytes all of the guest's memories together may use; `None`: no limit.
    pub limit: Option<usize>,
    /// The size of a growth that was refused, if one was.
    pub refused: Option<usize>,
}

/// Memory the process needs besides the guest's linear memory: the shim library, wasmtime,
/// the compiled code. Taken off the container's limit, so the kernel's OOM killer is not what
/// stops a growing guest.
const HOST_HEADROOM: u64 = 24 << 20;

impl MemoryLimiter {
    /// A limiter for a container whose cgroup memory limit is `container_limit`.
    pub fn for_container(container_limit: Option<u64>) -> Self {
        let limit = container_limit.map(|limit| limit.saturating_sub(HOST_HEADROOM).max(1 << 20) as usize);
        MemoryLimiter { limit, refused: None }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        match self.limit {
            Some(limit) if desired > limit => {
                log::info!("memory.grow from {current} to {desired} bytes refused: the limit is {limit}");
                self.refused = Some(desired);
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
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
    pub fn new(config: &RunConfig) -> Result<Self> {
        Ok(Self::with_ctx(builder(config)?.build(), config))
    }

    /// The state around an already built WASI context (an async one, for HTTP requests).
    pub fn with_ctx(ctx: WasiCtx, config: &RunConfig) -> Self {
        ComponentState { ctx, table: ResourceTable::new(), limiter: MemoryLimiter::for_container(config.memory_limit) }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}
