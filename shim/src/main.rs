//! `containerd-shim-wasmbox-v1`: the containerd shim (runtime type `io.containerd.wasmbox.v1`) that runs Wasm images.
//!
//! This is glue. `containerd-shim-wasm` speaks the shim protocol and has youki's libcontainer
//! create the container (namespaces, cgroups, root file system, mounts, stdio). Inside the
//! container's init process it either execs an ELF / `#!` entry point as an ordinary Linux
//! container, or hands the Wasm entry point to [`WasmboxSandbox`], which runs it with
//! `wasmbox-runtime`.

mod cleanup;
mod sandbox;

use containerd_shim_wasm::shim::{Cli, Config, Shim, Version, is_create_helper, version};

use crate::sandbox::WasmboxSandbox;

/// The shim as `containerd-shim-wasm` sees it.
struct WasmboxShim;

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

    /// The Wasm layer media types of artifact images, plus wasmbox's precompiled-code layer.
    fn supported_layers_types() -> &'static [&'static str] {
        &[
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            "application/wasm",
            wasmbox_runtime::code::image::PRECOMPILED_MEDIA_TYPE,
        ]
    }
}

/// Has the async runtimes that tokio builds with its defaults (the shim's own, and wasmtime-wasi's
/// in the container's init, which inherits this environment) run one worker thread instead of one
/// per core: a shim and an idle guest wait for a few events each, and on a 64-core node every
/// container cost 128 idle threads. The HTTP server sizes its runtime itself. A value the node's
/// admin set for the shim is kept. The guest never sees it: its environment is the spec's.
fn one_async_worker_per_process() {
    const WORKERS: &str = "TOKIO_WORKER_THREADS";
    if std::env::var_os(WORKERS).is_none() {
        // SAFETY: called from `main` before any other thread of this process exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var(WORKERS, "1") };
    }
}

fn main() {
    // One malloc arena for all threads: the shim is idle most of its life, and per-thread
    // arenas cost every container's processes memory for nothing.
    // SAFETY: mallopt before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    one_async_worker_per_process();
    let args: Vec<String> = std::env::args().collect();
    let command = args.last().map(String::as_str).unwrap_or_default();
    if command == "delete" {
        // containerd runs `delete` after a shim died: clean up what that shim left.
        cleanup::delete_leftover_container(&args);
    } else if is_create_helper() {
        // The create helper forks the container's init, which inherits the cache (and closes
        // it before its guest runs); the shim's own long-lived process never opens it.
        sandbox::open_code_cache();
    }
    WasmboxShim::run(Config::default());
}
