//! `containerd-shim-wasmbox-v1`: the containerd shim (runtime type `io.containerd.wasmbox.v1`) that runs Wasm images.
//!
//! This is glue: `containerd-shim-wasm` speaks the shim protocol, and the `wasmbox_shim` library
//! (shared with `wasmbox-oci`) says how a container's guest runs.

use containerd_shim_wasm::shim::{Cli, Config, is_create_helper};
use wasmbox_shim::{WasmboxShim, cleanup, lean_process_setup, sandbox};

fn main() {
    lean_process_setup();
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
