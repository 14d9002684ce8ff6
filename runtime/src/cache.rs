//! The node-local cache of compiled code: one file per (module digest, engine) pair, loaded by mmap.
//!
//! The cache is a host directory opened *before* the container's process pivots into its root
//! file system: the shim opens it at start-up, the open descriptor is inherited by the
//! container's init process, and every later access goes through `openat`/`renameat` on it.
//! So the guest's root file system never needs to contain the cache, and the compiled code of
//! one image is one file that every container of that image maps, sharing its pages.
//!
//! Entries are named `<sha256 of the wasm bytes>-<engine compatibility hash>.<cwasm|ccwasm>`.
//! They are written to a temporary name and renamed into place, so a reader sees either no
//! entry or a whole one. An entry that wasmtime refuses (other version, other CPU features,
//! damaged) is logged, removed and compiled again. Notes named `<code digest>.verified` remember
//! which precompiled files of images had their digest checked (see `precompiled`), by the
//! file's size, modification time and inode, so that they are not hashed on every start.

use std::ffi::CString;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// A directory of compiled code, held open by descriptor.
#[derive(Debug)]
pub struct CodeCache {
    dir: OwnedFd,
    /// Where the directory was when it was opened (for messages only).
    origin: PathBuf,
}

/// The name of one cache entry, and the digest of the wasm it holds the code of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    name: String,
    source_digest: String,
}

impl CacheKey {
    /// The key of `wasm` compiled by an engine whose compatibility hash is `engine_hash`.
    pub fn new(wasm: &[u8], component: bool, engine_hash: u64) -> Self {
        let digest = hex::encode(Sha256::digest(wasm));
        let ext = if component { "ccwasm" } else { "cwasm" };
        CacheKey {
            name: format!("{digest}-{engine_hash:016x}.{ext}"),
            source_digest: format!("sha256:{digest}"),
        }
    }

    /// The entry's file name.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// `sha256:<hex>` of the wasm bytes.
    pub fn source_digest(&self) -> &str {
        &self.source_digest
    }
}

/// The name of the note that a file with this code digest was verified.
fn verified_name(code_digest: &str) -> String {
    format!("{}.verified", code_digest.trim_start_matches("sha256:"))
}

/// Hashes wasmtime's `precompile_compatibility_hash` into the number used in cache keys.
pub fn engine_hash(engine: &wasmtime::Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // The shim's own version guards against a hasher that differs between builds.
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hasher.finish()
}

impl CodeCache {
    /// Opens (creating it if needed) the cache directory at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the compiled-code cache {}", path.display()))?;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .context("cache path contains a NUL byte")?;
        // SAFETY: plain open(2) on a NUL-terminated path.
        let fd = unsafe {
            libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("opening the compiled-code cache {}", path.display()));
        }
        Ok(CodeCache {
            // SAFETY: `fd` was just returned by open(2) and is owned by nobody else.
            dir: unsafe { OwnedFd::from_raw_fd(fd) },
            origin: path.to_owned(),
        })
    }

    /// Another handle on the same directory (a duplicated descriptor).
    pub fn try_clone(&self) -> Result<Self> {
        Ok(CodeCache {
            dir: self.dir.try_clone().context("duplicating the cache descriptor")?,
            origin: self.origin.clone(),
        })
    }

    /// Where the cache directory was on the host when it was opened.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// A path that reaches entry `key` through the open descriptor, from any mount namespace
    /// that has `/proc` (a container's init process does).
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{}", self.dir.as_raw_fd(), key.as_str()))
    }

    /// Whether entry `key` exists.
    pub fn contains(&self, key: &CacheKey) -> bool {
        let Ok(name) = CString::new(key.as_str()) else { return false };
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstatat on our directory descriptor with a valid name and out pointer.
        unsafe { libc::fstatat(self.dir.as_raw_fd(), name.as_ptr(), stat.as_mut_ptr(), 0) == 0 }
    }

    /// Writes entry `key` atomically: a temporary file, then a rename.
    pub fn store(&self, key: &CacheKey, compiled: &[u8]) -> Result<()> {
        self.store_named(key.as_str(), compiled)
    }

    /// Remembers that the image file whose identity is `identity` has the digest `code_digest`
    /// (checked just now), so that later loads of the same file need not hash it again.
    pub fn remember_verified(&self, code_digest: &str, identity: &str) -> Result<()> {
        self.store_named(&verified_name(code_digest), identity.as_bytes())
    }

    /// Whether the file whose identity is `identity` was found to have `code_digest` before.
    pub fn was_verified(&self, code_digest: &str, identity: &str) -> bool {
        let path = PathBuf::from(format!("/proc/self/fd/{}/{}", self.dir.as_raw_fd(), verified_name(code_digest)));
        std::fs::read(path).is_ok_and(|recorded| recorded == identity.as_bytes())
    }

    /// Writes the file `name` atomically: a temporary file, then a rename.
    fn store_named(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp_name = format!(".{name}.{}.tmp", std::process::id());
        let tmp = CString::new(tmp_name.as_str())?;
        let dest = CString::new(name)?;
        let dirfd = self.dir.as_raw_fd();
        // SAFETY: openat(2) relative to our directory descriptor.
        let fd = unsafe {
            libc::openat(
                dirfd,
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!("creating {tmp_name} in the cache {}", self.origin.display())
            });
        }
        // SAFETY: `fd` is a fresh descriptor that the File now owns.
        let mut file = unsafe { File::from_raw_fd(fd) };
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        drop(file);
        // SAFETY: renameat(2)/unlinkat(2) on names in our directory.
        let renamed = written.is_ok()
            && unsafe { libc::renameat(dirfd, tmp.as_ptr(), dirfd, dest.as_ptr()) } == 0;
        if !renamed {
            let err = std::io::Error::last_os_error();
            unsafe { libc::unlinkat(dirfd, tmp.as_ptr(), 0) };
            written.with_context(|| format!("writing {tmp_name}"))?;
            bail!("renaming {tmp_name} into place in {}: {err}", self.origin.display());
        }
        Ok(())
    }

    /// Removes entry `key` (an entry that could not be loaded).
    pub fn remove(&self, key: &CacheKey) {
        if let Ok(name) = CString::new(key.as_str()) {
            // SAFETY: unlinkat(2) on a name in our directory.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_contains_then_remove() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = CodeCache::open(&dir.path().join("nested/cache"))?;
        let key = CacheKey::new(b"\0asm\x01\0\0\0", false, 7);
        assert!(key.as_str().ends_with("-0000000000000007.cwasm"), "{key:?}");
        assert!(!cache.contains(&key));
        cache.store(&key, b"compiled")?;
        assert!(cache.contains(&key));
        assert_eq!(std::fs::read(cache.entry_path(&key))?, b"compiled");
        // no temporary file is left behind
        assert_eq!(std::fs::read_dir(cache.origin())?.count(), 1);
        cache.remove(&key);
        assert!(!cache.contains(&key));
        Ok(())
    }

    #[test]
    fn key_depends_on_bytes_kind_and_engine() {
        let a = CacheKey::new(b"a", false, 1);
        assert_ne!(a, CacheKey::new(b"b", false, 1));
        assert_ne!(a, CacheKey::new(b"a", true, 1));
        assert_ne!(a, CacheKey::new(b"a", false, 2));
        assert_eq!(a, CacheKey::new(b"a", false, 1));
    }
}
