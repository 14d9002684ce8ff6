//! wasmbox's container glue, shared by its two front doors: the containerd shim
//! (`containerd-shim-wasmbox-v1`) and the runc-compatible runtime command (`wasmbox-oci`).
//!
//! Both have youki's libcontainer create the container (namespaces, cgroups, root file system,
//! mounts, stdio) with the same executor (`containerd_shim_wasm::shim::Executor`): inside the
//! container's init process it either execs an ELF / `#!` entry point as an ordinary Linux
//! container, or hands the Wasm entry point to [`sandbox::WasmboxSandbox`], which runs it with
//! `wasmbox-runtime`. So a guest sees the same args, env, cwd, mounts, limits, code cache and
//! errors whichever door it came through.

pub mod cleanup;
pub mod oci;
pub mod sandbox;

use anyhow::Context as _;
use containerd_shim_wasm::shim::{Shim, Version, version};

use crate::sandbox::WasmboxSandbox;

/// The program that creates the shim's containers, found beside the shim's binary.
pub const CREATE_HELPER: &str = "wasmbox-oci";

/// wasmbox as `containerd-shim-wasm` sees it.
pub struct WasmboxShim;

impl Shim for WasmboxShim {
    type Sandbox = WasmboxSandbox;

    fn name() -> &'static str {
        "wasmbox"
    }

    fn version() -> Version {
        version!()
    }

    /// `WASMBOX_STATE_DIR` from containerd's environment, else `/run/containerd/wasmbox`.
    fn runtime_root() -> Option<std::path::PathBuf> {
        Some(wasmbox_runtime::NodeSettings::state_dir_from_env())
    }

    /// `wasmbox-oci` beside the shim's own binary: the shim execs it to create each container,
    /// and its clone becomes the container's init. So the engine (wasmtime, Cranelift) is in
    /// `wasmbox-oci` only, and the long-lived shim process maps none of it.
    fn create_helper() -> anyhow::Result<std::path::PathBuf> {
        let shim = std::env::current_exe().context("finding the shim's own binary")?;
        let helper = shim.with_file_name(CREATE_HELPER);
        if !helper.is_file() {
            anyhow::bail!(
                "wasmbox: {} is missing: the shim creates containers with the {CREATE_HELPER} installed beside it",
                helper.display()
            );
        }
        Ok(helper)
    }

    /// The Wasm layer media types of artifact images, plus wasmbox's precompiled-code layer.
    fn supported_layers_types() -> &'static [&'static str] {
        &[
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            "application/wasm",
            wasmbox_runtime::code::image::PRECOMPILED_MEDIA_TYPE,
        ]
    }
}

/// The shim's name for the runtime `io.containerd.wasmbox-wasmer.v1`: the same binary, installed
/// (linked or copied) under this name, runs workloads on Wasmer unless they name an engine.
pub const WASMER_SHIM: &str = "containerd-shim-wasmbox-wasmer-v1";

/// When this shim was started as [`WASMER_SHIM`] (its `argv[0]`, as containerd runs it), makes
/// Wasmer the node's default engine (`WASMBOX_ENGINE=wasmer`) for it and the processes it starts,
/// unless the node's admin set `WASMBOX_ENGINE`. Call from `main` before any other thread exists.
pub fn engine_from_runtime_name() {
    let invoked = std::env::args_os().next().map(std::path::PathBuf::from);
    let name = invoked.as_deref().and_then(std::path::Path::file_name);
    if name.is_some_and(|name| name == WASMER_SHIM) && std::env::var_os(wasmbox_runtime::node::ENGINE).is_none() {
        // SAFETY: called from `main` before any other thread of this process exists.
        unsafe { std::env::set_var(wasmbox_runtime::node::ENGINE, wasmbox_runtime::EngineKind::Wasmer.name()) };
    }
}

/// Sets the process up as every wasmbox process that may become a container's init wants it;
/// call first thing in `main`, before any other thread exists.
///
/// - One malloc arena for all threads: a shim and an idle guest are idle most of their life, and
///   per-thread arenas cost every container memory for nothing.
/// - The async runtimes that tokio builds with its defaults (the shim's own) run one worker
///   thread instead of one per core: a shim waits for a few events, and on a 64-core node every
///   container cost 64 idle threads. The guest's runtimes size themselves. A value the node's
///   admin set is kept. The guest never sees it: its environment is the spec's.
/// - A thread's stack is unmapped when the thread ends (`glibc.pthread.stack_cache_size=0`, set
///   through `GLIBC_TUNABLES`, which the dynamic loader reads when a program starts, for the
///   processes this one starts: the shim that `start` spawns, the create helper and so the
///   container's init), instead of kept in glibc's cache of stacks (up to 40 MiB) with the pages
///   the thread touched: an idle shim kept 8–24 KiB for each thread that had ended (its
///   create's, its events client's). A value the node's admin set is kept.
pub fn lean_process_setup() {
    // SAFETY: mallopt before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    const WORKERS: &str = "TOKIO_WORKER_THREADS";
    if std::env::var_os(WORKERS).is_none() {
        // SAFETY: called from `main` before any other thread of this process exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var(WORKERS, "1") };
    }
    if let Some(tunables) = with_tunables(std::env::var("GLIBC_TUNABLES").ok().as_deref(), &[STACK_CACHE_OFF]) {
        // SAFETY: as above.
        unsafe { std::env::set_var("GLIBC_TUNABLES", tunables) };
    }
}

