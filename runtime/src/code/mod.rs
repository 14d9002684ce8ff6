//! Loading a guest's code: the bytes an image gives become a compiled [`Program`], mapped from
//! the node's cache when the node compiled them before, from the image's own precompiled code
//! only when the node trusts image code and it checks out, and compiled otherwise.
//!
//! The order, and who may supply what:
//! 1. image code ([`image`]), only with [`PrecompiledPolicy::Trust`]: checked against this
//!    engine, these wasm bytes and its own digest, then kept under a cache key that includes
//!    the code's digest, so it serves only containers whose images ship that very code;
//! 2. the node's own compiled code ([`cache`]), under a key of the wasm's digest and the engine;
//!    only code the node compiled is ever stored there;
//! 3. compiling, which fills the cache.
//!
//! Code is mapped from cache entries (and tar-layout image files) with their descriptors
//! closed at once ([`mapped`]); the [`Loader`] holds the cache directory only while it loads,
//! and closes it when it is done, before any guest code runs.

pub mod cache;
pub mod decode;
pub mod image;
pub mod mapped;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow};
use wasmtime::Module;
use wasmtime::component::Component;

use self::cache::{CacheKey, CodeCache, Entry};
use self::decode::{SourceKind, decode_with_kind};
use self::image::{ArtifactLayer, ImageCode, Offer, PrecompiledInfo, digest_hex, image_paths, sha256_digest};
use self::mapped::MappedCode;
use crate::engine::Engine;
use crate::error::{FailureKind, RunError};
use crate::node::{PRECOMPILED, PrecompiledPolicy};

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
    /// Mapped from the node-local code cache, where the node had compiled it.
    Cache,
    /// Precompiled code shipped in the image, used because the node trusts image code.
    Image,
}

/// An HTTP server component loaded into an engine that allocates instances from a pool.
pub struct ServerCode {
    pub engine: wasmtime::Engine,
    pub component: Component,
    /// The code `component` runs from, if it was mapped (dropped after `component`).
    _mapped: Option<MappedCode>,
}

/// A compiled guest, ready to instantiate.
pub struct Program {
    pub kind: ProgramKind,
    /// Where the guest came from, for messages: the file path inside the container, or the layer.
    pub origin: String,
    /// Where its native code came from.
    pub code: CodeOrigin,
    /// For a `wasi:http/incoming-handler` component, the same code in a pooling engine, when the
    /// machine allows one (see [`crate::http`]).
    pub server: Option<ServerCode>,
    /// The code `kind` runs from, if it was mapped; declared last, so it is unmapped last.
    _mapped: Option<MappedCode>,
}

/// Loads guests for one engine; holds the cache directory until it is dropped.
pub struct Loader<'e> {
    engine: &'e Engine,
    cache: Option<CodeCache>,
    policy: PrecompiledPolicy,
}

impl<'e> Loader<'e> {
    pub fn new(engine: &'e Engine, cache: Option<CodeCache>, policy: PrecompiledPolicy) -> Self {
        Loader { engine, cache, policy }
    }

    /// Reads and loads the file at `path` (a `.wasm` binary or WebAssembly text); precompiled
    /// code for it is looked for in `precompiled_dir` (the tar layout's [`image::PRECOMPILED_DIR`]).
    pub fn load_file(self, path: &Path, precompiled_dir: Option<&Path>) -> Result<Program, RunError> {
        let origin = path.display().to_string();
        let bytes = read_guest_file(path)?;
        let offer = |source_digest: &str| precompiled_dir.and_then(|dir| offer_next_to_file(dir, source_digest));
        self.load(&bytes, &origin, offer)
    }

    /// Loads `bytes` (binary or text); `origin` names them in messages.
    pub fn load_bytes(self, bytes: &[u8], origin: &str) -> Result<Program, RunError> {
        self.load(bytes, origin, |_| None)
    }

