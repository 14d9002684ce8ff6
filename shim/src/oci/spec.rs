//! `spec`: writes a starting `config.json` into the bundle directory, as `runc spec` does.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use libcontainer::oci_spec::runtime::Spec as RuntimeSpec;
use liboci_cli::Spec;

pub fn spec(args: Spec) -> Result<()> {
    let path = args.bundle.unwrap_or_else(|| PathBuf::from(".")).join("config.json");
    if path.exists() {
        bail!("{} exists already", path.display());
    }
    let spec = if args.rootless {
        // SAFETY: getuid and getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        RuntimeSpec::rootless(uid, gid)
    } else {
        RuntimeSpec::default()
    };
    spec.save(&path).with_context(|| format!("writing {}", path.display()))
}
