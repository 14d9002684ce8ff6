use std::fs;
use std::path::Path;

use nix::unistd::Pid;

use crate::common::{self, CGROUP_PROCS, ControllerOpt, WrapIoResult, WrappedIoError};

pub(super) trait Controller {
    type Error: From<WrappedIoError>;
    type Resource;

    /// Adds a new task specified by its pid to the cgroup
    fn add_task(pid: Pid, cgroup_path: &Path) -> Result<(), Self::Error> {
        fs::create_dir_all(cgroup_path).wrap_create_dir(cgroup_path)?;
        move_into(pid, cgroup_path)?;
        Ok(())
    }

    /// Applies resource restrictions to the cgroup
    fn apply(controller_opt: &ControllerOpt, cgroup_root: &Path) -> Result<(), Self::Error>;

    /// Checks if the controller needs to handle this request
    fn needs_to_handle<'a>(controller_opt: &'a ControllerOpt) -> Option<&'a Self::Resource>;
}

/// The v1 file through which a thread moves itself alone.
pub(super) const CGROUP_TASKS: &str = "tasks";

/// Moves the process `pid` into the v1 cgroup at `cgroup_path` (which exists).
///
/// A process that moves itself while it has one thread (a container's intermediate process, just
/// cloned, moves itself into the container's cgroups) writes `0` into `tasks`. The kernel moves
/// the calling thread, which is the whole process, without taking the global threadgroup lock
/// that a write into `cgroup.procs` takes: the first such write after a quiet spell waits for an
/// RCU grace period (6 ms per hierarchy measured on a cgroup v1 node, against 0.3 ms through
/// `tasks`), and every container's create paid it. Any other process, or if that write fails, is
/// moved through `cgroup.procs`, all of its threads at once.
pub(super) fn move_into(pid: Pid, cgroup_path: &Path) -> Result<(), WrappedIoError> {
    if membership_file(pid) == CGROUP_TASKS
        && common::write_cgroup_file(cgroup_path.join(CGROUP_TASKS), 0).is_ok()
    {
        return Ok(());
    }
    common::write_cgroup_file(cgroup_path.join(CGROUP_PROCS), pid)
}

/// The file `move_into` writes for `pid`: `tasks` when `pid` is the calling process and it has
/// one thread (`/proc/self/task` lists one), `cgroup.procs` otherwise.
pub(super) fn membership_file(pid: Pid) -> &'static str {
    let this = pid.as_raw() > 0 && pid.as_raw() as u32 == std::process::id();
    let single_threaded = || fs::read_dir("/proc/self/task").is_ok_and(|threads| threads.count() == 1);
    if this && single_threaded() {
        CGROUP_TASKS
    } else {
        CGROUP_PROCS
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;

    #[test]
    fn another_process_or_a_threaded_one_goes_through_cgroup_procs() {
        // The test harness runs this on a thread of its own: the process has several.
        assert_eq!(membership_file(Pid::this()), CGROUP_PROCS);
        assert_eq!(membership_file(Pid::from_raw(1)), CGROUP_PROCS);
        assert_eq!(membership_file(Pid::from_raw(0)), CGROUP_PROCS);
    }

    /// A v1 cgroup of the `cpu` hierarchy, removed when dropped.
    struct TestCgroup(PathBuf);

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn a_single_threaded_process_moves_itself_through_tasks() {
        let hierarchy = Path::new("/sys/fs/cgroup/cpu");
        assert!(
            hierarchy.join(CGROUP_TASKS).exists(),
            "this test needs root and the cgroup v1 cpu hierarchy at {}",
            hierarchy.display()
        );
        let cgroup = TestCgroup(hierarchy.join(format!("libcgroups-move-into-{}", std::process::id())));
        fs::create_dir_all(&cgroup.0).expect("creating the test cgroup");
        let target = cgroup.0.clone();
        let mut child = Command::new("cat");
        child.arg("/proc/self/cgroup").stdout(std::process::Stdio::piped());
        // SAFETY: the closure runs in the forked child (one thread) before it execs `cat`; it
        // reads /proc, writes one cgroup file and allocates, which glibc allows after fork.
        unsafe {
            child.pre_exec(move || {
                if membership_file(Pid::this()) != CGROUP_TASKS {
                    return Err(std::io::Error::other("the forked child did not choose `tasks`"));
                }
                move_into(Pid::this(), &target).map_err(std::io::Error::other)
            });
        }
        let output = child.output().expect("running cat in the moved child");
        let cgroups = String::from_utf8_lossy(&output.stdout);
        let name = cgroup.0.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            cgroups.lines().any(|line| line.contains(":cpu") && line.ends_with(&format!("/{name}"))),
            "the child is not in {name}: {cgroups}"
        );
    }
}
