//! What a long-lived process keeps mapped of the files it runs (wasmbox addition): the code that
//! only setting a container up needed is let go once the container runs.
//!
//! A container's init (cloned from the create helper) runs libcontainer's set-up, reads the
//! settings and maps or compiles the guest's code; the shim execs the helper, answers containerd
//! and sends events. Every page of code they touched stays mapped (the kernel maps 64 KiB around
//! each page fault): about 16 MiB of the helper's binary in each init, although an idle guest
//! then needs a fraction of it. Those pages are the node's page cache, shared by every such
//! process, so they cost the node little, but they are counted in every process's resident set
//! (RSS) and in its proportional share (PSS).
//!
//! The shim calls [`release_unmodified_code`] once no call came from containerd for
//! [`SETTLED_AFTER`] (after a start, and again after any later call: a call maps the code that
//! answers it); wasmbox's sandbox calls it in the init once the guest has run that long. It drops the process's mappings of read-only file pages that it never
//! wrote (`MADV_DONTNEED` on pages that hold exactly the file's contents): its binary's code and
//! constants, the shared libraries'. Nothing is lost: the page cache keeps them, and the next use
//! of a page maps it again from there. A page holding a private copy (data the dynamic linker
//! relocated, then made read-only) is kept, since dropping it would bring back the file's
//! original bytes: in a mapping with such pages, `/proc/self/pagemap` tells the file pages apart.

use std::os::raw::c_void;

use std::time::Duration;

use anyhow::{Context, Result};
use procfs::process::{MMPermissions, MMapPath, MemoryMap, PageInfo, Process};

/// How long after a container's start its processes let go of the code its set-up needed: by
/// then the shim has answered the calls that follow a start, and a guest still running (a server,
/// a worker, an idle guest) has touched what it needs. A short run ends before and is not delayed.
pub const SETTLED_AFTER: Duration = Duration::from_secs(1);

/// Drops this process's mappings of read-only file pages that it did not modify; returns the
/// bytes that were resident in them. Logs nothing: the caller says what it did.
pub fn release_unmodified_code() -> Result<u64> {
    let released = drop_unmodified_file_pages();
    // Reading the maps filled the heap with short-lived buffers: give their pages back too.
    // SAFETY: malloc_trim only releases free memory of the allocator; no pointer is invalidated.
    unsafe { libc::malloc_trim(0) };
    released
}

