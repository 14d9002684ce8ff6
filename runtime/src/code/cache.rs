//! The node-local cache of compiled code: one file per (module digest, engine key, origin) entry,
//! checked before it is mapped.
//!
//! The cache is a directory of the node, opened by the shim before the container's process is
//! created; every access goes through that directory descriptor (`openat`, `linkat`), so the
//! container's root file system never contains the cache. The container's process uses it while
//! its module is loaded at create time and closes it before any guest code runs (see
//! `docs/security.md`).
//!
//! Entries are named:
//! - `<sha256 of the wasm>-<engine key>.cwasm` (`.ccwasm` for components): code the node
//!   compiled itself. Nothing else is ever stored under such a name.
//! - `<sha256 of the wasm>-<engine key>-image-<sha256 of the code>.cwasm`: code an image shipped,
//!   stored only when the node trusts image code (see [`crate::node`]); found only by a
//!   container whose image ships that very code.
//!
//! An entry is a [`HEADER_LEN`]-byte header (magic, code length, SHA-256 of the code), then the
//! code. It is written to an unnamed temporary file (`O_TMPFILE`; else a random name, so that
//! writers in different PID namespaces never share one) and linked into place whole, so a
//! reader sees no entry or a complete one. Before an entry is mapped its length and checksum are
//! checked; a truncated, zero-filled or damaged entry is removed and compiled again.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

use super::decode::SourceKind;
use super::mapped::MappedCode;

/// The entry header's length: the code starts at this offset, which is a multiple of any page
/// size Linux uses, so that it can be mapped in place.
pub const HEADER_LEN: u64 = 64 * 1024;
const MAGIC: &[u8; 16] = b"wasmbox-code\0\0v1";
/// magic, code length (u64, little endian), SHA-256 of the code.
const HEADER_USED: usize = 16 + 8 + 32;

/// A directory of compiled code, held open by descriptor.
#[derive(Debug)]
pub struct CodeCache {
    dir: OwnedFd,
    /// Where the directory was when it was opened (for messages only).
    origin: PathBuf,
}

/// The name of one cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    name: String,
}

impl CacheKey {
    /// The entry of code the node compiles from wasm whose SHA-256 is `source_hex`.
    pub fn compiled(source_hex: &str, engine_key: &str, kind: SourceKind) -> Self {
        CacheKey { name: format!("{source_hex}-{engine_key}.{}", extension(kind)) }
    }

    /// The entry of code an image shipped for that wasm, whose own SHA-256 is `code_hex`.
    pub fn image(source_hex: &str, engine_key: &str, kind: SourceKind, code_hex: &str) -> Self {
        CacheKey { name: format!("{source_hex}-{engine_key}-image-{code_hex}.{}", extension(kind)) }
    }

    /// The entry's file name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

fn extension(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Module => "cwasm",
        SourceKind::Component => "ccwasm",
    }
}

/// An entry found whole: its code mapped (and checked), its file still open for another mapping.
pub struct Entry {
    file: File,
    len: usize,
    pub mapped: MappedCode,
}

impl Entry {
    /// Maps the same code once more (another engine loads it); closing the entry keeps both.
    pub fn map_again(&self) -> Result<MappedCode> {
        MappedCode::map(self.file.as_fd(), HEADER_LEN, self.len)
    }
}

impl CodeCache {
    /// Opens (creating it if needed, mode 0755) the cache directory at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .with_context(|| format!("creating the compiled-code cache {}", path.display()))?;
        let dir = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("opening the compiled-code cache {}", path.display()))?;
        Ok(CodeCache { dir, origin: path.to_owned() })
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

    /// The entry `key`, mapped after its length and checksum were checked; `None` when there is
    /// none. A damaged entry is removed (and logged), and counts as none.
    pub fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        let file = match rustix::fs::openat(
            &self.dir,
            key.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::NOENT) => return None,
            Err(err) => {
                log::warn!("cache entry {}: {err}", key.as_str());
                return None;
            }
        };
        match check_entry(file) {
            Ok(entry) => Some(entry),
            Err(err) => {
                log::warn!("cache entry {} refused and removed: {err:#}", key.as_str());
                self.remove(key);
                None
            }
        }
    }

    /// Stores `code` as entry `key` (unless a whole entry is there already) and maps it.
    pub fn store(&self, key: &CacheKey, code: &[u8]) -> Result<Entry> {
        ensure!(!code.is_empty(), "no code to store");
        let header = header(code);
        match self.write_unnamed(key, &header, code) {
            Ok(entry) => Ok(entry),
            // No O_TMPFILE on this file system (or no /proc to link it through): a random name.
            Err(err)
                if err.downcast_ref::<rustix::io::Errno>().is_some_and(|e| {
                    [
                        rustix::io::Errno::OPNOTSUPP,
                        rustix::io::Errno::ISDIR,
                        rustix::io::Errno::INVAL,
                        rustix::io::Errno::NOENT,
                    ]
                    .contains(e)
                }) =>
            {
                self.write_named(key, &header, code)
            }
            Err(err) => Err(err),
        }
    }

    /// `O_TMPFILE`, written whole, then linked under its name through `/proc/self/fd`.
    fn write_unnamed(&self, key: &CacheKey, header: &[u8], code: &[u8]) -> Result<Entry> {
        let fd = rustix::fs::openat(
            &self.dir,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let file = write_whole(File::from(fd), header, code).with_context(|| self.writing(key))?;
        let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        match rustix::fs::linkat(rustix::fs::CWD, proc_path.as_str(), &self.dir, key.as_str(), AtFlags::SYMLINK_FOLLOW)
        {
            // Another container linked the same entry first: both are whole and equal.
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(err) => return Err(anyhow::Error::from(err)),
        }
        Ok(Entry { mapped: MappedCode::map(file.as_fd(), HEADER_LEN, code.len())?, len: code.len(), file })
    }

    /// A file with a random name, written whole, then renamed into place.
    fn write_named(&self, key: &CacheKey, header: &[u8], code: &[u8]) -> Result<Entry> {
        let mut random = [0u8; 16];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).context("getrandom")?;
        let tmp_name = format!(".tmp-{}", hex::encode(random));
        let fd = rustix::fs::openat(
            &self.dir,
            tmp_name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )
        .with_context(|| self.writing(key))?;
        let written = write_whole(File::from(fd), header, code).and_then(|file| {
            Ok(rustix::fs::renameat(&self.dir, tmp_name.as_str(), &self.dir, key.as_str()).map(|()| file)?)
        });
        match written {
            Ok(file) => {
                Ok(Entry { mapped: MappedCode::map(file.as_fd(), HEADER_LEN, code.len())?, len: code.len(), file })
            }
            Err(err) => {
                let _ = rustix::fs::unlinkat(&self.dir, tmp_name.as_str(), AtFlags::empty());
                Err(err).with_context(|| self.writing(key))
            }
        }
    }

    fn writing(&self, key: &CacheKey) -> String {
        format!("writing {} in the cache {}", key.as_str(), self.origin.display())
    }

    /// Removes entry `key` (one that could not be used).
    pub fn remove(&self, key: &CacheKey) {
        let _ = rustix::fs::unlinkat(&self.dir, key.as_str(), AtFlags::empty());
    }
}

