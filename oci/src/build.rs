//! Building an image: the entry-point file and extra files in one tar layer, a config, a manifest and an index.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use crate::layout::{Layout, append_dir, append_file, canonical_json, sha256_digest};
use crate::media::{TAR_GZIP_LAYER, WASM_CONFIG, WASM_LAYER};
use crate::wasm::{self, FileKind};
use wasmbox_runtime::code::image::{self as precompiled, PRECOMPILED_DIR, PRECOMPILED_MEDIA_TYPE, PrecompiledInfo};

/// Annotation containerd reads for the image's full name on import.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the reference (tag) of a manifest in an index.
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What goes into an image.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The entry point on the host: a `.wasm` / `.wat` file (or a Linux executable).
    pub module: PathBuf,
    /// Where it goes in the image (default: `/` + its file name).
    pub module_path: Option<String>,
    /// Full image name, e.g. `localhost/wasmbox/hello:latest`.
    pub name: String,
    /// Entry point (default: the module's path in the image).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `KEY=VALUE` labels of the image config; `wasmbox.io/…` ones are the image's defaults for
    /// the per-workload settings (the container's annotations override them).
    pub labels: Vec<String>,
    /// Extra files or directories: host path and path in the image.
    pub files: Vec<(PathBuf, String)>,
    /// `os/arch` of the config; default `linux/<this machine>`, which containerd 1.6 imports and
    /// unpacks with no extra flags.
    pub platform: Option<String>,
    /// Tar layer (default) or CNCF Wasm OCI artifact.
    pub layout: ImageLayout,
    /// Also ship the module's code compiled ahead of time by this build's engine, in a layer
    /// of its own (see `wasmbox_runtime::code::image`), so that the shim does not compile it.
    pub precompile: bool,
}

/// How the Wasm is packaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageLayout {
    /// The module (and extra files) in an ordinary gzip tar layer: `ctr run` and CRI both work on containerd 1.6.
    #[default]
    Tar,
    /// The CNCF Wasm OCI artifact: config `application/vnd.wasm.config.v0+json`, one
    /// `application/wasm` layer. containerd 1.6 cannot unpack it: it runs through CRI, where the
    /// shim reads the layer from the content store.
    Artifact,
}

impl BuildOptions {
    /// Options for `module` with every other field at its default.
    pub fn new(module: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        BuildOptions {
            module: module.into(),
            module_path: None,
            name: name.into(),
            entrypoint: None,
            cmd: Vec::new(),
            env: Vec::new(),
            workdir: None,
            labels: Vec::new(),
            files: Vec::new(),
            platform: None,
            layout: ImageLayout::Tar,
            precompile: false,
        }
    }
}

