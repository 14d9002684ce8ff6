//! Why a guest did not run to its end, and the exit code each outcome becomes.
//!
//! | outcome | exit code |
//! |---|---|
//! | the guest returns from `_start` / `wasi:cli/run` | 0 (a component's `run` returning `err`: 1) |
//! | every function named by `#f,g` returned (results printed) | 0 |
//! | the guest calls `proc_exit(n)` / `wasi:cli/exit` | `n` |
//! | the guest traps | 134 (128 + SIGABRT, as `wasmtime run`), the trap and its wasm backtrace on stderr |
//! | the entry point file does not exist | 127 |
//! | the file is not valid WebAssembly, an import is missing, the export is missing, a bad argument | 126 |
//! | the workload's engine cannot run it (a component on Wasmer, a setting the engine lacks): the create fails | 126 |
//! | anything the host could not do, before or while the guest ran | 125 |

use std::fmt;

use anyhow::anyhow;
use wasmtime_wasi::I32Exit;

/// The exit code of a guest that ran to its end (normally or by `proc_exit`).
pub type ExitStatus = i32;

/// Why a guest could not run to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The entry point file does not exist.
    NotFound,
    /// The file, its imports, the named export or the given arguments are unusable.
    Invalid,
    /// The engine the workload chose cannot run it, or cannot honour one of its settings: the
    /// container's create fails.
    Unsupported,
    /// The guest trapped.
    Trap,
    /// The host failed.
    Internal,
    /// The guest called `proc_exit` / `wasi:cli/exit` with this code while a function ran:
    /// not a failure, [`crate::run::run`] turns it into its exit status.
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
            FailureKind::Invalid | FailureKind::Unsupported => 126,
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

    /// Classifies an error raised while guest code ran: `proc_exit` (as [`FailureKind::Exit`]),
    /// a trap (with its wasm backtrace), or any other error a host call raised, which is no trap
    /// and ends the guest with the runtime's own failure code, 125 (as `wasmtime run` tells
    /// traps from other errors).
    pub fn from_guest(origin: &str, err: wasmtime::Error) -> Self {
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            return RunError::new(FailureKind::Exit(exit.0), anyhow!("{origin}: exited with code {}", exit.0));
        }
        if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
            let detail = err.downcast_ref::<wasmtime::WasmBacktrace>().map(|bt| bt.to_string().trim_end().to_owned());
            return RunError { kind: FailureKind::Trap, error: anyhow!("{origin}: wasm trap: {trap}"), detail };
        }
        RunError::internal(anyhow!("{origin}: failed while running (not a trap): {err:#}"))
    }

    /// Instantiation fails on unknown imports (the guest's fault), on a trap or `proc_exit` in a
    /// start function, or on a host failure.
    pub fn from_instantiation(origin: &str, err: wasmtime::Error) -> Self {
        if err.downcast_ref::<wasmtime::Trap>().is_some() || err.downcast_ref::<I32Exit>().is_some() {
            return Self::from_guest(origin, err);
        }
        RunError::invalid(anyhow!("{origin}: cannot instantiate: {err:#}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_their_exit_codes() {
        let trap = RunError::from_guest("g", wasmtime::Error::from(wasmtime::Trap::UnreachableCodeReached));
        assert_eq!((trap.kind, trap.exit_code()), (FailureKind::Trap, 134));
        let exit = RunError::from_guest("g", wasmtime::Error::from(I32Exit(7)));
        assert_eq!(exit.exit_code(), 7);
        let host = RunError::from_guest("g", wasmtime::Error::msg("the disk is on fire"));
        assert_eq!((host.kind, host.exit_code()), (FailureKind::Internal, 125));
        assert_eq!(host.to_string(), "g: failed while running (not a trap): the disk is on fire");
        let import = RunError::from_instantiation("g", wasmtime::Error::msg("unknown import: `a::b`"));
        assert_eq!(import.exit_code(), 126);
    }

    #[test]
    fn causes_are_one_line() {
        let err = RunError::invalid(anyhow!("first\nsecond"));
        assert_eq!(err.to_string(), "first second");
    }
}
