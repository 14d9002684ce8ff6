//! End-to-end: cgroup limits, stopping, observing, annotations and isolation (the in-engine memory limit, on both engines: `engines.rs`).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::cgroups::{CgroupLayout, Knob};
use common::{NAMESPACE, Run, containerd, unique_id, wait_stopped};

fn start_detached(id: &str, flags: &[&str], args: &[&str]) {
    common::start_detached("probe", id, flags, args);
}

fn probe(flags: &[&str], args: &[&str]) -> Run {
    let c = containerd();
    let id = unique_id("limits");
    let run = c.run_wasm("probe", &id, flags, args);
    c.assert_no_leftovers(&id);
    run
}

/// The value of `knob` in container `id`'s cgroup, on this node's cgroup layout.
fn cgroup(id: &str, knob: Knob) -> String {
    CgroupLayout::detect().read(&format!("/{NAMESPACE}/{id}"), knob)
}

#[test]
fn cgroup_limits_apply_and_sigterm_stops_a_spinning_guest() {
    let c = containerd();
    let id = unique_id("spin");
    let flags = ["--memory-limit", "67108864", "--cpu-quota", "50000", "--cpu-period", "100000", "--cpu-shares", "512"];
    start_detached(&id, &flags, &["/probe.wasm", "spin"]);
    assert_eq!(cgroup(&id, Knob::MemoryLimit), "67108864");
    assert!(CgroupLayout::detect().has_cpu_shares(&format!("/{NAMESPACE}/{id}"), 512));
    assert_eq!(cgroup(&id, Knob::CpuQuota), "50000");
    assert_eq!(cgroup(&id, Knob::CpuPeriod), "100000");
    let (_, pid, _) = task_row(&id);
    assert_eq!(cgroup(&id, Knob::Procs), pid, "the guest runs in the container's cgroup");

    // `ctr task metrics` shows the container's cgroup: its usage and its limits
    let metrics = task_metrics(&id);
    assert!(metrics["memory.usage_in_bytes"] > 0, "{metrics:?}");
    assert_eq!(metrics["memory.limit_in_bytes"], 67108864, "{metrics:?}");
    assert!(metrics["cpuacct.usage"] > 0, "a spinning guest uses CPU: {metrics:?}");
    assert!(metrics["pids.current"] >= 1, "{metrics:?}");

    // default signal of `ctr tasks kill` is SIGTERM: the guest is PID 1 and still ends
    assert!(c.ctr_output(&["tasks", "kill", &id]).status.success());
    assert_eq!(wait_stopped(&id), 143);
    c.assert_no_leftovers(&id);
}

#[test]
fn pids_limit_from_the_spec_applies() {
    // ctr 1.6 has no flag for linux.resources.pids: give it a whole spec (`ctr oci spec`,
    // completed), whose root is the probe image mounted by `ctr images mount`
    let c = containerd();
    let id = unique_id("pids");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let image = c.image("probe");
    let mounted = c.ctr_output(&["images", "mount", "--rw", &image, rootfs.to_str().unwrap()]);
    assert!(mounted.status.success(), "{mounted:?}");
    let out = std::process::Command::new(c.ctr_binary()).args(["oci", "spec"]).output().expect("ctr oci spec");
    let mut spec: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ctr oci spec prints JSON");
    spec["root"] = serde_json::json!({ "path": rootfs });
    spec["process"]["args"] = serde_json::json!(["/probe.wasm", "sleep", "30"]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{NAMESPACE}/{id}"));
    spec["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 32 });
    let config = dir.path().join("config.json");
    std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    let run = c.ctr_output(&["run", "-d", "--runtime", common::WASMBOX, "--config", config.to_str().unwrap(), &id]);
    assert!(run.status.success(), "{run:?}");

    assert_eq!(cgroup(&id, Knob::PidsMax), "32");
    let current: u32 = cgroup(&id, Knob::PidsCurrent).parse().unwrap();
    assert!((1..=32).contains(&current), "{current}");
    assert_eq!(task_metrics(&id)["pids.limit"], 32);
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &id]).status.success());
    assert_eq!(wait_stopped(&id), 137);
    let unmounted = c.ctr_output(&["images", "unmount", "--rm", rootfs.to_str().unwrap()]);
    assert!(unmounted.status.success(), "{unmounted:?}");
    c.assert_no_leftovers(&id);
}