    /// Loads the one Wasm layer of an artifact image, with the image's precompiled-code layer
    /// for it when it has one.
    pub fn load_artifact(self, layers: &[ArtifactLayer<'_>]) -> Result<Program, RunError> {
        let (wasm, offer) = image::select_artifact_layers(layers)?;
        let origin = format!("layer {}", wasm.digest);
        self.load(wasm.bytes, &origin, move |_| offer.map(Ok))
    }

    /// `offer` gives the image's precompiled code for the wasm with this digest: none, or an
    /// offer (or why the image's description of it cannot be read).
    fn load<'a>(
        self,
        bytes: &[u8],
        origin: &str,
        offer: impl FnOnce(&str) -> Option<anyhow::Result<Offer<'a>>>,
    ) -> Result<Program, RunError> {
        let (wasm, kind) = decode_with_kind(bytes, origin)?;
        let source_digest = sha256_digest(&wasm);
        let source_hex = &source_digest["sha256:".len()..];
        if let Some(offer) = offer(&source_digest) {
            match self.policy {
                PrecompiledPolicy::Ignore => log::info!(
                    "{origin}: precompiled code in the image ignored: this node does not run native code from images \
                     ({PRECOMPILED}=ignore); compiling it here"
                ),
                PrecompiledPolicy::Trust => {
                    match offer.and_then(|offer| self.use_offer(offer, &source_digest, kind, origin)) {
                        Ok(program) => {
                            log::info!("{origin}: using the image's precompiled code, not compiling");
                            return Ok(program);
                        }
                        Err(err) => {
                            log::warn!("{origin}: precompiled code in the image refused, compiling instead: {err:#}")
                        }
                    }
                }
            }
        }
        let key = CacheKey::compiled(source_hex, self.engine.key(), kind);
        if let Some(program) = self.load_cached(&key, kind, origin, CodeOrigin::Cache) {
            log::info!("{origin}: compiled code mapped from the cache ({})", key.as_str());
            return Ok(program);
        }
        let started = Instant::now();
        let code = precompile(self.engine, &wasm, kind, origin)?;
        log::info!("{origin}: compiled in {:?}", started.elapsed());
        self.load_code(&key, &code, kind, origin, CodeOrigin::Compiled)
    }

    /// Checks the image's code and loads it, through a cache entry of its own when it is a layer.
    fn use_offer(
        &self,
        offer: Offer<'_>,
        source_digest: &str,
        kind: SourceKind,
        origin: &str,
    ) -> anyhow::Result<Program> {
        let Offer { info, code } = offer;
        info.check_fits(self.engine.key(), source_digest, kind)?;
        match code {
            // A file of the container's image: hashed on every use, then run in place (its pages
            // are shared with every container of this image).
            ImageCode::File(path) => {
                let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                let len = usize::try_from(file.metadata()?.len())?;
                let mapped = MappedCode::map(&file, 0, len)?;
                drop(file);
                let found = sha256_digest(mapped.bytes());
                anyhow::ensure!(
                    found == info.code,
                    "corrupt: {} has digest {found}, its description says {}",
                    path.display(),
                    info.code
                );
                self.load_mapping(mapped, None, kind, origin, CodeOrigin::Image)
            }
            // A layer the content store verified: kept in the cache under its own digest.
            ImageCode::Layer(bytes) => {
                let key = CacheKey::image(
                    &source_digest["sha256:".len()..],
                    self.engine.key(),
                    kind,
                    digest_hex(&info.code)?,
                );
                if let Some(program) = self.load_cached(&key, kind, origin, CodeOrigin::Image) {
                    return Ok(program);
                }
                self.load_code(&key, bytes, kind, origin, CodeOrigin::Image).map_err(|err| anyhow!("{err}"))
            }
        }
    }

