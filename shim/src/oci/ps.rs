//! `ps`: the container's processes, as a JSON array of PIDs (`--format json`) or as `ps(1)` lines.

use std::process::Command;

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupManager;
use liboci_cli::Ps;

use super::{Global, cgroup_manager, load_container};

pub fn ps(args: Ps, global: &Global) -> Result<()> {
    let container = load_container(&args.container_id, global)?;
    let pids: Vec<i32> = cgroup_manager(&container)?
        .get_all_pids()
        .context("listing the container's processes")?
        .iter()
        .map(|pid| pid.as_raw())
        .collect();
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => print_ps_table(&pids, &args.ps_options)?,
        other => bail!("--format {other:?}: expected table or json"),
    }
    Ok(())
}

/// `ps -ef` (or the given options), the header and the container's lines.
fn print_ps_table(pids: &[i32], options: &[String]) -> Result<()> {
    let default = ["-ef".to_owned()];
    let options = if options.is_empty() { &default[..] } else { options };
    let output = Command::new("ps").args(options).output().context("running ps")?;
    if !output.status.success() {
        bail!("ps {}: {}", options.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().context("ps printed nothing")?;
    let pid_column = header.split_whitespace().position(|title| title == "PID").context("ps printed no PID column")?;
    println!("{header}");
    for line in lines {
        let pid = line.split_whitespace().nth(pid_column).and_then(|pid| pid.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            println!("{line}");
        }
    }
    Ok(())
}
