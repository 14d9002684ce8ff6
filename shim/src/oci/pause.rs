//! `pause`: freezes every process of the container (its cgroup's freezer).

use anyhow::{Context, Result};
use liboci_cli::Pause;

use super::{Global, load_container};

pub fn pause(args: Pause, global: &Global) -> Result<()> {
    let mut container = load_container(&args.container_id, global)?;
    container.pause().with_context(|| format!("pausing container {}", args.container_id))
}
