//! `create`: creates the container (namespaces, cgroup, root file system, mounts, stdio) and leaves
//! its init waiting for `start`; a Wasm guest's module is loaded (compiled or mapped) now.

use anyhow::{Context, Result};
use liboci_cli::Create;

use super::{Global, container_builder, create_failure};

pub fn create(args: Create, global: &Global) -> Result<()> {
    // The init process inherits the node's code cache (opened here, in the node's mount
    // namespace) and closes it once its module is loaded, as the shim's create helper does.
    crate::sandbox::open_code_cache();
    container_builder(&args.container_id, global)?
        .with_pid_file(args.pid_file.as_ref())
        .context("--pid-file")?
        .with_console_socket(args.console_socket.as_ref())
        .with_preserved_fds(args.preserve_fds)
        .as_init(&args.bundle)
        .with_systemd(global.systemd_cgroup)
        .with_detach(true)
        .with_no_pivot(args.no_pivot)
        .build()
        .map_err(|err| create_failure(&args.container_id, err))?;
    Ok(())
}
