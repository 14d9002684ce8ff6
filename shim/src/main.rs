//! `containerd-shim-wasmbox-v1`: the containerd shim (runtime type `io.containerd.wasmbox.v1`) that runs Wasm images.
//!
//! Installed a second time as `containerd-shim-wasmbox-wasmer-v1` (runtime type
//! `io.containerd.wasmbox-wasmer.v1`), the same binary makes Wasmer the default engine.
//!
//! This is glue: `containerd-shim-wasm` speaks the shim protocol, and the `wasmbox_shim` library
//! (shared with `wasmbox-oci`) says how a container's guest runs. The shim process lives as long
//! as its containers but never runs a guest: it execs `wasmbox-oci` (found beside it) to create
//! each container, so this binary holds no engine (see `WasmboxShim::create_helper`).

use containerd_shim_wasm::shim::{Cli, Config};
use wasmbox_shim::{WasmboxShim, cleanup, engine_from_runtime_name, lean_shim_setup};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    lean_shim_setup(&args);
    engine_from_runtime_name();
    if args.last().map(String::as_str) == Some("delete") {
        // containerd runs `delete` after a shim died: clean up what that shim left.
        cleanup::delete_leftover_container(&args);
    }
    WasmboxShim::serve(Config::default());
}
