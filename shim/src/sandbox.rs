//! The Wasm side of a container: what runs in the container's init process once it is set up.
//!
//! `can_handle` runs when the container is created (after the pivot into its root file system,
//! before `start`): the module is read and compiled, or mapped from the code cache, then. Its
//! failures are kept and reported by `run_wasi` on the container's stderr, with a one-line cause
//! and an exit code (see `wasmbox_runtime::run`), because `containerd-shim-wasm` turns an error
//! returned from either hook into a bare exit code 137 with nothing said to the user.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use containerd_shim_wasm::sandbox::Sandbox;
use containerd_shim_wasm::sandbox::context::{RuntimeContext, Source};
use wasmbox_runtime::run::FailureKind;
use wasmbox_runtime::{CodeCache, Engine, Entrypoint, Program, RunConfig, RunError, preopens_from_mountinfo};

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
}

#[derive(Default)]
pub struct WasmboxSandbox {
    /// Filled by `can_handle` at create time, consumed by `run_wasi` at start.
    prepared: OnceLock<Result<Prepared, RunError>>,
}

impl Sandbox for WasmboxSandbox {
    async fn can_handle(&self, ctx: &impl RuntimeContext) -> Result<()> {
        // Every failure is kept for `run_wasi` to report; see the module doc.
        self.prepared.get_or_init(|| prepare(ctx));
        Ok(())
    }

    async fn run_wasi(&self, ctx: &impl RuntimeContext) -> Result<i32> {
        install_termination_handlers();
        let prepared = self.prepared.get_or_init(|| prepare(ctx));
        let outcome = match prepared {
            Ok(prepared) => run_on_own_thread(prepared),
            Err(err) => Err(RunError::new(err.kind, anyhow!("{err}"))),
        };
        Ok(match outcome {
            Ok(code) => code,
            Err(err) => {
                log::info!("guest failed: {err}");
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "wasmbox: {}", err.report());
                let _ = stderr.flush();
                err.exit_code()
            }
        })
    }
}

/// Reads the container's spec and compiles its entry point.
fn prepare(ctx: &impl RuntimeContext) -> Result<Prepared, RunError> {
    let args = ctx.args().to_vec();
    let entry = match args.first() {
        Some(arg0) => Entrypoint::parse(arg0),
        None => {
            return Err(RunError::invalid(anyhow!(
                "the container has no args: argv[0] must name a Wasm file"
            )));
        }
    };
    // libcontainer has already changed into `process.cwd`.
    let cwd = std::env::current_dir()
        .map(|dir| dir.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".to_owned());
    let config = RunConfig {
        env: ctx
            .envs()
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (pair.clone(), String::new()),
            })
            .collect(),
        cwd,
        preopens: preopens_from_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()),
        ..RunConfig::new(args)
    }
    .with_pwd();

    let engine = Engine::new(code_cache()).map_err(RunError::internal)?;
    let program = match ctx.entrypoint().source {
        Source::File(_) => engine.load_file(&entry.path)?,
        Source::Oci([layer]) => {
            let origin = format!("layer {}", layer.config.digest());
            engine.load_bytes(&layer.layer, &origin)?
        }
        Source::Oci(layers) => {
            return Err(RunError::invalid(anyhow!(
                "the image has {} Wasm layers; wasmbox runs images with exactly one",
                layers.len()
            )));
        }
    };
    Ok(Prepared { engine, program, entry, config })
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
