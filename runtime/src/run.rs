//! Running a loaded [`Program`]: instantiating it with its WASI context and calling its entry
//! point (`_start`, `wasi:cli/run`, or the functions `#f,g` names), or serving it over HTTP when
//! it is a `wasi:http` component; every outcome becomes an exit status (see [`crate::error`]).

use anyhow::anyhow;
use wasmtime::component::Linker as ComponentLinker;
use wasmtime::{Linker, Module, Store};
use wasmtime_wasi::p2::bindings::sync::Command;

use crate::code::{Program, ProgramKind};
use crate::config::{Entrypoint, RunConfig};
use crate::engine::Engine;
use crate::error::{ExitStatus, FailureKind, RunError};
use crate::invoke::{self, Args};
use crate::jshost;
use crate::limits::{MemoryBudget, MemoryLimiter};
use crate::wasi::{self, ComponentState, ModuleState};

/// No epoch deadline for a command: only HTTP requests are given one (see [`crate::http`]).
const NO_EPOCH_DEADLINE: u64 = u64::MAX / 2;

/// Instantiates `program` with a WASI context from `config` and runs `entry`'s functions
/// (`_start` / `wasi:cli/run` when none is named), on the calling thread; a `wasi:http`
/// component with no function named is served until SIGTERM instead.
///
/// With no function named, the args after `argv[0]` are the guest's argv. With `#f1,f2,…`,
/// they are the functions' arguments instead, and the results are printed to stdout one per
/// line (see [`crate::invoke`]).
pub fn run(engine: &Engine, program: &Program, entry: &Entrypoint, config: &RunConfig) -> Result<ExitStatus, RunError> {
    if let ProgramKind::Component(component) = &program.kind
        && entry.func.is_none()
        && crate::code::exports_http_handler(engine.wasmtime(), component)
    {
        return crate::http::serve(engine, program, config);
    }
    let host_calls = host_call_runtime()?;
    let outcome = {
        let _entered = host_calls.enter();
        match &program.kind {
            ProgramKind::Module(module) => run_module(engine, module, &program.origin, entry, config),
            ProgramKind::Component(component) => run_component(engine, component, &program.origin, entry, config),
        }
    };
    // Nothing waits for a host call still blocked on a thread of the runtime (a read of stdin).
    host_calls.shutdown_background();
    match outcome {
        Err(RunError { kind: FailureKind::Exit(code), .. }) => Ok(code),
        other => other,
    }
}

/// The tokio runtime that the guest's WASI host calls run on: wasmtime-wasi blocks on its futures
/// in the runtime the calling thread has entered, else in a global one it builds with tokio's
/// defaults. This one has one worker (a guest calls from one thread) and takes 64 I/O events a
/// turn instead of 1024: the global's 12 KiB events buffer lived as long as the container. A
/// thread of its blocking pool ends a second after its last file operation instead of ten.
fn host_call_runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_io_events_per_tick(64)
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .enable_all()
        .build()
        .map_err(|err| {
            RunError::internal(anyhow::Error::from(err).context("starting the runtime of WASI's host calls"))
        })
}

fn run_module(
    engine: &Engine,
    module: &Module,
    origin: &str,
    entry: &Entrypoint,
    config: &RunConfig,
) -> Result<ExitStatus, RunError> {
    let mut linker: Linker<ModuleState> = Linker::new(engine.wasmtime());
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut ModuleState| &mut state.wasi)
        .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI preview 1")))?;
    let wasi = wasi::builder(config).map_err(RunError::internal)?.build_p1();
    let limiter = MemoryLimiter::new(MemoryBudget::for_container(config.memory_limit));
    let mut store = Store::new(engine.wasmtime(), ModuleState { wasi, limiter });
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(NO_EPOCH_DEADLINE);
    let outcome = call_module(&mut store, &mut linker, module, origin, entry, config);
    outcome.map_err(|err| store.data().limiter.explain_trap(err))
}

fn call_module(
    store: &mut Store<ModuleState>,
    linker: &mut Linker<ModuleState>,
    module: &Module,
    origin: &str,
    entry: &Entrypoint,
    config: &RunConfig,
) -> Result<ExitStatus, RunError> {
    jshost::define_imports(linker, store, module).map_err(|err| RunError::invalid(anyhow!("{origin}: {err:#}")))?;
    let instance = linker.instantiate(&mut *store, module).map_err(|err| RunError::from_instantiation(origin, err))?;
    let exports: Vec<String> =
        module.exports().filter(|e| e.ty().func().is_some()).map(|e| e.name().to_owned()).collect();

    let Some(names) = &entry.func else {
        let start = instance.get_func(&mut *store, "_start").ok_or_else(|| {
            RunError::invalid(anyhow!(
                "{origin}: no exported function `_start` (exported functions: {}); name one with `path#function`",
                if exports.is_empty() { "none".to_owned() } else { exports.join(", ") }
            ))
        })?;
        start.call(&mut *store, &[], &mut []).map_err(|err| RunError::from_guest(origin, err))?;
        return Ok(0);
    };
    if let Some(init) = instance.get_func(&mut *store, "_initialize") {
        init.call(&mut *store, &[], &mut []).map_err(|err| RunError::from_guest(origin, err))?;
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
    engine: &Engine,
    component: &wasmtime::component::Component,
    origin: &str,
    entry: &Entrypoint,
    config: &RunConfig,
) -> Result<ExitStatus, RunError> {
    let mut linker: ComponentLinker<ComponentState> = ComponentLinker::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI preview 2")))?;
    let ctx = wasi::builder(config).map_err(RunError::internal)?.build();
    let state = ComponentState::new(ctx, MemoryBudget::for_container(config.memory_limit));
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(NO_EPOCH_DEADLINE);
    let outcome = call_component(&mut store, &linker, component, origin, entry, config);
    outcome.map_err(|err| store.data().limiter.explain_trap(err))
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
            .map_err(|err| RunError::from_instantiation(origin, err))?;
        return match command.wasi_cli_run().call_run(&mut *store) {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(err) => Err(RunError::from_guest(origin, err)),
        };
    };
    let instance =
        linker.instantiate(&mut *store, component).map_err(|err| RunError::from_instantiation(origin, err))?;
    let mut args = Args { origin, remaining: config.args.get(1..).unwrap_or_default().iter() };
    for name in names.split(',') {
        let func = invoke::component_func(store, &instance, name)
            .ok_or_else(|| RunError::invalid(anyhow!("{origin}: the component exports no function `{name}`")))?;
        for line in invoke::call_component_func(store, func, name, &mut args)? {
            println!("{line}");
        }
    }
    args.finish(names)?;
    Ok(0)
}
