//! Instantiating a [`Program`] and calling its entry point; every outcome becomes an exit code.
//!
//! | outcome | exit code |
//! |---|---|
//! | the guest returns from `_start` / `wasi:cli/run` | 0 (a component's `run` returning `err`: 1) |
//! | every function named by `#f,g` returned (results printed) | 0 |
//! | the guest calls `proc_exit(n)` / `wasi:cli/exit` | `n` |
//! | the guest traps | 134 (128 + SIGABRT, as `wasmtime run`), the trap and its wasm backtrace on stderr |
//! | the entry point file does not exist | 127 |
//! | the file is not valid WebAssembly, an import is missing, the export is missing, a bad argument | 126 |
//! | anything else the host could not do | 125 |

use std::fmt;

use anyhow::anyhow;
use wasmtime::component::Linker as ComponentLinker;
use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::sync::Command;

use crate::config::{Entrypoint, RunConfig};
use crate::engine::{Engine, Program, ProgramKind};
use crate::invoke::{self, Args};
use crate::jshost;
use crate::wasi::{self, ComponentState, MemoryLimiter, ModuleState};

/// The exit code of a guest that ran to its end (normally or by `proc_exit`).
pub type ExitStatus = i32;

/// Why a guest could not run to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The entry point file does not exist.
    NotFound,
    /// The file, its imports, the named export or the given arguments are unusable.
    Invalid,
    /// The guest trapped.
    Trap,
    /// The host failed.
    Internal,
    /// The guest called `proc_exit` / `wasi:cli/exit` with this code while a function ran:
    /// not a failure, [`Engine::run`] turns it into its exit status.
    Exit(i32),
}

/// A failure with its one-line cause and, for traps, the wasm backtrace.
#[derive(Debug)]
pub struct RunError {
    pub kind: FailureKind,
    /// The one-line cause.
    pub error: anyhow::Error,
    /// More lines (a trap's backtrace), printed after the cause.
    pub detail: Option<String>,
}

impl RunError {
    pub fn new(kind: FailureKind, error: anyhow::Error) -> Self {
        RunError { kind, error, detail: None }
    }
    pub fn invalid(error: anyhow::Error) -> Self {
        Self::new(FailureKind::Invalid, error)
    }
    pub fn internal(error: anyhow::Error) -> Self {
        Self::new(FailureKind::Internal, error)
    }

    /// The exit code the container reports for this failure.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            FailureKind::NotFound => 127,
            FailureKind::Invalid => 126,
            FailureKind::Trap => 134,
            FailureKind::Internal => 125,
            FailureKind::Exit(code) => code,
        }
    }

    /// The cause, then the detail lines if any: what the container's stderr shows.
    pub fn report(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{self}\n{detail}"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` puts anyhow's chain of causes on one line.
        let text = format!("{:#}", self.error);
        f.write_str(&text.replace('\n', " "))
    }
}

impl std::error::Error for RunError {}

impl Engine {
    /// Instantiates `program` with a WASI context from `config` and runs `entry`'s functions
    /// (`_start` / `wasi:cli/run` when none is named), on the calling thread.
    ///
    /// With no function named, the args after `argv[0]` are the guest's argv. With
    /// `#f1,f2,…`, they are the functions' arguments instead, and the results are printed to
    /// stdout one per line (see [`crate::invoke`]).
    pub fn run(&self, program: &Program, entry: &Entrypoint, config: &RunConfig) -> Result<ExitStatus, RunError> {
        let outcome = match &program.kind {
            ProgramKind::Module(module) => self.run_module(module, &program.origin, entry, config),
            ProgramKind::Component(component) => self.run_component(component, &program.origin, entry, config),
        };
        match outcome {
            Err(RunError { kind: FailureKind::Exit(code), .. }) => Ok(code),
            other => other,
        }
    }

