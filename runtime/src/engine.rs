//! The wasmtime engine and loading: bytes (binary or text) become a compiled [`Program`], through the code cache.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use wasmtime::component::Component;
use wasmtime::{Module, Precompiled};

use crate::annotations::WasmFeature;
use crate::cache::{CacheKey, CodeCache, engine_hash};
use crate::precompiled::{self, ImageCode, PrecompiledInfo};
use crate::run::{FailureKind, RunError};

/// Whether a binary is a core module (WASI preview 1) or a component (WASI preview 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Module,
    Component,
}

impl SourceKind {
    /// `module` or `component`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Module => "module",
            SourceKind::Component => "component",
        }
    }

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

/// Where the native code of a [`Program`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeOrigin {
    /// Compiled by this load.
    Compiled,
    /// Mapped from the node-local code cache.
    Cache,
    /// Precompiled code shipped in the image (`wasmbox image build --precompile`).
    Image,
}

/// A compiled guest, ready to instantiate.
pub struct Program {
    pub kind: ProgramKind,
    /// Where the guest came from, for messages: the file path inside the container, or the layer.
    pub origin: String,
    /// Where its native code came from.
    pub code: CodeOrigin,
}

/// Precompiled code offered with the bytes of a guest, used only if it checks out.
pub struct OfferedCode<'a> {
    pub info: PrecompiledInfo,
    pub code: ImageCode<'a>,
}

