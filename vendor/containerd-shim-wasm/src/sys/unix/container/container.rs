//! A container as the shim holds it: libcontainer's state of it, made by a create helper.
//!
//! wasmbox change: runwasi forks a zygote process when the shim starts and one more zygote per
//! container, which creates the container and stays alive to serve every later call (start,
//! kill, delete, …) from its copy of libcontainer's `Container`; that is four processes per
//! container (the shim, its zygote, the container's zygote and the container's init).
//!
//! Here the shim execs a *create helper* for each create ([`CREATE_HELPER_ARG`]; itself, or the
//! program its `Shim::create_helper` names, so that the engine need not be in the shim): a
//! fresh single-threaded process, in which libcontainer may fork safely. The helper creates the
//! container with `as_sibling`, so that the container's init becomes a child of the shim, writes
//! back the init's PID and the container's state directory, and exits. The shim then loads
//! libcontainer's `Container` from that state directory and calls it directly: starting,
//! signalling, pausing and deleting a container fork nothing (hooks run through
//! `std::process::Command`, which execs). A container costs the shim's process (shared by the
//! containers of a group or a pod) and its own init process, nothing else.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use anyhow::{Context, anyhow, bail};
use containerd_shim::protos::cgroups::metrics::Metrics;
use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager as _, CgroupSetup};
use libcontainer::container::Container as YoukiContainer;
use libcontainer::signal::Signal;
use serde::{Deserialize, Serialize};

use super::metrics::{CgroupVersion, from_cgroup_stats};

/// The first argument that makes the shim binary a create helper instead of a shim.
pub const CREATE_HELPER_ARG: &str = "--wasmbox-create-container";
/// Where the create helper finds the container's relayed stdin (see `stdin_relay`).
pub const RELAYED_STDIN_FD: i32 = 3;

/// Longest error text the helper sends back (it must fit in the pipe's buffer, which the helper
/// fills before it exits and the shim reads after).
const MAX_REPLY_ERROR: usize = 16 * 1024;

/// What the helper tells the shim: the created container, or why it could not be created.
#[derive(Serialize, Deserialize)]
enum Reply {
    Created { pid: i32, state_dir: PathBuf },
    Failed(String),
}

/// A created container: libcontainer's state of it, loaded in the shim.
pub struct Container {
    youki: Mutex<YoukiContainer>,
    pid: i32,
}

/// A create helper started before its request is ready, so that its exec and start overlap the
/// shim's reading of the image from containerd (wasmbox: about 1.5 ms of every create). It waits
/// for its request on stdin; dropped without [`PendingCreate::finish`], it is killed and reaped.
pub struct PendingCreate {
    helper: Option<std::process::Child>,
}

