//! `resume`: thaws a paused container.

use anyhow::{Context, Result};
use liboci_cli::Resume;

use super::{Global, load_container};

pub fn resume(args: Resume, global: &Global) -> Result<()> {
    let mut container = load_container(&args.container_id, global)?;
    container.resume().with_context(|| format!("resuming container {}", args.container_id))
}