    /// Loads entry `key` if the cache has it whole and wasmtime takes it; else removes it.
    fn load_cached(&self, key: &CacheKey, kind: SourceKind, origin: &str, code: CodeOrigin) -> Option<Program> {
        let cache = self.cache.as_ref()?;
        let entry = cache.lookup(key)?;
        match self.load_entry(entry, kind, origin, code) {
            Ok(program) => Some(program),
            Err(err) => {
                log::warn!("{origin}: cache entry {} refused, compiling again: {err:#}", key.as_str());
                cache.remove(key);
                None
            }
        }
    }

    /// Stores `code` in the cache as `key` and loads it from there (so that containers share its
    /// pages); without a usable cache, loads it from memory.
    fn load_code(
        &self,
        key: &CacheKey,
        code: &[u8],
        kind: SourceKind,
        origin: &str,
        from: CodeOrigin,
    ) -> Result<Program, RunError> {
        if let Some(cache) = &self.cache {
            match cache.store(key, code) {
                Ok(entry) => {
                    return self
                        .load_entry(entry, kind, origin, from)
                        .map_err(|err| RunError::internal(anyhow!("{origin}: loading compiled code: {err:#}")));
                }
                Err(err) => log::warn!("{origin}: compiled code not cached: {err:#}"),
            }
        }
        let engine = self.engine.wasmtime();
        // SAFETY: `code` was compiled just now by this engine's compiler, or is image code whose
        // engine, source and digest were checked; wasmtime checks its header again.
        let loaded = unsafe {
            match kind {
                SourceKind::Module => Module::deserialize(engine, code).map(ProgramKind::Module),
                SourceKind::Component => Component::deserialize(engine, code).map(ProgramKind::Component),
            }
        };
        let kind_loaded =
            loaded.map_err(|err| RunError::internal(anyhow!("{origin}: loading compiled code: {err:#}")))?;
        let server = match &kind_loaded {
            ProgramKind::Component(component) if exports_http_handler(engine, component) => {
                self.engine.pooling().and_then(|pooling| {
                    // SAFETY: as above; the pooling engine has the same configuration and key.
                    let component = unsafe { Component::deserialize(&pooling, code) }.ok()?;
                    Some(ServerCode { engine: pooling, component, _mapped: None })
                })
            }
            _ => None,
        };
        Ok(Program { kind: kind_loaded, origin: origin.to_owned(), code: from, server, _mapped: None })
    }

    /// Loads a cache entry; a component is mapped twice, in case it is an HTTP server (the
    /// entry's descriptor is closed when this returns).
    fn load_entry(&self, entry: Entry, kind: SourceKind, origin: &str, code: CodeOrigin) -> anyhow::Result<Program> {
        let second = match kind {
            SourceKind::Component => Some(entry.map_again()?),
            SourceKind::Module => None,
        };
        self.load_mapping(entry.mapped, second, kind, origin, code)
    }

    /// Loads mapped code into the engine (and, for an HTTP server, a second mapping of it into
    /// a pooling engine).
    fn load_mapping(
        &self,
        mapped: MappedCode,
        second: Option<MappedCode>,
        kind: SourceKind,
        origin: &str,
        code: CodeOrigin,
    ) -> anyhow::Result<Program> {
        let engine = self.engine.wasmtime();
        let loaded = load_mapped(engine, &mapped, kind)?;
        let server = match (&loaded, second) {
            (ProgramKind::Component(component), Some(second)) if exports_http_handler(engine, component) => {
                self.engine.pooling().and_then(|pooling| match load_mapped(&pooling, &second, kind) {
                    Ok(ProgramKind::Component(component)) => {
                        Some(ServerCode { engine: pooling, component, _mapped: Some(second) })
                    }
                    Ok(ProgramKind::Module(_)) => None,
                    Err(err) => {
                        log::info!("{origin}: not served from a pool: {err:#}");
                        None
                    }
                })
            }
            _ => None,
        };
        Ok(Program { kind: loaded, origin: origin.to_owned(), code, server, _mapped: Some(mapped) })
    }
}

