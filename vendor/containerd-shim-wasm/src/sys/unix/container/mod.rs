#[allow(clippy::module_inception)]
mod container;

// wasmbox: public through `shim::Executor`, for a runc-compatible runtime binary.
pub(crate) mod executor;
pub mod instance;
mod stdin_relay;
mod metrics;
