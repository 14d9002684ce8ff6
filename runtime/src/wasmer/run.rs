//! Running a module on Wasmer: its WASI preview 1 context (wasmer-wasix) from a [`RunConfig`],
//! its `_start` or the functions `#f,g` names, and every outcome as an exit status.
//!
//! The context holds the container's args, env, cwd and preopens (`ro` preopens get no write
//! or create rights); it has no network (wasmbox builds wasmer-wasix without host networking
//! or an HTTP client) and runs its tasks on a one-worker tokio runtime of its own.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use wasmer::{
    Extern, Function, Imports, Instance, InstantiationError, LinkError, Module, RuntimeError, Store, Type, Value,
};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::virtual_fs::MountFileSystem;
use wasmer_wasix::{PluggableRuntime, WasiEnv, WasiError, WasiFunctionEnv};

use super::files::HostDir;
use super::jshost;
use crate::config::{Entrypoint, RunConfig};
use crate::error::{ExitStatus, FailureKind, RunError};
use crate::invoke::{self, Args, CoreArg, CoreType};

/// Instantiates `module` with a WASI context from `config` and runs `entry` on `engine`.
pub fn run(
    engine: wasmer::Engine,
    module: &Module,
    origin: &str,
    entry: &Entrypoint,
    config: &RunConfig,
) -> Result<ExitStatus, RunError> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|err| RunError::internal(anyhow!("starting the WASI runtime: {err}")))?;
    let _entered = tokio.enter();
    let mut runtime = PluggableRuntime::new(Arc::new(TokioTaskManager::new(tokio.handle().clone())));
    runtime.set_engine(engine.clone());
    let mut store = Store::new(engine);

    let program_name = config.args.first().cloned().unwrap_or_default();
    let mut builder = WasiEnv::builder(program_name)
        .args(config.args.iter().skip(1))
        .envs(config.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .runtime(Arc::new(runtime));
    // No current directory: as on wasmtime, a preview 1 guest starts at `/` and gets the cwd as
    // `PWD` (`RunConfig::with_pwd`).
    builder.set_mount_fs(preopened_file_system(tokio.handle(), config)?);
    for preopen in &config.preopens {
        let writable = !preopen.read_only;
        builder
            .add_preopen_build(|dir| dir.directory(&preopen.guest).read(true).write(writable).create(writable))
            .map_err(|err| RunError::internal(anyhow!("preopening {}: {err}", preopen.guest)))?;
    }

    // A module that imports no WASI (the seed's text examples) is instantiated without it.
    let uses_wasi = wasmer_wasix::get_wasi_versions(module, false).is_some_and(|versions| !versions.is_empty());
    let mut wasi = match uses_wasi {
        true => Some(builder.finalize(&mut store).map_err(|err| RunError::internal(anyhow!("{origin}: WASI: {err}")))?),
        false => None,
    };
    let mut imports = match &wasi {
        Some(wasi) => wasi
            .import_object_for_all_wasi_versions(&mut store, module)
            .map_err(|err| RunError::invalid(anyhow!("{origin}: {err}")))?,
        None => Imports::new(),
    };
    let js = jshost::define_imports(&mut store, module, &mut imports)
        .map_err(|err| RunError::invalid(anyhow!("{origin}: {err:#}")))?;
    let instance = Instance::new(&mut store, module, &imports).map_err(|err| from_instantiation(origin, err))?;
    jshost::set_exported_memory(&mut store, &js, &instance);
    if let Some(wasi) = &mut wasi {
        wasi.initialize(&mut store, instance.clone())
            .map_err(|err| RunError::invalid(anyhow!("{origin}: cannot instantiate: {err}")))?;
    }

    let outcome = call(&mut store, &instance, module, origin, entry, config)
        .map_err(|err| explain_memory_limit(err, &mut store, &instance, config.memory_limit));
    if let Some(wasi) = &wasi {
        let code = match &outcome {
            Ok(()) => 0,
            Err(RunError { kind: FailureKind::Exit(code), .. }) => *code,
            Err(err) => err.exit_code(),
        };
        on_exit(wasi, &mut store, code);
    }
    match outcome {
        Ok(()) => Ok(0),
        Err(RunError { kind: FailureKind::Exit(code), .. }) => Ok(code),
        Err(err) => Err(err),
    }
}

