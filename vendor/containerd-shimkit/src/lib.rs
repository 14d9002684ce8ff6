#![doc = include_str!("../README.md")]

pub mod sandbox;
mod vendor;

#[cfg_attr(unix, path = "sys/unix/mod.rs")]
#[cfg_attr(windows, path = "sys/windows/mod.rs")]
pub(crate) mod sys;

pub use containerd_shim::Config;
pub use sandbox::async_utils::AmbientRuntime;
pub use vendor::containerd_shim::logger::set_logger_kv;

/// Sends this process's `log` records, with the key-values of [`set_logger_kv`], to the shim's log
/// FIFO (`log` in the current directory), or to stderr when there is none (wasmbox addition: for
/// the create helpers the shim execs).
pub fn init_fifo_logger(debug: bool, default_log_level: &str) -> Result<(), log::SetLoggerError> {
    vendor::containerd_shim::logger::init_fifo_or_stderr(debug, default_log_level)
}
