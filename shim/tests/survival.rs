//! End-to-end: Wasm containers outlive a containerd restart, and a killed shim is cleaned up.
//! (A test binary of its own: it restarts the containerd it shares with nothing else.)

mod common;

use common::{containerd, start_detached, unique_id, wait_stopped};

fn task_line(id: &str) -> Option<String> {
    let out = containerd().ctr_output(&["tasks", "ls"]);
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with(id)).map(str::to_owned)
}

#[test]
fn containers_survive_a_containerd_restart_and_a_killed_shim_is_cleaned_up() {
    let c = containerd();

    // 1. containerd restarts under a running Wasm container
    let id = unique_id("survive");
    start_detached("probe", &id, &[], &["/probe.wasm", "sleep", "60"]);
    c.restart();
    let line = task_line(&id).expect("task listed after the restart");
    assert!(line.contains("RUNNING"), "{line}");
    assert!(c.ctr_output(&["tasks", "kill", &id]).status.success());
    assert_eq!(wait_stopped(&id), 143);
    c.assert_no_leftovers(&id);
    // the shim's events reach the restarted containerd (its first connection died with it)
    let lost: Vec<String> = std::fs::read_to_string(c.work.join("containerd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("failed to publish event"))
        .map(str::to_owned)
        .collect();
    assert!(lost.is_empty(), "events lost after the restart: {lost:#?}");

    // 2. the shim is killed with SIGKILL: containerd can still clean the container up
    let id = unique_id("shim-killed");
    start_detached("probe", &id, &[], &["/probe.wasm", "sleep", "60"]);
    let guest_pid: u32 = task_line(&id).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).expect("pid");
    let shims = c.shim_pids(&id);
    assert!(!shims.is_empty(), "no shim found for {id}");
    // the shim's socket (named in its bundle's `address` file), which the dead shim cannot remove
    let bundle = c.work.join("state/io.containerd.runtime.v2.task").join(common::NAMESPACE).join(&id);
    let address = std::fs::read_to_string(bundle.join("address")).expect("the shim's address file");
    let socket = std::path::PathBuf::from(address.trim().trim_start_matches("unix://"));
    assert!(socket.exists(), "{}", socket.display());
    for pid in &shims {
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    let mut cleaned = false;
    for _ in 0..100 {
        let _ = c.ctr_output(&["tasks", "delete", "-f", &id]);
        if task_line(&id).is_none() && c.ctr_output(&["containers", "delete", &id]).status.success() {
            cleaned = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(cleaned, "containerd could not clean up {id} after its shim was killed");
    c.assert_no_leftovers(&id);
    // containerd runs the shim binary's `delete` when it notices the shim is gone, which may end
    // a moment after `ctr` is answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while socket.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!socket.exists(), "the killed shim's socket {} is left behind", socket.display());
    for _ in 0..50 {
        if !std::path::Path::new(&format!("/proc/{guest_pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{guest_pid}")).exists(),
        "the guest process {guest_pid} outlived the cleanup"
    );
}
