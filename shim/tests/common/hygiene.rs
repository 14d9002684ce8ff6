//! What a running container's processes hold open, checked from the node: no way out of the
//! container's root, no handle on the node's code cache, no channel to a process outside.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every descriptor of processes `pids` that breaks the container's confinement, described:
/// - a directory from which `..` leads anywhere but to the container's root (`/proc/PID/root`);
/// - any file or directory of the node's code cache at `cache`;
/// - a FIFO or pipe other than stdio;
/// - a Unix socket whose peer is held by a process that is not one of `pids`.
pub fn host_handles(pids: &[u32], cache: &Path) -> Vec<String> {
    let mut cache_files: HashSet<(u64, u64)> = HashSet::new();
    if let Ok(meta) = std::fs::metadata(cache) {
        cache_files.insert((meta.dev(), meta.ino()));
    }
    for entry in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        if let Ok(meta) = entry.metadata() {
            cache_files.insert((meta.dev(), meta.ino()));
        }
    }
    let sockets = unix_sockets();
    let mut ours: HashSet<u64> = HashSet::new();
    for pid in pids {
        for (_, target) in descriptors(*pid) {
            if let Some(inode) = socket_inode(&target) {
                ours.insert(inode);
            }
        }
    }
    let mut found = Vec::new();
    for pid in pids {
        let root = std::fs::metadata(format!("/proc/{pid}/root/")).map(|m| (m.dev(), m.ino()));
        let Ok(root) = root else { continue };
        for (fd, target) in descriptors(*pid) {
            let path = format!("/proc/{pid}/fd/{fd}");
            let what = format!("pid {pid} fd {fd} -> {target}");
            if let Some(inode) = socket_inode(&target) {
                if let Some(peer) = sockets.iter().find(|s| s.inode == inode).map(|s| s.peer)
                    && peer != 0
                    && !ours.contains(&peer)
                {
                    let holders = sockets.iter().find(|s| s.inode == peer).map(|s| s.users.clone()).unwrap_or_default();
                    found.push(format!("{what}: a socket connected to {holders}"));
                }
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if cache_files.contains(&(meta.dev(), meta.ino())) {
                found.push(format!("{what}: the node's code cache"));
            }
            let kind = meta.file_type();
            use std::os::unix::fs::FileTypeExt;
            if (kind.is_fifo() || target.starts_with("pipe:")) && fd > 2 {
                found.push(format!("{what}: a pipe or FIFO besides stdio"));
            }
            if kind.is_dir() && !leads_to(&path, root) {
                found.push(format!("{what}: a directory outside the container's root"));
            }
        }
    }
    found
}

/// `(fd, readlink target)` of every descriptor of `pid`.
fn descriptors(pid: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?.to_string_lossy().into_owned();
            Some((fd, target))
        })
        .collect()
}

fn socket_inode(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Whether walking `..` up from the directory at `path` reaches `root` (device, inode) before
/// it reaches any other top (a mount namespace's root, or the node's `/`).
fn leads_to(path: &str, root: (u64, u64)) -> bool {
    use rustix::fs::{Mode, OFlags};
    let Ok(mut dir) = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
        return true;
    };
    for _ in 0..256 {
        let Ok(here) = rustix::fs::fstat(&dir) else { return false };
        if (here.st_dev, here.st_ino) == root {
            return true;
        }
        let Ok(up): Result<OwnedFd, _> =
            rustix::fs::openat(&dir, "..", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        else {
            return false;
        };
        let Ok(above) = rustix::fs::fstat(&up) else { return false };
        if (above.st_dev, above.st_ino) == (here.st_dev, here.st_ino) {
            // a top that is not the container's root
            return false;
        }
        let _ = dir.as_raw_fd();
        dir = up;
    }
    false
}

struct UnixSocket {
    /// The socket's path, `*` when it has none (the connecting end).
    local: String,
    inode: u64,
    peer: u64,
    users: String,
}

/// The processes (`ss`'s `users:(…)` text) holding the far end of each connection accepted on
/// the Unix socket at `path`.
pub fn clients_of(path: &Path) -> Vec<String> {
    let sockets = unix_sockets();
    let path = path.display().to_string();
    let served: Vec<u64> = sockets.iter().filter(|s| s.local == path).map(|s| s.peer).filter(|p| *p != 0).collect();
    sockets.into_iter().filter(|s| served.contains(&s.inode)).map(|s| s.users).collect()
}

/// Every Unix socket of the node with its peer and the processes holding it (`ss -xap`).
fn unix_sockets() -> Vec<UnixSocket> {
    let out = std::process::Command::new("ss").args(["-x", "-a", "-p", "-n"]).output().expect("running ss (iproute2)");
    assert!(out.status.success(), "ss failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port [Process]
            let inode = fields.get(5)?.parse().ok()?;
            let peer = fields.get(7)?.parse().unwrap_or(0);
            Some(UnixSocket {
                local: fields.get(4)?.to_string(),
                inode,
                peer,
                users: fields.get(8..).map(|rest| rest.join(" ")).unwrap_or_default(),
            })
        })
        .collect()
}

#[test]
fn the_descriptor_scan_finds_host_handles() {
    // A process that holds what a container's process must not: a directory of the node (the
    // "cache"), a file in it, a pipe, and a socket to this test process. Its "container root"
    // is its own root, the node's `/`, so only the cache and channel rules can catch those…
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("entry.cwasm"), b"code").unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let script =
        format!("exec 7<{dir} 8<{dir}/entry.cwasm; exec 9< <(sleep 30); sleep 30", dir = cache.path().display());
    let mut child = std::process::Command::new("bash")
        .args(["-c", &script])
        .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let found = host_handles(&[child.id()], cache.path());
    let _ = child.kill();
    let _ = child.wait();
    drop(ours);
    let text = found.join("\n");
    assert!(text.contains("fd 7") && text.contains("the node's code cache"), "{text}");
    assert!(text.contains("fd 8"), "{text}");
    assert!(text.contains("fd 9") && text.contains("pipe"), "{text}");
    assert!(text.contains("fd 0") && text.contains("a socket connected to"), "{text}");
    // … and a directory of the node is outside a root that is not the node's.
    assert!(!leads_to(&cache.path().display().to_string(), (0, 0)));
    let root = std::fs::metadata("/").unwrap();
    assert!(leads_to(&cache.path().display().to_string(), (root.dev(), root.ino())));
}
