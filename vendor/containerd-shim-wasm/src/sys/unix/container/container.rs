use std::cell::RefCell;
use std::io::Error as IoError;
use std::mem::transmute;

use anyhow::{Context, anyhow};
use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::protobuf::Message as _;
use containerd_shimkit::zygote::{WireError, Zygote};
use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager as _, CgroupSetup};
use libcontainer::container::Container as YoukiContainer;
use libcontainer::signal::Signal;
use serde::Serialize;

use super::metrics::{CgroupVersion, from_cgroup_stats};
use serde::de::DeserializeOwned;

thread_local! {
    // The youki's Container will live in a static inside the zygote process.
    // Reserve some space for it here.
    static CONTAINER: RefCell<Option<YoukiContainer>> = RefCell::default();
}

// The exposed container is just a wrapper around the zygore process
pub struct Container(Zygote);

// Constructor methods
impl Container {
    pub fn build<Arg: Serialize + DeserializeOwned + 'static>(
        f: fn(Arg) -> anyhow::Result<YoukiContainer>,
        arg: Arg,
    ) -> anyhow::Result<Self> {
        let zygote = Zygote::global().spawn();
        let container = Container(zygote);
        container.run_init(f, arg)?;

        Ok(container)
    }
}

// Wrap the youki's Container methods that we use
impl Container {
    pub fn pid(&self) -> anyhow::Result<i32> {
        self.run(|c, _| Ok(c.pid().map(|pid| pid.as_raw())), ())?
            .context("Failed to obtain PID")
    }

    pub fn start(&self) -> anyhow::Result<()> {
        self.run(|c, _| Ok(c.start()?), ())
    }
    pub fn kill(&self, signal: u32) -> anyhow::Result<()> {
        self.run(
            |c, signal| {
                let signal = Signal::try_from(signal as i32).context("invalid signal number")?;
                // wasmbox: the init process only, as containerd-shim-runc-v2 signals a task
                // (the rest of its PID namespace ends with it); `all` would freeze and thaw
                // the cgroup, resuming a paused container.
                Ok(c.kill(signal, false)?)
            },
            signal,
        )
    }
    pub fn delete(&self) -> anyhow::Result<()> {
        self.run(|c, _| Ok(c.delete(true)?), ())
    }

    // wasmbox additions: ps, pause/resume and metrics, from the container's cgroup.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        self.run(
            |c, _| {
                let pids = cgroup_manager(c)?
                    .get_all_pids()
                    .context("listing the processes of the container's cgroup")?;
                Ok(pids.into_iter().map(|pid| pid.as_raw() as u32).collect())
            },
            (),
        )
    }
    pub fn pause(&self) -> anyhow::Result<()> {
        self.run(|c, _| Ok(c.pause()?), ())
    }
    pub fn resume(&self) -> anyhow::Result<()> {
        self.run(|c, _| Ok(c.resume()?), ())
    }
    /// The container's cgroup figures as containerd's `io.containerd.cgroups.v1.Metrics`, encoded
    /// (they cross from the zygote as bytes).
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let bytes = self.run(
            |c, _| {
                let stats = cgroup_manager(c)?
                    .stats()
                    .context("reading the container's cgroup statistics")?;
                let version = match libcgroups::common::get_cgroup_setup()? {
                    CgroupSetup::Unified => CgroupVersion::V2,
                    CgroupSetup::Legacy | CgroupSetup::Hybrid => CgroupVersion::V1,
                };
                Ok(from_cgroup_stats(&stats, version).write_to_bytes()?)
            },
            (),
        )?;
        Ok(Metrics::parse_from_bytes(&bytes)?)
    }
}

fn cgroup_manager(c: &YoukiContainer) -> anyhow::Result<AnyCgroupManager> {
    Ok(libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: c.spec()?.cgroup_path,
        systemd_cgroup: c.systemd(),
        container_name: c.id().to_string(),
    })?)
}

impl Container {
    fn run_impl<
        Arg: Serialize + DeserializeOwned + 'static,
        T: Serialize + DeserializeOwned + 'static,
    >(
        &self,
        f: fn(&mut Option<YoukiContainer>, Arg) -> anyhow::Result<T>,
        arg: Arg,
    ) -> anyhow::Result<T> {
        self.0
            .run(
                |(f, arg)| {
                    let f: fn(&mut Option<YoukiContainer>, Arg) -> anyhow::Result<T> =
                        unsafe { transmute(f) };
                    CONTAINER.with_borrow_mut(|c| -> Result<T, WireError> {
                        Ok(f(c, arg).map_err(IoError::other)?)
                    })
                },
                (f as usize, arg),
            )
            .map_err(|e| anyhow!(e))
    }

    fn run_init<Arg: Serialize + DeserializeOwned + 'static>(
        &self,
        f: fn(Arg) -> anyhow::Result<YoukiContainer>,
        arg: Arg,
    ) -> anyhow::Result<()> {
        self.run_impl(
            |c: &mut Option<YoukiContainer>, (f, arg): (usize, Arg)| -> anyhow::Result<()> {
                let f: fn(Arg) -> anyhow::Result<YoukiContainer> = unsafe { transmute(f) };
                *c = Some(f(arg)?);
                Ok(())
            },
            (f as usize, arg),
        )
    }

    fn run<
        Arg: Serialize + DeserializeOwned + 'static,
        T: Serialize + DeserializeOwned + 'static,
    >(
        &self,
        f: fn(&mut YoukiContainer, Arg) -> anyhow::Result<T>,
        arg: Arg,
    ) -> anyhow::Result<T> {
        self.run_impl(
            |c: &mut Option<YoukiContainer>, (f, arg): (usize, Arg)| -> anyhow::Result<T> {
                let f: fn(&mut YoukiContainer, Arg) -> anyhow::Result<T> = unsafe { transmute(f) };
                let c = c.as_mut().expect("Container not initialized");
                f(c, arg)
            },
            (f as usize, arg),
        )
    }
}
