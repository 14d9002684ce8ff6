//! `start`: lets a created container's init run its entry point.

use anyhow::{Context, Result};
use liboci_cli::Start;

use super::{Global, load_container};

pub fn start(args: Start, global: &Global) -> Result<()> {
    let mut container = load_container(&args.container_id, global)?;
    container.start().with_context(|| format!("starting container {}", args.container_id))
}