/// Reads the guest's file; a missing file is [`FailureKind::NotFound`].
pub fn read_guest_file(path: &Path) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|err| {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => FailureKind::NotFound,
            _ => FailureKind::Invalid,
        };
        RunError::new(kind, anyhow!("{}: {}", path.display(), io_cause(&err)))
    })
}

/// Loads code from a mapping; the caller keeps the mapping alive for as long as the result.
fn load_mapped(engine: &wasmtime::Engine, mapped: &MappedCode, kind: SourceKind) -> anyhow::Result<ProgramKind> {
    // SAFETY: the mapping holds a cache entry whose checksum was verified (written only by this
    // engine's compiler, or image code whose engine, source and digest were checked) or image
    // code hashed just now; it is read-only and outlives what is loaded from it (see `Program`).
    // wasmtime checks the header (version, target, flags) before using the code.
    unsafe {
        Ok(match kind {
            SourceKind::Module => ProgramKind::Module(Module::deserialize_raw(engine, mapped.as_raw())?),
            SourceKind::Component => ProgramKind::Component(Component::deserialize_raw(engine, mapped.as_raw())?),
        })
    }
}

/// Compiles `wasm` ahead of time with `engine`: the bytes a cache entry or an image layer holds.
/// Compiles `wasm` on a compiler and a thread pool made for this compilation and dropped after
/// it. wasmtime keeps Cranelift's reusable contexts in the engine that compiled (megabytes once a
/// module is compiled), and rayon's global pool keeps its threads: a container's init that
/// compiled its module (the node's cache had no entry for it) kept both, 3.5 MiB and two threads,
/// for its whole life. The compiler has this engine's configuration, so its code has this
/// engine's key.
fn precompile(engine: &Engine, wasm: &[u8], kind: SourceKind, origin: &str) -> Result<Vec<u8>, RunError> {
    let compiler = engine.compiler().map_err(RunError::internal)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|n| format!("wasm-compile-{n}"))
        .build()
        .context("starting the compiler's threads")
        .map_err(RunError::internal)?;
    let compiled = pool.install(|| match kind {
        SourceKind::Module => compiler.precompile_module(wasm),
        SourceKind::Component => compiler.precompile_component(wasm),
    });
    compiled.map_err(|err| RunError::invalid(anyhow!("{origin}: invalid WebAssembly: {err:#}")))
}

/// Compiles `bytes` (binary or text) ahead of time for shipping in an image, with its description.
pub fn precompile_for_image(
    engine: &Engine,
    bytes: &[u8],
    origin: &str,
) -> Result<(Vec<u8>, PrecompiledInfo), RunError> {
    let (wasm, kind) = decode_with_kind(bytes, origin)?;
    let code = precompile(engine, &wasm, kind, origin)?;
    let info = PrecompiledInfo {
        engine: engine.key().to_owned(),
        wasmtime: image::WASMTIME_VERSION.to_owned(),
        source: sha256_digest(&wasm),
        code: sha256_digest(&code),
        kind: kind.name().to_owned(),
    };
    Ok((code, info))
}

/// An I/O error's cause as a person reads it: `No such file or directory`, without Rust's
/// ` (os error 2)`.
fn io_cause(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rsplit_once(" (os error ") {
        Some((cause, _)) => cause.to_owned(),
        None => text,
    }
}

/// The export that makes a component an HTTP server (any 0.2.x version).
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// Whether `component` exports `wasi:http/incoming-handler`.
pub fn exports_http_handler(engine: &wasmtime::Engine, component: &Component) -> bool {
    component.component_type().exports(engine).any(|(name, _)| name.starts_with(INCOMING_HANDLER))
}

