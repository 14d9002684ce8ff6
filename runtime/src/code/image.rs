//! Native code that an image ships for its module (`wasmbox image build --precompile`): how it is
//! described, found and checked, and how an artifact image's layers are told apart.
//!
//! Image code is native code: wasmtime would map it and jump into it without compiling or
//! validating anything again. So it is used only when the node trusts image code
//! ([`crate::node::PrecompiledPolicy::Trust`]) and everything about it checks out; otherwise
//! it is ignored or refused with a log line and the module is compiled on the node:
//! - the engine key it was made for must be this engine's (same wasmtime version, same compiler
//!   settings and CPU features, same `wasmbox.io/wasm-features`);
//! - it must have been made from these very wasm bytes (SHA-256 of the module);
//! - its own bytes must have the SHA-256 recorded for them (in the tar layout the code is a file
//!   of the root file system, hashed before every use; in the artifact layout it is a layer
//!   that containerd's content store verified against its digest);
//! - wasmtime then checks the code's header (version, target, flags) once more as it loads it.
//!
//! In the tar layout the code of module `M` lives at [`PRECOMPILED_DIR`]`/<sha256 of M>.cwasm`
//! with its description next to it in `<sha256 of M>.json`. In the artifact layout it is a layer
//! of media type [`PRECOMPILED_MEDIA_TYPE`] whose descriptor carries the description in the
//! annotations [`ANNOTATION_ENGINE`], [`ANNOTATION_SOURCE`] and [`ANNOTATION_WASMTIME`].

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::decode::SourceKind;
use crate::error::RunError;

/// Where the tar layout keeps precompiled code, inside the container's root file system.
pub const PRECOMPILED_DIR: &str = "/.wasmbox/precompiled";
/// Media type of a precompiled-code layer in the artifact layout.
pub const PRECOMPILED_MEDIA_TYPE: &str = "application/vnd.wasmbox.precompiled.v0+cwasm";
/// Layer annotation: the engine key the code was compiled for (16 hex digits).
pub const ANNOTATION_ENGINE: &str = "io.wasmbox.precompiled.engine";
/// Layer annotation: the digest (`sha256:…`) of the wasm the code was compiled from.
pub const ANNOTATION_SOURCE: &str = "io.wasmbox.precompiled.source";
/// Layer annotation: the wasmtime version that compiled it (informative).
pub const ANNOTATION_WASMTIME: &str = "io.wasmbox.precompiled.wasmtime";
/// The Wasm layer media types of artifact images that wasmbox runs.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 2] =
    ["application/wasm", "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"];
/// The wasmtime version this crate is built with.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// No description is longer; a longer file is refused unread.
const MAX_DESCRIPTION_LEN: u64 = 64 * 1024;

/// What a piece of precompiled code claims to be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrecompiledInfo {
    /// The engine key it was compiled for, as 16 hex digits.
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

/// The 64 hex digits of a `sha256:<hex>` digest, checked to be exactly that (a digest from an
/// image becomes part of a file name).
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| anyhow!("{digest:?} is not a sha256: digest"))?;
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{digest:?} is not a sha256: digest"
    );
    Ok(hex)
}

/// The file names, in the tar layout, of the code and the description of the module with this digest.
pub fn image_paths(dir: &Path, source_digest: &str) -> (PathBuf, PathBuf) {
    let hex = source_digest.strip_prefix("sha256:").unwrap_or(source_digest);
    (dir.join(format!("{hex}.cwasm")), dir.join(format!("{hex}.json")))
}

/// Where an offer's code is.
pub enum ImageCode<'a> {
    /// A file of the root file system (tar layout): hashed before use.
    File(PathBuf),
    /// A layer read from containerd's content store (artifact layout), which verified it
    /// against the digest `info.code`.
    Layer(&'a [u8]),
}

/// Precompiled code an image offers for its module, not yet trusted.
pub struct Offer<'a> {
    pub info: PrecompiledInfo,
    pub code: ImageCode<'a>,
}

impl PrecompiledInfo {
    /// Checks that this code was made for `engine_key` from a `kind` whose digest is
    /// `source_digest`; says why not otherwise.
    pub fn check_fits(&self, engine_key: &str, source_digest: &str, kind: SourceKind) -> Result<()> {
        ensure!(
            self.engine == engine_key,
            "stale or foreign: compiled for engine {:?} (wasmtime {:?}), this engine is {engine_key} (wasmtime {WASMTIME_VERSION})",
            self.engine,
            self.wasmtime,
        );
        ensure!(self.source == source_digest, "stale: compiled from {:?}, the module is {source_digest}", self.source);
        ensure!(self.kind == kind.name(), "compiled as a {:?}, the wasm is a {}", self.kind, kind.name());
        digest_hex(&self.code).context("the code's digest")?;
        Ok(())
    }

    /// Reads the description stored next to precompiled code in the tar layout.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut text = Vec::new();
        file.take(MAX_DESCRIPTION_LEN + 1)
            .read_to_end(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            text.len() as u64 <= MAX_DESCRIPTION_LEN,
            "{}: longer than {MAX_DESCRIPTION_LEN} bytes",
            path.display()
        );
        Self::parse(&text).with_context(|| format!("{}: not a precompiled-code description", path.display()))
    }

    /// Parses a description (JSON).
    pub fn parse(text: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(text)?)
    }

    /// The description an artifact layer's annotations give, if they name `source`.
    pub fn from_annotations(
        annotations: &HashMap<String, String>,
        source: &str,
        code: &str,
        kind: SourceKind,
    ) -> Option<Self> {
        let annotation = |key: &str| annotations.get(key).cloned().unwrap_or_default();
        (annotation(ANNOTATION_SOURCE) == source).then(|| PrecompiledInfo {
            engine: annotation(ANNOTATION_ENGINE),
            wasmtime: annotation(ANNOTATION_WASMTIME),
            source: source.to_owned(),
            code: code.to_owned(),
            kind: kind.name().to_owned(),
        })
    }
}

