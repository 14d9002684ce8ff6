//! `create`: creates the container (namespaces, cgroup, root file system, mounts, stdio) and leaves
//! its init waiting for `start`; a Wasm guest's module is loaded (compiled or mapped) now.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libcontainer::container::Container;
use liboci_cli::Create;

use super::{Global, container_builder, create_failure};

/// What `create` and `run` ask of libcontainer.
pub(super) struct InitRequest<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a PathBuf>,
    pub console_socket: Option<&'a PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// The init is not this process's child (`create`, `run --detach`).
    pub detach: bool,
}

pub fn create(args: Create, global: &Global) -> Result<()> {
    let request = InitRequest {
        id: &args.container_id,
        bundle: &args.bundle,
        pid_file: args.pid_file.as_ref(),
        console_socket: args.console_socket.as_ref(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        detach: true,
    };
    create_init(&request, global).map(drop)
}

/// Has libcontainer create the container and its init, which waits for `start`.
pub(super) fn create_init(request: &InitRequest, global: &Global) -> Result<Container> {
    // The init process inherits the node's code cache (opened here, in the node's mount
    // namespace) and closes it once its module is loaded, as the shim's create helper does.
    crate::sandbox::open_code_cache();
    container_builder(request.id, global)?
        .with_pid_file(request.pid_file)
        .context("--pid-file")?
        .with_console_socket(request.console_socket)
        .with_preserved_fds(request.preserve_fds)
        .as_init(request.bundle)
        .with_systemd(global.systemd_cgroup)
        .with_detach(request.detach)
        .with_no_pivot(request.no_pivot)
        .build()
        .map_err(|err| create_failure(request.id, err))
}
