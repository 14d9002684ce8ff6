//! The wasmtime engine and loading: bytes (binary or text) become a compiled [`Program`], through the code cache.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, anyhow};
use wasmtime::component::Component;
use wasmtime::{Module, Precompiled};

use crate::annotations::WasmFeature;
use crate::cache::{CacheKey, CodeCache, engine_hash};
use crate::run::{FailureKind, RunError};

/// Whether a binary is a core module (WASI preview 1) or a component (WASI preview 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Module,
    Component,
}

impl SourceKind {
    /// Classifies WebAssembly binary bytes; `None` when they are not WebAssembly at all.
    pub fn of_binary(bytes: &[u8]) -> Option<Self> {
        if wasmparser::Parser::is_component(bytes) {
            Some(SourceKind::Component)
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            Some(SourceKind::Module)
        } else {
            None
        }
    }
}

/// A compiled module or component.
pub enum ProgramKind {
    Module(Module),
    Component(Component),
}

/// A compiled guest, ready to instantiate.
pub struct Program {
    pub kind: ProgramKind,
    /// Where the code came from, for messages: the file path inside the container.
    pub origin: String,
    /// True when the compiled code was mapped from the cache rather than compiled now.
    pub from_cache: bool,
}

/// The wasmtime engine shared by everything a container runs, plus its code cache.
pub struct Engine {
    engine: wasmtime::Engine,
    engine_hash: u64,
    cache: Option<CodeCache>,
}

impl Engine {
    /// An engine with wasmbox's configuration; `cache`, when given, is used for compiled code.
    pub fn new(cache: Option<CodeCache>) -> anyhow::Result<Self> {
        Self::with_features(cache, &[])
    }

    /// An engine with these WebAssembly features switched on or off on top of wasmtime's defaults.
    /// Features change the engine's compatibility hash, so their compiled code is cached apart.
    pub fn with_features(cache: Option<CodeCache>, features: &[(WasmFeature, bool)]) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        for (feature, on) in features {
            feature.apply(&mut config, *on);
        }
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("configuring wasmtime")?;
        Ok(Engine {
            engine_hash: engine_hash(&engine),
            engine,
            cache,
        })
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// The code cache, if this engine has one.
    pub fn cache(&self) -> Option<&CodeCache> {
        self.cache.as_ref()
    }

    /// Reads and compiles the file at `path` (a `.wasm` binary or WebAssembly text).
    pub fn load_file(&self, path: &Path) -> Result<Program, RunError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|err| {
            let kind = match err.kind() {
                std::io::ErrorKind::NotFound => FailureKind::NotFound,
                _ => FailureKind::Invalid,
            };
            RunError::new(kind, anyhow!("{origin}: {err}"))
        })?;
        self.load_bytes(&bytes, &origin)
    }

    /// Compiles `bytes` (binary or text), or maps their compiled code from the cache.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<Program, RunError> {
        let wasm = decode(bytes, origin)?;
        let kind = SourceKind::of_binary(&wasm).ok_or_else(|| {
            RunError::invalid(anyhow!("{origin}: unsupported WebAssembly binary version"))
        })?;
        let (program, from_cache) = match &self.cache {
            Some(cache) => self.load_through_cache(cache, &wasm, kind, origin)?,
            None => (self.compile(&wasm, kind, origin)?, false),
        };
        Ok(Program {
            kind: program,
            origin: origin.to_owned(),
            from_cache,
        })
    }

    fn compile(&self, wasm: &[u8], kind: SourceKind, origin: &str) -> Result<ProgramKind, RunError> {
        let compiled = match kind {
            SourceKind::Module => Module::new(&self.engine, wasm).map(ProgramKind::Module),
            SourceKind::Component => Component::new(&self.engine, wasm).map(ProgramKind::Component),
        };
        compiled.map_err(|err| RunError::invalid(anyhow!("{origin}: invalid WebAssembly: {err:#}")))
    }

    fn precompile(&self, wasm: &[u8], kind: SourceKind, origin: &str) -> Result<Vec<u8>, RunError> {
        let compiled = match kind {
            SourceKind::Module => self.engine.precompile_module(wasm),
            SourceKind::Component => self.engine.precompile_component(wasm),
        };
        compiled.map_err(|err| RunError::invalid(anyhow!("{origin}: invalid WebAssembly: {err:#}")))
    }

    /// Maps the compiled code of `wasm` from the cache, compiling and storing it first when absent.
    /// Any cache failure falls back to compiling in memory: the cache only ever saves time.
    fn load_through_cache(
        &self,
        cache: &CodeCache,
        wasm: &[u8],
        kind: SourceKind,
        origin: &str,
    ) -> Result<(ProgramKind, bool), RunError> {
        let key = CacheKey::new(wasm, kind == SourceKind::Component, self.engine_hash);
        if cache.contains(&key) {
            match self.map_entry(cache, &key, kind) {
                Ok(program) => {
                    log::info!("{origin}: compiled code mapped from the cache ({})", key.as_str());
                    return Ok((program, true));
                }
                Err(err) => {
                    log::warn!("{origin}: cache entry {} refused, compiling again: {err:#}", key.as_str());
                    cache.remove(&key);
                }
            }
        }
        let started = std::time::Instant::now();
        let compiled = self.precompile(wasm, kind, origin)?;
        log::info!("{origin}: compiled in {:?}", started.elapsed());
        if let Err(err) = cache.store(&key, &compiled) {
            log::warn!("{origin}: compiled code not cached: {err:#}");
        } else if let Ok(program) = self.map_entry(cache, &key, kind) {
            return Ok((program, false));
        }
        // SAFETY: these bytes were produced just now by this engine's own compiler.
        let program = unsafe {
            match kind {
                SourceKind::Module => Module::deserialize(&self.engine, &compiled).map(ProgramKind::Module),
                SourceKind::Component => {
                    Component::deserialize(&self.engine, &compiled).map(ProgramKind::Component)
                }
            }
        };
        program
            .map(|program| (program, false))
            .map_err(|err| RunError::internal(anyhow!("{origin}: loading compiled code: {err:#}")))
    }

    fn map_entry(&self, cache: &CodeCache, key: &CacheKey, kind: SourceKind) -> anyhow::Result<ProgramKind> {
        let path = cache.entry_path(key);
        let expected = match kind {
            SourceKind::Module => Precompiled::Module,
            SourceKind::Component => Precompiled::Component,
        };
        let found = wasmtime::Engine::detect_precompiled_file(&path)?;
        anyhow::ensure!(found == Some(expected), "not a precompiled {kind:?} (found {found:?})");
        // SAFETY: cache entries are written only by this engine's compiler, under a name that
        // includes the digest of the source and the engine's compatibility hash; wasmtime checks
        // the header (version, target, flags) again before using the code.
        unsafe {
            Ok(match kind {
                SourceKind::Module => ProgramKind::Module(Module::deserialize_file(&self.engine, &path)?),
                SourceKind::Component => {
                    ProgramKind::Component(Component::deserialize_file(&self.engine, &path)?)
                }
            })
        }
    }
}

