#![doc = include_str!("../README.md")]
#![doc(
    html_logo_url = "https://raw.githubusercontent.com/containerd/runwasi/e251de3307bbdc8bf3229020ea2ae2711f31aafa/art/logo/runwasi_logo_icon.svg"
)]

pub mod sandbox;
pub mod shim;

#[cfg_attr(unix, path = "sys/unix/mod.rs")]
#[cfg_attr(windows, path = "sys/windows/mod.rs")]
pub(crate) mod sys;

// wasmbox: the `testing` feature (runwasi's in-process `WasiTest` harness and the tests built on
// it) is removed: it needs Wasm test modules built for `wasm32-wasi`, which Rust 1.95 no longer
// has, and it created containers inside the test process, where wasmbox's shim execs itself as
// a create helper. wasmbox's own tests drive the shim through containerd (`shim/tests`).

pub(crate) mod containerd;
