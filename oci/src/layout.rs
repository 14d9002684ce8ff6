//! OCI image layout tarballs: content-addressed blobs plus `index.json`, written deterministically.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};

/// The blobs of an image layout, by digest, and its index.
#[derive(Default)]
pub struct Layout {
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub index: Option<ImageIndex>,
}

/// JSON with object keys sorted, so that maps (annotations, labels) serialize the same every time.
/// (`serde_json` keeps insertion order here, because `oci-spec` turns on `preserve_order`.)
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sorted(serde_json::to_value(value)?))?)
}

/// `sha256:<hex>` of `bytes`.
pub use wasmbox_runtime::code::image::sha256_digest;

impl Layout {
    /// Adds a blob and returns its descriptor.
    pub fn add_blob(&mut self, media_type: MediaType, bytes: Vec<u8>) -> Result<Descriptor> {
        let digest = sha256_digest(&bytes);
        let descriptor = Descriptor::new(media_type, bytes.len() as u64, Digest::try_from(digest.as_str())?);
        self.blobs.insert(digest, bytes);
        Ok(descriptor)
    }

    /// The bytes of the blob a descriptor points at.
    pub fn blob(&self, descriptor: &Descriptor) -> Result<&[u8]> {
        let digest = descriptor.digest().to_string();
        self.blobs.get(&digest).map(Vec::as_slice).with_context(|| format!("blob {digest} is missing from the image"))
    }

    /// Parses the JSON blob a descriptor points at.
    pub fn json<T: serde::de::DeserializeOwned>(&self, descriptor: &Descriptor) -> Result<T> {
        serde_json::from_slice(self.blob(descriptor)?).with_context(|| format!("parsing blob {}", descriptor.digest()))
    }

    /// The index's single manifest and its descriptor.
    pub fn manifest(&self) -> Result<(Descriptor, ImageManifest)> {
        let index = self.index.as_ref().context("the image has no index.json")?;
        let descriptor = match index.manifests().as_slice() {
            [one] => one.clone(),
            [] => bail!("index.json lists no manifest"),
            many => bail!("index.json lists {} manifests; wasmbox reads images with one", many.len()),
        };
        let manifest = self.json(&descriptor)?;
        Ok((descriptor, manifest))
    }

    /// Writes the layout as a tarball: `oci-layout`, `index.json`, `blobs/sha256/*`.
    /// Entries are sorted and carry no times or owners, so equal inputs give equal bytes.
    pub fn write_tar(&self, out: impl Write) -> Result<()> {
        let index = self.index.as_ref().context("the layout has no index")?;
        let mut tar = tar::Builder::new(out);
        append_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
        append_file(&mut tar, "index.json", &canonical_json(index)?, 0o644)?;
        append_dir(&mut tar, "blobs/")?;
        append_dir(&mut tar, "blobs/sha256/")?;
        for (digest, bytes) in &self.blobs {
            let hex = digest.strip_prefix("sha256:").context("non-sha256 digest")?;
            append_file(&mut tar, &format!("blobs/sha256/{hex}"), bytes, 0o644)?;
        }
        tar.into_inner()?.flush()?;
        Ok(())
    }

    /// Reads a layout tarball, checking every blob against its digest.
    pub fn read_tar(input: impl Read) -> Result<Self> {
        let mut layout = Layout::default();
        let mut archive = tar::Archive::new(input);
        for entry in archive.entries().context("reading the image tarball")? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            if path == "index.json" {
                layout.index = Some(serde_json::from_slice(&bytes).context("parsing index.json")?);
            } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                let digest = format!("sha256:{hex}");
                if sha256_digest(&bytes) != digest {
                    bail!("blob {path} does not match its digest");
                }
                layout.blobs.insert(digest, bytes);
            }
        }
        if layout.index.is_none() {
            bail!("not an OCI image layout: index.json is missing");
        }
        Ok(layout)
    }

    /// Reads a layout tarball from a file.
    pub fn read_file(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::read_tar(std::io::BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
    }
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    Ok(header)
}

/// Appends a regular file with fixed metadata.
pub fn append_file(tar: &mut tar::Builder<impl Write>, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let header = header(path, bytes.len() as u64, mode, tar::EntryType::Regular)?;
    tar.append(&header, bytes).with_context(|| format!("adding {path} to a tar"))
}

/// Appends a directory with fixed metadata.
pub fn append_dir(tar: &mut tar::Builder<impl Write>, path: &str) -> Result<()> {
    let header = header(path, 0, 0o755, tar::EntryType::Directory)?;
    tar.append(&header, std::io::empty()).with_context(|| format!("adding {path} to a tar"))
}