fn drop_unmodified_file_pages() -> Result<u64> {
    let me = Process::myself().context("opening /proc/self")?;
    let maps = me.smaps().context("reading /proc/self/smaps")?;
    let page = procfs::page_size();
    let mut pagemap = None;
    let mut released = 0;
    for map in maps.iter().filter(|map| is_read_only_file(map)) {
        let stat = |key: &str| map.extension.map.get(key).copied();
        let (Some(resident), Some(private)) = (stat("Rss"), stat("Anonymous")) else { continue };
        if resident == 0 {
            continue;
        }
        let (start, end) = map.address;
        if private == 0 {
            dont_need(start, end)?;
            released += resident;
            continue;
        }
        // Some pages are private copies: drop the runs of pages that are the file's.
        let pagemap = match &mut pagemap {
            Some(pagemap) => pagemap,
            None => pagemap.insert(me.pagemap().context("opening /proc/self/pagemap")?),
        };
        let first = (start / page) as usize;
        let pages = pagemap
            .get_range_info(first..(end / page) as usize)
            .context("reading /proc/self/pagemap")?;
        let mut run: Option<u64> = None;
        for (index, info) in pages.iter().enumerate() {
            let address = start + index as u64 * page;
            let file_page = matches!(info, PageInfo::MemoryPage(flags)
                if flags.contains(procfs::process::MemoryPageFlags::PRESENT)
                    && flags.contains(procfs::process::MemoryPageFlags::FILE));
            match (file_page, run) {
                (true, None) => run = Some(address),
                (false, Some(run_start)) => {
                    dont_need(run_start, address)?;
                    released += address - run_start;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(run_start) = run {
            dont_need(run_start, end)?;
            released += end - run_start;
        }
    }
    Ok(released)
}

/// How much of the calling thread's stack below its current frame [`release_stack_below_here`]
/// keeps: room for the calls it makes to do it, and more.
const STACK_MARGIN: u64 = 8 << 10;

/// Drops the pages of the calling thread's stack that lie more than [`STACK_MARGIN`] below its
/// current frame: what deeper calls used and no frame holds any more (for an init's main thread,
/// which only waits for its guest once it runs: libcontainer's set-up of the container and the
/// loading of the guest, about 28 KiB, and the create helper's before them). Returns the size
/// of the range let go. Call it from a frame that the thread does not return from while it runs
/// shallow calls.
pub fn release_stack_below_here() -> Result<u64> {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as u64;
    let maps = Process::myself().context("opening /proc/self")?.maps().context("reading /proc/self/maps")?;
    let Some(stack) = maps.iter().find(|map| map.address.0 <= here && here < map.address.1) else {
        anyhow::bail!("no mapping holds the stack at {here:#x}");
    };
    let page = procfs::page_size();
    let end = here.saturating_sub(STACK_MARGIN) / page * page;
    let start = stack.address.0;
    if end <= start {
        return Ok(0);
    }
    // SAFETY: `start..end` is the part of this thread's stack mapping more than STACK_MARGIN below
    // the frame of this function: the stack grows down, so no live frame, no variable and no
    // red zone is there (the calls below made from here use a few hundred bytes). MADV_DONTNEED
    // on this private anonymous memory frees the pages; a later, deeper call finds zeroed pages,
    // as on a fresh stack.
    let done = unsafe { libc::madvise(start as *mut c_void, (end - start) as usize, libc::MADV_DONTNEED) };
    if done != 0 {
        return Err(std::io::Error::last_os_error()).context("madvise(MADV_DONTNEED) on the stack");
    }
    Ok(end - start)
}

/// A mapping of a regular file (not a device) that this process cannot write through.
fn is_read_only_file(map: &MemoryMap) -> bool {
    matches!(&map.pathname, MMapPath::Path(path) if !path.starts_with("/dev/"))
        && !map.perms.contains(MMPermissions::WRITE)
}

/// Drops the page-table entries of `start..end`, pages of a read-only file mapping that hold the
/// file's own bytes.
fn dont_need(start: u64, end: u64) -> Result<()> {
    // SAFETY: the range is part of a read-only mapping of a regular file, and every page in it is
    // the file's (no private copy): MADV_DONTNEED only removes page-table entries, and the next
    // access maps the same bytes again from the page cache. No Rust object is changed.
    let done = unsafe { libc::madvise(start as *mut c_void, (end - start) as usize, libc::MADV_DONTNEED) };
    if done != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("madvise(MADV_DONTNEED) on {start:#x}-{end:#x}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `depth` KiB of stack, one KiB a frame; returns a sum so that nothing is optimised out.
    #[inline(never)]
    fn deep(depth: u32) -> u64 {
        let mut block = [0u8; 1024];
        block[depth as usize % 1024] = depth as u8;
        let block = std::hint::black_box(block);
        if depth == 0 { 0 } else { u64::from(block[depth as usize % 1024]) + deep(depth - 1) }
    }

    /// Pages of `start..end` that are resident (`mincore`).
    fn resident_pages(start: u64, end: u64) -> usize {
        let page = procfs::page_size();
        let pages = ((end - start) / page) as usize;
        let mut residency = vec![0u8; pages];
        // SAFETY: the range is mapped (part of this thread's stack) and `residency` has a byte for
        // each of its pages.
        let done = unsafe { libc::mincore(start as *mut c_void, (end - start) as usize, residency.as_mut_ptr()) };
        assert_eq!(done, 0, "mincore: {}", std::io::Error::last_os_error());
        residency.iter().filter(|byte| *byte & 1 == 1).count()
    }

    #[test]
    fn a_thread_lets_go_of_the_stack_its_deeper_calls_used_and_can_use_it_again() {
        std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(|| {
                let marker = 0u8;
                let here = std::hint::black_box(&marker) as *const u8 as u64;
                let page = procfs::page_size();
                // 1 MiB below this frame, from 64 KiB down, were written by `deep`.
                let (start, end) = ((here - (1 << 20)) / page * page, (here - (64 << 10)) / page * page);
                assert_eq!(deep(1100), (0..=1100u64).map(|d| d % 256).sum::<u64>());
                let before = resident_pages(start, end);
                let released = release_stack_below_here().expect("releasing the stack");
                let after = resident_pages(start, end);
                assert!(before as u64 * page >= 900 << 10, "{before} pages resident before");
                assert!(released >= 1 << 20, "released {released} bytes");
                assert_eq!(after, 0, "{after} of {before} pages still resident");
                // Deeper calls work again, on fresh pages.
                assert_eq!(deep(1100), (0..=1100u64).map(|d| d % 256).sum::<u64>());
            })
            .expect("a thread")
            .join()
            .expect("the thread ended well");
    }
}