impl PendingCreate {
    /// Execs the create helper `helper` for container `id`; `stdin`, the container's relayed stdin,
    /// is handed to it as [`RELAYED_STDIN_FD`].
    pub fn spawn(helper: &std::path::Path, id: &str, stdin: Option<OwnedFd>) -> anyhow::Result<Self> {
        let mut command = Command::new(helper);
        command
            .arg(CREATE_HELPER_ARG)
            .arg(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(stdin) = &stdin {
            let fd = stdin.as_raw_fd();
            // SAFETY: the closure runs in the forked child before exec and calls only the
            // async-signal-safe fcntl and dup2: the pipe's read end lands on RELAYED_STDIN_FD
            // without close-on-exec (dup2 onto itself would keep the flag, so clear it then).
            unsafe {
                command.pre_exec(move || {
                    let done = if fd == RELAYED_STDIN_FD {
                        libc::fcntl(fd, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(fd, RELAYED_STDIN_FD)
                    };
                    if done < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let helper = command
            .spawn()
            .with_context(|| format!("starting the create helper {}", helper.display()))?;
        // The helper has its copy: the shim keeps only the relay's write end.
        drop(stdin);
        Ok(PendingCreate { helper: Some(helper) })
    }

    /// Sends `request` to the helper, waits until it is done (the guest's module is loaded by
    /// then) and loads the container it created. Blocks: call it off the async runtime's workers.
    pub fn finish<Request: Serialize>(mut self, request: &Request) -> anyhow::Result<Container> {
        let mut helper = self.helper.take().context("the create helper was already used")?;
        let request = encode(request);
        let mut stdin = helper.stdin.take().context("the create helper's stdin")?;
        let reply_pipe: OwnedFd = helper.stdout.take().context("the create helper's stdout")?.into();
        // The helper reads its whole request before it does anything else; a request that cannot
        // be encoded closes its stdin empty, which ends it.
        let written = match &request {
            Ok(request) => stdin.write_all(request),
            Err(_) => Ok(()),
        };
        drop(stdin);
        // The shim's reaper may collect the helper first (ECHILD here): it has exited either way.
        let status = helper.wait().ok();
        request.context("encoding the create request")?;
        written.context("sending the create request to the helper")?;
        let reply = read_reply(&reply_pipe).with_context(|| match status {
            Some(status) => format!("the create helper ended ({status}) without a reply"),
            None => "the create helper ended without a reply".to_owned(),
        })?;
        match reply {
            Reply::Failed(err) => Err(anyhow!(err)),
            Reply::Created { pid, state_dir } => {
                let youki = YoukiContainer::load(state_dir.clone()).with_context(|| {
                    format!("loading the container's state from {}", state_dir.display())
                })?;
                Ok(Container {
                    youki: Mutex::new(youki),
                    pid,
                })
            }
        }
    }
}

impl Drop for PendingCreate {
    fn drop(&mut self) {
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
    }
}

/// Encodes a message between the shim and its helper, as maps with named fields: the structs
/// of `oci-spec` leave out their absent optional fields, which the positional encoding cannot
/// decode.
fn encode<T: Serialize + ?Sized>(message: &T) -> anyhow::Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(message)?)
}

/// Reads the helper's framed reply (a little-endian u32 length, then the encoded [`Reply`]) from
/// the pipe, without waiting: the helper has exited, so the reply is in the pipe or nowhere (the
/// container's init, forked by the helper, still holds the pipe's write end until it starts).
fn read_reply(pipe: &OwnedFd) -> anyhow::Result<Reply> {
    let flags = rustix::fs::fcntl_getfl(pipe)?;
    rustix::fs::fcntl_setfl(pipe, flags | rustix::fs::OFlags::NONBLOCK)?;
    let mut file = std::fs::File::from(pipe.as_fd().try_clone_to_owned()?);
    let mut len = [0u8; 4];
    file.read_exact(&mut len).context("reading the reply's length")?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_REPLY_ERROR + 4096 {
        bail!("the reply is {len} bytes long");
    }
    let mut body = vec![0u8; len];
    file.read_exact(&mut body).context("reading the reply")?;
    rmp_serde::from_slice(&body).context("decoding the reply")
}

/// The create helper's side: reads the request from stdin, points stdin and stdout at
/// `/dev/null` (the container's init, forked from this process, inherits them when the container
/// has no stdio of its own), calls `create` and sends back its outcome on what was stdout.
/// Returns the process's exit code.
pub fn serve_create_request<Request, F>(create: F) -> i32
where
    Request: for<'de> Deserialize<'de>,
    F: FnOnce(Request) -> anyhow::Result<YoukiContainer>,
{
    let reply_to = match take_stdio() {
        Ok(taken) => taken,
        Err(err) => {
            eprintln!("create helper: {err:#}");
            return 2;
        }
    };
    let (request, reply_to) = reply_to;
    let decoded = rmp_serde::from_slice::<Request>(&request).context("decoding the create request");
    // wasmbox: the encoded request holds a copy of an artifact's Wasm layers, which the
    // container's init (forked below) kept for its whole life.
    drop(request);
    let reply = decoded
        .and_then(create)
        .and_then(|container| {
            let pid = container.pid().context("the created container has no PID")?;
            Ok(Reply::Created {
                pid: pid.as_raw(),
                state_dir: container.root.clone(),
            })
        })
        .unwrap_or_else(|err| {
            let mut text = format!("{err:#}");
            if text.len() > MAX_REPLY_ERROR {
                let mut end = MAX_REPLY_ERROR;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            Reply::Failed(text)
        });
    let sent = encode(&reply)
        .and_then(|body| {
            let mut file = std::fs::File::from(reply_to);
            file.write_all(&(body.len() as u32).to_le_bytes())?;
            file.write_all(&body)?;
            Ok(())
        });
    match (sent, reply) {
        (Err(err), _) => {
            eprintln!("create helper: sending the reply: {err:#}");
            2
        }
        (Ok(()), Reply::Created { .. }) => 0,
        (Ok(()), Reply::Failed(_)) => 1,
    }
}

/// Reads all of stdin, keeps stdout (the reply pipe) on a new descriptor and points both at
/// `/dev/null`.
fn take_stdio() -> anyhow::Result<(Vec<u8>, OwnedFd)> {
    let mut request = vec![];
    std::io::stdin()
        .lock()
        .read_to_end(&mut request)
        .context("reading the create request")?;
    let stdout = std::io::stdout();
    let reply_to = stdout
        .as_fd()
        .try_clone_to_owned()
        .context("keeping the reply pipe")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    rustix::stdio::dup2_stdin(&null).context("pointing stdin at /dev/null")?;
    rustix::stdio::dup2_stdout(&null).context("pointing stdout at /dev/null")?;
    Ok((request, reply_to))
}

// Wrap the youki's Container methods that we use
impl Container {
    fn youki(&self) -> MutexGuard<'_, YoukiContainer> {
        self.youki.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn pid(&self) -> anyhow::Result<i32> {
        Ok(self.pid)
    }

    pub fn start(&self) -> anyhow::Result<()> {
        Ok(self.youki().start()?)
    }

    pub fn kill(&self, signal: u32) -> anyhow::Result<()> {
        let signal = Signal::try_from(signal as i32).context("invalid signal number")?;
        // wasmbox: the init process only, as containerd-shim-runc-v2 signals a task (the rest
        // of its PID namespace ends with it); `all` would freeze and thaw the cgroup, resuming a
        // paused container.
        Ok(self.youki().kill(signal, false)?)
    }

    pub fn delete(&self) -> anyhow::Result<()> {
        Ok(self.youki().delete(true)?)
    }

    // wasmbox additions: ps, pause/resume and metrics, from the container's cgroup.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let pids = cgroup_manager(&self.youki())?
            .get_all_pids()
            .context("listing the processes of the container's cgroup")?;
        Ok(pids.into_iter().map(|pid| pid.as_raw() as u32).collect())
    }

    pub fn pause(&self) -> anyhow::Result<()> {
        Ok(self.youki().pause()?)
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        Ok(self.youki().resume()?)
    }

    /// The container's cgroup figures as containerd's `io.containerd.cgroups.v1.Metrics`.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let stats = cgroup_manager(&self.youki())?
            .stats()
            .context("reading the container's cgroup statistics")?;
        let version = match libcgroups::common::get_cgroup_setup()? {
            CgroupSetup::Unified => CgroupVersion::V2,
            CgroupSetup::Legacy | CgroupSetup::Hybrid => CgroupVersion::V1,
        };
        Ok(from_cgroup_stats(&stats, version))
    }
}

fn cgroup_manager(c: &YoukiContainer) -> anyhow::Result<AnyCgroupManager> {
    Ok(libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: c.spec()?.cgroup_path,
        systemd_cgroup: c.systemd(),
        container_name: c.id().to_string(),
    })?)
}

#[cfg(test)]
mod tests {
    use oci_spec::image::{Descriptor, MediaType};
    use sha256::digest;

    use super::*;

    /// The request holds OCI descriptors, whose optional fields are left out when absent.
    #[test]
    fn messages_with_optional_fields_round_trip() {
        let digest = format!("sha256:{}", digest("layer"));
        let descriptor = Descriptor::new(
            MediaType::Other("application/wasm".to_owned()),
            5,
            digest.parse::<oci_spec::image::Digest>().unwrap(),
        );
        let encoded = encode(&vec![descriptor.clone()]).unwrap();
        let decoded: Vec<Descriptor> = rmp_serde::from_slice(&encoded).unwrap();
        assert_eq!(decoded, vec![descriptor]);
    }
}