fn header(code: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_USED);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(code.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(code));
    header
}

fn write_whole(file: File, header: &[u8], code: &[u8]) -> Result<File> {
    file.write_all_at(header, 0)?;
    file.write_all_at(code, HEADER_LEN)?;
    Ok(file)
}

/// Checks an entry's header, length and checksum, and maps its code.
fn check_entry(file: File) -> Result<Entry> {
    let stat = rustix::fs::fstat(&file)?;
    ensure!(
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile,
        "not a regular file"
    );
    let mut header = [0u8; HEADER_USED];
    file.read_exact_at(&mut header, 0).context("truncated: no whole header")?;
    ensure!(&header[..16] == MAGIC, "not a wasmbox cache entry (no magic number)");
    let len = u64::from_le_bytes(header[16..24].try_into()?);
    let size = u64::try_from(stat.st_size).unwrap_or_default();
    if size != HEADER_LEN.saturating_add(len) || len == 0 {
        bail!("truncated or padded: {size} bytes, the header says {}", HEADER_LEN.saturating_add(len));
    }
    let len = usize::try_from(len).context("entry too large")?;
    let mapped = MappedCode::map(file.as_fd(), HEADER_LEN, len)?;
    ensure!(Sha256::digest(mapped.bytes()).as_slice() == &header[24..], "damaged: the code's checksum does not match");
    Ok(Entry { file, len, mapped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::compiled(&"ab".repeat(32), "0000000000000007", SourceKind::Module)
    }

    #[test]
    fn store_then_lookup_then_remove() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = CodeCache::open(&dir.path().join("nested/cache"))?;
        assert!(cache.lookup(&key()).is_none());
        let stored = cache.store(&key(), b"compiled")?;
        assert_eq!(stored.mapped.bytes(), b"compiled");
        let found = cache.lookup(&key()).context("stored entry not found")?;
        assert_eq!(found.mapped.bytes(), b"compiled");
        assert_eq!(found.map_again()?.bytes(), b"compiled");
        // no temporary file is left behind, and the entry is the only file
        let names: Vec<_> = std::fs::read_dir(cache.origin())?.flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from(key().as_str())]);
        // a second writer of the same entry is no error
        cache.store(&key(), b"compiled")?;
        cache.remove(&key());
        assert!(cache.lookup(&key()).is_none());
        Ok(())
    }

    #[test]
    fn a_random_name_serves_where_there_is_no_tmpfile() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = CodeCache::open(dir.path())?;
        let header = header(b"code");
        cache.write_named(&key(), &header, b"code")?;
        assert_eq!(cache.lookup(&key()).context("entry")?.mapped.bytes(), b"code");
        Ok(())
    }

    #[test]
    fn damaged_entries_are_removed_not_mapped() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = CodeCache::open(dir.path())?;
        let path = dir.path().join(key().as_str());
        let code = vec![7u8; 10_000];
        let whole = |cache: &CodeCache| -> Result<Vec<u8>> {
            cache.store(&key(), &code)?;
            Ok(std::fs::read(&path)?)
        };
        let good = whole(&cache)?;
        let damages: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 100].to_vec()),
            ("truncated header", good[..20].to_vec()),
            ("zero-filled", vec![0u8; good.len()]),
            ("bit flipped", {
                let mut bytes = good.clone();
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                bytes
            }),
            ("padded", [good.as_slice(), b"more"].concat()),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in damages {
            std::fs::write(&path, &bytes)?;
            assert!(cache.lookup(&key()).is_none(), "{what} entry was used");
            assert!(!path.exists(), "{what} entry was not removed");
        }
        Ok(())
    }

    #[test]
    fn keys_of_compiled_and_image_code_never_meet() {
        let hex = "ab".repeat(32);
        let compiled = CacheKey::compiled(&hex, "e", SourceKind::Module);
        let image = CacheKey::image(&hex, "e", SourceKind::Module, &"cd".repeat(32));
        assert_ne!(compiled, image);
        assert!(image.as_str().contains("-image-"));
        assert_ne!(compiled, CacheKey::compiled(&hex, "e", SourceKind::Component));
        assert_ne!(compiled, CacheKey::compiled(&hex, "f", SourceKind::Module));
    }
}
