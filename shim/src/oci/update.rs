//! `update`: changes a running container's cgroup limits, from `--resources FILE` (`-` for stdin;
//! the spec's `linux.resources` JSON) or from runc's flags.
//!
//! The cgroup is changed; a Wasm guest keeps the linear-memory limit its engine was given when
//! the container was created (the cgroup's new limit still bounds the whole process).

use std::fs::File;
use std::io::BufReader;

use anyhow::{Context, Result, bail};
use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use liboci_cli::Update;

use super::{Global, cgroup_manager, load_container};

pub fn update(args: Update, global: &Global) -> Result<()> {
    let container = load_container(&args.container_id, global)?;
    let resources = match &args.resources {
        Some(path) if path.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin().lock()).context("reading the resources from stdin")?
        }
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            serde_json::from_reader(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))?
        }
        None => resources_from_flags(&args)?,
    };
    cgroup_manager(&container)?
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| format!("updating the cgroup of container {}", args.container_id))
}

/// The resources runc's `update` flags name; the others stay as they are.
fn resources_from_flags(args: &Update) -> Result<LinuxResources> {
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        bail!("--l3-cache-schema and --mem-bw-schema (Intel RDT) are not supported");
    }
    let signed = |flag: &str, value: Option<u64>| -> Result<Option<i64>> {
        value.map(|v| i64::try_from(v).with_context(|| format!("--{flag} {v}: too large"))).transpose()
    };
    let mut resources = LinuxResources::default();
    if args.memory.is_some() || args.memory_reservation.is_some() || args.memory_swap.is_some() {
        let mut memory = LinuxMemory::default();
        memory
            .set_limit(signed("memory", args.memory)?)
            .set_reservation(signed("memory-reservation", args.memory_reservation)?)
            .set_swap(args.memory_swap);
        resources.set_memory(Some(memory));
    }
    let cpu_flags = [args.cpu_share, args.cpu_quota, args.cpu_period, args.cpu_rt_period, args.cpu_rt_runtime];
    if cpu_flags.iter().any(Option::is_some) || args.cpuset_cpus.is_some() || args.cpuset_mems.is_some() {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(args.cpu_share)
            .set_quota(signed("cpu-quota", args.cpu_quota)?)
            .set_period(args.cpu_period)
            .set_realtime_period(args.cpu_rt_period)
            .set_realtime_runtime(signed("cpu-rt-runtime", args.cpu_rt_runtime)?)
            .set_cpus(args.cpuset_cpus.clone())
            .set_mems(args.cpuset_mems.clone());
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = args.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    if let Some(weight) = args.blkio_weight {
        let weight = u16::try_from(weight).with_context(|| format!("--blkio-weight {weight}: too large"))?;
        let mut block_io = LinuxBlockIo::default();
        block_io.set_weight(Some(weight));
        resources.set_block_io(Some(block_io));
    }
    Ok(resources)
}
