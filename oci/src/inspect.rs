//! Describing an image: its name, manifest, config and layers, and each Wasm binary's kind, imports and exports.

use std::fmt::Write as _;
use std::io::Read;

use anyhow::{Context, Result};
use flate2::read::GzDecoder;
use oci_spec::image::{Descriptor, ImageConfiguration};

use crate::build::CONTAINERD_IMAGE_NAME;
use crate::layout::Layout;
use crate::media::{WASM_COMPONENT_LAYER, WASM_CONFIG, WASM_LAYER};
use crate::wasm::{self, WasmInfo};
use wasmbox_runtime::code::image::{ANNOTATION_ENGINE, ANNOTATION_SOURCE, ANNOTATION_WASMTIME, PRECOMPILED_MEDIA_TYPE};

/// A file found in a layer that wasmbox could run.
pub struct LayerFile {
    pub path: String,
    pub size: usize,
    pub info: WasmInfo,
}

/// One layer and the runnable files in it.
pub struct LayerSummary {
    pub descriptor: Descriptor,
    pub files: Vec<LayerFile>,
}

/// What `wasmbox image inspect` prints.
pub struct ImageSummary {
    pub name: Option<String>,
    pub manifest: Descriptor,
    /// The config's media type.
    pub config_media_type: String,
    /// An image config (tar layout); `None` for a Wasm artifact.
    pub config: Option<ImageConfiguration>,
    /// The config as JSON (the Wasm artifact's config is shown from here).
    pub config_json: serde_json::Value,
    pub layers: Vec<LayerSummary>,
}

/// Reads the summary of a layout.
pub fn summarize(layout: &Layout) -> Result<ImageSummary> {
    let (manifest_desc, manifest) = layout.manifest()?;
    let config_media_type = manifest.config().media_type().to_string();
    let config_json: serde_json::Value = layout.json(manifest.config())?;
    let config: Option<ImageConfiguration> =
        if config_media_type == WASM_CONFIG { None } else { Some(layout.json(manifest.config())?) };
    let name = manifest_desc.annotations().as_ref().and_then(|a| a.get(CONTAINERD_IMAGE_NAME).cloned());
    let layers = manifest
        .layers()
        .iter()
        .map(|descriptor| {
            let files = runnable_files(layout.blob(descriptor)?, descriptor.media_type().as_ref())
                .with_context(|| format!("reading layer {}", descriptor.digest()))?;
            Ok(LayerSummary { descriptor: descriptor.clone(), files })
        })
        .collect::<Result<_>>()?;
    Ok(ImageSummary { name, manifest: manifest_desc, config_media_type, config, config_json, layers })
}

/// The Wasm (`.wasm`, `.wat`) and executable files of a tar layer, or the Wasm layer itself.
fn runnable_files(blob: &[u8], media_type: &str) -> Result<Vec<LayerFile>> {
    if media_type == PRECOMPILED_MEDIA_TYPE {
        return Ok(Vec::new());
    }
    if media_type == WASM_LAYER || media_type == WASM_COMPONENT_LAYER {
        let info = wasm::describe(blob)?;
        return Ok(vec![LayerFile { path: "(layer)".to_owned(), size: blob.len(), info }]);
    }
    let reader: Box<dyn Read + '_> =
        if media_type.ends_with("gzip") { Box::new(GzDecoder::new(blob)) } else { Box::new(blob) };
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = format!("/{}", entry.path()?.to_string_lossy().trim_start_matches("./"));
        let executable = entry.header().mode()? & 0o111 != 0;
        if !(path.ends_with(".wasm") || path.ends_with(".wat") || executable) {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if let Ok(info) = wasm::describe(&bytes) {
            files.push(LayerFile { path, size: bytes.len(), info });
        }
    }
    Ok(files)
}

