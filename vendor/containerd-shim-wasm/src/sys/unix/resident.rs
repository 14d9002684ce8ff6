//! What a long-lived process keeps mapped of its own binary (wasmbox addition): the code that
//! only setting a container up needed is let go once the container runs.
//!
//! A container's init (cloned from the create helper) runs libcontainer's set-up, reads the
//! settings and maps or compiles the guest's code; the shim execs the helper, answers containerd
//! and sends events. Every page of the binary they touched stays mapped (the kernel maps 64 KiB
//! around each page fault): about 16 MiB of the helper's binary in each init, although an idle
//! guest then needs a fraction of it. Those pages are the node's page cache, shared by every such
//! process, so they cost the node little, but they are counted in every process's resident set
//! (RSS) and in its proportional share (PSS).
//!
//! [`release_unmodified_code`] drops the process's mappings of its binary's read-only pages that
//! it never wrote (`MADV_DONTNEED` on pages that hold exactly the file's contents). Nothing is
//! lost: the page cache keeps them, and the next use of a page maps it again from there.
//! Mappings holding a private copy of any page (relocated or written data) are left alone, since
//! dropping them would bring back the file's original bytes.

use std::os::raw::c_void;

use anyhow::{Context, Result};
use procfs::process::{MMPermissions, MMapPath, Process};

/// Drops this process's mappings of the pages of its own executable that it did not modify;
/// returns the bytes that were resident in them. Logs nothing: the caller says what it did.
pub fn release_unmodified_code() -> Result<u64> {
    let released = drop_unmodified_mappings();
    // Reading the maps filled the heap with short-lived buffers: give their pages back too.
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is invalidated.
    unsafe { libc::malloc_trim(0) };
    released
}

fn drop_unmodified_mappings() -> Result<u64> {
    let maps = Process::myself()
        .and_then(|me| me.smaps())
        .context("reading /proc/self/smaps")?;
    let marker = release_unmodified_code as *const () as u64;
    let binary = maps
        .iter()
        .find(|map| map.address.0 <= marker && marker < map.address.1)
        .map(|map| (map.dev, map.inode))
        .context("no mapping holds this process's code")?;
    let mut released = 0;
    for map in maps.iter() {
        let unmodified = matches!(map.pathname, MMapPath::Path(_))
            && (map.dev, map.inode) == binary
            && !map.perms.contains(MMPermissions::WRITE)
            && map.extension.map.get("Anonymous") == Some(&0);
        if !unmodified {
            continue;
        }
        let (start, end) = map.address;
        // SAFETY: the range is a whole read-only mapping of this process's executable that holds
        // no private (anonymous) page: MADV_DONTNEED only removes its page-table entries, and the
        // next access maps the same bytes again from the page cache. No Rust object lives in it.
        let done = unsafe { libc::madvise(start as *mut c_void, (end - start) as usize, libc::MADV_DONTNEED) };
        if done != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("madvise(MADV_DONTNEED) on {start:#x}-{end:#x}"));
        }
        released += map.extension.map.get("Rss").copied().unwrap_or(0);
    }
    Ok(released)
}
