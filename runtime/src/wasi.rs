//! The WASI context of a guest, built from a [`RunConfig`]: args, env, cwd, stdio and preopens.

use anyhow::{Context, Result};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::config::RunConfig;

/// A WASI builder filled in from `config`, with the process's own stdio (the container's FIFOs).
pub fn builder(config: &RunConfig) -> Result<WasiCtxBuilder> {
    let mut builder = WasiCtxBuilder::new();
    // The guest is the only thing this process runs: let file I/O block this thread
    // instead of bouncing through a thread pool.
    builder.allow_blocking_current_thread(true);
    builder.inherit_stdio();
    builder.args(&config.args);
    builder.envs(&config.env);
    builder.initial_cwd(&config.cwd);
    for preopen in &config.preopens {
        let perms = if preopen.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("preopening {} as {}", preopen.host.display(), preopen.guest))?;
    }
    Ok(builder)
}

/// Store data of a component: the WASI context and the table of its resources.
pub struct ComponentState {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
}

impl ComponentState {
    pub fn new(config: &RunConfig) -> Result<Self> {
        Ok(ComponentState {
            ctx: builder(config)?.build(),
            table: ResourceTable::new(),
        })
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