#[test]
fn ps_pause_resume_and_exec_through_ctr() {
    let c = containerd();
    let id = unique_id("ops");
    start_detached(&id, &[], &["/probe.wasm", "spin"]);
    let status = |id: &str| task_row(id).2;

    // ps: the guest is the container's one process
    let (_, pid, _) = task_row(&id);
    let ps = String::from_utf8_lossy(&c.ctr_output(&["tasks", "ps", &id]).stdout).into_owned();
    let listed: Vec<&str> = ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(listed, [pid.as_str()], "{ps}");

    // pause freezes it: no CPU time passes; resume thaws it
    assert!(c.ctr_output(&["tasks", "pause", &id]).status.success());
    assert_eq!(status(&id), "PAUSED");
    assert_eq!(cgroup(&id, Knob::Freezer), "FROZEN");
    let frozen_at = task_metrics(&id)["cpuacct.usage"];
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(task_metrics(&id)["cpuacct.usage"], frozen_at, "a paused guest must not run");
    assert!(c.ctr_output(&["tasks", "resume", &id]).status.success());
    assert_eq!(status(&id), "RUNNING");
    assert_eq!(cgroup(&id, Knob::Freezer), "THAWED");
    std::thread::sleep(Duration::from_millis(300));
    assert!(task_metrics(&id)["cpuacct.usage"] > frozen_at, "a resumed guest runs again");

    // exec is refused with the reason
    let exec = c.ctr_output(&["tasks", "exec", "--exec-id", "e1", &id, "/probe.wasm", "args"]);
    assert!(!exec.status.success());
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert!(stderr.contains("exec is not supported: a container of this shim runs exactly one process"), "{stderr}");
    // containerd 1.x's ctr also names the error's kind (2.x says the reason alone)
    assert!(c.release.starts_with('2') || stderr.trim_end().ends_with("not implemented"), "{stderr}");

    // a paused container can still be killed; once stopped, it cannot be paused
    assert!(c.ctr_output(&["tasks", "pause", &id]).status.success());
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &id]).status.success());
    for _ in 0..50 {
        if status(&id) == "STOPPED" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let late = c.ctr_output(&["tasks", "pause", &id]);
    assert!(!late.status.success());
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(stderr.contains("cannot pause a task that is Exited"), "{stderr}");
    assert_eq!(wait_stopped(&id), 137);
    c.assert_no_leftovers(&id);
}

/// `ctr tasks ls`'s row for `id`: (id, pid, status).
fn task_row(id: &str) -> (String, String, String) {
    let ls = String::from_utf8_lossy(&containerd().ctr_output(&["tasks", "ls"]).stdout).into_owned();
    ls.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.len() == 3 && cols[0] == id)
        .map(|cols| (cols[0].clone(), cols[1].clone(), cols[2].clone()))
        .unwrap_or_else(|| panic!("{id} not in:\n{ls}"))
}

/// `ctr tasks metrics ID`'s numeric figures by name (`memory.usage_in_bytes`, `cpuacct.usage`…).
fn task_metrics(id: &str) -> std::collections::HashMap<String, u64> {
    let out = containerd().ctr_output(&["tasks", "metrics", id]);
    assert!(out.status.success(), "ctr tasks metrics: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some((cols.next()?.to_owned(), cols.next()?.parse().ok()?))
        })
        .collect()
}

// The memory limit in the engine (a refused `memory.grow`, a trap that says the limit was hit)
// is checked on both engines by `engines.rs` `the_memory_limit_holds_on_both`.