/// The `GOARCH` name of this machine's architecture, as OCI platforms spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Builds the image layout for `options`.
pub fn build(options: &BuildOptions) -> Result<Layout> {
    if options.layout == ImageLayout::Artifact {
        return build_artifact(options);
    }
    let module_bytes =
        std::fs::read(&options.module).with_context(|| format!("reading {}", options.module.display()))?;
    let info = wasm::describe(&module_bytes)
        .with_context(|| format!("{} is not WebAssembly (binary or text)", options.module.display()))?;
    let file_name = options.module.file_name().context("the module path has no file name")?.to_string_lossy();
    let module_path = normalize_image_path(options.module_path.as_deref().unwrap_or(&format!("/{file_name}")))?;
    let module_mode = if info.kind == FileKind::Linux { 0o755 } else { 0o644 };

    let mut files = BTreeMap::new();
    files.insert(module_path.clone(), (module_bytes, module_mode));
    for (host, dest) in &options.files {
        collect(host, &normalize_image_path(dest)?, &mut files)?;
    }
    let mut layers = vec![gzip_layer(&files)?];
    if options.precompile {
        if info.kind == FileKind::Linux {
            bail!("--precompile: {} is not WebAssembly", options.module.display());
        }
        let (code, precompiled) = precompile(&files[&module_path].0, &options.module)?;
        let mut code_files = BTreeMap::new();
        let dir = PRECOMPILED_DIR.trim_start_matches('/');
        let (code_path, info_path) = precompiled::image_paths(Path::new(dir), &precompiled.source);
        code_files.insert(code_path.display().to_string(), (code, 0o644));
        code_files.insert(info_path.display().to_string(), (canonical_json(&precompiled)?, 0o644));
        let mut layer = gzip_layer(&code_files)?;
        layer.annotations = precompiled_annotations(&precompiled);
        layers.push(layer);
    }

    let (os, arch) = match &options.platform {
        Some(platform) => platform
            .split_once('/')
            .map(|(os, arch)| (os.to_owned(), arch.to_owned()))
            .with_context(|| format!("platform {platform:?} is not of the form os/arch"))?,
        None => ("linux".to_owned(), host_arch().to_owned()),
    };
    let entrypoint = options.entrypoint.clone().unwrap_or_else(|| vec![format!("/{module_path}")]);
    let mut config = ConfigBuilder::default().entrypoint(entrypoint).cmd(options.cmd.clone());
    if !options.env.is_empty() {
        for pair in &options.env {
            if !pair.contains('=') {
                bail!("environment variable {pair:?} is not of the form KEY=VALUE");
            }
        }
        config = config.env(options.env.clone());
    }
    if let Some(dir) = &options.workdir {
        config = config.working_dir(dir.clone());
    }
    if !options.labels.is_empty() {
        let labels = options
            .labels
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
                    .filter(|(key, _)| !key.is_empty())
                    .with_context(|| format!("label {pair:?} is not of the form KEY=VALUE"))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        config = config.labels(labels);
    }
    let image_config = ImageConfigurationBuilder::default()
        .architecture(Arch::from(arch.as_str()))
        .os(Os::from(os.as_str()))
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(layers.iter().map(|layer| layer.diff_id.clone()).collect::<Vec<_>>())
                .build()?,
        )
        .build()?;

    let mut layout = Layout::default();
    let config_desc = layout.add_blob(MediaType::ImageConfig, canonical_json(&image_config)?)?;
    let mut layer_descs = Vec::new();
    for layer in layers {
        let mut desc = layout.add_blob(MediaType::Other(TAR_GZIP_LAYER.to_owned()), layer.gzip)?;
        if !layer.annotations.is_empty() {
            desc.set_annotations(Some(layer.annotations.into_iter().collect()));
        }
        layer_descs.push(desc);
    }
    finish_layout(layout, config_desc, layer_descs, &options.name, &os, &arch)
}

/// A gzip tar layer and the digest of its uncompressed tar (its diff id).
struct GzipLayer {
    gzip: Vec<u8>,
    diff_id: String,
    annotations: BTreeMap<String, String>,
}

fn gzip_layer(files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<GzipLayer> {
    let tar = layer_tar(files)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&tar)?;
    Ok(GzipLayer { gzip: gz.finish()?, diff_id, annotations: BTreeMap::new() })
}

/// Compiles `bytes` ahead of time with the engine the shim uses.
fn precompile(bytes: &[u8], module: &Path) -> Result<(Vec<u8>, PrecompiledInfo)> {
    let engine = wasmbox_runtime::Engine::new()?;
    let origin = module.display().to_string();
    wasmbox_runtime::code::precompile_for_image(&engine, bytes, &origin)
        .map_err(|err| anyhow::anyhow!("--precompile: {err}"))
}

/// The annotations that describe a precompiled-code layer.
fn precompiled_annotations(info: &PrecompiledInfo) -> BTreeMap<String, String> {
    BTreeMap::from([
        (precompiled::ANNOTATION_ENGINE.to_owned(), info.engine.clone()),
        (precompiled::ANNOTATION_SOURCE.to_owned(), info.source.clone()),
        (precompiled::ANNOTATION_WASMTIME.to_owned(), info.wasmtime.clone()),
    ])
}

