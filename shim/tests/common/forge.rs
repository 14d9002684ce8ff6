//! Hostile images, built here the way an attacker would: an innocent module W (the hello guest)
//! shipped with "precompiled code" that is really the code of another module X (the `.wat` hello,
//! which prints something else), every digest and the engine key made consistent, in both
//! image layouts.

use std::path::{Path, PathBuf};

use wasmbox_oci::build::{BuildOptions, ImageLayout};
use wasmbox_oci::layout::canonical_json;
use wasmbox_runtime::code::image::{ANNOTATION_ENGINE, ANNOTATION_SOURCE, PRECOMPILED_MEDIA_TYPE, sha256_digest};

use super::{guest, repo_root};

/// What W prints.
pub const INNOCENT_OUTPUT: &str = "Hello from Rust on wasmbox (wasm32-wasip1)!\n";
/// What X prints: the forged code ran.
pub const FORGED_OUTPUT: &str = "Hello from WebAssembly text!\n";

fn innocent_module() -> PathBuf {
    guest("wasm32-wasip1/release/hello-rust.wasm")
}

/// X's code compiled by this build's engine, described as the code of W.
fn forged_code() -> (Vec<u8>, wasmbox_runtime::code::image::PrecompiledInfo) {
    let engine = wasmbox_runtime::Engine::new().expect("an engine");
    let x = std::fs::read(repo_root().join("examples/wat/hello.wat")).expect("reading hello.wat");
    let (code, mut info) = wasmbox_runtime::code::precompile_for_image(&engine, &x, "hello.wat").expect("compiling X");
    let w = std::fs::read(innocent_module()).expect("reading W");
    info.source = sha256_digest(&w);
    (code, info)
}

/// A tar-layout image `localhost/wasmbox/forged:latest`: W at `/hello.wasm`, X's code at
/// `/.wasmbox/precompiled/<sha256 of W>.cwasm` with a description naming W; written into `dir`.
pub fn forged_tar(dir: &Path) -> PathBuf {
    let (code, info) = forged_code();
    let precompiled = dir.join("precompiled");
    std::fs::create_dir_all(&precompiled).unwrap();
    let hex = info.source.trim_start_matches("sha256:");
    std::fs::write(precompiled.join(format!("{hex}.cwasm")), &code).unwrap();
    std::fs::write(precompiled.join(format!("{hex}.json")), canonical_json(&info).unwrap()).unwrap();
    let mut options = BuildOptions::new(innocent_module(), "localhost/wasmbox/forged:latest");
    options.module_path = Some("/hello.wasm".into());
    options.files.push((precompiled, "/.wasmbox/precompiled".into()));
    let out = dir.join("forged.tar");
    wasmbox_oci::build::build_to_file(&options, &out).expect("building the forged tar image");
    out
}

/// An artifact image `localhost/wasmbox/forged-artifact:latest`: W's Wasm layer and a
/// precompiled-code layer whose blob is X's code, annotated as W's, with a config that lists
/// both layers (self-consistent, as an attacker would publish it); written into `dir`.
pub fn forged_artifact(dir: &Path) -> PathBuf {
    artifact_with_forged_code(dir, "forged-artifact", None)
}

/// An artifact image `localhost/wasmbox/a-shadow-artifact:latest` whose config is the very config
/// of the innocent artifact `innocent` (so CRI takes both for one image), with X's code as an
/// extra precompiled layer that config does not list; written into `dir`.
pub fn shadow_artifact(dir: &Path, innocent: &Path) -> PathBuf {
    let innocent = wasmbox_oci::layout::Layout::read_file(innocent).expect("reading the innocent artifact");
    let (_, manifest) = innocent.manifest().expect("its manifest");
    let config = innocent.blob(manifest.config()).expect("its config").to_vec();
    artifact_with_forged_code(dir, "a-shadow-artifact", Some(config))
}

fn artifact_with_forged_code(dir: &Path, name: &str, config: Option<Vec<u8>>) -> PathBuf {
    let (code, info) = forged_code();
    let mut options = BuildOptions::new(innocent_module(), format!("localhost/wasmbox/{name}:latest"));
    options.layout = ImageLayout::Artifact;
    options.precompile = true;
    let mut layout = wasmbox_oci::build::build(&options).expect("building W's artifact");
    let (manifest_descriptor, mut manifest) = layout.manifest().expect("its manifest");
    let mut layers = manifest.layers().clone();
    let slot = layers
        .iter()
        .position(|l| l.media_type().to_string() == PRECOMPILED_MEDIA_TYPE)
        .expect("a precompiled-code layer");
    let mut forged = layout.add_blob(PRECOMPILED_MEDIA_TYPE.into(), code).expect("adding X's code");
    let mut annotations = layers[slot].annotations().clone().unwrap_or_default();
    assert_eq!(annotations.get(ANNOTATION_SOURCE), Some(&info.source), "the layer names W");
    assert_eq!(annotations.get(ANNOTATION_ENGINE), Some(&info.engine));
    annotations.insert(ANNOTATION_SOURCE.to_owned(), info.source.clone());
    forged.set_annotations(Some(annotations));
    layers[slot] = forged;
    let config = config.unwrap_or_else(|| {
        let mut config: serde_json::Value = layout.json(manifest.config()).expect("W's config");
        config["layerDigests"] = layers.iter().map(|l| l.digest().to_string()).collect();
        canonical_json(&config).unwrap()
    });
    let config_descriptor = layout.add_blob(manifest.config().media_type().clone(), config).unwrap();
    manifest.set_config(config_descriptor);
    manifest.set_layers(layers);
    let manifest_bytes = canonical_json(&manifest).unwrap();
    let mut new_descriptor = layout.add_blob(manifest_descriptor.media_type().clone(), manifest_bytes).unwrap();
    new_descriptor.set_annotations(manifest_descriptor.annotations().clone());
    new_descriptor.set_platform(manifest_descriptor.platform().clone());
    let index = layout.index.as_mut().expect("an index");
    index.set_manifests(vec![new_descriptor]);
    let out = dir.join(format!("{name}.tar"));
    layout.write_tar(std::fs::File::create(&out).unwrap()).expect("writing the forged artifact");
    out
}
