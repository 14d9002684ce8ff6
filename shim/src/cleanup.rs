//! Cleaning up after a shim that died: what `containerd-shim-wasmbox-v1 … delete` does besides answering containerd.
//!
//! containerd runs the shim binary with `delete` when a shim went away without deleting its
//! container (killed with SIGKILL, crashed). `containerd-shim-wasm` only answers with exit
//! status 137 there, which would leave the container's processes, cgroups and libcontainer
//! state behind. This loads the container from libcontainer's state (under the runtime root,
//! `$WASMBOX_STATE_DIR/<namespace>`, by default `/run/containerd/wasmbox/<namespace>`) and
//! force-deletes it: its processes are killed and its cgroups and state removed. The dead
//! shim's socket (named in the bundle's `address` file) is removed too when nothing serves it any
//! more, as containerd-shim-runc-v2 does: a shim killed with SIGKILL cannot remove it.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmbox_runtime::NodeSettings;

/// Deletes the container named by `-id` in `-namespace`, if libcontainer still knows it.
/// Failures are reported on stderr (containerd's log) and otherwise ignored.
pub fn delete_leftover_container(args: &[String]) {
    let flag = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    if let (Some(id), Some(namespace)) = (flag("-id"), flag("-namespace")) {
        let state_dir = NodeSettings::state_dir_from_env().join(&namespace).join(&id);
        if state_dir.exists()
            && let Err(err) = force_delete(&state_dir)
        {
            eprintln!("wasmbox: cleaning up container {id} after its shim went away: {err:#}");
        }
    }
    // After the container's processes are gone: none of them may still hold the socket.
    let bundle = flag("-bundle").map(PathBuf::from).or_else(|| std::env::current_dir().ok());
    if let Some(bundle) = bundle {
        remove_dead_shim_socket(&bundle);
    }
}

/// How long a shim that is shutting down may still listen on its socket.
const SHIM_EXIT_GRACE: Duration = Duration::from_secs(2);

/// Removes the socket named by `BUNDLE/address` (`unix:///run/containerd/s/…`) once no process
/// listens on it: a group's shim that still serves other containers keeps it.
///
/// containerd runs this as soon as its connection to the shim closes, which may be before the
/// shim that closed it has closed its listener; that shim would remove the socket itself, but it
/// finds the name in the bundle, which containerd removes once this is done. So a socket still
/// served is given [`SHIM_EXIT_GRACE`] to stop being served (it was left behind 2 times in 40
/// concurrent runs: `load.rs`).
fn remove_dead_shim_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else { return };
    let Some(path) = address.trim().strip_prefix("unix://").map(PathBuf::from) else { return };
    let deadline = Instant::now() + SHIM_EXIT_GRACE;
    loop {
        let is_socket = std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_socket());
        if !is_socket {
            return;
        }
        if !is_listening(&path) {
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("wasmbox: removing the dead shim's socket {}: {err}", path.display());
            }
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process listens on the Unix socket `path`, read from `/proc/net/unix` (a listening
/// socket's flags are `__SO_ACCEPTCON`, 0x10000). Reading it, unlike connecting, adds nothing to
/// the queue of a listener that no longer accepts, where a later connect would block.
fn is_listening(path: &Path) -> bool {
    const ACCEPTING: u32 = 0x10000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else { return true };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && Path::new(fields[7]) == path
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & ACCEPTING != 0)
    })
}

fn force_delete(state_dir: &Path) -> Result<()> {
    let mut container = libcontainer::container::Container::load(state_dir.to_owned())
        .with_context(|| format!("loading {}", state_dir.display()))?;
    container.delete(true).context("deleting the container")?;
    Ok(())
}
