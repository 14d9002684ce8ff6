//! Work the shim does once it has been quiet for a while (wasmbox addition): every call from
//! containerd restarts the wait, and the work runs once no call came for that long.
//!
//! containerd-shim-wasm lets go of the code pages the calls mapped (`resident.rs`): after a
//! container's start, and after any later call (a `ctr tasks ps`, containerd's state and
//! metrics calls), so that an idle shim keeps mapped what it runs while idle.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::sandbox::async_utils::AmbientRuntime as _;

struct Work {
    after: Duration,
    work: fn(),
}

static WORK: OnceLock<Work> = OnceLock::new();
/// Counts the calls, so that a waiting timer can tell whether one came while it slept.
static CALLS: AtomicU64 = AtomicU64::new(0);
/// Set while a timer waits for the quiet.
static WAITING: AtomicBool = AtomicBool::new(false);

/// Runs `work` (on a blocking thread, off every reply's path) once no call came for `after`
/// since the last one. The first registration holds; later ones are ignored.
pub fn when_quiet(after: Duration, work: fn()) {
    let _ = WORK.set(Work { after, work });
}

/// Notes a call from containerd (the task service calls it first thing in every method).
pub(crate) fn note_call() {
    CALLS.fetch_add(1, Ordering::SeqCst);
    if WAITING.swap(true, Ordering::SeqCst) {
        return;
    }
    async {
        loop {
            let seen = CALLS.load(Ordering::SeqCst);
            // Registered by the first start, which comes after the first call.
            let after = WORK.get().map_or(Duration::from_secs(1), |work| work.after);
            tokio::time::sleep(after).await;
            if CALLS.load(Ordering::SeqCst) != seen {
                continue;
            }
            WAITING.store(false, Ordering::SeqCst);
            // A call that came between the check and the store found a timer waiting and did
            // not start one: wait for it, unless another timer has started since.
            if CALLS.load(Ordering::SeqCst) != seen && !WAITING.swap(true, Ordering::SeqCst) {
                continue;
            }
            if let Some(work) = WORK.get() {
                let _ = tokio::task::spawn_blocking(work.work).await;
            }
            return;
        }
    }
    .spawn();
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    static RAN: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        RAN.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn the_work_runs_once_after_the_last_of_a_burst_of_calls() {
        when_quiet(Duration::from_millis(200), count);
        for _ in 0..5 {
            note_call();
            std::thread::sleep(Duration::from_millis(50));
        }
        // 250 ms after the first call, 50 after the last: not yet.
        assert_eq!(RAN.load(Ordering::SeqCst), 0);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(RAN.load(Ordering::SeqCst), 1);
        // A later call waits again, and runs it once more.
        note_call();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(RAN.load(Ordering::SeqCst), 2);
        assert!(!WAITING.load(Ordering::SeqCst));
    }
}