/// The environment variable through which the shim's `start` hands the serving shim the
/// `GLIBC_TUNABLES` its create helpers get.
const HELPER_TUNABLES: &str = "WASMBOX_HELPER_GLIBC_TUNABLES";

/// [`lean_process_setup`], and for the serving shim (which `start` spawns with its environment)
/// no per-thread cache of freed memory (`glibc.malloc.tcache_count=0`): each thread kept up to 7
/// freed blocks of each size, which `malloc_trim` cannot give back, with the pages around them;
/// an idle shim holds 80 KiB less (50 idle containers, `make bench`). The create helpers, and so
/// the containers' inits, keep the cache: an HTTP server's threads allocate for every request,
/// and without it they queue on malloc's lock (wasmbox served 27% fewer requests a second than
/// `wasmtime serve`, against 5% more with it). Call first thing in the shim's `main`, with its
/// arguments.
pub fn lean_shim_setup(args: &[String]) {
    lean_process_setup();
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    if args.last().map(String::as_str) == Some("start") {
        if let Some(for_the_shim) = with_tunables(tunables.as_deref(), &[TCACHE_OFF]) {
            // SAFETY: called from `main` before any other thread of this process exists.
            unsafe {
                std::env::set_var(HELPER_TUNABLES, tunables.unwrap_or_default());
                std::env::set_var("GLIBC_TUNABLES", for_the_shim);
            }
        }
    } else if let Some(for_helpers) = std::env::var_os(HELPER_TUNABLES) {
        // The serving shim: its own tunables are read; its helpers get the node's.
        // SAFETY: as above.
        unsafe {
            std::env::remove_var(HELPER_TUNABLES);
            std::env::set_var("GLIBC_TUNABLES", for_helpers);
        }
    }
}

/// Turns glibc's cache of thread stacks off (see [`lean_process_setup`]).
const STACK_CACHE_OFF: (&str, &str) = ("glibc.pthread.stack_cache_size", "0");
/// Turns glibc's per-thread cache of freed memory off (see [`lean_shim_setup`]).
const TCACHE_OFF: (&str, &str) = ("glibc.malloc.tcache_count", "0");

/// `GLIBC_TUNABLES` with the `tunables` that `current` does not set added, or `None` to keep
/// `current` as it is (it sets them all).
fn with_tunables(current: Option<&str>, tunables: &[(&str, &str)]) -> Option<String> {
    let current = current.filter(|set| !set.is_empty());
    let is_set =
        |name: &str| current.is_some_and(|set| set.split(':').any(|tunable| tunable.split('=').next() == Some(name)));
    let missing: Vec<String> =
        tunables.iter().filter(|(name, _)| !is_set(name)).map(|(name, value)| format!("{name}={value}")).collect();
    if missing.is_empty() {
        return None;
    }
    Some(current.map(str::to_owned).into_iter().chain(missing).collect::<Vec<_>>().join(":"))
}

#[cfg(test)]
mod tests {
    use super::{STACK_CACHE_OFF, TCACHE_OFF, with_tunables};

    #[test]
    fn tunables_are_added_unless_the_admin_set_them() {
        let both = [TCACHE_OFF, STACK_CACHE_OFF];
        let lean = "glibc.malloc.tcache_count=0:glibc.pthread.stack_cache_size=0";
        assert_eq!(with_tunables(None, &both).as_deref(), Some(lean));
        assert_eq!(with_tunables(Some(""), &both).as_deref(), Some(lean));
        assert_eq!(
            with_tunables(Some("glibc.malloc.trim_threshold=0"), &[STACK_CACHE_OFF]).as_deref(),
            Some("glibc.malloc.trim_threshold=0:glibc.pthread.stack_cache_size=0")
        );
        assert_eq!(
            with_tunables(Some("glibc.pthread.stack_cache_size=1048576"), &both).as_deref(),
            Some("glibc.pthread.stack_cache_size=1048576:glibc.malloc.tcache_count=0")
        );
        // A name that only starts like one of them is another tunable.
        assert_eq!(
            with_tunables(Some("glibc.malloc.tcache_count_x=1"), &[TCACHE_OFF]).as_deref(),
            Some("glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=0")
        );
        assert_eq!(with_tunables(Some("glibc.malloc.tcache_count=7:glibc.pthread.stack_cache_size=0"), &both), None);
    }
}
