//! The Wasmer engine behind [`crate::engines`]: its configuration and code key, loading through
//! the node's code cache, and the memory limit.
//!
//! Wasmer compiles with Cranelift. Its compiled code goes into the same node cache as wasmtime's,
//! under entries of its own (`<sha256 of the wasm>-wasmer-<key>.cwasm`, the key a hash of
//! Wasmer's version, compiler, CPU and WebAssembly features, and wasmbox's version), written only
//! by the node. Code an image ships is never used: it was made for wasmtime, and nothing from an
//! image becomes native code on this engine. Running a guest is [`run`].

mod files;
mod jshost;
mod run;

use std::borrow::Cow;
use std::hash::Hasher;
use std::ptr::NonNull;
use std::time::Instant;

use anyhow::anyhow;
use wasmer::sys::vm::{VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Cranelift, EngineBuilder, NativeEngineExt, Target, Tunables};
use wasmer::{MemoryError, MemoryStyle, MemoryType, Module, Pages, TableStyle, TableType};

use crate::code::CodeOrigin;
use crate::code::cache::{CacheKey, CodeCache};
use crate::code::decode::{SourceKind, decode_with_kind};
use crate::code::image::{self, sha256_digest};
use crate::config::{Entrypoint, RunConfig};
use crate::engine::StableHasher;
use crate::engines::{Guest, GuestSource, WasmEngine, check_no_network, unsupported};
use crate::error::{ExitStatus, RunError};
use crate::node::PrecompiledPolicy;
use crate::settings::{EngineKind, WasmFeature};

/// Wasmer with its Cranelift compiler, configured for one workload.
pub struct WasmerEngine {
    engine: wasmer::Engine,
    key: String,
}

impl WasmerEngine {
    /// An engine with Wasmer's default features, these switched on or off on top.
    pub fn with_features(switches: &[(WasmFeature, bool)]) -> anyhow::Result<Self> {
        let mut features = wasmer::sys::Features::default();
        for (feature, on) in switches {
            apply_feature(&mut features, *feature, *on)?;
        }
        let key = engine_key(&features);
        let engine = EngineBuilder::new(Cranelift::default()).set_features(Some(features)).engine();
        Ok(WasmerEngine { engine: engine.into(), key })
    }
}

/// Turns a feature on or off in Wasmer's features; features Wasmer lacks are an error.
fn apply_feature(features: &mut wasmer::sys::Features, feature: WasmFeature, on: bool) -> anyhow::Result<()> {
    match feature {
        WasmFeature::Simd if !on => {
            features.simd = false;
            features.relaxed_simd = false;
        }
        WasmFeature::Simd => features.simd = true,
        WasmFeature::RelaxedSimd => features.relaxed_simd = on,
        WasmFeature::Threads => features.threads = on,
        WasmFeature::MultiMemory => features.multi_memory = on,
        WasmFeature::Memory64 => features.memory64 = on,
        WasmFeature::TailCall => features.tail_call = on,
        WasmFeature::ReferenceTypes => features.reference_types = on,
        WasmFeature::BulkMemory => features.bulk_memory = on,
        WasmFeature::MultiValue => features.multi_value = on,
        WasmFeature::ExtendedConst => features.extended_const = on,
        WasmFeature::WideArithmetic => features.wide_arithmetic = on,
        WasmFeature::Gc | WasmFeature::FunctionReferences if !on => {}
        WasmFeature::Gc | WasmFeature::FunctionReferences => {
            let name = WasmFeature::ALL.iter().find(|(_, f)| *f == feature).map_or("?", |(name, _)| *name);
            anyhow::bail!("the wasmer engine does not support the feature {name:?}")
        }
    }
    Ok(())
}

/// `wasmer-` and 16 hex digits of SHA-256 over what makes Wasmer's code fit this machine and
/// these features (Wasmer checks the CPU features again when it loads code).
fn engine_key(features: &wasmer::sys::Features) -> String {
    let mut hasher = StableHasher::new();
    let target = Target::default();
    for part in [
        format!("wasmer {} cranelift", wasmer_types::VERSION),
        format!("{:?}", target.triple()),
        format!("{:?}", target.cpu_features()),
        format!("{features:?}"),
        concat!("wasmbox ", env!("CARGO_PKG_VERSION")).to_owned(),
    ] {
        hasher.write(part.as_bytes());
        hasher.write(&[0]);
    }
    format!("wasmer-{:016x}", hasher.finish())
}

