//! The Wasm side of a container: what runs in the container's init process once it is set up.
//!
//! `can_handle` runs when the container is created (after the pivot into its root file system,
//! with the container's capabilities and seccomp filter already applied, before `start`): the
//! settings are checked and the module is read and compiled, or mapped from the code cache, then.
//! The cache directory this process inherited is closed as soon as the module is loaded, and
//! the vendored `containerd-shim-wasm` points every other inherited descriptor at `/dev/null`
//! before `run_wasi` runs the guest (see `docs/security.md`).
//!
//! An invalid setting (annotation, image label or node setting) fails the create with its cause.
//! Any other failure is kept and reported by `run_wasi` on the container's stderr, with a
//! one-line cause and an exit code (see `wasmbox_runtime::error`), because
//! `containerd-shim-wasm` turns an error returned from `run_wasi` into a bare exit code 137
//! with nothing said to the user.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source, WasmLayer};
use wasmbox_runtime::code::cache::CodeCache;
use wasmbox_runtime::code::image::PRECOMPILED_DIR;
use wasmbox_runtime::settings::{DEADLINE, ENGINE, WASM_FEATURES};
use wasmbox_runtime::{
    ArtifactLayer, Entrypoint, FailureKind, Guest, GuestSource, NodeSettings, RunConfig, RunError, WorkloadSettings,
    engine_for,
};

/// The node's code cache, opened in the shim's main process (the node's mount namespace) and
/// inherited by every container process it creates; taken, used and closed by the container's
/// process while it loads its module. `Err`: why it could not be opened.
static CODE_CACHE: Mutex<Option<Result<CodeCache, String>>> = Mutex::new(None);

/// Opens the compiled-code cache named by the node's settings; call once, early in `main`.
pub fn open_code_cache() {
    let opened = NodeSettings::from_env(&Default::default())
        .and_then(|node| CodeCache::open(&node.cache_dir))
        .map_err(|err| format!("{err:#}"));
    *CODE_CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(opened);
}

/// Takes the cache out of this process's static: the descriptor is closed when the returned
/// value is dropped.
fn take_code_cache() -> Option<CodeCache> {
    match CODE_CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()? {
        Ok(cache) => Some(cache),
        Err(err) => {
            log::warn!("compiled-code cache unavailable, compiling every time: {err}");
            None
        }
    }
}

/// A guest ready to run: the loaded guest (with its engine) and its configuration.
struct Prepared {
    guest: Box<dyn Guest>,
    entry: Entrypoint,
    config: RunConfig,
    settings: WorkloadSettings,
}

/// Why a guest is not ready to run.
enum Unprepared {
    /// A setting (annotation, image label, node setting) is invalid: the create fails.
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
        // Now, at create: a SIGTERM that reaches PID 1 before its handler exists is lost.
        wasmbox_runtime::signals::install_termination_handlers();
        match self.prepared.get_or_init(|| prepare(ctx)) {
            Err(Unprepared::Configuration(err)) => Err(anyhow!("{err:#}")),
            // Kept for `run_wasi`, which says it on the container's stderr.
            Ok(_) | Err(Unprepared::Guest(_)) => Ok(()),
        }
    }

    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        wasmbox_runtime::signals::install_termination_handlers();
        let prepared = self.prepared.get_or_init(|| prepare(ctx));
        Ok(match prepared {
            Ok(prepared) => {
                if let Some(deadline) = prepared.settings.deadline {
                    start_deadline_watchdog(prepared.guest.origin(), deadline);
                }
                run_on_own_thread(prepared).unwrap_or_else(|err| report_failure(&err))
            }
            Err(Unprepared::Guest(err)) => report_failure(err),
            Err(Unprepared::Configuration(err)) => report_failure(&RunError::invalid(anyhow!("{err:#}"))),
        })
    }
}

/// Says why the guest could not run (or ended badly) on the container's stderr; returns the exit code.
fn report_failure(err: &RunError) -> i32 {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "wasmbox: {}", err.report());
    let _ = stderr.flush();
    err.exit_code()
}

/// The container's `wasmbox.io/` settings: its image's labels (which containerd copies to the
/// container's labels), overridden key by key by its annotations.
fn workload_settings(ctx: &impl RuntimeContext) -> Result<WorkloadSettings> {
    let annotations = ctx.spec().annotations().clone().unwrap_or_default();
    let settings = WorkloadSettings::from_labels_and_annotations(ctx.container_labels(), &annotations)?;
    if let Some(level) = settings.log_level {
        log::set_max_level(level);
    }
    Ok(settings)
}