#[test]
fn deadline_annotation_ends_a_runaway_guest() {
    let run = probe(&["--annotation", "wasmbox.io/deadline=1s"], &["/probe.wasm", "spin"]);
    assert_eq!(run.code, 124, "{run:#?}");
    assert!(run.stderr.contains("deadline of 1s exceeded (annotation wasmbox.io/deadline)"), "{run:#?}");
    let quick = probe(&["--annotation", "wasmbox.io/deadline=30s"], &["/probe.wasm", "exit", "0"]);
    assert_eq!(quick.code, 0, "{quick:#?}");
}

#[test]
fn invalid_annotations_fail_the_create_naming_them() {
    for (annotation, needle) in [
        ("wasmbox.io/deadline=soon", "annotation wasmbox.io/deadline=\"soon\": expected a duration"),
        ("wasmbox.io/preopens=relative", "annotation wasmbox.io/preopens=\"relative\""),
        ("wasmbox.io/network=everywhere", "annotation wasmbox.io/network=\"everywhere\""),
        ("wasmbox.io/wasm-features=teleport", "unknown feature \"teleport\""),
        ("wasmbox.io/log-level=loud", "annotation wasmbox.io/log-level=\"loud\""),
        ("wasmbox.io/dedline=1s", "unknown wasmbox.io/ key"),
    ] {
        let run = probe(&["--annotation", annotation], &["/probe.wasm", "args"]);
        assert_ne!(run.code, 0, "{annotation}: {run:#?}");
        assert_eq!(run.stdout, "", "the guest must not run");
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
        assert!(run.stderr.starts_with("ctr: failed to create shim task:"), "{annotation}: {run:#?}");
        let key = annotation.split('=').next().unwrap();
        assert!(run.stderr.contains(&format!(": wasmbox: annotation {key}")), "{annotation}: {run:#?}");
        assert!(run.stderr.contains(needle), "{annotation}: {run:#?}");
    }
}

#[test]
fn image_labels_set_defaults_that_annotations_override() {
    let c = containerd();
    let spin = |image: &str, flags: &[&str]| {
        let id = unique_id("labelled");
        let run = c.run_wasm(image, &id, flags, &["/probe.wasm", "spin"]);
        c.assert_no_leftovers(&id);
        run
    };
    let labelled = |flags: &[&str]| spin("probe-labelled", flags);
    // the image config's label wasmbox.io/deadline=1s applies…
    let run = labelled(&[]);
    assert_eq!(run.code, 124, "{run:#?}");
    assert!(run.stderr.contains("deadline of 1s exceeded"), "{run:#?}");
    // …unless an annotation says otherwise
    let run = labelled(&["--annotation", "wasmbox.io/deadline=1500ms"]);
    assert_eq!(run.code, 124, "{run:#?}");
    assert!(run.stderr.contains("deadline of 1.5s exceeded"), "{run:#?}");
    // an invalid label fails the create, named as a label
    let run = spin("probe-mislabelled", &[]);
    assert!(run.stderr.starts_with("ctr: failed to create shim task:"), "{run:#?}");
    assert!(run.stderr.contains("wasmbox: label wasmbox.io/deadline=\"soon\": expected a duration"), "{run:#?}");
}

#[test]
fn preopens_annotation_limits_what_the_guest_sees() {
    let flags = ["--annotation", "wasmbox.io/preopens=/fixtures:ro"];
    assert!(probe(&flags, &["/probe.wasm", "ls", "/fixtures"]).stdout.contains("hello.wat\n"));
    let write = probe(&flags, &["/probe.wasm", "write", "/fixtures/new", "x"]);
    assert_eq!(write.code, 1, "{write:#?}");
    assert!(write.stderr.contains("Operation not permitted"), "{write:#?}");
    for outside in ["/probe.wasm", "/fixtures/../probe.wasm", "/fixtures/../../probe.wasm"] {
        let run = probe(&flags, &["/probe.wasm", "cat", outside]);
        assert_eq!(run.code, 1, "{outside} must not be readable: {run:#?}");
    }
}

