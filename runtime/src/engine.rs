//! The wasmtime engine: its configuration, the key that names its compiled code, and the variant
//! that serves HTTP from a pool of instances.
//!
//! The configuration is the same everywhere wasmbox compiles (the shim, `wasmbox image build
//! --precompile`), so that code compiled in one place fits the others:
//! - the component model, and wasmtime's default WebAssembly features, switched per workload by
//!   `wasmbox.io/wasm-features` (another set of features is another engine, with another key);
//! - epoch interruption, so that an HTTP request can be given a time limit (see [`crate::http`]);
//! - a code publisher that makes code executable with `mprotect` wherever it lives, so that code
//!   mapped from a cache entry whose descriptor is already closed can run (see
//!   [`crate::code::mapped`]).

use std::hash::Hasher;
use std::sync::Arc;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::settings::WasmFeature;

/// The wasmtime engine shared by everything a container runs.
pub struct Engine {
    engine: wasmtime::Engine,
    /// The configuration `engine` was made from (servers derive a pooling engine from it).
    config: wasmtime::Config,
    key: String,
}

impl Engine {
    /// An engine with wasmbox's configuration and wasmtime's default features.
    pub fn new() -> Result<Self> {
        Self::with_features(&[])
    }

    /// An engine with these WebAssembly features switched on or off on top of wasmtime's defaults.
    pub fn with_features(features: &[(WasmFeature, bool)]) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.with_custom_code_memory(Some(Arc::new(MprotectPublisher)));
        for (feature, on) in features {
            apply_feature(&mut config, *feature, *on);
        }
        let engine = wasmtime::Engine::new(&config).map_err(anyhow::Error::from).context("configuring wasmtime")?;
        Ok(Engine { key: engine_key(&engine), engine, config })
    }

    /// What names this engine's compiled code: 16 hex digits of a stable hash (SHA-256) of
    /// wasmtime's compatibility hash (its version, compiler settings, CPU features and the
    /// WebAssembly features) and wasmbox's version. Precompiled code must have been made by an
    /// engine with the same key, and the cache files code under it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// An engine like this one that allocates instances from a pool, as `wasmtime serve` does:
    /// for servers that instantiate on every request. `None` when the pool cannot be reserved
    /// (the address space is too small) or its code would not be compatible with this engine's.
    pub fn pooling(&self) -> Option<wasmtime::Engine> {
        let mut config = self.config.clone();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(Default::default()));
        match wasmtime::Engine::new(&config) {
            Ok(engine) if engine_key(&engine) == self.key => Some(engine),
            Ok(_) => {
                log::info!("the pooling allocator changes the engine's compatibility hash: not used");
                None
            }
            Err(err) => {
                log::info!("the pooling allocator is not available here: {err}");
                None
            }
        }
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// A wasmtime engine of its own with this one's configuration (so its code has this engine's
    /// key), to compile with and drop: see `code::precompile`.
    pub(crate) fn compiler(&self) -> Result<wasmtime::Engine> {
        wasmtime::Engine::new(&self.config).map_err(anyhow::Error::from).context("configuring wasmtime's compiler")
    }
}

/// Turns a feature on or off in a wasmtime configuration.
fn apply_feature(config: &mut wasmtime::Config, feature: WasmFeature, on: bool) {
    match feature {
        // Relaxed SIMD builds on SIMD: turning SIMD off turns it off too.
        WasmFeature::Simd if !on => config.wasm_simd(false).wasm_relaxed_simd(false),
        WasmFeature::Simd => config.wasm_simd(on),
        WasmFeature::RelaxedSimd => config.wasm_relaxed_simd(on),
        WasmFeature::Threads => config.wasm_threads(on),
        WasmFeature::MultiMemory => config.wasm_multi_memory(on),
        WasmFeature::Memory64 => config.wasm_memory64(on),
        WasmFeature::TailCall => config.wasm_tail_call(on),
        WasmFeature::Gc => config.wasm_gc(on),
        WasmFeature::FunctionReferences => config.wasm_function_references(on),
        WasmFeature::ReferenceTypes => config.wasm_reference_types(on),
        WasmFeature::BulkMemory => config.wasm_bulk_memory(on),
        WasmFeature::MultiValue => config.wasm_multi_value(on),
        WasmFeature::ExtendedConst => config.wasm_extended_const(on),
        WasmFeature::WideArithmetic => config.wasm_wide_arithmetic(on),
    };
}

/// A [`Hasher`] that feeds SHA-256: unlike `DefaultHasher`, whose algorithm Rust does not
/// promise, the same input gives the same key in every build (both engines' code keys use it).
pub(crate) struct StableHasher(Sha256);

impl StableHasher {
    pub(crate) fn new() -> Self {
        StableHasher(Sha256::new())
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

fn engine_key(engine: &wasmtime::Engine) -> String {
    use std::hash::Hash;
    let mut hasher = StableHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.write(concat!("wasmbox ", env!("CARGO_PKG_VERSION")).as_bytes());
    format!("{:016x}", hasher.finish())
}

/// Makes code executable with `mprotect`, wherever it lives: in memory wasmtime allocated, or
/// in a private read-only mapping of a cache entry (see [`crate::code::mapped`]), which wasmtime
/// cannot change the protection of itself.
struct MprotectPublisher;

impl wasmtime::CustomCodeMemory for MprotectPublisher {
    fn required_alignment(&self) -> usize {
        rustix::param::page_size()
    }

    fn publish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        use rustix::mm::MprotectFlags;
        // SAFETY: wasmtime hands over the page-aligned text section of code memory it has
        // finished writing (or that was mapped read-only from a cache entry); it stays mapped
        // for as long as the code it belongs to.
        unsafe { rustix::mm::mprotect(ptr.cast_mut().cast(), len, MprotectFlags::READ | MprotectFlags::EXEC) }
            .map_err(|err| wasmtime::Error::msg(format!("making compiled code executable: {err}")))
    }

    fn unpublish_executable(&self, ptr: *const u8, len: usize) -> wasmtime::Result<()> {
        use rustix::mm::MprotectFlags;
        // SAFETY: as above; wasmtime no longer runs code from this range.
        unsafe { rustix::mm::mprotect(ptr.cast_mut().cast(), len, MprotectFlags::READ | MprotectFlags::WRITE) }
            .map_err(|err| wasmtime::Error::msg(format!("unpublishing compiled code: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_stable_and_depends_on_the_features() -> Result<()> {
        let key = Engine::new()?.key().to_owned();
        assert_eq!(key.len(), 16);
        assert_eq!(Engine::new()?.key(), key);
        assert_ne!(Engine::with_features(&[(WasmFeature::Simd, false)])?.key(), key);
        Ok(())
    }
}
