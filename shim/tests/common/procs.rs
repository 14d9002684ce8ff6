//! The node's process tree as `/proc` shows it: parents and children, for counting what a
//! container costs.

use std::path::Path;

/// The parent PID of `pid`, if it exists.
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The PIDs whose parent is `pid`, sorted.
pub fn children(pid: u32) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .expect("listing /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| parent(*candidate) == Some(pid))
        .collect();
    found.sort_unstable();
    found
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Path::new(&format!("/proc/{pid}")).exists() && !status.lines().any(|l| l.starts_with("State:\tZ"))
}

/// The file `name` (`status`, `comm`, …) of every thread of process `pid`.
pub fn thread_files(pid: u32, name: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("listing the process's threads")
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join(name)).ok())
        .collect()
}