/// The guest's file system: each preopened directory mounted at its path, and nothing else
/// (wasmer-wasix's default is an in-memory file system, where the guest's writes would vanish).
fn preopened_file_system(tokio: &tokio::runtime::Handle, config: &RunConfig) -> Result<MountFileSystem, RunError> {
    let mounts = MountFileSystem::new();
    // Shallower first, so that a directory mounted inside another is found under it.
    let mut preopens: Vec<_> = config.preopens.iter().collect();
    preopens.sort_by_key(|preopen| Path::new(&preopen.guest).components().count());
    for preopen in preopens {
        let host = HostDir::new(tokio.clone(), &preopen.host)
            .map_err(|err| RunError::internal(anyhow!("preopening {}: {err}", preopen.host.display())))?;
        mounts
            .mount(&preopen.guest, Arc::new(host))
            .map_err(|err| RunError::internal(anyhow!("preopening {}: {err}", preopen.guest)))?;
    }
    Ok(mounts)
}

/// How close to the container's memory limit a trapping guest's memory must be for the trap to be
/// put down to the limit: a refused `memory.grow` leaves the guest's allocator without memory
/// (Wasmer does not tell a refusal apart; wasmtime's [`crate::limits`] does).
const NEAR_THE_LIMIT: u64 = 16 << 20;

/// Says so in a trap's error when the guest's memory had reached the container's limit.
fn explain_memory_limit(mut err: RunError, store: &mut Store, instance: &Instance, limit: Option<u64>) -> RunError {
    let (FailureKind::Trap, Some(limit)) = (err.kind, limit) else { return err };
    let Ok(memory) = instance.exports.get_memory("memory") else { return err };
    let size = memory.view(&*store).data_size();
    if size.saturating_add(NEAR_THE_LIMIT) >= limit {
        err.error = anyhow!(
            "{} (the container's memory limit was hit: the guest's linear memory is {size} bytes, the limit {limit})",
            err.error
        );
    }
    err
}

/// Closes the guest's files and ends its WASI process.
fn on_exit(wasi: &WasiFunctionEnv, store: &mut Store, code: ExitStatus) {
    let code = wasmer_wasix::types::wasi::ExitCode::from(u16::try_from(code & 0xffff).unwrap_or(u16::MAX));
    wasi.on_exit(store, Some(code));
}

fn call(
    store: &mut Store,
    instance: &Instance,
    module: &Module,
    origin: &str,
    entry: &Entrypoint,
    config: &RunConfig,
) -> Result<(), RunError> {
    let exports: Vec<String> = module
        .exports()
        .filter(|e| matches!(e.ty(), wasmer::ExternType::Function(_)))
        .map(|e| e.name().to_owned())
        .collect();
    let Some(names) = &entry.func else {
        let start = instance.exports.get_function("_start").map_err(|_| {
            RunError::invalid(anyhow!(
                "{origin}: no exported function `_start` (exported functions: {}); name one with `path#function`",
                if exports.is_empty() { "none".to_owned() } else { exports.join(", ") }
            ))
        })?;
        start.call(store, &[]).map_err(|err| from_guest(origin, err))?;
        return Ok(());
    };
    if let Ok(initialize) = instance.exports.get_function("_initialize") {
        initialize.call(store, &[]).map_err(|err| from_guest(origin, err))?;
    }
    let mut args = Args { origin, remaining: config.args.get(1..).unwrap_or_default().iter() };
    for name in names.split(',') {
        let func = match instance.exports.get_extern(name) {
            Some(Extern::Function(func)) => func.clone(),
            _ => return Err(invoke::no_such_export(origin, name, &exports)),
        };
        for line in call_func(store, instance, &func, name, &mut args)? {
            println!("{line}");
        }
    }
    args.finish(names)
}

/// Calls `func` with its arguments read from `args`; returns its results as text.
fn call_func(
    store: &mut Store,
    instance: &Instance,
    func: &Function,
    name: &str,
    args: &mut Args<'_>,
) -> Result<Vec<String>, RunError> {
    let origin = args.origin;
    let ty = func.ty(store);
    let params: Vec<CoreType> = ty.params().iter().map(core_type).collect();
    let results: Vec<CoreType> = ty.results().iter().map(core_type).collect();
    let signature = invoke::core_signature(name, &params, &results);
    let mut values = Vec::with_capacity(params.len());
    let mut strings = Vec::new();
    for arg in invoke::read_core_args(args, &signature, &params)? {
        match arg {
            CoreArg::I32(v) => values.push(Value::I32(v)),
            CoreArg::I64(v) => values.push(Value::I64(v)),
            CoreArg::F32(v) => values.push(Value::F32(v)),
            CoreArg::F64(v) => values.push(Value::F64(v)),
            CoreArg::Str(text) => {
                let ptr = write_guest_string(store, instance, text).map_err(|err| {
                    RunError::invalid(anyhow!("{origin}: passing \"str:{text}\" to `{signature}`: {err:#}"))
                })?;
                strings.push(ptr);
                values.push(Value::I32(ptr));
                values.push(Value::I32(text.len() as i32));
            }
        }
    }
    let outcome = func.call(store, &values);
    for ptr in strings {
        free_guest_memory(store, instance, ptr);
    }
    let results = outcome.map_err(|err| from_guest(origin, err))?;
    Ok(results.iter().map(jshost::format_number).collect())
}

