use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::prelude::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};
use futures::executor::block_on;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor as LibcontainerExecutor, ExecutorError as LibcontainerExecutorError,
    ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::Spec;

use crate::sandbox::Sandbox;
use crate::sandbox::context::{RuntimeContext, Source, WasiContext, WasmLayer};
use crate::sandbox::path::PathResolve;
use crate::shim::Shim;

#[derive(Clone)]
enum ExecutorType<S: Shim> {
    Wasm(S::Sandbox),
    Linux,
    /// Why the engine cannot run this container, as it said (wasmbox: kept so that the failed
    /// create says it, instead of only "can't handle spec").
    CantHandle(String),
}

/// libcontainer's workload executor of a container's init process: an ELF or `#!` entry point
/// is exec'd as a Linux container, anything else is handed to the shim's [`Sandbox`] (wasmbox:
/// public, so that a runc-compatible runtime binary runs guests exactly as the shim does).
pub struct Executor<S: Shim>(Arc<InnerExecutor<S>>);

impl<S: Shim> Clone for Executor<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

pub(crate) struct InnerExecutor<S: Shim> {
    ty: OnceCell<ExecutorType<S>>,
    /// wasmbox: emptied once the sandbox has loaded its guest (see `ty`).
    wasm_layers: RwLock<Vec<WasmLayer>>,
    container_labels: HashMap<String, String>,
    runtime_options: BTreeMap<String, String>,
}

impl<S: Shim> LibcontainerExecutor for Executor<S> {
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self), level = "Debug"))]
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // We can handle linux container. We delegate wasm container to the engine.
        match self.ty(spec) {
            ExecutorType::CantHandle(cause) => Err(ExecutorValidationError::ArgValidationError(
                format!("{}: {cause}", S::name()),
            )),
            _ => Ok(()),
        }
    }

    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self), level = "Debug"))]
    fn exec(&self, spec: &Spec) -> Result<(), LibcontainerExecutorError> {
        // If it looks like a linux container, run it as a linux container.
        // Otherwise, run it as a wasm container
        match self.ty(spec) {
            ExecutorType::CantHandle(_) => Err(LibcontainerExecutorError::CantHandle(S::name())),
            ExecutorType::Linux => {
                log::info!("executing linux container");
                DefaultExecutor {}.exec(spec)
            }
            ExecutorType::Wasm(container) => {
                let layers = self.layers();
                let ctx = self.ctx(spec, &layers);
                log::info!("calling start function");
                // wasmbox addition: no `execve` follows, so the descriptors this process
                // inherited (close_range only marked them close-on-exec) would stay open while
                // the guest runs. See `neutralize_inherited_descriptors`.
                if let Err(err) = neutralize_inherited_descriptors() {
                    log::error!("closing inherited descriptors: {err:#}");
                    eprintln!(
                        "{}: cannot close the descriptors the container inherited: {err:#}",
                        S::name()
                    );
                    std::process::exit(125);
                }
                // wasmbox: a plain executor, not a tokio runtime of its own in every container:
                // the engine's futures do their work when polled.
                match block_on(container.run_wasi(&ctx)) {
                    Ok(code) => std::process::exit(code),
                    Err(err) => {
                        log::info!("error running start function: {err}");
                        std::process::exit(137)
                    }
                };
            }
        }
    }

    // This is an no-op for the Wasm `Executor`. Instead of youki's libcontainer setting the envs
    // in the shim process, the shim will manage the envs itself. The expectation is that the shim will
    // call `RuntimeContext::envs()` to get the container's envs and set them in the `Engine::run_wasi`
    // function. This way, the shim can decide how to pass the envs to the WASI context.
    //
    // See the following issues for more context:
    // https://github.com/containerd/runwasi/issues/619
    // https://github.com/containers/youki/issues/2815
    //
    // wasmbox: a Linux container gets the spec's environment, and only it, as runc gives it
    // (the default executor's behaviour): it got this process's, the shim's (containerd's
    // socket addresses, the node's paths and settings), and not its own. `validate` has told
    // the two kinds apart by now; a Wasm init keeps the node's settings it reads. As runc, a
    // user without a home in the image's /etc/passwd gets `HOME=/` (libcontainer left it unset).
    fn setup_envs(
        &self,
        mut envs: HashMap<String, String>,
    ) -> std::result::Result<(), ExecutorSetEnvsError> {
        match self.0.ty.get() {
            Some(ExecutorType::Linux) => {
                envs.entry("HOME".to_owned()).or_insert_with(|| "/".to_owned());
                DefaultExecutor {}.setup_envs(envs)
            }
            _ => Ok(()),
        }
    }
}

impl<S: Shim> Executor<S> {
    pub fn new(
        wasm_layers: Vec<WasmLayer>,
        container_labels: HashMap<String, String>,
        runtime_options: BTreeMap<String, String>,
    ) -> Self {
        Self(Arc::new(InnerExecutor {
            ty: Default::default(),
            wasm_layers: RwLock::new(wasm_layers),
            container_labels,
            runtime_options,
        }))
    }

