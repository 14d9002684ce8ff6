//! Finding the container's own OCI spec (annotations, resources, cwd) from inside the container.
//!
//! `containerd-shim-wasm` hands the Wasm side only args, env and the entry point. The rest of
//! the spec is in the container's bundle, `<task dir>/<id>/config.json`, which the container's
//! process cannot reach by path once it has pivoted into its root file system. So:
//!
//! - the shim, at start-up, opens the task directory of its namespace: the parent of its working
//!   directory, which containerd sets to the bundle of the container the shim was started for
//!   (in a pod, the shim serves every container, but all bundles are siblings there);
//! - the container's process inherits that descriptor, and finds its own bundle as the one whose
//!   `rootfs` is the same file system object (device and inode) as its `/`. Every container's
//!   root file system is its own mount, so the match is exact.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Spec;

static TASK_DIR: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// Opens the task directory (the parent of the bundle the shim runs in); call early in `main`.
pub fn open_task_dir() {
    TASK_DIR.get_or_init(|| {
        let parent = std::env::current_dir().ok()?.parent()?.to_owned();
        std::fs::File::open(&parent).ok().map(OwnedFd::from)
    });
}

/// The spec of the container this process is the init process of.
pub fn own_spec() -> Result<Spec> {
    let dir = TASK_DIR
        .get()
        .and_then(Option::as_ref)
        .context("the shim could not open its task directory")?;
    let dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let root = std::fs::metadata("/").context("stat /")?;
    for entry in std::fs::read_dir(&dir).context("listing the task directory")? {
        let bundle = entry?.path();
        let Ok(rootfs) = std::fs::metadata(bundle.join("rootfs")) else { continue };
        if (rootfs.dev(), rootfs.ino()) == (root.dev(), root.ino()) {
            let config = bundle.join("config.json");
            let file = std::fs::File::open(&config).context("opening the bundle's config.json")?;
            return serde_json::from_reader(std::io::BufReader::new(file)).context("parsing the bundle's config.json");
        }
    }
    bail!("no bundle in the task directory has this container's root file system")
}
