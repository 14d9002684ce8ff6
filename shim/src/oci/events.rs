//! `events`: the container's cgroup statistics, once (`--stats`) or every `--interval` seconds.

use anyhow::{Context, Result};
use liboci_cli::Events;

use super::{Global, load_container};

pub fn events(args: Events, global: &Global) -> Result<()> {
    let mut container = load_container(&args.container_id, global)?;
    container
        .events(args.interval, args.stats)
        .with_context(|| format!("reading the events of container {}", args.container_id))
}