    fn layers(&self) -> std::sync::RwLockReadGuard<'_, Vec<WasmLayer>> {
        self.0.wasm_layers.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ctx<'a>(&'a self, spec: &'a Spec, wasm_layers: &'a [WasmLayer]) -> WasiContext<'a> {
        WasiContext {
            spec,
            wasm_layers,
            container_labels: &self.0.container_labels,
            runtime_options: &self.0.runtime_options,
        }
    }

    fn ty(&self, spec: &Spec) -> &ExecutorType<S> {
        let ty = self.0.ty.get_or_init(|| {
            let layers = self.layers();
            let ctx = &self.ctx(spec, &layers);
            match is_linux_container(ctx) {
                Ok(_) => ExecutorType::Linux,
                Err(err) => {
                    log::debug!("error checking if linux container: {err}. Fallback to wasm container");
                    // wasmbox addition: before the engine starts any thread (compiling does).
                    if let Err(err) = drop_capabilities_as_exec_would() {
                        return ExecutorType::CantHandle(format!("dropping capabilities: {err:#}"));
                    }
                    let container = S::Sandbox::default();
                    match block_on(container.can_handle(ctx)) {
                        Ok(_) => ExecutorType::Wasm(container),
                        Err(err) => {
                            // log an error and return
                            log::error!("error checking if wasm container: {err}. Note: arg0 must be a path to a Wasm file");
                            ExecutorType::CantHandle(format!("{err:#}"))
                        }
                    }
                }
            }
        });
        // wasmbox: the sandbox has loaded its guest from the image's Wasm layers (an artifact's
        // modules, its precompiled code): their bytes are not needed any more, and the
        // container's init kept them for its whole life (megabytes for a big component).
        if matches!(ty, ExecutorType::Wasm(_)) {
            let mut layers = self.0.wasm_layers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !layers.is_empty() {
                *layers = Vec::new();
            }
        }
        ty
    }
}

/// Leaves this process the capabilities an `execve` would leave it (wasmbox addition).
///
/// libcontainer sets the spec's capability sets and then expects an `execve`, at which the
/// kernel recomputes them: a process of a user other than root keeps only its ambient
/// capabilities (runc's `runAsUser: 1000` process has none), root keeps the spec's. A Wasm guest
/// runs in this very process instead, so do here what `execve` would have done. Capabilities
/// belong to each thread: this must run before the process starts any other.
fn drop_capabilities_as_exec_would() -> Result<()> {
    use caps::CapSet;
    // SAFETY: geteuid cannot fail and has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let ambient = caps::read(None, CapSet::Ambient).context("reading the ambient capabilities")?;
    caps::set(None, CapSet::Effective, &ambient).context("setting the effective capabilities")?;
    caps::set(None, CapSet::Permitted, &ambient).context("setting the permitted capabilities")?;
    Ok(())
}

/// Points every descriptor above stderr at `/dev/null` (the container's own), just before a Wasm
/// guest runs in this process (wasmbox addition).
///
/// The container's init process is cloned from the shim's create helper, not exec'd, so it holds
/// what the helper held: the pipe of its reply to the shim, a procfs of the node's PID namespace (`/proc/1/root` is the node's root), containerd's log
/// FIFO, the node's compiled-code cache. Code that escaped the Wasm sandbox could use any of
/// them; none is needed once the guest runs. Each is replaced rather than closed, so that no
/// descriptor number some library still holds comes to name a file the guest opens.
fn neutralize_inherited_descriptors() -> Result<()> {
    use std::os::fd::AsRawFd;
    let numbers: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("listing /proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    for fd in numbers
        .into_iter()
        .filter(|fd| *fd > 2 && *fd != null.as_raw_fd())
    {
        // SAFETY: dup3 onto a descriptor number this process has open (or had: the one of the
        // directory listing, now closed, is harmless to fill); it closes and replaces it
        // atomically, and no Rust object is invalidated: the number stays a valid descriptor.
        if unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("replacing descriptor {fd}"));
        }
    }
    Ok(())
}

fn is_linux_container(ctx: &impl RuntimeContext) -> Result<()> {
    if let Source::Oci(_) = ctx.entrypoint().source {
        bail!("the entry point contains wasm layers")
    };

    let executable = ctx
        .entrypoint()
        .arg0
        .context("no entrypoint provided")?
        .resolve_in_path()
        .find_map(|p| -> Option<PathBuf> {
            let mode = p.metadata().ok()?.permissions().mode();
            (mode & 0o001 != 0).then_some(p)
        })
        .context("entrypoint not found")?;

    // check the shebang and ELF magic number
    // https://en.wikipedia.org/wiki/Executable_and_Linkable_Format#File_header
    let mut buffer = [0; 4];
    File::open(executable)?.read_exact(&mut buffer)?;

    match buffer {
        [0x7f, 0x45, 0x4c, 0x46] => Ok(()), // ELF magic number
        [0x23, 0x21, ..] => Ok(()),         // shebang
        _ => bail!("not a valid script or elf file"),
    }
}
