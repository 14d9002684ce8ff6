//! The wasmbox engine: loads WASI modules and components on wasmtime and runs one as a container's process.
//!
//! This crate knows nothing of containerd. Its input is a [`RunConfig`] (args, env, cwd and
//! preopened directories, normally derived from an OCI runtime spec with
//! [`RunConfig::from_oci_spec`]) and the bytes of a module; its output is an exit code.
//!
//! ```no_run
//! use wasmbox_runtime::{Engine, Entrypoint, RunConfig};
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::new(None)?;
//! let entry = Entrypoint::parse("/hello.wasm");
//! let program = engine.load_file(&entry.path)?;
//! let config = RunConfig::new(vec!["/hello.wasm".into()]);
//! let exit_code = engine.run(&program, &entry, &config)?;
//! # Ok(()) }
//! ```
//!
//! How the pieces fit:
//! - [`engine`]: the wasmtime engine, its configuration, and loading bytes into a [`Program`];
//! - [`annotations`]: per-workload settings from OCI annotations (`wasmbox.io/*`);
//! - [`cache`]: the node-local cache of compiled code, keyed by module digest and engine;
//! - [`precompiled`]: compiled code shipped in an image, and the checks it must pass to be used;
//! - [`wasi`]: the WASI context built from a [`RunConfig`];
//! - [`run`]: instantiating a program and calling its entry point, mapping the outcome to an exit code;
//! - [`http`]: serving a `wasi:http/incoming-handler` component, like `wasmtime serve`;
//! - [`invoke`]: calling named exports with arguments given as text (`file.wasm#add 6 27`);
//! - [`jshost`]: the `console.log` / `js.*` imports of modules written for a JavaScript embedding.

pub mod annotations;
pub mod cache;
pub mod config;
pub mod engine;
pub mod http;
pub mod invoke;
pub mod jshost;
pub mod precompiled;
pub mod run;
pub mod wasi;

pub use annotations::WorkloadOptions;
pub use cache::CodeCache;
pub use config::{Entrypoint, Preopen, RunConfig, parse_env, preopens_from_mountinfo};
pub use engine::{CodeOrigin, Engine, OfferedCode, Program, ProgramKind, SourceKind};
pub use precompiled::{ImageCode, PrecompiledInfo};
pub use run::{ExitStatus, RunError};