impl WasmEngine for WasmerEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Wasmer
    }

    fn key(&self) -> &str {
        &self.key
    }

    fn check_config(&self, config: &RunConfig) -> Result<(), RunError> {
        check_no_network(EngineKind::Wasmer, config)
    }

    fn load(
        &self,
        source: GuestSource<'_>,
        cache: Option<CodeCache>,
        policy: PrecompiledPolicy,
    ) -> Result<Box<dyn Guest>, RunError> {
        let (bytes, origin, precompiled_dir, artifact_code) = match source {
            GuestSource::File { path, precompiled_dir } => {
                (Cow::Owned(crate::code::read_guest_file(path)?), path.display().to_string(), precompiled_dir, false)
            }
            GuestSource::Artifact(layers) => {
                let (wasm, offer) = image::select_artifact_layers(layers)?;
                (Cow::Borrowed(wasm.bytes), format!("layer {}", wasm.digest), None, offer.is_some())
            }
            GuestSource::Bytes { bytes, origin } => (Cow::Borrowed(bytes), origin.to_owned(), None, false),
        };
        let (wasm, kind) = decode_with_kind(&bytes, &origin)?;
        if kind == SourceKind::Component {
            return Err(unsupported(EngineKind::Wasmer, &format!("{origin} is a component")));
        }
        let digest = sha256_digest(&wasm);
        let file_code = precompiled_dir.is_some_and(|dir| image::image_paths(dir, &digest).0.exists());
        if artifact_code || file_code {
            log::info!(
                "{origin}: precompiled code in the image ignored: the wasmer engine compiles every module on the node \
                 (node policy {policy:?})"
            );
        }
        let key = CacheKey::compiled(&digest["sha256:".len()..], &self.key, kind);
        if let Some(module) = cache.as_ref().and_then(|cache| self.load_cached(cache, &key, &origin)) {
            refuse_wasix(&module, &origin)?;
            log::info!("{origin}: compiled code loaded from the cache ({})", key.as_str());
            return Ok(Box::new(WasmerGuest { engine: self.engine.clone(), module, origin, code: CodeOrigin::Cache }));
        }
        let started = Instant::now();
        let module = Module::from_binary(&self.engine, &wasm)
            .map_err(|err| RunError::invalid(anyhow!("{origin}: invalid WebAssembly: {err}")))?;
        log::info!("{origin}: compiled by wasmer in {:?}", started.elapsed());
        refuse_wasix(&module, &origin)?;
        if let Some(cache) = &cache {
            let stored = module.serialize().map_err(anyhow::Error::from).and_then(|code| cache.store(&key, &code));
            if let Err(err) = stored {
                log::warn!("{origin}: compiled code not cached: {err:#}");
            }
        }
        Ok(Box::new(WasmerGuest { engine: self.engine.clone(), module, origin, code: CodeOrigin::Compiled }))
    }
}

/// WASIX (Wasmer's extensions: processes, threads, sockets) is not offered: wasmbox runs WASI
/// preview 1 modules on Wasmer, with the same capabilities as on wasmtime.
fn refuse_wasix(module: &Module, origin: &str) -> Result<(), RunError> {
    let wasix =
        module.imports().map(|import| import.module().to_owned()).find(|ns| ns.starts_with("wasix") || ns == "wasi");
    match wasix {
        Some(namespace) => Err(unsupported(
            EngineKind::Wasmer,
            &format!("{origin} imports WASIX (`{namespace}`), which wasmbox does not offer"),
        )),
        None => Ok(()),
    }
}

