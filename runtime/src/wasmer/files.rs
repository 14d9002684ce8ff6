//! A preopened host directory as a Wasmer guest sees it: wasmer-wasix's host file system rooted
//! at the directory, with one change to how opens fail.
//!
//! wasmer-wasix opens every regular file for reading and writing at once (one handle per file,
//! shared by all of the guest's descriptors of it) and falls back to the mode the guest asked for
//! only when that open is refused with a permission error. A read-only mount refuses it with
//! `EROFS`, which its host file system reports as an unknown error, so a guest could not even read
//! a file of a read-only mount through a preopen that allows writing. Here a write-mode open that
//! fails that way is reported as refused, so that the fallback runs; what the guest may write is
//! still decided by the preopen's rights and by the kernel.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use wasmer_wasix::virtual_fs::host_fs::FileSystem as HostFileSystem;
use wasmer_wasix::virtual_fs::{
    FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig, ReadDir, Result, VirtualFile,
};

/// One preopened directory of the host (inside the container: of its root file system).
#[derive(Debug)]
pub struct HostDir {
    inner: HostFileSystem,
}

impl HostDir {
    /// The directory `root`; the guest's `/` in this file system is `root`.
    pub fn new(tokio: tokio::runtime::Handle, root: &Path) -> Result<Self> {
        Ok(HostDir { inner: HostFileSystem::new(tokio, root)? })
    }
}

impl FileSystem for HostDir {
    fn readlink(&self, path: &Path) -> Result<PathBuf> {
        self.inner.readlink(path)
    }

    fn read_dir(&self, path: &Path) -> Result<ReadDir> {
        self.inner.read_dir(path)
    }

    fn create_dir(&self, path: &Path) -> Result<()> {
        self.inner.create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        self.inner.remove_dir(path)
    }

    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        self.inner.rename(from, to)
    }

    fn metadata(&self, path: &Path) -> Result<Metadata> {
        self.inner.metadata(path)
    }

    fn symlink_metadata(&self, path: &Path) -> Result<Metadata> {
        self.inner.symlink_metadata(path)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.inner.remove_file(path)
    }

    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for HostDir {
    fn open(&self, path: &Path, conf: &OpenOptionsConfig) -> Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        let mut options = self.inner.new_open_options();
        options.options(conf.clone());
        match options.open(path) {
            // `EROFS` (and any errno wasmer-wasix has no name for) on a write-mode open.
            Err(FsError::UnknownError) if conf.write || conf.append || conf.truncate || conf.create => {
                Err(FsError::PermissionDenied)
            }
            other => other,
        }
    }
}