/// The precompiled code the tar layout has next to the module with this digest, if any.
fn offer_next_to_file(dir: &Path, source_digest: &str) -> Option<anyhow::Result<Offer<'static>>> {
    let (code, info) = image_paths(dir, source_digest);
    if !info.exists() {
        return None;
    }
    Some(PrecompiledInfo::read(&info).map(|info| Offer { info, code: ImageCode::File(code) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::image::PRECOMPILED_MEDIA_TYPE;
    use crate::settings::WasmFeature;
    use std::collections::HashMap;

    /// W: what an innocent image ships. X: what an attacker wants to run instead.
    const W: &str = r#"(module (func (export "answer") (result i32) i32.const 1))"#;
    const X: &str = r#"(module (func (export "answer") (result i32) i32.const 2))"#;

    fn answer(engine: &Engine, program: &Program) -> anyhow::Result<i32> {
        let ProgramKind::Module(module) = &program.kind else { anyhow::bail!("not a module") };
        let mut store = wasmtime::Store::new(engine.wasmtime(), ());
        store.set_epoch_deadline(1);
        let instance = wasmtime::Instance::new(&mut store, module, &[]).map_err(anyhow::Error::from)?;
        let func = instance.get_typed_func::<(), i32>(&mut store, "answer").map_err(anyhow::Error::from)?;
        func.call(&mut store, ()).map_err(anyhow::Error::from)
    }

    fn loader<'e>(
        engine: &'e Engine,
        cache: Option<&tempfile::TempDir>,
        policy: PrecompiledPolicy,
    ) -> anyhow::Result<Loader<'e>> {
        let cache = cache.map(|dir| CodeCache::open(dir.path())).transpose()?;
        Ok(Loader::new(engine, cache, policy))
    }

    /// Writes, in the tar layout, `code_of`'s precompiled code as the code of `module` with every
    /// digest made consistent (what anyone can compute with `wasmbox image build --precompile`).
    fn ship_code(engine: &Engine, dir: &Path, module: &[u8], code_of: &[u8]) -> anyhow::Result<PrecompiledInfo> {
        let (code, mut info) = precompile_for_image(engine, code_of, "x.wasm")?;
        info.source = sha256_digest(module);
        let (code_path, info_path) = image_paths(dir, &info.source);
        std::fs::write(code_path, code)?;
        std::fs::write(info_path, serde_json::to_vec(&info)?)?;
        Ok(info)
    }

    #[test]
    fn text_and_binary_are_both_loaded() -> anyhow::Result<()> {
        let engine = Engine::new()?;
        assert_eq!(
            answer(&engine, &loader(&engine, None, PrecompiledPolicy::Ignore)?.load_bytes(W.as_bytes(), "w.wat")?)?,
            1
        );
        let binary = wat::parse_str(W)?;
        assert_eq!(
            answer(&engine, &loader(&engine, None, PrecompiledPolicy::Ignore)?.load_bytes(&binary, "w.wasm")?)?,
            1
        );
        let component = wat::parse_str("(component)")?;
        let program = loader(&engine, None, PrecompiledPolicy::Ignore)?.load_bytes(&component, "c.wasm")?;
        assert!(matches!(program.kind, ProgramKind::Component(_)));
        Ok(())
    }

    #[test]
    fn garbage_gives_one_line_causes() -> anyhow::Result<()> {
        let engine = Engine::new()?;
        for (bytes, expected) in [
            (&b"\x7fELF\x02\x01"[..], "not a WebAssembly file"),
            (b"(module (func $f (result i32)))", "invalid WebAssembly"),
            (b"hello there", "not a WebAssembly file"),
            (b"(module (fun))", "not valid WebAssembly text"),
            (b"\0asm\x01\0\0\0\x99", "invalid WebAssembly"),
        ] {
            let err = loader(&engine, None, PrecompiledPolicy::Ignore)?
                .load_bytes(bytes, "x.wasm")
                .err()
                .context("must fail")?;
            let text = err.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains('\n'), "not one line: {text}");
            assert_eq!(err.exit_code(), 126);
        }
        let err = loader(&engine, None, PrecompiledPolicy::Ignore)?
            .load_file(Path::new("/no/such/file.wasm"), None)
            .err()
            .context("must fail")?;
        assert_eq!(err.exit_code(), 127);
        assert!(err.to_string().contains("/no/such/file.wasm"));
        Ok(())
    }

    #[test]
    fn the_cache_is_filled_then_used_and_a_damaged_entry_is_recompiled() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::new()?;
        let load = || -> anyhow::Result<Program> {
            Ok(loader(&engine, Some(&dir), PrecompiledPolicy::Ignore)?.load_bytes(W.as_bytes(), "w.wat")?)
        };
        assert_eq!(load()?.code, CodeOrigin::Compiled);
        let cached = load()?;
        assert_eq!(cached.code, CodeOrigin::Cache);
        assert_eq!(answer(&engine, &cached)?, 1);
        // damage the entry: it must be refused and compiled again, never executed
        let entry = std::fs::read_dir(dir.path())?.next().context("no entry")??.path();
        let mut bytes = std::fs::read(&entry)?;
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(&entry, &bytes)?;
        assert_eq!(load()?.code, CodeOrigin::Compiled);
        std::fs::write(&entry, &bytes[..bytes.len() / 2])?;
        assert_eq!(load()?.code, CodeOrigin::Compiled);
        // a whole, well-checksummed entry that is not this module's code (here: a component's)
        // is refused by wasmtime, removed and compiled again
        let (foreign, _) = precompile_for_image(&engine, b"(component)", "c.wat")?;
        let key = CacheKey::compiled(
            &sha256_digest(&wat::parse_str(W)?)["sha256:".len()..],
            engine.key(),
            SourceKind::Module,
        );
        assert_eq!(entry.file_name().context("name")?.to_string_lossy(), key.as_str());
        std::fs::remove_file(&entry)?;
        CodeCache::open(dir.path())?.store(&key, &foreign)?;
        assert_eq!(load()?.code, CodeOrigin::Compiled);
        let program = load()?;
        assert_eq!(program.code, CodeOrigin::Cache);
        assert_eq!(answer(&engine, &program)?, 1);
        Ok(())
    }

    #[test]
    fn image_code_runs_only_when_the_node_trusts_it_and_serves_only_its_image() -> anyhow::Result<()> {
        let engine = Engine::new()?;
        let cache = tempfile::tempdir()?;
        let image = tempfile::tempdir()?;
        let w = wat::parse_str(W)?;
        let module = image.path().join("w.wasm");
        std::fs::write(&module, &w)?;
        // The attack: X's code shipped as W's, every digest consistent.
        ship_code(&engine, image.path(), &w, &wat::parse_str(X)?)?;

        // By default the node compiles W itself: the forged code never runs.
        let ignored =
            loader(&engine, Some(&cache), PrecompiledPolicy::Ignore)?.load_file(&module, Some(image.path()))?;
        assert_eq!((ignored.code, answer(&engine, &ignored)?), (CodeOrigin::Compiled, 1));
        // With the node's consent, the image's code is what the image gets.
        let trusted =
            loader(&engine, Some(&cache), PrecompiledPolicy::Trust)?.load_file(&module, Some(image.path()))?;
        assert_eq!((trusted.code, answer(&engine, &trusted)?), (CodeOrigin::Image, 2));
        // … and nobody else: an innocent image of W still gets the node's own code.
        let innocent = loader(&engine, Some(&cache), PrecompiledPolicy::Trust)?.load_bytes(&w, "innocent.wasm")?;
        assert_eq!((innocent.code, answer(&engine, &innocent)?), (CodeOrigin::Cache, 1));
        Ok(())
    }

    #[test]
    fn an_artifacts_code_layer_gets_a_cache_entry_of_its_own() -> anyhow::Result<()> {
        let engine = Engine::new()?;
        let cache = tempfile::tempdir()?;
        let w = wat::parse_str(W)?;
        let (forged, _) = precompile_for_image(&engine, &wat::parse_str(X)?, "x")?;
        let w_digest = sha256_digest(&w);
        let forged_digest = sha256_digest(&forged);
        let annotations = HashMap::from([
            (image::ANNOTATION_SOURCE.to_owned(), w_digest.clone()),
            (image::ANNOTATION_ENGINE.to_owned(), engine.key().to_owned()),
        ]);
        let layers = [
            ArtifactLayer { media_type: "application/wasm", digest: &w_digest, annotations: None, bytes: &w },
            ArtifactLayer {
                media_type: PRECOMPILED_MEDIA_TYPE,
                digest: &forged_digest,
                annotations: Some(&annotations),
                bytes: &forged,
            },
        ];
        let trusted = loader(&engine, Some(&cache), PrecompiledPolicy::Trust)?.load_artifact(&layers)?;
        assert_eq!((trusted.code, answer(&engine, &trusted)?), (CodeOrigin::Image, 2));
        let again = loader(&engine, Some(&cache), PrecompiledPolicy::Trust)?.load_artifact(&layers)?;
        assert_eq!((again.code, answer(&engine, &again)?), (CodeOrigin::Image, 2));
        for policy in [PrecompiledPolicy::Trust, PrecompiledPolicy::Ignore] {
            let innocent = loader(&engine, Some(&cache), policy)?.load_bytes(&w, "w.wasm")?;
            assert_eq!(answer(&engine, &innocent)?, 1, "{policy:?}");
            assert_ne!(innocent.code, CodeOrigin::Image);
        }
        let ignored = loader(&engine, Some(&cache), PrecompiledPolicy::Ignore)?.load_artifact(&layers)?;
        assert_eq!((ignored.code, answer(&engine, &ignored)?), (CodeOrigin::Cache, 1));
        Ok(())
    }

    #[test]
    fn unfit_image_code_is_refused() -> anyhow::Result<()> {
        let engine = Engine::new()?;
        let image = tempfile::tempdir()?;
        let w = wat::parse_str(W)?;
        let module = image.path().join("w.wasm");
        std::fs::write(&module, &w)?;
        let load = || -> anyhow::Result<CodeOrigin> {
            Ok(loader(&engine, None, PrecompiledPolicy::Trust)?.load_file(&module, Some(image.path()))?.code)
        };
        let info = ship_code(&engine, image.path(), &w, &w)?;
        assert_eq!(load()?, CodeOrigin::Image);
        // made by another engine (stale)
        let other = Engine::with_features(&[(WasmFeature::Simd, false)])?;
        ship_code(&other, image.path(), &w, &w)?;
        assert_eq!(load()?, CodeOrigin::Compiled);
        // corrupt code (a flipped byte that wasmtime's header check would not see)
        ship_code(&engine, image.path(), &w, &w)?;
        let (code_path, info_path) = image_paths(image.path(), &info.source);
        let mut code = std::fs::read(&code_path)?;
        let last = code.len() - 1;
        code[last] ^= 0xff;
        std::fs::write(&code_path, &code)?;
        assert_eq!(load()?, CodeOrigin::Compiled);
        // a description that is not one
        std::fs::write(&info_path, b"{")?;
        assert_eq!(load()?, CodeOrigin::Compiled);
        Ok(())
    }

    #[test]
    fn many_loaders_fill_one_entry_at_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::new()?;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<i32> {
                        let program = loader(&engine, Some(&dir), PrecompiledPolicy::Ignore)?
                            .load_bytes(W.as_bytes(), "w.wat")?;
                        answer(&engine, &program)
                    })
                })
                .collect();
            for handle in handles {
                assert_eq!(handle.join().map_err(|_| anyhow!("panicked"))??, 1);
            }
            Ok::<_, anyhow::Error>(())
        })?;
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "one entry, no temporary files left");
        Ok(())
    }
}
