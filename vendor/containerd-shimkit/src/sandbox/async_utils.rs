#![cfg_attr(windows, allow(dead_code))] // this is currently used only for linux

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use private::Sealded;
use tokio::task::JoinHandle;
use tokio::time::timeout;

// A thread local runtime that can be used to run futures to completion.
// It is a current_thread runtime so that it doesn't spawn new threads.
// It is thread local as different threads might want to run futures concurrently.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    // wasmbox: a thread of the blocking pool (a create's helper, a start's release of code)
    // ends 1 s after its last work instead of 10: an idle shim kept it. And 64 I/O events per
    // poll instead of 1024: a shim waits on a few descriptors (its containers' pidfds), and
    // the events buffer (12 KiB at 1024) lives as long as the shim.
    tokio::runtime::Builder::new_multi_thread()
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .max_io_events_per_tick(64)
        .enable_all()
        .build()
        .unwrap()
});

mod private {
    pub trait Sealded {}
    impl<F: Future> Sealded for F {}
}

pub trait AmbientRuntime: Future + Sealded {
    fn block_on(self) -> Self::Output
    where
        Self: Sized,
    {
        RUNTIME.block_on(self)
    }

    #[allow(dead_code, async_fn_in_trait)] // used in tests and with the testing feature
    async fn with_timeout(self, t: Duration) -> Option<Self::Output>
    where
        Self: Sized,
    {
        timeout(t, self).await.ok()
    }

    fn spawn(self) -> JoinHandle<Self::Output>
    where
        Self: Sized + Send + 'static,
        Self::Output: Send + 'static,
    {
        RUNTIME.spawn(self)
    }
}

impl<F: Future> AmbientRuntime for F {}
