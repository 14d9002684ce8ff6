//! The Wasm side of a container: what runs in the container's init process once it is set up.
//!
//! `can_handle` runs when the container is created (after the pivot into its root file system,
//! before `start`): the `wasmbox.io/` settings are checked and the module is read and compiled, or
//! mapped from the code cache, then. An invalid setting (annotation or image label) fails the
//! create with its cause (the vendored `containerd-shim-wasm` passes it on). Any other failure is kept and reported by
//! `run_wasi` on the container's stderr, with a one-line cause and an exit code (see
//! `wasmbox_runtime::run`), because `containerd-shim-wasm` turns an error returned from
//! `run_wasi` into a bare exit code 137 with nothing said to the user.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source, WasmLayer};
use wasmbox_runtime::annotations::{DEADLINE, WASM_FEATURES};
use wasmbox_runtime::precompiled::{
    ANNOTATION_ENGINE, ANNOTATION_SOURCE, ANNOTATION_WASMTIME, PRECOMPILED_DIR, PRECOMPILED_MEDIA_TYPE,
};
use wasmbox_runtime::run::FailureKind;
use wasmbox_runtime::{
    CodeCache, Engine, Entrypoint, ImageCode, OfferedCode, PrecompiledInfo, Program, RunConfig, RunError, SourceKind,
    WorkloadOptions, preopens_from_mountinfo,
};

/// Where compiled code is kept unless `WASMBOX_CACHE_DIR` (in containerd's environment) says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasmbox/cache";

/// The cache directory, opened in the shim's main process (host mount namespace) and inherited
/// by every container process it forks; or why it could not be opened.
static CODE_CACHE: OnceLock<Result<CodeCache, String>> = OnceLock::new();

/// Opens the compiled-code cache; call once, early in `main`.
pub fn open_code_cache() {
    let dir = std::env::var_os("WASMBOX_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
    CODE_CACHE.get_or_init(|| CodeCache::open(&dir).map_err(|err| format!("{err:#}")));
}

fn code_cache() -> Option<CodeCache> {
    match CODE_CACHE.get()? {
        Ok(cache) => match cache.try_clone() {
            Ok(cache) => Some(cache),
            Err(err) => {
                log::warn!("compiled-code cache unusable, compiling every time: {err:#}");
                None
            }
        },
        Err(err) => {
            log::warn!("compiled-code cache unavailable, compiling every time: {err}");
            None
        }
    }
}

/// A guest ready to run: the engine, the compiled program and its configuration.
struct Prepared {
    engine: Engine,
    program: Program,
    entry: Entrypoint,
    config: RunConfig,
    options: WorkloadOptions,
}

/// Why a guest is not ready to run.
enum Unprepared {
    /// A `wasmbox.io/` setting (annotation or image label) is invalid: the create fails.
    Configuration(anyhow::Error),
    /// The guest cannot run: said on its stderr when the container starts.
    Guest(RunError),
}

impl From<RunError> for Unprepared {
    fn from(err: RunError) -> Self {
        Unprepared::Guest(err)
    }
}

#[derive(Default)]
pub struct WasmboxSandbox {
    /// Filled by `can_handle` at create time, consumed by `run_wasi` at start.
    prepared: OnceLock<Result<Prepared, Unprepared>>,
}

impl Sandbox for WasmboxSandbox {
    async fn can_handle(&self, ctx: &impl RuntimeContext) -> Result<()> {
        match self.prepared.get_or_init(|| prepare(ctx)) {
            Err(Unprepared::Configuration(err)) => Err(anyhow!("{err:#}")),
            // Kept for `run_wasi`, which says it on the container's stderr.
            Ok(_) | Err(Unprepared::Guest(_)) => Ok(()),
        }
    }

    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        install_termination_handlers();
        let prepared = self.prepared.get_or_init(|| prepare(ctx));
        Ok(match prepared {
            Ok(prepared) => {
                if let Some(deadline) = prepared.options.deadline {
                    start_deadline_watchdog(&prepared.program.origin, deadline);
                }
                run_on_own_thread(prepared).unwrap_or_else(|err| report_failure(&err))
            }
            Err(Unprepared::Guest(err)) => report_failure(err),
            Err(Unprepared::Configuration(err)) => {
                report_failure(&RunError::invalid(anyhow!("{err:#}")))
            }
        })
    }
}

/// Says why the guest could not run (or ended badly) on the container's stderr; returns the exit code.
fn report_failure(err: &RunError) -> i32 {
    log::info!("guest failed: {err}");
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "wasmbox: {}", err.report());
    let _ = stderr.flush();
    err.exit_code()
}

/// The container's `wasmbox.io/` settings: its image's labels (which containerd copies to the
/// container's labels), overridden key by key by its annotations.
fn workload_options(ctx: &impl RuntimeContext) -> Result<WorkloadOptions> {
    let annotations = ctx.spec().annotations().clone().unwrap_or_default();
    let options = WorkloadOptions::from_labels_and_annotations(ctx.container_labels(), &annotations)?;
    if let Some(level) = options.log_level {
        log::set_max_level(level);
    }
    Ok(options)
}

