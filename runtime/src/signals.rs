//! How the guest's process answers SIGTERM, SIGINT and SIGHUP: it is PID 1 of its PID namespace,
//! where a signal with the default action is ignored, so wasmbox ends it as such a signal ends an
//! ordinary process (exit 128 + signal) — or, for an HTTP server, lets it stop gracefully.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set while an HTTP server stops gracefully on these signals itself (tokio's handler, which
/// runs before this one, has seen the signal).
static GRACEFUL: AtomicBool = AtomicBool::new(false);

extern "C" fn terminate(signal: libc::c_int) {
    if GRACEFUL.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signal) }
}

/// Installs the handlers; call as early as possible (a signal that reaches PID 1 before its
/// handler is installed is discarded by the kernel).
pub fn install_termination_handlers() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing a handler that only reads an atomic and calls an
        // async-signal-safe function.
        unsafe { libc::signal(signal, terminate as *const () as libc::sighandler_t) };
    }
}

/// From now on these signals stop the HTTP server gracefully instead of ending the process:
/// its own handlers (tokio's, chained before this one) take them.
pub fn stop_gracefully() {
    GRACEFUL.store(true, Ordering::SeqCst);
}