/// Checks that the file at `path` has the digest `expected` (`sha256:<hex>`); returns its bytes.
pub fn read_verified(path: &Path, expected: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let found = sha256_digest(&bytes);
    if found != expected {
        bail!("corrupt: {} has digest {found}, its description says {expected}", path.display());
    }
    Ok(bytes)
}

/// One layer of an artifact image, as the shim read it from containerd's content store.
pub struct ArtifactLayer<'a> {
    pub media_type: &'a str,
    /// `sha256:<hex>`, verified by the content store.
    pub digest: &'a str,
    pub annotations: Option<&'a HashMap<String, String>>,
    pub bytes: &'a [u8],
}

/// The artifact's one Wasm layer, and the precompiled code it offers for it, if any.
pub fn select_artifact_layers<'a>(
    layers: &'a [ArtifactLayer<'a>],
) -> Result<(&'a ArtifactLayer<'a>, Option<Offer<'a>>), RunError> {
    let (code, wasm): (Vec<_>, Vec<_>) = layers.iter().partition(|layer| layer.media_type == PRECOMPILED_MEDIA_TYPE);
    let [wasm] = wasm[..] else {
        return Err(RunError::invalid(anyhow!(
            "the image has {} Wasm layers; wasmbox runs images with exactly one",
            wasm.len()
        )));
    };
    let kind = SourceKind::of_binary(wasm.bytes);
    let offer = kind.and_then(|kind| {
        code.iter().find_map(|layer| {
            let info = PrecompiledInfo::from_annotations(layer.annotations?, wasm.digest, layer.digest, kind)?;
            Some(Offer { info, code: ImageCode::Layer(layer.bytes) })
        })
    });
    Ok((wasm, offer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn fits_only_its_engine_its_module_and_its_kind() {
        let info = info();
        let wasm = sha256_digest(b"wasm");
        assert!(info.check_fits("00000000000000aa", &wasm, SourceKind::Module).is_ok());
        let other_engine = info.check_fits("00000000000000bb", &wasm, SourceKind::Module).unwrap_err();
        assert!(other_engine.to_string().contains("stale or foreign"), "{other_engine}");
        let other_module =
            info.check_fits("00000000000000aa", &sha256_digest(b"other"), SourceKind::Module).unwrap_err();
        assert!(other_module.to_string().contains("stale: compiled from"), "{other_module}");
        assert!(info.check_fits("00000000000000aa", &wasm, SourceKind::Component).is_err());
        let traversal = PrecompiledInfo { code: "sha256:../../etc/passwd".into(), ..info };
        assert!(traversal.check_fits("00000000000000aa", &wasm, SourceKind::Module).is_err());
    }

    #[test]
    fn a_file_is_checked_against_its_digest() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.cwasm");
        std::fs::write(&path, b"code")?;
        assert_eq!(read_verified(&path, &sha256_digest(b"code"))?, b"code");
        std::fs::write(&path, b"c0de")?;
        let err = read_verified(&path, &sha256_digest(b"code")).unwrap_err();
        assert!(err.to_string().starts_with("corrupt:"), "{err}");
        Ok(())
    }

    #[test]
    fn descriptions_are_bounded() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.json");
        std::fs::write(&path, vec![b' '; 100_000])?;
        assert!(PrecompiledInfo::read(&path).unwrap_err().to_string().contains("longer than"));
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

    #[test]
    fn an_artifact_has_one_wasm_layer_and_offers_code_only_for_it() -> Result<()> {
        let wasm = wat::parse_str("(module)")?;
        let wasm_digest = sha256_digest(&wasm);
        let annotations = HashMap::from([
            (ANNOTATION_SOURCE.to_owned(), wasm_digest.clone()),
            (ANNOTATION_ENGINE.to_owned(), "e".to_owned()),
        ]);
        let other = HashMap::from([(ANNOTATION_SOURCE.to_owned(), sha256_digest(b"other"))]);
        let layers = [
            ArtifactLayer { media_type: "application/wasm", digest: &wasm_digest, annotations: None, bytes: &wasm },
            ArtifactLayer {
                media_type: PRECOMPILED_MEDIA_TYPE,
                digest: "sha256:11",
                annotations: Some(&other),
                bytes: b"x",
            },
            ArtifactLayer {
                media_type: PRECOMPILED_MEDIA_TYPE,
                digest: "sha256:22",
                annotations: Some(&annotations),
                bytes: b"y",
            },
        ];
        let (layer, offer) = select_artifact_layers(&layers)?;
        assert_eq!(layer.digest, wasm_digest);
        let offer = offer.context("no offer")?;
        assert_eq!(offer.info.code, "sha256:22");
        assert_eq!(offer.info.kind, "module");
        let none = select_artifact_layers(&layers[1..]).err().context("no wasm layer accepted")?;
        assert!(none.to_string().contains("0 Wasm layers"));
        Ok(())
    }

    proptest! {
        #[test]
        fn any_description_parses_or_fails(text in prop_oneof![any::<Vec<u8>>(), "\\{[\"a-z:, 0-9]{0,80}\\}".prop_map(String::into_bytes)]) {
            let _ = PrecompiledInfo::parse(&text);
        }

        #[test]
        fn only_real_digests_become_file_names(digest in any::<String>()) {
            if let Ok(hex) = digest_hex(&digest) {
                prop_assert!(hex.len() == 64 && !hex.contains('/') && !hex.contains('.'));
            }
        }
    }
}