/// Adds the manifest and an index naming the image to `layout`.
fn finish_layout(
    mut layout: Layout,
    config_desc: oci_spec::image::Descriptor,
    layer_descs: Vec<oci_spec::image::Descriptor>,
    name: &str,
    os: &str,
    arch: &str,
) -> Result<Layout> {
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()?;
    let manifest_desc = layout.add_blob(MediaType::ImageManifest, canonical_json(&manifest)?)?;
    let tag = name.rsplit_once(':').map(|(_, tag)| tag).filter(|t| !t.contains('/')).unwrap_or("latest");
    let manifest_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(manifest_desc.digest().clone())
        .size(manifest_desc.size())
        .platform(PlatformBuilder::default().os(Os::from(os)).architecture(Arch::from(arch)).build()?)
        .annotations([(CONTAINERD_IMAGE_NAME.to_owned(), name.to_owned()), (OCI_REF_NAME.to_owned(), tag.to_owned())])
        .build()?;
    layout.index = Some(
        ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest_desc])
            .build()?,
    );
    Ok(layout)
}

/// The CNCF Wasm OCI artifact: the binary itself as the one layer (text is assembled first), and
/// a config naming the WASI version and, for components, the WIT-level imports and exports.
fn build_artifact(options: &BuildOptions) -> Result<Layout> {
    let bytes = std::fs::read(&options.module).with_context(|| format!("reading {}", options.module.display()))?;
    let info = wasm::describe(&bytes).with_context(|| format!("{} is not WebAssembly", options.module.display()))?;
    let binary = match info.kind {
        FileKind::Linux => bail!("{}: the artifact layout holds WebAssembly only", options.module.display()),
        _ if info.text => wat::parse_bytes(&bytes)?.into_owned(),
        _ => bytes,
    };
    if !options.files.is_empty() || options.module_path.is_some() || options.workdir.is_some() {
        bail!("the artifact layout has no file system: --add, --path and --workdir need the tar layout");
    }
    if !options.labels.is_empty() {
        bail!("the Wasm artifact config has no labels: --label needs the tar layout");
    }
    let os = if info.kind == FileKind::Component { "wasip2" } else { "wasip1" };
    let mut layout = Layout::default();
    let layer_desc = layout.add_blob(MediaType::Other(WASM_LAYER.to_owned()), binary)?;
    let mut layer_descs = vec![layer_desc];
    if options.precompile {
        let (code, info) = precompile(layout.blob(&layer_descs[0])?, &options.module)?;
        let mut desc = layout.add_blob(MediaType::Other(PRECOMPILED_MEDIA_TYPE.to_owned()), code)?;
        desc.set_annotations(Some(precompiled_annotations(&info).into_iter().collect()));
        layer_descs.push(desc);
    }
    // Every layer's digest, in the manifest's order: the config's digest is the image's ID for
    // CRI, which takes two images with the same config for one; listing the layers makes the
    // config, and so the ID, bind exactly these layers (the shim uses no layer it does not list).
    let layer_digests: Vec<String> = layer_descs.iter().map(|d| d.digest().to_string()).collect();
    let mut config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "wasm",
        "os": os,
        "layerDigests": layer_digests,
    });
    if info.kind == FileKind::Component {
        config["component"] = serde_json::json!({ "imports": info.imports, "exports": info.exports });
    }
    let config_desc = layout.add_blob(MediaType::Other(WASM_CONFIG.to_owned()), canonical_json(&config)?)?;
    finish_layout(layout, config_desc, layer_descs, &options.name, os, "wasm")
}

