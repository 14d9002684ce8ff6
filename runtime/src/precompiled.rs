//! Compiled code shipped inside an image (`wasmbox image build --precompile`): how it is described and checked.
//!
//! Precompiled code is native code: wasmtime maps it and jumps into it without compiling or
//! validating anything again. So it is used only when everything about it checks out, and a
//! stale, corrupt or foreign copy is refused with a log line and the module is compiled instead:
//! - the engine compatibility hash it was made for must be this engine's (same wasmtime
//!   version, same compiler settings and CPU features, same `wasmbox.io/wasm-features`);
//! - it must have been made from these very wasm bytes (sha256 of the module);
//! - its own bytes must have the sha256 recorded for them (in the tar layout the code is a
//!   file of the root file system, hashed before use; in the artifact layout it is a layer
//!   that containerd's content store has already verified against its digest);
//! - wasmtime then checks the header (version, target, flags) once more as it loads it.
//!
//! In the tar layout the code of module `M` lives at [`PRECOMPILED_DIR`]`/<sha256 of M>.cwasm`
//! with its description next to it in `<sha256 of M>.json`. In the artifact layout it is a
//! layer of media type [`PRECOMPILED_MEDIA_TYPE`] whose descriptor carries the description in
//! the annotations [`ANNOTATION_ENGINE`], [`ANNOTATION_SOURCE`] and [`ANNOTATION_WASMTIME`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the tar layout keeps precompiled code, inside the container's root file system.
pub const PRECOMPILED_DIR: &str = "/.wasmbox/precompiled";
/// Media type of a precompiled-code layer in the artifact layout.
pub const PRECOMPILED_MEDIA_TYPE: &str = "application/vnd.wasmbox.precompiled.v0+cwasm";
/// Layer annotation: the engine compatibility hash the code was compiled for (16 hex digits).
pub const ANNOTATION_ENGINE: &str = "io.wasmbox.precompiled.engine";
/// Layer annotation: the digest (`sha256:…`) of the wasm the code was compiled from.
pub const ANNOTATION_SOURCE: &str = "io.wasmbox.precompiled.source";
/// Layer annotation: the wasmtime version that compiled it (informative).
pub const ANNOTATION_WASMTIME: &str = "io.wasmbox.precompiled.wasmtime";
/// The wasmtime version this crate is built with.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// What a piece of precompiled code claims to be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecompiledInfo {
    /// The engine compatibility hash it was compiled for, as 16 hex digits.
    pub engine: String,
    /// The wasmtime version that compiled it.
    pub wasmtime: String,
    /// `sha256:<hex>` of the wasm bytes it was compiled from.
    pub source: String,
    /// `sha256:<hex>` of the compiled code itself.
    pub code: String,
    /// `module` or `component`.
    pub kind: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The file names, in the tar layout, of the code and the description of the module with this digest.
pub fn image_paths(dir: &Path, source_digest: &str) -> (PathBuf, PathBuf) {
    let hex = source_digest.strip_prefix("sha256:").unwrap_or(source_digest);
    (dir.join(format!("{hex}.cwasm")), dir.join(format!("{hex}.json")))
}

/// Compiled code from an image, not yet trusted.
pub enum ImageCode<'a> {
    /// A file of the root file system (tar layout): its bytes are hashed before use.
    File(PathBuf),
    /// A layer read from containerd's content store (artifact layout), already verified
    /// against `info.code` by the store.
    Verified(&'a [u8]),
}

impl PrecompiledInfo {
    /// Checks that this code was made for `engine_hash` from `source_digest`; says why not otherwise.
    pub fn check_fits(&self, engine_hash: &str, source_digest: &str) -> Result<()> {
        ensure!(
            self.engine == engine_hash,
            "stale or foreign: compiled for engine {} (wasmtime {}), this engine is {} (wasmtime {})",
            self.engine,
            self.wasmtime,
            engine_hash,
            WASMTIME_VERSION
        );
        ensure!(
            self.source == source_digest,
            "stale: compiled from {}, the module is {}",
            self.source,
            source_digest
        );
        Ok(())
    }

    /// Reads the description stored next to precompiled code in the tar layout.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{}: not a precompiled-code description", path.display()))
    }
}

/// What identifies a file's contents without reading them: size, modification time, inode.
pub fn file_identity(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{} {}.{:09} {}", meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
}

/// Checks that the file at `path` has the digest `expected` (`sha256:<hex>`).
pub fn verify_file(path: &Path, expected: &str) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let found = format!("sha256:{}", hex::encode(hasher.finalize()));
    if found != expected {
        bail!("corrupt: {} has digest {found}, its description says {expected}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PrecompiledInfo {
        PrecompiledInfo {
            engine: "00000000000000aa".into(),
            wasmtime: WASMTIME_VERSION.into(),
            source: sha256_digest(b"wasm"),
            code: sha256_digest(b"code"),
            kind: "module".into(),
        }
    }

    #[test]
    fn fits_only_its_engine_and_its_module() {
        let info = info();
        assert!(info.check_fits("00000000000000aa", &sha256_digest(b"wasm")).is_ok());
        let other_engine = info.check_fits("00000000000000bb", &sha256_digest(b"wasm")).unwrap_err();
        assert!(other_engine.to_string().contains("stale or foreign"), "{other_engine}");
        let other_module = info.check_fits("00000000000000aa", &sha256_digest(b"other")).unwrap_err();
        assert!(other_module.to_string().contains("stale: compiled from"), "{other_module}");
    }

    #[test]
    fn a_file_is_checked_against_its_digest() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.cwasm");
        std::fs::write(&path, b"code")?;
        verify_file(&path, &sha256_digest(b"code"))?;
        std::fs::write(&path, b"c0de")?;
        let err = verify_file(&path, &sha256_digest(b"code")).unwrap_err();
        assert!(err.to_string().starts_with("corrupt:"), "{err}");
        Ok(())
    }

    #[test]
    fn paths_are_named_by_the_module_digest() {
        let (code, info) = image_paths(Path::new(PRECOMPILED_DIR), "sha256:abc");
        assert_eq!(code, Path::new("/.wasmbox/precompiled/abc.cwasm"));
        assert_eq!(info, Path::new("/.wasmbox/precompiled/abc.json"));
    }

    #[test]
    fn the_recorded_wasmtime_version_is_the_one_built() -> Result<()> {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))?;
        let wanted = format!("name = \"wasmtime\"\nversion = \"{WASMTIME_VERSION}\"");
        assert!(lock.contains(&wanted), "Cargo.lock has another wasmtime than {WASMTIME_VERSION}");
        Ok(())
    }
}
