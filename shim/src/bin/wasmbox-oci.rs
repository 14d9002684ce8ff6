//! `wasmbox-oci`: wasmbox's OCI runtime command, with runc's command line (see `wasmbox_shim::oci`).

fn main() {
    std::process::exit(wasmbox_shim::oci::main());
}