/// The wasmtime engine shared by everything a container runs, plus its code cache.
pub struct Engine {
    engine: wasmtime::Engine,
    /// The configuration `engine` was made from (servers derive a pooling engine from it).
    config: wasmtime::Config,
    engine_hash: u64,
    cache: Option<CodeCache>,
    /// Where to look for precompiled code next to a file being loaded (the tar layout).
    precompiled_dir: Option<PathBuf>,
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
            config,
            cache,
            precompiled_dir: None,
        })
    }

    /// Makes [`Engine::load_file`] use precompiled code found in `dir` (normally
    /// [`precompiled::PRECOMPILED_DIR`]) when it was made for this engine from the file's bytes.
    pub fn with_precompiled_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.precompiled_dir = Some(dir.into());
        self
    }

    /// The engine's compatibility hash as 16 hex digits: precompiled code must have been made
    /// by an engine with the same hash.
    pub fn compatibility_hash(&self) -> String {
        format!("{:016x}", self.engine_hash)
    }

    /// Compiles `bytes` (binary or text) ahead of time, for shipping in an image.
    pub fn precompile_for_image(&self, bytes: &[u8], origin: &str) -> Result<(Vec<u8>, PrecompiledInfo), RunError> {
        let (wasm, kind) = decode_with_kind(bytes, origin)?;
        let code = self.precompile(&wasm, kind, origin)?;
        let info = PrecompiledInfo {
            engine: self.compatibility_hash(),
            wasmtime: precompiled::WASMTIME_VERSION.to_owned(),
            source: precompiled::sha256_digest(&wasm),
            code: precompiled::sha256_digest(&code),
            kind: kind.name().to_owned(),
        };
        Ok((code, info))
    }

    /// An engine like this one that allocates instances from a pool, as `wasmtime serve` does:
    /// for servers that instantiate on every request. `None` when the pool cannot be reserved
    /// (the address space is too small) or its code would not be compatible with this engine's.
    pub fn pooling(&self) -> Option<wasmtime::Engine> {
        let mut config = self.config.clone();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(Default::default()));
        match wasmtime::Engine::new(&config) {
            Ok(engine) if engine_hash(&engine) == self.engine_hash => Some(engine),
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
        self.load(&bytes, &origin, |digest| self.precompiled_next_to_file(digest, &origin))
    }

    /// Compiles `bytes` (binary or text), or maps their compiled code from the cache.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<Program, RunError> {
        self.load(bytes, origin, |_| None)
    }

    /// Like [`Engine::load_bytes`], but uses `offered` precompiled code if it checks out.
    pub fn load_bytes_with_code(&self, bytes: &[u8], origin: &str, offered: OfferedCode<'_>) -> Result<Program, RunError> {
        self.load(bytes, origin, move |_| Some(offered))
    }

    /// Loads a guest: from the node-local cache, else from precompiled code in the image if it
    /// checks out, else by compiling it (and filling the cache).
    fn load<'a>(
        &self,
        bytes: &[u8],
        origin: &str,
        offered: impl FnOnce(&str) -> Option<OfferedCode<'a>>,
    ) -> Result<Program, RunError> {
        let (wasm, kind) = decode_with_kind(bytes, origin)?;
        let program = |kind, code| Program { kind, origin: origin.to_owned(), code };
        let key = CacheKey::new(&wasm, kind == SourceKind::Component, self.engine_hash);
        if let Some(cache) = &self.cache
            && let Some(mapped) = self.map_cached(cache, &key, kind, origin)
        {
            return Ok(program(mapped, CodeOrigin::Cache));
        }
        if let Some(offered) = offered(key.source_digest()) {
            match self.use_offered(offered, &key, kind) {
                Ok(loaded) => {
                    log::info!("{origin}: using the image's precompiled code, not compiling");
                    return Ok(program(loaded, CodeOrigin::Image));
                }
                Err(err) => log::warn!("{origin}: precompiled code in the image refused, compiling instead: {err:#}"),
            }
        }
        let compiled = match &self.cache {
            Some(cache) => self.compile_into_cache(cache, &key, &wasm, kind, origin)?,
            None => self.compile(&wasm, kind, origin)?,
        };
        Ok(program(compiled, CodeOrigin::Compiled))
    }

    /// The precompiled code the image has for the module with this digest, if any.
    fn precompiled_next_to_file(&self, source_digest: &str, origin: &str) -> Option<OfferedCode<'static>> {
        let dir = self.precompiled_dir.as_ref()?;
        let (code, info) = precompiled::image_paths(dir, source_digest);
        if !info.exists() {
            return None;
        }
        match PrecompiledInfo::read(&info) {
            Ok(info) => Some(OfferedCode { info, code: ImageCode::File(code) }),
            Err(err) => {
                log::warn!("{origin}: precompiled code in the image refused, compiling instead: {err:#}");
                None
            }
        }
    }

    /// Checks offered precompiled code and loads it: through the cache when there is one (so
    /// that containers share its pages), else straight from the file or the bytes.
    fn use_offered(&self, offered: OfferedCode<'_>, key: &CacheKey, kind: SourceKind) -> anyhow::Result<ProgramKind> {
        let OfferedCode { info, code } = offered;
        info.check_fits(&self.compatibility_hash(), key.source_digest())?;
        anyhow::ensure!(
            info.kind == kind.name(),
            "compiled as a {}, the wasm is a {}",
            info.kind,
            kind.name()
        );
        match code {
            ImageCode::File(path) => {
                // Hashing tens of MB on every start costs more than the rest of the start: the
                // cache remembers a file it verified (its size, mtime and inode), as trusted as
                // the cache's own entries.
                let identity = precompiled::file_identity(&path)?;
                match &self.cache {
                    Some(cache) if cache.was_verified(&info.code, &identity) => {
                        log::debug!("{}: verified before", path.display());
                    }
                    cache => {
                        precompiled::verify_file(&path, &info.code)?;
                        if let Some(cache) = cache
                            && let Err(err) = cache.remember_verified(&info.code, &identity)
                        {
                            log::warn!("verification of {} not remembered: {err:#}", path.display());
                        }
                    }
                }
                self.map_file(&path, kind)
            }
            ImageCode::Verified(bytes) => {
                if let Some(cache) = &self.cache {
                    match cache.store(key, bytes) {
                        Ok(()) => return self.map_file(&cache.entry_path(key), kind),
                        Err(err) => log::warn!("precompiled code not cached: {err:#}"),
                    }
                }
                self.deserialize(bytes, kind)
            }
        }
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

    /// Maps entry `key` from the cache; a damaged or foreign entry is logged and removed.
    fn map_cached(&self, cache: &CodeCache, key: &CacheKey, kind: SourceKind, origin: &str) -> Option<ProgramKind> {
        if !cache.contains(key) {
            return None;
        }
        match self.map_file(&cache.entry_path(key), kind) {
            Ok(program) => {
                log::info!("{origin}: compiled code mapped from the cache ({})", key.as_str());
                Some(program)
            }
            Err(err) => {
                log::warn!("{origin}: cache entry {} refused, compiling again: {err:#}", key.as_str());
                cache.remove(key);
                None
            }
        }
    }

    /// Compiles `wasm`, stores the code in the cache and maps it from there. Any cache failure
    /// falls back to the code in memory: the cache only ever saves time.
    fn compile_into_cache(
        &self,
        cache: &CodeCache,
        key: &CacheKey,
        wasm: &[u8],
        kind: SourceKind,
        origin: &str,
    ) -> Result<ProgramKind, RunError> {
        let started = std::time::Instant::now();
        let compiled = self.precompile(wasm, kind, origin)?;
        log::info!("{origin}: compiled in {:?}", started.elapsed());
        if let Err(err) = cache.store(key, &compiled) {
            log::warn!("{origin}: compiled code not cached: {err:#}");
        } else if let Ok(program) = self.map_file(&cache.entry_path(key), kind) {
            return Ok(program);
        }
        self.deserialize(&compiled, kind)
            .map_err(|err| RunError::internal(anyhow!("{origin}: loading compiled code: {err:#}")))
    }

    /// Loads code compiled by this engine, or checked to fit it, from memory.
    fn deserialize(&self, compiled: &[u8], kind: SourceKind) -> anyhow::Result<ProgramKind> {
        // SAFETY: `compiled` was produced by this engine's compiler, or is image code whose
        // engine, source and digest were checked (see `precompiled`); wasmtime checks the header.
        unsafe {
            Ok(match kind {
                SourceKind::Module => ProgramKind::Module(Module::deserialize(&self.engine, compiled)?),
                SourceKind::Component => ProgramKind::Component(Component::deserialize(&self.engine, compiled)?),
            })
        }
    }

    /// Maps compiled code from a file (a cache entry or checked image code), sharing its pages.
    fn map_file(&self, path: &Path, kind: SourceKind) -> anyhow::Result<ProgramKind> {
        let expected = match kind {
            SourceKind::Module => Precompiled::Module,
            SourceKind::Component => Precompiled::Component,
        };
        let found = wasmtime::Engine::detect_precompiled_file(path)?;
        anyhow::ensure!(found == Some(expected), "not a precompiled {} (found {found:?})", kind.name());
        // SAFETY: cache entries are written only by this engine's compiler, under a name that
        // includes the digest of the source and the engine's compatibility hash; image code is
        // used only after its engine, source and digest were checked. wasmtime checks the
        // header (version, target, flags) again before using the code.
        unsafe {
            Ok(match kind {
                SourceKind::Module => ProgramKind::Module(Module::deserialize_file(&self.engine, path)?),
                SourceKind::Component => ProgramKind::Component(Component::deserialize_file(&self.engine, path)?),
            })
        }
    }
}

