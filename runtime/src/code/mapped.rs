//! Compiled code mapped from a file whose descriptor is closed right after mapping.
//!
//! wasmtime's own file loading (`Module::deserialize_file`) keeps the file open for as long as
//! the module lives. In a container that would leave the guest's process a descriptor of a file
//! of the node's code cache, which root in the container could reopen for writing through
//! `/proc/self/fd` and change the code of every container of that module. So the code is mapped
//! here instead (private, read-only: pages are shared through the page cache with every other
//! container that maps the same entry), the descriptor is closed, and wasmtime runs the code in
//! place ([`crate::engine`] makes it executable with `mprotect`). A mapping cannot be reopened
//! through `/proc/self/map_files` without `CAP_SYS_ADMIN` in the node's user namespace.
//!
//! What this gives up: wasmtime maps a module's initial linear memory straight from the `.cwasm`
//! file when it has one; without the file it copies those pages into a memfd of the process. So
//! the initial data of linear memory is private to each container, while its code stays shared.

use std::os::fd::AsFd;
use std::ptr::NonNull;

use anyhow::{Context, Result, ensure};

/// A private read-only mapping of compiled code; unmapped when dropped.
#[derive(Debug)]
pub struct MappedCode {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only memory owned by this value; sharing references to it
// across threads is as safe as sharing a `&[u8]`.
unsafe impl Send for MappedCode {}
// SAFETY: as above.
unsafe impl Sync for MappedCode {}

impl MappedCode {
    /// Maps `len` bytes of `file` from `offset` (a multiple of the page size), privately and
    /// read-only. The caller has checked that the file is at least `offset + len` long.
    pub fn map(file: impl AsFd, offset: u64, len: usize) -> Result<Self> {
        use rustix::mm::{MapFlags, ProtFlags};
        ensure!(len > 0, "no code to map");
        ensure!(
            offset.is_multiple_of(rustix::param::page_size() as u64),
            "code at offset {offset} is not page-aligned"
        );
        // SAFETY: a new private mapping at an address of the kernel's choosing; it aliases no
        // Rust object, and `Drop` unmaps exactly it.
        let base =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::PRIVATE, file, offset) }
                .context("mapping compiled code")?;
        let base = NonNull::new(base.cast::<u8>()).context("mmap returned a null mapping")?;
        Ok(MappedCode { base, len })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `base` points to `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }

    /// The mapping as wasmtime's `deserialize_raw` takes it.
    pub fn as_raw(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.base, self.len)
    }
}

impl Drop for MappedCode {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value made; the code loaded from it was
        // dropped first (see `Program`'s field order).
        if let Err(err) = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) } {
            log::warn!("unmapping compiled code: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_from_an_offset_and_outlives_its_descriptor() -> Result<()> {
        let page = rustix::param::page_size();
        let mut file = tempfile::tempfile()?;
        file.write_all(&vec![0u8; page])?;
        file.write_all(b"code bytes")?;
        let mapped = MappedCode::map(&file, page as u64, 10)?;
        drop(file);
        assert_eq!(mapped.bytes(), b"code bytes");
        assert!(MappedCode::map(tempfile::tempfile()?, 1, 1).is_err());
        Ok(())
    }
}
