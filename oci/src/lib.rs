//! Wasm OCI images: build them as OCI image layout tarballs, read them back, and describe the Wasm inside.
//!
//! - [`build`]: an image from a `.wasm` / `.wat` file (or a Linux executable) plus extra files;
//! - [`containerd_config`]: the wasmbox runtime in a node's containerd configuration, in and out;
//! - [`layout`]: reading and writing OCI image layout tarballs (`oci-layout`, `index.json`, `blobs/`);
//! - [`inspect`]: what an image holds: manifest, config, layers, and each Wasm binary's kind,
//!   imports and exports;
//! - [`node`]: labelling a Kubernetes node from the node installer;
//! - [`wasm`]: classifying a file and listing its imports and exports.

pub mod build;
pub mod containerd_config;
pub mod inspect;
pub mod layout;
pub mod node;
pub mod wasm;

/// Media types used by wasmbox images.
pub mod media {
    pub use oci_spec::image::MediaType;
    /// A gzip-compressed tar layer: what containerd 1.6 unpacks into a root file system.
    pub const TAR_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// The config of a CNCF Wasm OCI artifact.
    pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
    /// The layer of a CNCF Wasm OCI artifact: the module or component itself.
    pub const WASM_LAYER: &str = "application/wasm";
    /// The component layer media type used by the Bytecode Alliance tools (also accepted).
    pub const WASM_COMPONENT_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
}
