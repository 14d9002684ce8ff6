//! `delete`: removes a stopped container (with `--force`, any container: its processes are killed)
//! with its cgroup and state.

use anyhow::{Context, Result};
use liboci_cli::Delete;

use super::{Global, container_dir, has_state, load_container};

pub fn delete(args: Delete, global: &Global) -> Result<()> {
    if args.force && !has_state(&container_dir(&args.container_id, global)?) {
        return Ok(());
    }
    let mut container = load_container(&args.container_id, global)?;
    container.delete(args.force).with_context(|| format!("deleting container {}", args.container_id))
}
