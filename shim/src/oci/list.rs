//! `list`: the containers under `--root`, as a table or (`--format json`) as their states.

use anyhow::{Context, Result, bail};
use libcontainer::container::Container;
use liboci_cli::List;

use super::Global;

pub fn list(args: List, global: &Global) -> Result<()> {
    let mut containers = Vec::new();
    if global.root.exists() {
        for entry in std::fs::read_dir(&global.root).with_context(|| format!("listing {}", global.root.display()))? {
            let dir = entry?.path();
            if !super::has_state(&dir) {
                continue;
            }
            let mut container = Container::load(dir.clone()).with_context(|| format!("loading {}", dir.display()))?;
            container.refresh_status().with_context(|| format!("reading the status of {}", container.id()))?;
            containers.push(container);
        }
    }
    containers.sort_by(|a, b| a.id().cmp(b.id()));
    match args.format.as_str() {
        "json" => {
            let states: Vec<_> = containers.iter().map(|c| &c.state).collect();
            println!("{}", serde_json::to_string(&states)?);
        }
        "table" => {
            if args.quiet {
                containers.iter().for_each(|c| println!("{}", c.id()));
                return Ok(());
            }
            println!("{:<24} {:<8} {:<8} BUNDLE", "ID", "PID", "STATUS");
            for c in &containers {
                let pid = c.pid().map(|pid| pid.to_string()).unwrap_or_default();
                println!("{:<24} {:<8} {:<8} {}", c.id(), pid, c.status(), c.bundle().display());
            }
        }
        other => bail!("--format {other:?}: expected table or json"),
    }
    Ok(())
}
