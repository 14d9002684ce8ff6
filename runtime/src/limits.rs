//! Limits on what guests may take: linear memory within the container's memory limit, shared by
//! every store of the container (the one store of a command, or every HTTP request at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::anyhow;
use wasmtime::ResourceLimiter;

use crate::error::{FailureKind, RunError};

/// Memory the process needs besides the guests' linear memories: the shim library, wasmtime,
/// the compiled code. Taken off the container's limit, so that the kernel's OOM killer is not
/// what stops a growing guest.
pub const HOST_HEADROOM: u64 = 24 << 20;

/// The bytes of linear memory all stores of a container may use together.
#[derive(Debug)]
pub struct MemoryBudget {
    /// `None`: no limit.
    limit: Option<usize>,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// The budget of a container whose cgroup memory limit is `container_limit`.
    pub fn for_container(container_limit: Option<u64>) -> Arc<Self> {
        let limit = container_limit
            .map(|limit| usize::try_from(limit.saturating_sub(HOST_HEADROOM).max(1 << 20)).unwrap_or(usize::MAX));
        Arc::new(MemoryBudget { limit, used: AtomicUsize::new(0) })
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Bytes in use by all stores now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget if they fit.
    fn take(&self, bytes: usize) -> bool {
        let Some(limit) = self.limit else {
            self.used.fetch_add(bytes, Ordering::Relaxed);
            return true;
        };
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// One store's share of a [`MemoryBudget`]: what its memories took is given back when the store
/// (and so this limiter) is dropped.
///
/// A refused `memory.grow` returns -1 to the guest, which may handle it; the refusal is
/// remembered so that a trap that follows can be reported as the memory limit being hit.
#[derive(Debug)]
pub struct MemoryLimiter {
    budget: Arc<MemoryBudget>,
    /// Bytes this store's memories hold.
    taken: usize,
    /// The size of a growth that was refused, if one was.
    pub refused: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        MemoryLimiter { budget, taken: 0, refused: None }
    }

    /// The container-wide limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.budget.limit
    }

    /// Says so in a trap's error when it followed a refused `memory.grow`: the guest ran out of
    /// its memory limit.
    pub fn explain_trap(&self, mut err: RunError) -> RunError {
        if let (FailureKind::Trap, Some(refused), Some(limit)) = (err.kind, self.refused, self.limit()) {
            err.error = anyhow!(
                "{} (the container's memory limit was hit: growing linear memory to {refused} bytes was refused, the guest may use {limit})",
                err.error
            );
        }
        err
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.budget.give_back(self.taken);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if self.budget.take(more) {
            self.taken += more;
            return Ok(true);
        }
        log::info!(
            "memory.grow from {current} to {desired} bytes refused: the guests' memories hold {} of {} bytes",
            self.budget.used(),
            self.budget.limit.unwrap_or_default()
        );
        self.refused = Some(desired);
        Ok(false)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memories_of_one_store_add_up() -> wasmtime::Result<()> {
        let budget = MemoryBudget::for_container(Some(HOST_HEADROOM + 10 * MIB as u64));
        let mut limiter = MemoryLimiter::new(budget.clone());
        assert!(limiter.memory_growing(0, 6 * MIB, None)?);
        // a second memory of the same store: 6 + 6 > 10
        assert!(!limiter.memory_growing(0, 6 * MIB, None)?);
        assert_eq!(limiter.refused, Some(6 * MIB));
        assert!(limiter.memory_growing(0, 4 * MIB, None)?);
        assert_eq!(budget.used(), 10 * MIB);
        drop(limiter);
        assert_eq!(budget.used(), 0);
        Ok(())
    }

    #[test]
    fn stores_share_the_containers_budget() -> wasmtime::Result<()> {
        let budget = MemoryBudget::for_container(Some(HOST_HEADROOM + 10 * MIB as u64));
        let mut first = MemoryLimiter::new(budget.clone());
        let mut second = MemoryLimiter::new(budget.clone());
        assert!(first.memory_growing(0, 8 * MIB, None)?);
        assert!(!second.memory_growing(0, 8 * MIB, None)?, "two requests together may not exceed the limit");
        drop(first);
        assert!(second.memory_growing(0, 8 * MIB, None)?, "a finished request gives its memory back");
        Ok(())
    }

    #[test]
    fn no_limit_allows_everything() -> wasmtime::Result<()> {
        let mut limiter = MemoryLimiter::new(MemoryBudget::for_container(None));
        assert!(limiter.memory_growing(0, usize::MAX / 2, None)?);
        Ok(())
    }
}