/// Turns file contents into WebAssembly binary: binary passes through, text is assembled.
pub fn decode<'a>(bytes: &'a [u8], origin: &str) -> Result<Cow<'a, [u8]>, RunError> {
    if bytes.starts_with(b"\0asm") {
        return Ok(Cow::Borrowed(bytes));
    }
    // WebAssembly text starts with `(` or a `;;` comment once white space is skipped.
    let looks_like_text = std::str::from_utf8(bytes)
        .is_ok_and(|text| text.trim_start().starts_with(['(', ';']));
    if !looks_like_text {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(RunError::invalid(anyhow!(
            "{origin}: not a WebAssembly file (no \\0asm magic number; starts with bytes {})",
            head.join(" ")
        )));
    }
    wat::parse_bytes(bytes).map_err(|err| {
        let first_line = err.to_string().lines().next().unwrap_or_default().to_owned();
        RunError::invalid(anyhow!(
            "{origin}: not a WebAssembly binary, and not valid WebAssembly text: {first_line}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD_WAT: &str = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#;

    #[test]
    fn text_and_binary_are_both_loaded() -> anyhow::Result<()> {
        let engine = Engine::new(None)?;
        let from_text = engine.load_bytes(ADD_WAT.as_bytes(), "add.wat")?;
        assert!(matches!(from_text.kind, ProgramKind::Module(_)));
        let binary = wat::parse_str(ADD_WAT)?;
        let from_binary = engine.load_bytes(&binary, "add.wasm")?;
        assert!(matches!(from_binary.kind, ProgramKind::Module(_)));
        Ok(())
    }

    #[test]
    fn components_are_recognised() -> anyhow::Result<()> {
        let engine = Engine::new(None)?;
        let component = wat::parse_str("(component)")?;
        assert_eq!(SourceKind::of_binary(&component), Some(SourceKind::Component));
        assert!(matches!(engine.load_bytes(&component, "c.wasm")?.kind, ProgramKind::Component(_)));
        Ok(())
    }

    #[test]
    fn garbage_gives_one_line_causes() -> anyhow::Result<()> {
        let engine = Engine::new(None)?;
        for (bytes, expected) in [
            (&b"\x7fELF\x02\x01"[..], "not a WebAssembly file"),
            (b"(module (func $f (result i32)))", "invalid WebAssembly"),
            (b"hello there", "not a WebAssembly file"),
            (b"(module (fun))", "not valid WebAssembly text"),
            (b"\0asm\x01\0\0\0\x99", "invalid WebAssembly"),
        ] {
            let err = engine.load_bytes(bytes, "x.wasm").err().expect("must fail");
            let text = err.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains('\n'), "not one line: {text}");
            assert_eq!(err.exit_code(), 126);
        }
        Ok(())
    }

    #[test]
    fn missing_file_is_not_found() -> anyhow::Result<()> {
        let engine = Engine::new(None)?;
        let err = engine.load_file(Path::new("/no/such/file.wasm")).err().expect("must fail");
        assert_eq!(err.exit_code(), 127);
        assert!(err.to_string().contains("/no/such/file.wasm"));
        Ok(())
    }

    #[test]
    fn cache_is_filled_then_used_and_a_damaged_entry_is_recompiled() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let wasm = wat::parse_str(ADD_WAT)?;
        let engine = Engine::new(Some(CodeCache::open(dir.path())?))?;
        assert!(!engine.load_bytes(&wasm, "add.wasm")?.from_cache);
        assert!(engine.load_bytes(&wasm, "add.wasm")?.from_cache);
        // damage the entry: it must be refused and compiled again, never executed
        let entry = std::fs::read_dir(dir.path())?.next().context("no entry")??.path();
        std::fs::write(&entry, b"not compiled code")?;
        assert!(!engine.load_bytes(&wasm, "add.wasm")?.from_cache);
        assert!(engine.load_bytes(&wasm, "add.wasm")?.from_cache);
        Ok(())
    }
}