impl ImageSummary {
    /// The human-readable description.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "image:      {}", self.name.as_deref().unwrap_or("(no name)"));
        match &self.config {
            Some(config) => {
                let cfg = config.config().clone().unwrap_or_default();
                let _ = writeln!(out, "layout:     tar layer (containerd unpacks it into the root file system)");
                let _ = writeln!(out, "manifest:   {} ({} bytes)", self.manifest.digest(), self.manifest.size());
                let _ = writeln!(out, "platform:   {}/{}", config.os(), config.architecture());
                let _ = writeln!(out, "entrypoint: {:?}", cfg.entrypoint().clone().unwrap_or_default());
                let _ = writeln!(out, "cmd:        {:?}", cfg.cmd().clone().unwrap_or_default());
                let _ = writeln!(out, "env:        {:?}", cfg.env().clone().unwrap_or_default());
                let _ = writeln!(out, "workdir:    {}", cfg.working_dir().as_deref().unwrap_or("/"));
                if let Some(labels) = cfg.labels().as_ref().filter(|labels| !labels.is_empty()) {
                    let sorted: std::collections::BTreeMap<_, _> = labels.iter().collect();
                    let pairs: Vec<String> = sorted.iter().map(|(key, value)| format!("{key}={value}")).collect();
                    let _ = writeln!(out, "labels:     {pairs:?}");
                }
            }
            None => {
                let field = |key: &str| self.config_json[key].as_str().unwrap_or("?").to_owned();
                let _ = writeln!(
                    out,
                    "layout:     CNCF Wasm OCI artifact (runs through CRI; containerd 1.6 cannot unpack it for ctr)"
                );
                let _ = writeln!(out, "manifest:   {} ({} bytes)", self.manifest.digest(), self.manifest.size());
                let _ = writeln!(out, "config:     {}", self.config_media_type);
                let _ = writeln!(out, "platform:   {}/{}", field("os"), field("architecture"));
            }
        }
        let _ = writeln!(out, "layers:");
        let this_engine = wasmbox_runtime::Engine::new().map(|engine| engine.key().to_owned()).ok();
        for layer in &self.layers {
            let d = &layer.descriptor;
            let _ = writeln!(out, "  {} {} ({} bytes)", d.digest(), d.media_type(), d.size());
            let annotation = |key| d.annotations().as_ref().and_then(|a| a.get(key)).map(String::as_str);
            if let Some(engine) = annotation(ANNOTATION_ENGINE) {
                let usable = match &this_engine {
                    Some(this) if this == engine => {
                        "matches this wasmbox's engine: used on nodes that trust image code (WASMBOX_PRECOMPILED=trust)"
                            .to_owned()
                    }
                    Some(this) => format!("this wasmbox's engine is {this}: nodes compile the module instead"),
                    None => "this wasmbox's engine could not be configured".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "    precompiled code of {} by wasmtime {}, engine key {engine} ({usable})",
                    annotation(ANNOTATION_SOURCE).unwrap_or("?"),
                    annotation(ANNOTATION_WASMTIME).unwrap_or("?"),
                );
            }
            for file in &layer.files {
                let text = if file.info.text { ", WebAssembly text" } else { "" };
                let _ = writeln!(out, "    {}: {}{text}, {} bytes", file.path, file.info.kind.describe(), file.size);
                if let Some(engines) = file.info.kind.engines() {
                    let names: Vec<&str> = engines.iter().map(|engine| engine.name()).collect();
                    let _ = writeln!(out, "      engines: {} (wasmbox.io/engine)", names.join(", "));
                }
                if !file.info.imports.is_empty() {
                    let _ = writeln!(out, "      imports: {}", file.info.imports.join(", "));
                }
                if !file.info.exports.is_empty() {
                    let _ = writeln!(out, "      exports: {}", file.info.exports.join(", "));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{BuildOptions, build};

    #[test]
    fn inspect_names_kind_imports_and_exports() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let wat = dir.path().join("add.wat");
        std::fs::write(&wat, r#"(module (import "console" "log" (func (param i32))) (func (export "add")))"#)?;
        let layout = build(&BuildOptions::new(&wat, "localhost/wasmbox/add:1"))?;
        let text = summarize(&layout)?.render();
        assert!(text.contains("image:      localhost/wasmbox/add:1"), "{text}");
        assert!(text.contains("/add.wat: module"), "{text}");
        assert!(text.contains("imports: console::log"), "{text}");
        assert!(text.contains("exports: add"), "{text}");
        assert!(text.contains("engines: wasmtime, wasmer (wasmbox.io/engine)"), "{text}");
        assert!(!text.contains("precompiled"), "{text}");
        Ok(())
    }

    #[test]
    fn inspect_shows_the_precompiled_layer_in_both_layouts() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let wat = dir.path().join("add.wat");
        std::fs::write(&wat, r#"(module (func (export "add")))"#)?;
        let engine = wasmbox_runtime::Engine::new()?.key().to_owned();
        for layout in [crate::build::ImageLayout::Tar, crate::build::ImageLayout::Artifact] {
            let mut options = BuildOptions::new(&wat, "localhost/wasmbox/add:1");
            options.precompile = true;
            options.layout = layout;
            let image = build(&options)?;
            assert_eq!(image.manifest()?.1.layers().len(), 2);
            let text = summarize(&image)?.render();
            assert!(text.contains(&format!("engine key {engine} (matches")), "{text}");
            assert!(text.contains("by wasmtime 48."), "{text}");
        }
        Ok(())
    }
}