#[test]
fn symlinks_cannot_lead_out_of_a_preopen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inside.txt"), "inside\n").unwrap();
    std::os::unix::fs::symlink("/probe.wasm", dir.path().join("absolute")).unwrap();
    std::os::unix::fs::symlink("../../probe.wasm", dir.path().join("relative")).unwrap();
    std::os::unix::fs::symlink("inside.txt", dir.path().join("fine")).unwrap();
    let mount = format!("type=bind,src={},dst=/data,options=rbind:ro", dir.path().display());
    let flags = ["--mount", &mount, "--annotation", "wasmbox.io/preopens=/data"];
    assert_eq!(probe(&flags, &["/probe.wasm", "cat", "/data/fine"]).stdout, "inside\n");
    for link in ["/data/absolute", "/data/relative"] {
        let run = probe(&flags, &["/probe.wasm", "cat", link]);
        assert_eq!(run.code, 1, "{link} must not lead out: {run:#?}");
        assert!(run.stderr.contains("cannot read"), "{run:#?}");
    }
}

/// A one-shot TCP server on loopback that answers "hi" to each connection, for 10 seconds at most.
fn loopback_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.write_all(b"hi");
                    let _ = stream.read(&mut [0; 8]);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, handle)
}

#[test]
fn sockets_follow_the_network_annotation() {
    let (port, _server) = loopback_server();
    let addr = format!("127.0.0.1:{port}");
    let args = ["/probe-p2.wasm", "connect", addr.as_str()];
    let denied = probe(&["--net-host"], &args);
    assert_eq!(denied.code, 1, "sockets are denied by default: {denied:#?}");
    assert!(denied.stderr.contains("cannot connect"), "{denied:#?}");
    let allowed = probe(&["--net-host", "--annotation", "wasmbox.io/network=127.0.0.0/8"], &args);
    assert_eq!(allowed.stdout, format!("connected to {addr}\n"), "{allowed:#?}");
    let other = probe(&["--net-host", "--annotation", "wasmbox.io/network=10.0.0.0/8"], &args);
    assert_eq!(other.code, 1, "{other:#?}");
    let all = probe(&["--net-host", "--annotation", "wasmbox.io/network=all"], &args);
    assert_eq!(all.code, 0, "{all:#?}");
}

#[test]
fn wasm_features_annotation_switches_engine_features() {
    assert_eq!(probe(&[], &["/fixtures/simd.wat#lanes"]).stdout, "7\n");
    let off = probe(&["--annotation", "wasmbox.io/wasm-features=-simd"], &["/fixtures/simd.wat#lanes"]);
    assert_eq!(off.code, 126, "{off:#?}");
    assert!(off.stderr.to_lowercase().contains("simd"), "{off:#?}");
}

#[test]
fn a_cgroup_path_of_the_other_driver_fails_the_create() {
    // what the kubelet sends with the systemd cgroup driver, to a runtime that uses cgroupfs
    let c = containerd();
    let id = unique_id("systemd-path");
    let path = format!("kubepods-besteffort-pod1.slice:cri-containerd:{id}");
    let run = c.run_wasm("probe", &id, &["--cgroup", &path], &["/probe.wasm", "exit", "0"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("failed to create shim task"), "{run:#?}");
    assert!(run.stderr.contains("is of the systemd driver's form (slice:prefix:name), but this runtime uses the cgroupfs driver: set SystemdCgroup = true"), "{run:#?}");
    c.assert_no_leftovers(&id);

    // SystemdCgroup = true in the runtime's options, on this node without systemd
    let dir = tempfile::tempdir().unwrap();
    let options = dir.path().join("options.toml");
    std::fs::write(&options, "SystemdCgroup = true\n").unwrap();
    let id = unique_id("systemd-driver");
    let flags = ["--runtime-config-path", options.to_str().unwrap(), "--cgroup", &path];
    let run = c.run_wasm("probe", &id, &flags, &["/probe.wasm", "exit", "0"]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("SystemdCgroup = true, but systemd does not run on this node"), "{run:#?}");
    c.assert_no_leftovers(&id);
}
