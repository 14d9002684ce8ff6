//! containerd's cgroup metrics (`io.containerd.cgroups.v1.Metrics`, what `ctr task metrics`
//! shows and CRI's `ContainerStats` reads) from libcgroups' statistics (wasmbox addition).
//!
//! libcgroups reads both cgroup versions but keeps each one's units and `memory.stat` keys: v2
//! gives CPU times in microseconds and names `anon`/`file` what v1 names `rss`/`cache`. The v1
//! message wants nanoseconds and v1 names, so v2 figures are converted.

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use libcgroups::stats::{MemoryData, Stats};

/// Which cgroup version the figures were read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

pub(crate) fn from_cgroup_stats(stats: &Stats, version: CgroupVersion) -> Metrics {
    // to nanoseconds
    let ns = |time: u64| match version {
        CgroupVersion::V1 => time,
        CgroupVersion::V2 => time.saturating_mul(1000),
    };
    let usage = &stats.cpu.usage;
    let throttling = &stats.cpu.throttling;
    let cpu = CPUStat {
        usage: Some(CPUUsage {
            total: ns(usage.usage_total),
            kernel: ns(usage.usage_kernel),
            user: ns(usage.usage_user),
            per_cpu: usage.per_core_usage_total.iter().copied().map(ns).collect(),
            ..Default::default()
        })
        .into(),
        throttling: Some(Throttle {
            periods: throttling.periods,
            throttled_periods: throttling.throttled_periods,
            throttled_time: ns(throttling.throttled_time),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };

    let memory = &stats.memory;
    // the v1 key, else its v2 name
    let stat = |key: &str| {
        let v2 = match key {
            "rss" => "anon",
            "cache" => "file",
            "total_inactive_file" => "inactive_file",
            "total_active_file" => "active_file",
            "total_inactive_anon" => "inactive_anon",
            "total_active_anon" => "active_anon",
            other => other,
        };
        (memory.stats.get(key).or_else(|| memory.stats.get(v2)))
            .copied()
            .unwrap_or_default()
    };
    let memory = MemoryStat {
        cache: stat("cache"),
        rss: stat("rss"),
        rss_huge: stat("rss_huge"),
        mapped_file: stat("mapped_file"),
        dirty: stat("dirty"),
        writeback: stat("writeback"),
        pg_pg_in: stat("pgpgin"),
        pg_pg_out: stat("pgpgout"),
        pg_fault: stat("pgfault"),
        pg_maj_fault: stat("pgmajfault"),
        inactive_anon: stat("inactive_anon"),
        active_anon: stat("active_anon"),
        inactive_file: stat("inactive_file"),
        active_file: stat("active_file"),
        unevictable: stat("unevictable"),
        hierarchical_memory_limit: stat("hierarchical_memory_limit"),
        hierarchical_swap_limit: stat("hierarchical_memsw_limit"),
        total_cache: stat("total_cache"),
        total_rss: stat("total_rss"),
        total_rss_huge: stat("total_rss_huge"),
        total_mapped_file: stat("total_mapped_file"),
        total_dirty: stat("total_dirty"),
        total_writeback: stat("total_writeback"),
        total_pg_pg_in: stat("total_pgpgin"),
        total_pg_pg_out: stat("total_pgpgout"),
        total_pg_fault: stat("total_pgfault"),
        total_pg_maj_fault: stat("total_pgmajfault"),
        total_inactive_anon: stat("total_inactive_anon"),
        total_active_anon: stat("total_active_anon"),
        total_inactive_file: stat("total_inactive_file"),
        total_active_file: stat("total_active_file"),
        total_unevictable: stat("total_unevictable"),
        usage: Some(memory_entry(&memory.memory)).into(),
        swap: Some(memory_entry(&memory.memswap)).into(),
        kernel: Some(memory_entry(&memory.kernel)).into(),
        kernel_tcp: Some(memory_entry(&memory.kernel_tcp)).into(),
        ..Default::default()
    };

    let pids = PidsStat {
        current: stats.pids.current,
        limit: stats.pids.limit,
        ..Default::default()
    };

    let mut hugetlb: Vec<_> = stats
        .hugetlb
        .iter()
        .map(|(pagesize, stat)| HugetlbStat {
            usage: stat.usage,
            max: stat.max_usage,
            failcnt: stat.fail_count,
            pagesize: pagesize.clone(),
            ..Default::default()
        })
        .collect();
    hugetlb.sort_by(|a, b| a.pagesize.cmp(&b.pagesize));

    Metrics {
        cpu: Some(cpu).into(),
        memory: Some(memory).into(),
        pids: Some(pids).into(),
        hugetlb,
        ..Default::default()
    }
}

fn memory_entry(data: &MemoryData) -> MemoryEntry {
    MemoryEntry {
        limit: data.limit,
        usage: data.usage,
        max: data.max_usage,
        failcnt: data.fail_count,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use libcgroups::common::CgroupManager as _;

    use super::*;

    /// A container's cgroup v2 files, recorded from a v2 node (`testdata/cgroup-v2`), read by
    /// libcgroups as on a v2 node and converted: µs to ns, `anon`/`file` to `rss`/`cache`.
    #[test]
    fn cgroup_v2_figures_are_converted() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let cgroup = root.path().join("wasmbox/c1");
        std::fs::create_dir_all(&cgroup)?;
        let recorded = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/sys/unix/container/testdata/cgroup-v2");
        for file in std::fs::read_dir(recorded)? {
            let file = file?;
            std::fs::copy(file.path(), cgroup.join(file.file_name()))?;
        }
        // one hugetlb record per page size this machine has (libcgroups asks the kernel which)
        for entry in std::fs::read_dir("/sys/kernel/mm/hugepages")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(kb) = name
                .strip_prefix("hugepages-")
                .and_then(|n| n.strip_suffix("kB"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let size = if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            };
            std::fs::write(cgroup.join(format!("hugetlb.{size}.current")), "0\n")?;
            std::fs::write(cgroup.join(format!("hugetlb.{size}.events")), "max 0\n")?;
        }
        let manager =
            libcgroups::v2::manager::Manager::new(root.path().to_owned(), "wasmbox/c1".into())?;
        let metrics = from_cgroup_stats(&manager.stats()?, CgroupVersion::V2);
        let cpu = metrics.cpu.usage.as_ref().expect("cpu usage");
        assert_eq!(
            (cpu.total, cpu.user, cpu.kernel),
            (183_412_000, 120_001_000, 63_411_000)
        );
        let throttling = metrics.cpu.throttling.as_ref().expect("throttling");
        assert_eq!(
            (
                throttling.periods,
                throttling.throttled_periods,
                throttling.throttled_time
            ),
            (40, 7, 2_500_000)
        );
        let memory = metrics.memory.as_ref().expect("memory");
        assert_eq!((memory.rss, memory.cache), (2_383_872, 524_288));
        assert_eq!(
            (
                memory.inactive_file,
                memory.active_anon,
                memory.pg_fault,
                memory.pg_maj_fault
            ),
            (262_144, 40_960, 1843, 2)
        );
        let usage = memory.usage.as_ref().expect("usage");
        assert_eq!(
            (usage.usage, usage.limit, usage.max),
            (3_158_016, 67_108_864, 4_194_304)
        );
        assert_eq!((metrics.pids.current, metrics.pids.limit), (1, 32));
        Ok(())
    }
}
