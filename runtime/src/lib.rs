//! The wasmbox engine: loads WASI modules and components on wasmtime (or modules on Wasmer) and runs one as a container's process.
//!
//! This crate knows nothing of containerd. Its input is a container's OCI spec, its settings and
//! the bytes of a module; its output is an exit status.
//!
//! ```no_run
//! use wasmbox_runtime::{Engine, Loader, PrecompiledPolicy, RunConfig};
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::new()?;
//! let config = RunConfig::new(vec!["/hello.wasm".into()]);
//! let entry = config.entrypoint()?;
//! let program = Loader::new(&engine, None, PrecompiledPolicy::Ignore).load_file(&entry.path, None)?;
//! let exit_status = wasmbox_runtime::run(&engine, &program, &entry, &config)?;
//! # Ok(()) }
//! ```
//!
//! The modules, in the order data flows through them (each imports only those before it):
//! - [`error`]: why a guest did not run to its end, and the exit code of each outcome;
//! - [`settings`]: per-workload settings (`wasmbox.io/*` annotations and image labels), untrusted;
//! - [`node`]: the node admin's settings (cache directory, precompiled-code policy), trusted;
//! - [`config`]: what the guest runs with, from the OCI spec and the settings;
//! - [`engine`]: the wasmtime engine, its configuration and the key that names its code;
//! - [`code`]: loading: compiling, the node's code cache, image code and its checks;
//! - [`limits`]: the container's memory limit, shared by all of its guests' stores;
//! - [`wasi`]: the WASI context built from a [`RunConfig`];
//! - [`jshost`]: the `console.log` / `js.*` imports of modules written for a JavaScript embedding;
//! - [`invoke`]: calling named exports with arguments given as text (`file.wasm#add 6 27`);
//! - [`http`]: serving a `wasi:http/incoming-handler` component, like `wasmtime serve`;
//! - [`run`]: instantiating a program and calling its entry point;
//! - [`engines`]: the engine boundary the shim and the CLI use, and wasmtime behind it;
//! - [`wasmer`] (feature `wasmer`, on by default): the Wasmer engine behind it, WASI preview 1 modules only;
//! - [`select`]: making a workload's engine of the kind it chose;
//! - [`signals`]: SIGTERM, SIGINT and SIGHUP for a guest that is PID 1 of its PID namespace.

pub mod code;
pub mod config;
pub mod engine;
pub mod engines;
pub mod error;
pub mod http;
pub mod invoke;
pub mod jshost;
pub mod limits;
pub mod node;
pub mod run;
pub mod select;
pub mod settings;
pub mod signals;
pub mod wasi;
#[cfg(feature = "wasmer")]
pub mod wasmer;

pub use code::image::ArtifactLayer;
pub use code::{CodeOrigin, Loader, Program, ProgramKind};
pub use config::{Entrypoint, RunConfig};
pub use engine::Engine;
pub use engines::{Guest, GuestSource, WasmEngine};
pub use error::{ExitStatus, FailureKind, RunError};
pub use node::{NodeSettings, PrecompiledPolicy};
pub use run::run;
pub use select::engine_for;
pub use settings::{EngineKind, WorkloadSettings};