    fn run_module(
        &self,
        module: &Module,
        origin: &str,
        entry: &Entrypoint,
        config: &RunConfig,
    ) -> Result<ExitStatus, RunError> {
        let engine = self.wasmtime();
        let mut linker: Linker<ModuleState> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut ModuleState| &mut state.wasi)
            .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI preview 1")))?;
        let wasi = wasi::builder(config).map_err(RunError::internal)?.build_p1();
        let limiter = MemoryLimiter::for_container(config.memory_limit);
        let mut store = Store::new(engine, ModuleState { wasi, limiter });
        store.limiter(|state| &mut state.limiter);
        let outcome = self.call_module(&mut store, &mut linker, module, origin, entry, config);
        outcome.map_err(|err| note_memory_limit(err, &store.data().limiter))
    }

    fn call_module(
        &self,
        store: &mut Store<ModuleState>,
        linker: &mut Linker<ModuleState>,
        module: &Module,
        origin: &str,
        entry: &Entrypoint,
        config: &RunConfig,
    ) -> Result<ExitStatus, RunError> {
        jshost::define_imports(linker, store, module)
            .map_err(|err| RunError::invalid(anyhow!("{origin}: {err:#}")))?;
        let instance = linker
            .instantiate(&mut *store, module)
            .map_err(|err| instantiation_error(origin, err))?;
        let exports: Vec<String> = module
            .exports()
            .filter(|e| e.ty().func().is_some())
            .map(|e| e.name().to_owned())
            .collect();

        let Some(names) = &entry.func else {
            let start = instance.get_func(&mut *store, "_start").ok_or_else(|| {
                RunError::invalid(anyhow!(
                    "{origin}: no exported function `_start` (exported functions: {}); name one with `path#function`",
                    if exports.is_empty() { "none".to_owned() } else { exports.join(", ") }
                ))
            })?;
            start.call(&mut *store, &[], &mut []).map_err(|err| guest_failure(origin, err))?;
            return Ok(0);
        };
        if let Some(init) = instance.get_func(&mut *store, "_initialize") {
            init.call(&mut *store, &[], &mut []).map_err(|err| guest_failure(origin, err))?;
        }
        let mut args = Args { origin, remaining: config.args.get(1..).unwrap_or_default().iter() };
        for name in names.split(',') {
            for line in invoke::call_module_func(store, &instance, name, &mut args, &exports)? {
                println!("{line}");
            }
        }
        args.finish(names)?;
        Ok(0)
    }

    fn run_component(
        &self,
        component: &wasmtime::component::Component,
        origin: &str,
        entry: &Entrypoint,
        config: &RunConfig,
    ) -> Result<ExitStatus, RunError> {
        let engine = self.wasmtime();
        if entry.func.is_none() && crate::http::is_http_handler(engine, component) {
            return crate::http::serve(self, component, origin, config);
        }
        let mut linker: ComponentLinker<ComponentState> = ComponentLinker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI preview 2")))?;
        let state = ComponentState::new(config).map_err(RunError::internal)?;
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        let outcome = Self::call_component(&mut store, &linker, component, origin, entry, config);
        outcome.map_err(|err| note_memory_limit(err, &store.data().limiter))
    }

    fn call_component(
        store: &mut Store<ComponentState>,
        linker: &ComponentLinker<ComponentState>,
        component: &wasmtime::component::Component,
        origin: &str,
        entry: &Entrypoint,
        config: &RunConfig,
    ) -> Result<ExitStatus, RunError> {
        let Some(names) = &entry.func else {
            let command = Command::instantiate(&mut *store, component, linker)
                .map_err(|err| instantiation_error(origin, err))?;
            return match command.wasi_cli_run().call_run(&mut *store) {
                Ok(Ok(())) => Ok(0),
                Ok(Err(())) => Ok(1),
                Err(err) => Err(guest_failure(origin, err)),
            };
        };
        let instance = linker
            .instantiate(&mut *store, component)
            .map_err(|err| instantiation_error(origin, err))?;
        let mut args = Args { origin, remaining: config.args.get(1..).unwrap_or_default().iter() };
        for name in names.split(',') {
            let func = invoke::component_func(store, &instance, name).ok_or_else(|| {
                RunError::invalid(anyhow!("{origin}: the component exports no function `{name}`"))
            })?;
            for line in invoke::call_component_func(store, func, name, &mut args)? {
                println!("{line}");
            }
        }
        args.finish(names)?;
        Ok(0)
    }
}

/// Says so when a trap followed a refused `memory.grow`: the guest ran out of its memory limit.
fn note_memory_limit(mut err: RunError, limiter: &MemoryLimiter) -> RunError {
    if let (FailureKind::Trap, Some(refused), Some(limit)) = (err.kind, limiter.refused, limiter.limit) {
        err.error = anyhow!(
            "{} (the container's memory limit was hit: growing linear memory to {refused} bytes was refused, the guest may use {limit})",
            err.error
        );
    }
    err
}

/// Classifies an error raised while the guest ran: `proc_exit` (as [`FailureKind::Exit`]), a
/// trap (with its wasm backtrace), or a host failure.
pub(crate) fn guest_failure(origin: &str, err: wasmtime::Error) -> RunError {
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return RunError::new(FailureKind::Exit(exit.0), anyhow!("{origin}: exited with code {}", exit.0));
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        let detail = err
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|bt| bt.to_string().trim_end().to_owned());
        return RunError {
            kind: FailureKind::Trap,
            error: anyhow!("{origin}: wasm trap: {trap}"),
            detail,
        };
    }
    RunError::new(FailureKind::Trap, anyhow!("{origin}: {err:#}"))
}

/// Instantiation fails on unknown imports (the guest's fault) or on a trap in a start function.
fn instantiation_error(origin: &str, err: wasmtime::Error) -> RunError {
    if err.downcast_ref::<wasmtime::Trap>().is_some() || err.downcast_ref::<I32Exit>().is_some() {
        return guest_failure(origin, err);
    }
    RunError::invalid(anyhow!("{origin}: cannot instantiate: {err:#}"))
}