/// [`decode`], then whether the binary is a module or a component.
fn decode_with_kind<'a>(bytes: &'a [u8], origin: &str) -> Result<(Cow<'a, [u8]>, SourceKind), RunError> {
    let wasm = decode(bytes, origin)?;
    let kind = SourceKind::of_binary(&wasm)
        .ok_or_else(|| RunError::invalid(anyhow!("{origin}: unsupported WebAssembly binary version")))?;
    Ok((wasm, kind))
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
    use crate::annotations::WasmFeature;

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
        assert_eq!(engine.load_bytes(&wasm, "add.wasm")?.code, CodeOrigin::Compiled);
        assert_eq!(engine.load_bytes(&wasm, "add.wasm")?.code, CodeOrigin::Cache);
        // damage the entry: it must be refused and compiled again, never executed
        let entry = std::fs::read_dir(dir.path())?.next().context("no entry")??.path();
        std::fs::write(&entry, b"not compiled code")?;
        assert_eq!(engine.load_bytes(&wasm, "add.wasm")?.code, CodeOrigin::Compiled);
        assert_eq!(engine.load_bytes(&wasm, "add.wasm")?.code, CodeOrigin::Cache);
        Ok(())
    }

    /// Writes `wasm`'s precompiled code and description into `dir` as the tar layout has them.
    fn ship_precompiled(engine: &Engine, dir: &Path, wasm: &[u8]) -> anyhow::Result<PrecompiledInfo> {
        let (code, info) = engine.precompile_for_image(wasm, "add.wasm")?;
        let (code_path, info_path) = precompiled::image_paths(dir, &info.source);
        std::fs::write(code_path, code)?;
        std::fs::write(info_path, serde_json::to_vec(&info)?)?;
        Ok(info)
    }

    #[test]
    fn image_code_is_used_only_when_it_fits() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let module = dir.path().join("add.wasm");
        let wasm = wat::parse_str(ADD_WAT)?;
        std::fs::write(&module, &wasm)?;
        let info = ship_precompiled(&Engine::new(None)?, dir.path(), &wasm)?;

        let engine = Engine::new(None)?.with_precompiled_dir(dir.path());
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Image);
        // without looking for it, or for an engine with other features (stale), it is compiled
        assert_eq!(Engine::new(None)?.load_file(&module)?.code, CodeOrigin::Compiled);
        let other = Engine::with_features(None, &[(WasmFeature::Simd, false)])?.with_precompiled_dir(dir.path());
        assert_ne!(other.compatibility_hash(), engine.compatibility_hash());
        assert_eq!(other.load_file(&module)?.code, CodeOrigin::Compiled);

        // corrupt code (a flipped byte that wasmtime's header check would not see) is refused
        let (code_path, info_path) = precompiled::image_paths(dir.path(), &info.source);
        let mut code = std::fs::read(&code_path)?;
        let last = code.len() - 1;
        code[last] ^= 0xff;
        std::fs::write(&code_path, &code)?;
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Compiled);

        // code of another module put under this module's name is refused
        let other_wasm = wat::parse_str("(module (func (export \"f\")))")?;
        let other_info = ship_precompiled(&engine, dir.path(), &other_wasm)?;
        let (other_code, other_info_path) = precompiled::image_paths(dir.path(), &other_info.source);
        std::fs::rename(other_code, &code_path)?;
        std::fs::rename(other_info_path, &info_path)?;
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Compiled);

        // a description that is not one is refused
        std::fs::write(&info_path, b"{")?;
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Compiled);
        Ok(())
    }

    #[test]
    fn a_verified_image_file_is_remembered_until_it_changes() -> anyhow::Result<()> {
        let images = tempfile::tempdir()?;
        let cache_dir = tempfile::tempdir()?;
        let module = images.path().join("add.wasm");
        let wasm = wat::parse_str(ADD_WAT)?;
        std::fs::write(&module, &wasm)?;
        let info = ship_precompiled(&Engine::new(None)?, images.path(), &wasm)?;
        let engine = Engine::new(Some(CodeCache::open(cache_dir.path())?))?.with_precompiled_dir(images.path());
        let cache = CodeCache::open(cache_dir.path())?;
        let (code_path, _) = precompiled::image_paths(images.path(), &info.source);
        let identity = precompiled::file_identity(&code_path)?;
        assert!(!cache.was_verified(&info.code, &identity));
        // The image code is used (the cache holds no compiled entry for it) and remembered.
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Image);
        assert!(cache.was_verified(&info.code, &identity));
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Image);
        // A rewritten file (another mtime or size) is hashed again: corrupt, so refused.
        let mut code = std::fs::read(&code_path)?;
        code.push(0);
        std::fs::write(&code_path, &code)?;
        assert!(!cache.was_verified(&info.code, &precompiled::file_identity(&code_path)?));
        assert_eq!(engine.load_file(&module)?.code, CodeOrigin::Compiled);
        Ok(())
    }

    #[test]
    fn offered_code_fills_the_cache() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let wasm = wat::parse_str(ADD_WAT)?;
        let engine = Engine::new(Some(CodeCache::open(dir.path())?))?;
        let (code, info) = engine.precompile_for_image(&wasm, "add.wasm")?;
        let offered = OfferedCode { info, code: ImageCode::Verified(&code) };
        assert_eq!(engine.load_bytes_with_code(&wasm, "add.wasm", offered)?.code, CodeOrigin::Image);
        assert_eq!(engine.load_bytes(&wasm, "add.wasm")?.code, CodeOrigin::Cache);
        Ok(())
    }
}
