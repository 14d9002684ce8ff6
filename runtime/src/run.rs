//! Instantiating a [`Program`] and calling its entry point; every outcome becomes an exit code.
//!
//! | outcome | exit code |
//! |---|---|
//! | the guest returns from `_start` / `wasi:cli/run` | 0 (a component's `run` returning `err`: 1) |
//! | the guest calls `proc_exit(n)` / `wasi:cli/exit` | `n` |
//! | the guest traps | 134 (128 + SIGABRT, as `wasmtime run`), the trap and its wasm backtrace on stderr |
//! | the entry point file does not exist | 127 |
//! | the file is not valid WebAssembly, an import is missing, the export is missing, a bad argument | 126 |
//! | anything else the host could not do | 125 |

use std::fmt;

use anyhow::{Context, anyhow};
use wasmtime::component::Linker as ComponentLinker;
use wasmtime::{Func, Linker, Module, Store, Val, ValType};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::Command;

use crate::config::{Entrypoint, RunConfig};
use crate::engine::{Engine, Program, ProgramKind};
use crate::wasi::{self, ComponentState};

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
    /// Instantiates `program` with a WASI context from `config` and runs `entry`'s function
    /// (`_start` / `wasi:cli/run` when none is named), on the calling thread.
    ///
    /// The args after `argv[0]` go to the guest as its argv; when `entry` names a function of a
    /// core module that takes parameters, they are parsed as that function's arguments instead
    /// and its results are printed to stdout, one per line.
    pub fn run(&self, program: &Program, entry: &Entrypoint, config: &RunConfig) -> Result<ExitStatus, RunError> {
        match &program.kind {
            ProgramKind::Module(module) => self.run_module(module, &program.origin, entry, config),
            ProgramKind::Component(component) => {
                if let Some(func) = &entry.func {
                    return Err(RunError::invalid(anyhow!(
                        "{}: calling `#{func}` on a component is not supported yet; run it without `#`",
                        program.origin
                    )));
                }
                self.run_component(component, &program.origin, config)
            }
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
        let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)
            .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI preview 1")))?;
        let wasi = wasi::builder(config).map_err(RunError::internal)?.build_p1();
        let mut store = Store::new(engine, wasi);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|err| instantiation_error(origin, err))?;

        let func_name = entry.func.as_deref().unwrap_or("_start");
        let func = instance.get_func(&mut store, func_name).ok_or_else(|| {
            let exports: Vec<&str> = module
                .exports()
                .filter(|e| e.ty().func().is_some())
                .map(|e| e.name())
                .collect();
            RunError::invalid(anyhow!(
                "{origin}: no exported function `{func_name}` (exported functions: {}){}",
                if exports.is_empty() { "none".to_owned() } else { exports.join(", ") },
                if entry.func.is_none() { "; name one with `path#function`" } else { "" }
            ))
        })?;
        if entry.func.is_some() {
            if let Some(init) = instance.get_func(&mut store, "_initialize") {
                init.call(&mut store, &[], &mut []).map_err(|err| match exit_or_error(origin, err) {
                    Ok(code) => RunError::new(
                        FailureKind::Trap,
                        anyhow!("{origin}: `_initialize` exited with code {code}"),
                    ),
                    Err(err) => err,
                })?;
            }
        }
        let params = match entry.func {
            Some(_) => parse_args(&func, &store, func_name, origin, config.args.get(1..).unwrap_or_default())?,
            None => Vec::new(),
        };
        let mut results = vec![Val::I32(0); func.ty(&store).results().len()];
        match func.call(&mut store, &params, &mut results) {
            Ok(()) => {
                for value in &results {
                    println!("{}", format_val(value));
                }
                Ok(0)
            }
            Err(err) => exit_or_error(origin, err),
        }
    }

    fn run_component(
        &self,
        component: &wasmtime::component::Component,
        origin: &str,
        config: &RunConfig,
    ) -> Result<ExitStatus, RunError> {
        let engine = self.wasmtime();
        let mut linker: ComponentLinker<ComponentState> = ComponentLinker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|err| RunError::internal(anyhow::Error::from(err).context("linking WASI preview 2")))?;
        let state = ComponentState::new(config).map_err(RunError::internal)?;
        let mut store = Store::new(engine, state);
        let command = Command::instantiate(&mut store, component, &linker)
            .map_err(|err| instantiation_error(origin, err))?;
        match command.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(err) => exit_or_error(origin, err),
        }
    }
}

/// Classifies an error raised while the guest ran: `proc_exit`, a trap, or a host failure.
fn exit_or_error(origin: &str, err: wasmtime::Error) -> Result<ExitStatus, RunError> {
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Ok(exit.0);
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        let detail = err
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|bt| bt.to_string().trim_end().to_owned());
        return Err(RunError {
            kind: FailureKind::Trap,
            error: anyhow!("{origin}: wasm trap: {trap}"),
            detail,
        });
    }
    Err(RunError::new(FailureKind::Trap, anyhow!("{origin}: {err:#}")))
}

/// Instantiation fails on unknown imports (the guest's fault) or on a trap in a start function.
fn instantiation_error(origin: &str, err: wasmtime::Error) -> RunError {
    if err.downcast_ref::<wasmtime::Trap>().is_some() {
        return exit_or_error(origin, err).err().unwrap_or_else(|| {
            RunError::new(FailureKind::Trap, anyhow!("{origin}: exited during instantiation"))
        });
    }
    RunError::invalid(anyhow!("{origin}: cannot instantiate: {err:#}"))
}

/// Parses the container's remaining args as the parameters of `func`.
fn parse_args<T>(
    func: &Func,
    store: &Store<T>,
    name: &str,
    origin: &str,
    args: &[String],
) -> Result<Vec<Val>, RunError> {
    let ty = func.ty(store);
    let signature = || {
        let params: Vec<String> = ty.params().map(|p| p.to_string()).collect();
        let results: Vec<String> = ty.results().map(|p| p.to_string()).collect();
        format!("{name}({}) -> ({})", params.join(", "), results.join(", "))
    };
    if ty.params().len() == 0 {
        return Ok(Vec::new());
    }
    if ty.params().len() != args.len() {
        return Err(RunError::invalid(anyhow!(
            "{origin}: `{}` takes {} argument(s), {} given",
            signature(),
            ty.params().len(),
            args.len()
        )));
    }
    ty.params()
        .zip(args)
        .enumerate()
        .map(|(i, (param, arg))| {
            parse_val(&param, arg).with_context(|| {
                format!("{origin}: argument {} of `{}`: cannot read {arg:?} as {param}", i + 1, signature())
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(RunError::invalid)
}

fn parse_val(ty: &ValType, text: &str) -> anyhow::Result<Val> {
    Ok(match ty {
        ValType::I32 => Val::I32(text.parse()?),
        ValType::I64 => Val::I64(text.parse()?),
        ValType::F32 => Val::F32(text.parse::<f32>()?.to_bits()),
        ValType::F64 => Val::F64(text.parse::<f64>()?.to_bits()),
        other => anyhow::bail!("parameters of type {other} cannot be given as text"),
    })
}

fn format_val(value: &Val) -> String {
    match value {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        other => format!("{other:?}"),
    }
}