/// Builds the image and writes its layout tarball to `output`.
pub fn build_to_file(options: &BuildOptions, output: &Path) -> Result<Layout> {
    let layout = build(options)?;
    let tmp = output.with_extension("tar.partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    layout.write_tar(std::io::BufWriter::new(file))?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    Ok(layout)
}

/// `/a/b/` → `a/b`; refuses `..` and empty paths.
fn normalize_image_path(path: &str) -> Result<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        bail!("{path:?} is not a usable path inside the image");
    }
    Ok(parts.join("/"))
}

/// Adds a host file, or a directory's files recursively, under `dest`.
fn collect(host: &Path, dest: &str, files: &mut BTreeMap<String, (Vec<u8>, u32)>) -> Result<()> {
    let meta = std::fs::metadata(host).with_context(|| format!("reading {}", host.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(host)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            collect(&entry.path(), &format!("{dest}/{name}"), files)?;
        }
    } else {
        let bytes = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
        files.insert(dest.to_owned(), (bytes, mode));
    }
    Ok(())
}

/// A tar of `files` with their parent directories, sorted, with no times or owners.
fn layer_tar(files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<Vec<u8>> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("{}/", dir.display()));
            parent = dir.parent();
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    for dir in &dirs {
        append_dir(&mut tar, dir)?;
    }
    for (path, (bytes, mode)) in files {
        append_file(&mut tar, path, bytes, *mode)?;
    }
    Ok(tar.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_digest_and_layout_reads_back() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let wat = dir.path().join("hello.wat");
        std::fs::write(&wat, r#"(module (func (export "_start")))"#)?;
        std::fs::create_dir(dir.path().join("data"))?;
        std::fs::write(dir.path().join("data/input.txt"), "words here")?;
        let mut options = BuildOptions::new(&wat, "localhost/wasmbox/t:1");
        options.files.push((dir.path().join("data"), "/srv/data".into()));
        options.env.push("A=1".into());
        let first = build(&options)?;
        let second = build(&options)?;
        assert_eq!(first.manifest()?.0.digest(), second.manifest()?.0.digest());

        let out = dir.path().join("t.tar");
        build_to_file(&options, &out)?;
        let read = Layout::read_file(&out)?;
        assert_eq!(read.manifest()?.0.digest(), first.manifest()?.0.digest());
        let mut bytes = Vec::new();
        first.write_tar(&mut bytes)?;
        let on_disk = std::fs::read(&out)?;
        assert_eq!(bytes.len(), on_disk.len());
        assert!(bytes == on_disk, "the tarball itself is reproducible");
        Ok(())
    }

    #[test]
    fn artifact_layout_has_a_wasm_config_and_one_wasm_layer() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let wat = dir.path().join("c.wat");
        std::fs::write(&wat, "(component)")?;
        let mut options = BuildOptions::new(&wat, "localhost/wasmbox/c:1");
        options.layout = ImageLayout::Artifact;
        let layout = build(&options)?;
        let (_, manifest) = layout.manifest()?;
        assert_eq!(manifest.config().media_type().to_string(), WASM_CONFIG);
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(manifest.layers()[0].media_type().to_string(), WASM_LAYER);
        let config: serde_json::Value = layout.json(manifest.config())?;
        assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip2")));
        assert!(config["component"]["exports"].is_array());
        assert!(layout.blob(&manifest.layers()[0])?.starts_with(b"\0asm"), "text is assembled");
        options.files.push((wat.clone(), "/x".into()));
        assert!(build(&options).is_err(), "no extra files in an artifact");
        Ok(())
    }

    #[test]
    fn refuses_non_wasm_and_bad_paths() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bad = dir.path().join("bad.wasm");
        std::fs::write(&bad, [0u8, 1, 2, 3])?;
        assert!(build(&BuildOptions::new(&bad, "x:1")).is_err());
        let good = dir.path().join("ok.wat");
        std::fs::write(&good, "(module)")?;
        let mut options = BuildOptions::new(&good, "x:1");
        options.module_path = Some("/../etc/x".into());
        assert!(build(&options).is_err());
        Ok(())
    }
}