fn core_type(ty: &Type) -> CoreType {
    match ty {
        Type::I32 => CoreType::I32,
        Type::I64 => CoreType::I64,
        Type::F32 => CoreType::F32,
        Type::F64 => CoreType::F64,
        other => CoreType::Other(other.to_string().to_lowercase()),
    }
}

/// Allocates `text.len() + 1` bytes with the guest's `malloc` (or `cabi_realloc`) and copies
/// `text` and a NUL there.
fn write_guest_string(store: &mut Store, instance: &Instance, text: &str) -> anyhow::Result<i32> {
    let size = i32::try_from(text.len() + 1).map_err(|_| anyhow!("string too long"))?;
    let ptr = if let Ok(malloc) = instance.exports.get_typed_function::<i32, i32>(store, "malloc") {
        malloc.call(store, size).map_err(|err| anyhow!("calling the guest's malloc: {}", err.message()))?
    } else if let Ok(realloc) = instance.exports.get_typed_function::<(i32, i32, i32, i32), i32>(store, "cabi_realloc")
    {
        realloc
            .call(store, 0, 0, 1, size)
            .map_err(|err| anyhow!("calling the guest's cabi_realloc: {}", err.message()))?
    } else {
        anyhow::bail!("the module exports no allocator (`malloc(i32) -> i32` or `cabi_realloc`)");
    };
    anyhow::ensure!(ptr != 0, "the guest's allocator returned NULL");
    let memory = instance.exports.get_memory("memory").map_err(|_| anyhow!("the module exports no `memory`"))?;
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    memory.view(store).write(ptr as u32 as u64, &bytes).map_err(|err| anyhow!("writing the string at {ptr}: {err}"))?;
    Ok(ptr)
}

fn free_guest_memory(store: &mut Store, instance: &Instance, ptr: i32) {
    if let Ok(free) = instance.exports.get_typed_function::<i32, ()>(store, "free")
        && let Err(err) = free.call(store, ptr)
    {
        log::warn!("the guest's free({ptr}) failed: {}", err.message());
    }
}

/// Classifies an error raised while guest code ran: `proc_exit`, a trap (with its frames), or a
/// host failure (as [`RunError::from_guest`] does for wasmtime).
fn from_guest(origin: &str, err: RuntimeError) -> RunError {
    if let Some(WasiError::Exit(code)) = err.downcast_ref::<WasiError>() {
        let code = code.raw();
        return RunError::new(FailureKind::Exit(code), anyhow!("{origin}: exited with code {code}"));
    }
    if let Some(other) = err.downcast_ref::<WasiError>() {
        return RunError::internal(anyhow!("{origin}: failed while running (not a trap): {other}"));
    }
    let frames = err.trace();
    let detail = (!frames.is_empty()).then(|| {
        let lines: Vec<String> = frames
            .iter()
            .enumerate()
            .map(|(i, frame)| {
                let name = frame
                    .function_name()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("<wasm function {}>", frame.func_index()));
                format!("  {i:>4}: {:#x} - {}!{name}", frame.module_offset(), frame.module_name())
            })
            .collect();
        format!("wasm backtrace:\n{}", lines.join("\n"))
    });
    RunError { kind: FailureKind::Trap, error: anyhow!("{origin}: wasm trap: {}", err.message()), detail }
}

/// Instantiation fails on unknown imports (the guest's fault), on a trap or `proc_exit` in a
/// start function, or on a host failure.
fn from_instantiation(origin: &str, err: InstantiationError) -> RunError {
    match err {
        InstantiationError::Start(err) => from_guest(origin, err),
        InstantiationError::Link(LinkError::Import(module, name, cause)) => RunError::invalid(anyhow!(
            "{origin}: cannot instantiate: unknown import: `{module}::{name}` has not been defined ({cause})"
        )),
        InstantiationError::Link(LinkError::Trap(err)) => from_guest(origin, err),
        other => RunError::invalid(anyhow!("{origin}: cannot instantiate: {other}")),
    }
}
