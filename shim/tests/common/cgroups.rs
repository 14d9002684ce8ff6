//! The node's cgroup layout, detected rather than assumed, and the files the tests read in it.
//!
//! containerd uses the v1 controllers when any are mounted (a v1 or hybrid node) and the
//! unified hierarchy otherwise; a layout that is neither fails the test that asks, naming what
//! was found, instead of checking nothing.

use std::path::PathBuf;

/// How cgroups are mounted on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1 controllers, one hierarchy each under `/sys/fs/cgroup/<controllers>` (a hybrid node's
    /// `unified` hierarchy is not where containerd puts containers).
    V1 { controllers: Vec<PathBuf> },
    /// The unified hierarchy at `/sys/fs/cgroup`.
    V2,
}

/// A value the tests read from a container's cgroup, by meaning rather than by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    MemoryLimit,
    CpuQuota,
    CpuPeriod,
    PidsMax,
    PidsCurrent,
    Procs,
    /// `FROZEN` or `THAWED`.
    Freezer,
}

impl CgroupLayout {
    /// Reads `/proc/self/mountinfo`; panics on a layout it does not know.
    pub fn detect() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
        Self::from_mountinfo(&mountinfo).unwrap_or_else(|found| panic!("unknown cgroup layout: {found}"))
    }

    /// The layout a mount table shows; `Err` describes what it shows otherwise.
    pub fn from_mountinfo(mountinfo: &str) -> Result<Self, String> {
        let mut controllers = Vec::new();
        let mut unified_root = false;
        for line in mountinfo.lines() {
            let Some((before, after)) = line.split_once(" - ") else { continue };
            let Some(mount_point) = before.split(' ').nth(4) else { continue };
            let fs_type = after.split(' ').next().unwrap_or_default();
            match fs_type {
                "cgroup" if mount_point.starts_with("/sys/fs/cgroup/") => controllers.push(PathBuf::from(mount_point)),
                "cgroup2" if mount_point == "/sys/fs/cgroup" => unified_root = true,
                _ => {}
            }
        }
        match (controllers.is_empty(), unified_root) {
            (false, false) => Ok(CgroupLayout::V1 { controllers }),
            (true, true) => Ok(CgroupLayout::V2),
            (false, true) => Err(format!("both cgroup v1 controllers ({controllers:?}) and cgroup2 at /sys/fs/cgroup")),
            (true, false) => {
                Err("neither cgroup v1 controllers under /sys/fs/cgroup nor cgroup2 at /sys/fs/cgroup".into())
            }
        }
    }

    /// Every directory of the cgroup at `path` (`/namespace/id`): one per v1 controller, or one.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { controllers } => controllers.iter().map(|c| c.join(relative)).collect(),
            CgroupLayout::V2 => vec![PathBuf::from("/sys/fs/cgroup").join(relative)],
        }
    }

    /// The value of `knob` for the cgroup at `path`, in v1's terms (v2's files are translated).
    pub fn read(&self, path: &str, knob: Knob) -> String {
        let relative = path.trim_start_matches('/');
        let read = |file: PathBuf| {
            std::fs::read_to_string(&file).unwrap_or_else(|err| panic!("{}: {err}", file.display())).trim().to_owned()
        };
        match self {
            CgroupLayout::V1 { controllers } => {
                let (controller, file) = match knob {
                    Knob::MemoryLimit => ("memory", "memory.limit_in_bytes"),
                    Knob::CpuQuota => ("cpu", "cpu.cfs_quota_us"),
                    Knob::CpuPeriod => ("cpu", "cpu.cfs_period_us"),
                    Knob::PidsMax => ("pids", "pids.max"),
                    Knob::PidsCurrent => ("pids", "pids.current"),
                    Knob::Procs => ("memory", "cgroup.procs"),
                    Knob::Freezer => ("freezer", "freezer.state"),
                };
                let dir = controllers
                    .iter()
                    .find(|c| {
                        c.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.split(',').any(|part| part == controller))
                    })
                    .unwrap_or_else(|| panic!("no v1 {controller} controller among {controllers:?}"));
                read(dir.join(relative).join(file))
            }
            CgroupLayout::V2 => {
                let dir = PathBuf::from("/sys/fs/cgroup").join(relative);
                match knob {
                    Knob::MemoryLimit => read(dir.join("memory.max")),
                    Knob::CpuQuota => read(dir.join("cpu.max")).split(' ').next().unwrap_or_default().to_owned(),
                    Knob::CpuPeriod => read(dir.join("cpu.max")).split(' ').nth(1).unwrap_or_default().to_owned(),
                    Knob::PidsMax => read(dir.join("pids.max")),
                    Knob::PidsCurrent => read(dir.join("pids.current")),
                    Knob::Procs => read(dir.join("cgroup.procs")),
                    Knob::Freezer => {
                        if read(dir.join("cgroup.freeze")) == "1" { "FROZEN" } else { "THAWED" }.to_owned()
                    }
                }
            }
        }
    }

    /// Whether the container's CPU shares are `shares`: v1's `cpu.shares`, or v2's `cpu.weight`
    /// converted as runc and libcontainer do (`1 + (shares - 2) * 9999 / 262142`).
    pub fn has_cpu_shares(&self, path: &str, shares: u64) -> bool {
        let relative = path.trim_start_matches('/');
        match self {
            CgroupLayout::V1 { .. } => self.read_v1("cpu", relative, "cpu.shares") == shares.to_string(),
            CgroupLayout::V2 => {
                let weight = std::fs::read_to_string(PathBuf::from("/sys/fs/cgroup").join(relative).join("cpu.weight"))
                    .unwrap_or_default();
                weight.trim() == (1 + (shares - 2) * 9999 / 262142).to_string()
            }
        }
    }

    fn read_v1(&self, controller: &str, relative: &str, file: &str) -> String {
        let CgroupLayout::V1 { controllers } = self else { unreachable!() };
        let dir = controllers
            .iter()
            .find(|c| {
                c.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.split(',').any(|part| part == controller))
            })
            .unwrap_or_else(|| panic!("no v1 {controller} controller"));
        std::fs::read_to_string(dir.join(relative).join(file)).unwrap_or_default().trim().to_owned()
    }
}

#[test]
fn cgroup_layouts_are_recognised_or_refused() {
    let v1 = "30 24 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
              31 24 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
              32 24 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
    let layout = CgroupLayout::from_mountinfo(v1).unwrap();
    assert_eq!(
        layout.dirs("/ns/id"),
        [PathBuf::from("/sys/fs/cgroup/memory/ns/id"), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/ns/id")]
    );
    let v2 = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert_eq!(CgroupLayout::from_mountinfo(v2).unwrap(), CgroupLayout::V2);
    assert_eq!(CgroupLayout::V2.dirs("/ns/id"), [PathBuf::from("/sys/fs/cgroup/ns/id")]);
    assert!(CgroupLayout::from_mountinfo("1 0 8:1 / / rw - ext4 /dev/vda rw\n").is_err());
    // this node's layout is one of them
    CgroupLayout::detect();
}
