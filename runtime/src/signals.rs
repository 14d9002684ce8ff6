//! How the guest's process answers SIGTERM, SIGINT and SIGHUP: it is PID 1 of its PID namespace,
//! where a signal with the default action is ignored, so wasmbox ends it as such a signal ends an
//! ordinary process (exit 128 + signal) — or, for an HTTP server, lets it stop gracefully.
//!
//! The handlers are wasmbox's own, not tokio's: tokio's signal support keeps a table of every
//! signal number in each process that builds a runtime with I/O (about 23 KiB of heap in every
//! container's init and shim), so wasmbox builds tokio without it.

use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the socket pair that tells a gracefully stopping HTTP server that SIGTERM or
/// SIGINT came; -1 until [`stop_gracefully`].
static STOP_SOCKET: AtomicI32 = AtomicI32::new(-1);

extern "C" fn terminate(signal: libc::c_int) {
    let stop_socket = STOP_SOCKET.load(Ordering::SeqCst);
    if stop_socket < 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) }
    }
    // A server stops on SIGTERM and SIGINT, and ignores SIGHUP.
    if signal != libc::SIGHUP {
        let byte = signal as u8;
        // SAFETY: write is async-signal-safe; the socket is non-blocking, so a full one (a server
        // already told to stop) drops the byte instead of blocking the handler.
        unsafe { libc::write(stop_socket, (&raw const byte).cast(), 1) };
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
/// (and SIGHUP is ignored): returns one end of a socket pair that gets a byte for each of them.
/// (A socket pair, not a pipe: both ends stay in this process, and a pipe there would look like
/// a handle from the node, which `security.rs` looks for.) The process never has the default
/// disposition meanwhile, which would discard the signal (PID 1).
pub fn stop_gracefully() -> io::Result<UnixStream> {
    let (reader, writer) = UnixStream::pair()?;
    // A full socket (a server already told to stop) drops the byte instead of blocking the handler.
    writer.set_nonblocking(true)?;
    // The write end lives as long as the process: the handler may run at any time.
    let previous = STOP_SOCKET.swap(OwnedFd::from(writer).into_raw_fd(), Ordering::SeqCst);
    if previous >= 0 {
        // SAFETY: the previous write end was this module's alone, and the handler now writes to
        // the new one.
        unsafe { libc::close(previous) };
    }
    Ok(reader)
}
