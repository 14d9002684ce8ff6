//! The engine boundary: what the shim and the CLI need from a WebAssembly engine, with wasmtime
//! and Wasmer behind it.
//!
//! An engine is made for one workload ([`crate::select::engine_for`]: its kind, its
//! `wasmbox.io/wasm-features`);
//! it loads the workload's guest through the node's code cache ([`WasmEngine::load`]: compiled
//! on the node, or mapped from code the node compiled before; image code only on wasmtime and only
//! when the node trusts it); the loaded [`Guest`] runs its entry point with the container's
//! [`RunConfig`] (args, env, cwd, preopens, memory limit) and ends with an exit status or a
//! [`RunError`] whose exit code follows [`crate::error`].
//!
//! | | wasmtime | Wasmer |
//! |---|---|---|
//! | WASI preview 1 modules, `.wat` | yes | yes |
//! | components (`wasi:cli/run`), `wasi:http` servers | yes | no: the create fails and says so |
//! | `#func` calls (numbers, `str:` strings) | modules and components | modules |
//! | compile cache | yes | yes (its own entries, keyed by Wasmer's version and features) |
//! | image-precompiled code | when the node trusts it | never (compiled on the node) |
//! | `wasmbox.io/network` | `none`, `all`, networks | `none` only |
//!
//! ```no_run
//! use wasmbox_runtime::{EngineKind, GuestSource, PrecompiledPolicy, RunConfig, engine_for};
//! # fn main() -> anyhow::Result<()> {
//! let engine = engine_for(EngineKind::Wasmer, &[])?;
//! let config = RunConfig::new(vec!["/hello.wasm".into()]);
//! let entry = config.entrypoint()?;
//! let source = GuestSource::File { path: &entry.path, precompiled_dir: None };
//! let guest = engine.load(source, None, PrecompiledPolicy::Ignore)?;
//! let exit_status = guest.run(&entry, &config)?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;

use crate::code::cache::CodeCache;
use crate::code::decode::SourceKind;
use crate::code::image::ArtifactLayer;
use crate::code::{CodeOrigin, Loader, Program};
use crate::config::{Entrypoint, RunConfig};
use crate::engine::Engine;
use crate::error::{ExitStatus, FailureKind, RunError};
use crate::node::PrecompiledPolicy;
use crate::settings::{EngineKind, NetworkPolicy, WasmFeature};

/// Where a guest's bytes come from.
pub enum GuestSource<'a> {
    /// A file of the container's root file system (`.wasm` or `.wat`), and the tar layout's
    /// directory of image-precompiled code, if any.
    File { path: &'a Path, precompiled_dir: Option<&'a Path> },
    /// The layers of an artifact image.
    Artifact(&'a [ArtifactLayer<'a>]),
    /// Bytes in memory (binary or text); `origin` names them in messages.
    Bytes { bytes: &'a [u8], origin: &'a str },
}

/// A WebAssembly engine configured for one workload.
pub trait WasmEngine: Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// What names this engine's compiled code in the node's cache (its version, compiler
    /// settings, CPU features and WebAssembly features).
    fn key(&self) -> &str;

    /// Checks what the workload asks of the engine before anything is loaded: a setting this
    /// engine cannot honour is an error ([`FailureKind::Unsupported`]).
    fn check_config(&self, config: &RunConfig) -> Result<(), RunError>;

    /// Loads a guest: compiles it, or maps the code the node compiled before from `cache`. The
    /// cache's descriptor is closed when this returns.
    fn load(
        &self,
        source: GuestSource<'_>,
        cache: Option<CodeCache>,
        policy: PrecompiledPolicy,
    ) -> Result<Box<dyn Guest>, RunError>;
}

/// A loaded guest, ready to run.
pub trait Guest: Send + Sync {
    /// Where the guest came from, for messages: its file path inside the container, or its layer.
    fn origin(&self) -> &str;

    /// Where its native code came from.
    fn code_origin(&self) -> CodeOrigin;

    /// Instantiates the guest with a WASI context from `config` and runs `entry`'s functions
    /// (its `_start` / `wasi:cli/run` when none is named) on the calling thread.
    fn run(&self, entry: &Entrypoint, config: &RunConfig) -> Result<ExitStatus, RunError>;
}

/// The engines of this build that can run guests of this kind.
pub fn engines_for(kind: SourceKind) -> Vec<EngineKind> {
    match kind {
        SourceKind::Module if cfg!(feature = "wasmer") => vec![EngineKind::Wasmtime, EngineKind::Wasmer],
        SourceKind::Module | SourceKind::Component => vec![EngineKind::Wasmtime],
    }
}

/// The error of an engine asked to run what it cannot.
pub fn unsupported(engine: EngineKind, what: &str) -> RunError {
    let others: Vec<&str> = EngineKind::ALL.iter().filter(|e| **e != engine).map(|e| e.name()).collect();
    RunError::new(
        FailureKind::Unsupported,
        anyhow!("{what}: the {engine} engine cannot run it (choose {} with wasmbox.io/engine)", others.join(" or ")),
    )
}

/// wasmtime behind the boundary: [`crate::engine`], [`crate::code`] and [`crate::run`].
pub struct Wasmtime {
    engine: Arc<Engine>,
}

impl Wasmtime {
    /// wasmtime with these WebAssembly features switched on or off.
    pub fn with_features(features: &[(WasmFeature, bool)]) -> anyhow::Result<Self> {
        Ok(Wasmtime { engine: Arc::new(Engine::with_features(features)?) })
    }
}

/// A guest loaded by wasmtime.
struct WasmtimeGuest {
    engine: Arc<Engine>,
    program: Program,
}

impl WasmEngine for Wasmtime {
    fn kind(&self) -> EngineKind {
        EngineKind::Wasmtime
    }

    fn key(&self) -> &str {
        self.engine.key()
    }

    fn check_config(&self, _: &RunConfig) -> Result<(), RunError> {
        Ok(())
    }

    fn load(
        &self,
        source: GuestSource<'_>,
        cache: Option<CodeCache>,
        policy: PrecompiledPolicy,
    ) -> Result<Box<dyn Guest>, RunError> {
        let loader = Loader::new(&self.engine, cache, policy);
        let program = match source {
            GuestSource::File { path, precompiled_dir } => loader.load_file(path, precompiled_dir)?,
            GuestSource::Artifact(layers) => loader.load_artifact(layers)?,
            GuestSource::Bytes { bytes, origin } => loader.load_bytes(bytes, origin)?,
        };
        Ok(Box::new(WasmtimeGuest { engine: self.engine.clone(), program }))
    }
}

impl Guest for WasmtimeGuest {
    fn origin(&self) -> &str {
        &self.program.origin
    }

    fn code_origin(&self) -> CodeOrigin {
        self.program.code
    }

    fn run(&self, entry: &Entrypoint, config: &RunConfig) -> Result<ExitStatus, RunError> {
        crate::run::run(&self.engine, &self.program, entry, config)
    }
}

/// The network policies an engine without socket support can honour.
pub fn check_no_network(engine: EngineKind, config: &RunConfig) -> Result<(), RunError> {
    match config.network {
        NetworkPolicy::None => Ok(()),
        _ => Err(unsupported(engine, "wasmbox.io/network other than `none`")),
    }
}
