//! How the guest's process answers SIGTERM, SIGINT and SIGHUP: it is PID 1 of its PID namespace,
//! where a signal with the default action is ignored, so wasmbox ends it as such a signal ends an
//! ordinary process (exit 128 + signal) — or, for an HTTP server, lets it stop gracefully.
//!
//! The handlers are wasmbox's own, not tokio's: tokio's signal support keeps a table of every
//! signal number in each process that builds a runtime with I/O (about 23 KiB of heap in every
//! container's init and shim), so wasmbox builds tokio without it.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the pipe that tells a gracefully stopping HTTP server that SIGTERM or SIGINT
/// came; -1 until [`stop_gracefully`].
static STOP_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn terminate(signal: libc::c_int) {
    let stop_pipe = STOP_PIPE.load(Ordering::SeqCst);
    if stop_pipe < 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) }
    }
    // A server stops on SIGTERM and SIGINT, and ignores SIGHUP.
    if signal != libc::SIGHUP {
        let byte = signal as u8;
        // SAFETY: write is async-signal-safe; the pipe is non-blocking, so a full pipe (a server
        // already told to stop) drops the byte instead of blocking the handler.
        unsafe { libc::write(stop_pipe, (&raw const byte).cast(), 1) };
    }
}

/// Installs the handlers; call as early as possible (a signal that reaches PID 1 before its
/// handler is installed is discarded by the kernel).
pub fn install_termination_handlers() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing a handler that only reads an atomic and calls async-signal-safe
        // functions.
        unsafe { libc::signal(signal, terminate as *const () as libc::sighandler_t) };
    }
}

/// From now on SIGTERM and SIGINT stop the HTTP server gracefully instead of ending the process
/// (and SIGHUP is ignored): returns the read end of a pipe that gets a byte for each of them.
/// The process never has the default disposition meanwhile, which would discard the signal
/// (PID 1).
pub fn stop_gracefully() -> io::Result<OwnedFd> {
    let (reader, writer) = io::pipe()?;
    let writer = OwnedFd::from(writer);
    // SAFETY: F_GETFL/F_SETFL on a descriptor this function owns.
    let flags = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The write end lives as long as the process: the handler may run at any time.
    let previous = STOP_PIPE.swap(writer.into_raw_fd(), Ordering::SeqCst);
    if previous >= 0 {
        // SAFETY: the previous write end was this module's alone, and the handler now writes to
        // the new one.
        unsafe { libc::close(previous) };
    }
    Ok(reader.into())
}