/// Reads the settings and the spec, builds the guest's configuration and loads its entry point.
fn prepare(ctx: &impl RuntimeContext) -> Result<Prepared, Unprepared> {
    // Whatever happens below, the cache's descriptor is closed when this returns.
    let cache = take_code_cache();
    let settings = workload_settings(ctx).map_err(Unprepared::Configuration)?;
    let node = NodeSettings::from_env(ctx.runtime_options()).map_err(Unprepared::Configuration)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .context("reading /proc/self/mountinfo")
        .map_err(RunError::internal)?;
    let config = RunConfig::from_spec(ctx.spec(), &settings, &mountinfo).map_err(RunError::invalid)?;
    let entry = config.entrypoint().map_err(RunError::invalid)?;
    let kind = settings.engine.unwrap_or(node.engine);
    let engine = engine_for(kind, &settings.wasm_features)
        .map_err(|err| Unprepared::Configuration(anyhow!("{WASM_FEATURES} on {kind}: {err:#}")))?;
    engine.check_config(&config).map_err(|err| Unprepared::Configuration(anyhow!("{ENGINE}={kind}: {err}")))?;
    let started = Instant::now();
    let layers;
    let source = match ctx.entrypoint().source {
        Source::File(_) => GuestSource::File { path: &entry.path, precompiled_dir: Some(Path::new(PRECOMPILED_DIR)) },
        Source::Oci(oci_layers) => {
            layers = artifact_layers(oci_layers);
            GuestSource::Artifact(&layers)
        }
    };
    let guest = engine.load(source, cache, node.precompiled).map_err(|err| match err.kind {
        FailureKind::Unsupported => Unprepared::Configuration(anyhow!("{ENGINE}={kind}: {err}")),
        _ => Unprepared::Guest(err),
    })?;
    log::info!("phase load: {:.2} ms ({kind})", started.elapsed().as_secs_f64() * 1e3);
    // Compiling (an empty cache, a module the cache refused) leaves megabytes of the compiler's
    // freed heap in this process, which lives as long as the container: give them back.
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is invalidated.
    unsafe { libc::malloc_trim(0) };
    Ok(Prepared { guest, entry, config, settings })
}

/// The layers the shim read from containerd's content store, as the engine takes them.
fn artifact_layers(layers: &[WasmLayer]) -> Vec<ArtifactLayer<'_>> {
    layers
        .iter()
        .map(|layer| ArtifactLayer {
            media_type: layer.config.media_type().as_ref(),
            digest: layer.config.digest().as_ref(),
            annotations: layer.config.annotations().as_ref(),
            bytes: &layer.layer,
        })
        .collect()
}

/// Ends the container when the `wasmbox.io/deadline` passes, whatever the guest is doing
/// (computing or blocked in a host call), with exit code 124 as `timeout(1)` uses.
fn start_deadline_watchdog(origin: &str, deadline: Duration) {
    let origin = origin.to_owned();
    let spawned = std::thread::Builder::new().name("deadline".into()).spawn(move || {
        std::thread::sleep(deadline);
        let mut stderr = std::io::stderr().lock();
        let _ =
            writeln!(stderr, "wasmbox: {origin}: deadline of {deadline:?} exceeded (annotation {DEADLINE}); stopped");
        let _ = stderr.flush();
        // SAFETY: ends the process at once; nothing else is to be cleaned up in it.
        unsafe { libc::_exit(124) }
    });
    if let Err(err) = spawned {
        log::warn!("deadline not enforced: {err}");
    }
}

/// Runs the guest on a thread of its own with a stack big enough for deep guests. A guest that
/// is still running after `SETTLED_AFTER` (a server, a worker, an idle guest) has touched what
/// it needs: the init then drops its mappings of the other code pages it touched while the
/// container was set up and the guest instantiated (they stay in the node's page cache; see
/// `containerd_shim_wasm::shim::release_unmodified_code`). A short run is not delayed by it.
fn run_on_own_thread(prepared: &Prepared) -> Result<i32, RunError> {
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel();
        let guest = std::thread::Builder::new()
            .name("wasm-guest".into())
            .stack_size(8 << 20)
            .spawn_scoped(scope, move || {
                let status = prepared.guest.run(&prepared.entry, &prepared.config);
                let _ = done.send(());
                status
            })
            .context("starting the guest thread")
            .map_err(RunError::internal)?;
        if finished.recv_timeout(containerd_shim_wasm::shim::SETTLED_AFTER)
            == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        {
            // Nothing to report: the init holds no descriptor to the shim's log once its guest
            // runs, and a failure only leaves the code mapped (`density.rs` checks that it is not).
            let _ = containerd_shim_wasm::shim::release_unmodified_code();
            // From here this thread only waits for the guest's.
            let _ = containerd_shim_wasm::shim::release_stack_below_here();
        }
        guest.join().map_err(|_| RunError::new(FailureKind::Internal, anyhow!("the guest thread panicked")))?
    })
}