impl WasmerEngine {
    /// The module of cache entry `key`, if the cache has it whole and Wasmer takes it; an entry
    /// Wasmer refuses is removed.
    fn load_cached(&self, cache: &CodeCache, key: &CacheKey, origin: &str) -> Option<Module> {
        let entry = cache.lookup(key)?;
        // SAFETY: the entry's checksum was verified, and entries under a Wasmer key are written
        // only by this node's Wasmer compiler (image code never is: see the module docs). Wasmer
        // copies the code out of the mapping, which is dropped after.
        let loaded = unsafe { Module::deserialize(&self.engine, entry.mapped.bytes()) };
        match loaded {
            Ok(module) => Some(module),
            Err(err) => {
                log::warn!("{origin}: cache entry {} refused, compiling again: {err}", key.as_str());
                cache.remove(key);
                None
            }
        }
    }
}

/// A module loaded by Wasmer.
struct WasmerGuest {
    engine: wasmer::Engine,
    module: Module,
    origin: String,
    code: CodeOrigin,
}

impl Guest for WasmerGuest {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn code_origin(&self) -> CodeOrigin {
        self.code
    }

    fn run(&self, entry: &Entrypoint, config: &RunConfig) -> Result<ExitStatus, RunError> {
        let mut engine = self.engine.clone();
        let tunables = LimitingTunables::new(config.memory_limit);
        engine.set_tunables(tunables);
        run::run(engine, &self.module, &self.origin, entry, config)
    }
}

/// Wasmer's tunables, with every linear memory's maximum lowered to the container's memory limit.
struct LimitingTunables {
    base: BaseTunables,
    /// The limit in wasm pages, when the container has one.
    limit_pages: Option<Pages>,
}

impl LimitingTunables {
    fn new(memory_limit: Option<u64>) -> Self {
        let page = wasmer::WASM_PAGE_SIZE as u64;
        let limit_pages = memory_limit.map(|bytes| Pages(u32::try_from(bytes / page).unwrap_or(u32::MAX)));
        LimitingTunables { base: BaseTunables::new(), limit_pages }
    }

    /// The memory type with its maximum lowered to the limit; a minimum above it is an error.
    fn limited(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        let Some(limit) = self.limit_pages else { return Ok(*ty) };
        if ty.minimum > limit {
            return Err(MemoryError::MinimumMemoryTooLarge { min_requested: ty.minimum, max_allowed: limit });
        }
        let mut limited = *ty;
        limited.maximum = Some(ty.maximum.map_or(limit, |max| max.min(limit)));
        Ok(limited)
    }
}

impl Tunables for LimitingTunables {
    // Styles come from the module's own types, so that the compiled code does not depend on the
    // container's limit (and one cache entry serves every limit).
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(&self.limited(ty)?, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let limited = self.limited(ty)?;
        // SAFETY: Wasmer's contract for this call, passed on unchanged with a smaller maximum.
        unsafe { self.base.create_vm_memory(&limited, style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: Wasmer's contract for this call, passed on unchanged.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        self.base.vmconfig()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_key_is_stable_and_depends_on_the_features() -> anyhow::Result<()> {
        let key = WasmerEngine::with_features(&[])?.key().to_owned();
        assert!(key.starts_with("wasmer-") && key.len() == "wasmer-".len() + 16, "{key}");
        assert_eq!(WasmerEngine::with_features(&[])?.key(), key);
        assert_ne!(WasmerEngine::with_features(&[(WasmFeature::Simd, false)])?.key(), key);
        let err = WasmerEngine::with_features(&[(WasmFeature::Gc, true)]).err().context("gc accepted")?;
        assert_eq!(err.to_string(), "the wasmer engine does not support the feature \"gc\"");
        Ok(())
    }

    #[test]
    fn memories_are_capped_at_the_limit() -> anyhow::Result<()> {
        let tunables = LimitingTunables::new(Some(10 * 65536));
        let ty = MemoryType::new(2, None, false);
        assert_eq!(tunables.limited(&ty)?.maximum, Some(Pages(10)));
        assert_eq!(tunables.limited(&MemoryType::new(2, Some(4), false))?.maximum, Some(Pages(4)));
        assert!(tunables.limited(&MemoryType::new(11, None, false)).is_err());
        assert_eq!(LimitingTunables::new(None).limited(&ty)?, ty);
        Ok(())
    }
}
