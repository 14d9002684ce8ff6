//! `kill`: sends a signal (a name or a number) to the container's init, or with `--all` to every
//! process of the container.

use anyhow::{Context, Result};
use libcontainer::container::ContainerStatus;
use libcontainer::signal::Signal;
use liboci_cli::Kill;

use super::{Global, load_container};

pub fn kill(args: Kill, global: &Global) -> Result<()> {
    let mut container = load_container(&args.container_id, global)?;
    let signal =
        Signal::try_from(args.signal.as_str()).map_err(|_| anyhow::anyhow!("unknown signal {:?}", args.signal))?;
    container.kill(signal, args.all).with_context(|| match container.status() {
        ContainerStatus::Stopped => format!("container {} is not running", args.container_id),
        _ => format!("signalling container {}", args.container_id),
    })
}