/// Reads the settings and the spec, builds the guest's configuration and compiles its entry point.
fn prepare(ctx: &impl RuntimeContext) -> Result<Prepared, Unprepared> {
    let options = workload_options(ctx).map_err(Unprepared::Configuration)?;
    let config = RunConfig::from_oci_spec(ctx.spec()).map_err(RunError::invalid)?;
    let config = RunConfig {
        preopens: preopens_from_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()),
        ..config
    }
    .with_options(&options);
    let entry = config.entrypoint().map_err(RunError::invalid)?;

    let engine = Engine::with_features(code_cache(), &options.wasm_features)
        .map_err(|err| Unprepared::Configuration(anyhow!("{WASM_FEATURES}: {err:#}")))?
        .with_precompiled_dir(PRECOMPILED_DIR);
    let program = match ctx.entrypoint().source {
        Source::File(_) => engine.load_file(&entry.path)?,
        Source::Oci(layers) => load_artifact(&engine, layers)?,
    };
    Ok(Prepared { engine, program, entry, config, options })
}

/// Loads the one Wasm layer of an artifact image, with the image's precompiled-code layer for it
/// when there is one (it is used only if it fits this engine and this layer).
fn load_artifact(engine: &Engine, layers: &[WasmLayer]) -> Result<Program, RunError> {
    let (code, wasm): (Vec<_>, Vec<_>) =
        layers.iter().partition(|layer| layer.config.media_type().to_string() == PRECOMPILED_MEDIA_TYPE);
    let [wasm] = wasm[..] else {
        return Err(RunError::invalid(anyhow!(
            "the image has {} Wasm layers; wasmbox runs images with exactly one",
            wasm.len()
        )));
    };
    let origin = format!("layer {}", wasm.config.digest());
    let source = wasm.config.digest().to_string();
    let offered = code.iter().find_map(|layer| {
        let annotations = layer.config.annotations().as_ref()?;
        let annotation = |key: &str| annotations.get(key).cloned().unwrap_or_default();
        (annotation(ANNOTATION_SOURCE) == source).then(|| OfferedCode {
            info: PrecompiledInfo {
                engine: annotation(ANNOTATION_ENGINE),
                wasmtime: annotation(ANNOTATION_WASMTIME),
                source: source.clone(),
                // containerd's content store has checked the layer against its digest.
                code: layer.config.digest().to_string(),
                kind: SourceKind::of_binary(&wasm.layer).map(SourceKind::name).unwrap_or_default().to_owned(),
            },
            code: ImageCode::Verified(&layer.layer),
        })
    });
    match offered {
        Some(offered) => engine.load_bytes_with_code(&wasm.layer, &origin, offered),
        None => engine.load_bytes(&wasm.layer, &origin),
    }
}

/// Ends the container when the `wasmbox.io/deadline` passes, whatever the guest is doing
/// (computing or blocked in a host call), with exit code 124 as `timeout(1)` uses.
fn start_deadline_watchdog(origin: &str, deadline: Duration) {
    let origin = origin.to_owned();
    let spawned = std::thread::Builder::new().name("deadline".into()).spawn(move || {
        std::thread::sleep(deadline);
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(
            stderr,
            "wasmbox: {origin}: deadline of {deadline:?} exceeded (annotation {DEADLINE}); stopped"
        );
        let _ = stderr.flush();
        // SAFETY: ends the process at once; nothing else is to be cleaned up in it.
        unsafe { libc::_exit(124) }
    });
    if let Err(err) = spawned {
        log::warn!("deadline not enforced: {err}");
    }
}

/// Runs the guest on a thread of its own: the shim library calls us from inside a tokio
/// runtime, and wasmtime-wasi's blocking calls must not run on one of its threads.
fn run_on_own_thread(prepared: &Prepared) -> Result<i32, RunError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("wasm-guest".into())
            .stack_size(8 << 20)
            .spawn_scoped(scope, || {
                prepared.engine.run(&prepared.program, &prepared.entry, &prepared.config)
            })
            .context("starting the guest thread")
            .map_err(RunError::internal)?
            .join()
            .map_err(|_| RunError::new(FailureKind::Internal, anyhow!("the guest thread panicked")))?
    })
}

/// The guest is PID 1 of its PID namespace, where signals with the default action are ignored:
/// make SIGTERM, SIGINT and SIGHUP end it the way they end an ordinary process (exit 128 + signal).
fn install_termination_handlers() {
    extern "C" fn terminate(signal: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) }
    }
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls an async-signal-safe function.
        unsafe { libc::signal(signal, terminate as *const () as libc::sighandler_t) };
    }
}
