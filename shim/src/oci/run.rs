//! `run`: `create` then `start`; in the foreground (without `--detach`) waits for the container's
//! init, forwarding the signals this process gets to it, deletes the container (unless `--keep`)
//! and exits with the init's status.

use anyhow::{Context, Result};
use libcontainer::container::Container;
use liboci_cli::Run;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::Global;
use super::create::{InitRequest, create_init};

pub fn run(args: Run, global: &Global) -> Result<i32> {
    if !args.detach && !args.no_subreaper {
        // The init is forked by an intermediate process that exits: be the one it is re-parented
        // to, so that its exit status reaches this process.
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer and changes only this process.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
            return Err(std::io::Error::last_os_error()).context("becoming a subreaper");
        }
    }
    let request = InitRequest {
        id: &args.container_id,
        bundle: &args.bundle,
        pid_file: args.pid_file.as_ref(),
        console_socket: args.console_socket.as_ref(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        detach: args.detach,
    };
    let mut container = create_init(&request, global)?;
    if args.detach {
        container.start().with_context(|| format!("starting container {}", args.container_id))?;
        return Ok(0);
    }
    // From here on signals wait in a queue to be forwarded (the init, forked already, keeps the
    // mask it was created with).
    let signals = SigSet::all();
    signals.thread_block().context("blocking signals")?;
    container.start().with_context(|| format!("starting container {}", args.container_id))?;
    let status = wait_forwarding_signals(&container, signals);
    if !args.keep {
        container.delete(true).with_context(|| format!("deleting container {}", args.container_id))?;
    }
    status
}

/// Waits for the container's init to exit, sending it every signal this process gets (but
/// SIGCHLD); reaps any other child. Returns the init's exit status (128 + signal if killed).
fn wait_forwarding_signals(container: &Container, signals: SigSet) -> Result<i32> {
    let init = container.pid().context("the container has no init process")?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC).context("creating a signalfd")?;
    loop {
        if let Some(status) = reap(init)? {
            return Ok(status);
        }
        let Some(info) = signal_fd.read_signal().context("reading a signal")? else { continue };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else { continue };
        if signal != Signal::SIGCHLD {
            log::debug!("forwarding {signal} to the init ({init})");
            let _ = kill(init, signal);
        }
    }
}

/// Reaps exited children without waiting; `Some` with the init's status once it has exited.
fn reap(init: Pid) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid == init => return Ok(Some(status)),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == init => return Ok(Some(128 + signal as i32)),
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(err) => return Err(err).context("waiting for the container's processes"),
        }
    }
}
