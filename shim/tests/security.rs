//! End-to-end attacks on the node through `ctr`, each against the defence `docs/security.md`
//! names: forged precompiled code, host handles in the container's process, settings that
//! would crash the runtime, a crowd or a fault at the code cache, confinement weaker than runc's,
//! a paused task that looks running, a cleanup that reaches another containerd's container.

mod common;

use std::time::Duration;

use common::cgroups::{CgroupLayout, Knob};
use common::forge::{FORGED_OUTPUT, INNOCENT_OUTPUT, forged_tar};
use common::{Containerd, NAMESPACE, Run, containerd, hygiene, unique_id};

use common::trusting_containerd as trusting;

/// Imports the forged tar image into `c` (built once per containerd, in its work dir).
fn forged_image(c: &Containerd) -> String {
    let dir = c.work.join("forged");
    let tar = if dir.join("forged.tar").exists() { dir.join("forged.tar") } else { forged_tar(&dir) };
    c.import_tar(NAMESPACE, "forged", &tar)
}

fn run(c: &Containerd, reference: &str, flags: &[&str], args: &[&str]) -> (String, Run) {
    let id = unique_id("sec");
    let run = c.run_reference(Some(common::WASMBOX), reference, &id, flags, args);
    c.assert_no_leftovers(&id);
    (id, run)
}

#[test]
fn forged_precompiled_code_does_not_run_unless_the_node_trusts_image_code() {
    // By default the node compiles W itself: the container prints W's output.
    let c = containerd();
    let (id, forged) = run(c, &forged_image(c), &[], &[]);
    assert_eq!((forged.code, forged.stdout.as_str()), (0, INNOCENT_OUTPUT), "{forged:#?}");
    let log = c.log_of(&id);
    assert!(log.iter().any(|l| l.contains("precompiled code in the image ignored")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("compiled in")), "it did not compile: {log:#?}");

    // A node that trusts image code runs the image's code, for that image only: an innocent
    // image of the same W afterwards gets the node's own code, and so does W's first image.
    let t = trusting();
    let (_, forged) = run(t, &forged_image(t), &[], &[]);
    assert_eq!((forged.code, forged.stdout.as_str()), (0, FORGED_OUTPUT), "{forged:#?}");
    let (_, innocent) = run(t, &t.image("hello"), &[], &[]);
    assert_eq!((innocent.code, innocent.stdout.as_str()), (0, INNOCENT_OUTPUT), "{innocent:#?}");
    let (_, again) = run(t, &forged_image(t), &[], &[]);
    assert_eq!(again.stdout, FORGED_OUTPUT);
    let (_, innocent) = run(t, &t.image("hello"), &[], &[]);
    assert_eq!(innocent.stdout, INNOCENT_OUTPUT);
    let entries: Vec<String> = std::fs::read_dir(t.cache_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!entries.iter().any(|e| e.contains("-image-")), "tar-layout image code is never cached: {entries:?}");

    // Wasmer never runs image code, even on a trusting node: it compiles W.
    let (id, on_wasmer) = run(t, &forged_image(t), &["--annotation", "wasmbox.io/engine=wasmer"], &[]);
    assert_eq!((on_wasmer.code, on_wasmer.stdout.as_str()), (0, INNOCENT_OUTPUT), "{on_wasmer:#?}");
    let log = t.log_of(&id);
    assert!(
        log.iter().any(|l| l.contains("precompiled code in the image ignored: the wasmer engine compiles")),
        "{log:#?}"
    );
}

#[test]
fn a_workload_cannot_grant_itself_the_nodes_trust() {
    let c = containerd();
    let reference = forged_image(c);
    let id = unique_id("sec-annotation");
    let run =
        c.run_reference(Some(common::WASMBOX), &reference, &id, &["--annotation", "wasmbox.io/precompiled=trust"], &[]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(run.stderr.contains("annotation wasmbox.io/precompiled=\"trust\": unknown wasmbox.io/ key"), "{run:#?}");
    c.assert_no_leftovers(&id);
}

/// The descriptors of a running task's processes, from the node's side.
fn assert_no_host_handles(c: &Containerd, id: &str) {
    let pids = c.task_pids(id);
    assert!(!pids.is_empty(), "no processes for {id}");
    let found = hygiene::host_handles(&pids, &c.cache_dir());
    assert!(found.is_empty(), "the container's processes hold host handles:\n{}", found.join("\n"));
}

#[test]
fn a_running_guest_holds_no_host_handle() {
    let c = containerd();
    let data = tempfile::tempdir().unwrap();
    let mount = format!("type=bind,src={},dst=/data,options=rbind:rw", data.path().display());
    // a command guest, with a mount among its preopens, its code mapped from the cache
    let warm = c.run_wasm("probe", &unique_id("sec-warm"), &[], &["/probe.wasm", "exit", "0"]);
    assert_eq!(warm.code, 0, "{warm:#?}");
    let id = unique_id("sec-fds");
    c.start_detached("probe", &id, &["--mount", &mount], &["/probe.wasm", "sleep", "30"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_no_host_handles(c, &id);
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &id]).status.success());
    assert_eq!(c.wait_stopped(&id), 137);
    c.assert_no_leftovers(&id);

    // the same guest on Wasmer (its WASI context, its task pool), its code loaded from the cache
    let wasmer = ["--annotation", "wasmbox.io/engine=wasmer"];
    let warm = c.run_wasm("probe", &unique_id("sec-warm-wasmer"), &wasmer, &["/probe.wasm", "exit", "0"]);
    assert_eq!(warm.code, 0, "{warm:#?}");
    let id = unique_id("sec-fds-wasmer");
    c.start_detached("probe", &id, &["--mount", &mount, wasmer[0], wasmer[1]], &["/probe.wasm", "sleep", "30"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_no_host_handles(c, &id);
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &id]).status.success());
    assert_eq!(c.wait_stopped(&id), 137);
    c.assert_no_leftovers(&id);

    // a wasi:http server, with its pool of instances, serving
    let port = common::free_port();
    let id = unique_id("sec-fds-http");
    let address = format!("wasmbox.io/http-address=127.0.0.1:{port}");
    c.start_detached("hello-http", &id, &["--net-host", "--annotation", &address], &[]);
    common::wait_for_server(port);
    assert_eq!(common::http(port, "GET", "/", "").unwrap().0, 200);
    assert_no_host_handles(c, &id);
    assert!(c.ctr_output(&["tasks", "kill", &id]).status.success());
    assert_eq!(c.wait_stopped(&id), 0);
    c.assert_no_leftovers(&id);
}

#[test]
fn settings_that_would_crash_the_runtime_fail_the_create_at_once() {
    let c = containerd();
    for (annotation, needle) in [
        ("wasmbox.io/deadline=100000000000000000000", "annotation wasmbox.io/deadline=\"100000000000000000000\""),
        ("wasmbox.io/deadline=99999999999999999999h", "annotation wasmbox.io/deadline="),
        ("wasmbox.io/http-request-timeout=0s", "must be positive"),
    ] {
        let id = unique_id("sec-setting");
        let started = std::time::Instant::now();
        let run = c.run_wasm("probe", &id, &["--annotation", annotation], &["/probe.wasm", "exit", "0"]);
        assert_ne!(run.code, 0, "{run:#?}");
        assert!(
            run.stderr.contains("failed to create shim task") && run.stderr.contains(needle),
            "{annotation}: {run:#?}"
        );
        // ctr hung for more than a minute on a panicking init before; a refusal takes moments
        assert!(started.elapsed() < Duration::from_secs(30), "{annotation}: ctr took {:?}", started.elapsed());
        c.assert_no_leftovers(&id);
    }
}

/// A module that takes about a second to compile on this machine (8000 functions), whose
/// `_start` calls them all and exits 7; distinct per call, so that the cache has no entry for it.
fn slow_module(dir: &std::path::Path) -> std::path::PathBuf {
    let mut wat = String::from("(module (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $exit (param i32)))\n");
    let salt = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u32;
    for i in 0..8000u32 {
        wat.push_str(&format!("(func $f{i} (param i32) (result i32)"));
        for j in 0..40u32 {
            wat.push_str(&format!(
                " local.get 0 i32.const {} i32.mul i32.const {j} i32.xor local.set 0",
                i * 7 + j + salt % 97
            ));
        }
        wat.push_str(" local.get 0)\n");
    }
    wat.push_str("(func (export \"_start\")");
    for i in 0..8000 {
        wat.push_str(&format!(" i32.const {i} call $f{i} drop"));
    }
    wat.push_str(" i32.const 7 call $exit)\n(memory (export \"memory\") 1))");
    let path = dir.join("slow.wasm");
    std::fs::write(&path, wat::parse_str(&wat).expect("the slow module")).unwrap();
    path
}

#[test]
fn a_crowd_on_an_empty_cache_and_damaged_entries_are_survived() {
    let c = containerd();
    let dir = tempfile::tempdir().unwrap();
    let module = slow_module(dir.path());
    let digest = wasmbox_runtime::code::image::sha256_digest(&std::fs::read(&module).unwrap());
    let hex = digest.trim_start_matches("sha256:").to_owned();
    let mount = format!("type=bind,src={},dst=/slow,options=rbind:ro", dir.path().display());
    // the module's entries, and any temporary file (other tests use the cache meanwhile)
    let of_module = |c: &Containerd| -> Vec<std::ffi::OsString> {
        std::fs::read_dir(c.cache_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with(&hex) || n.to_string_lossy().starts_with(".tmp"))
            .collect()
    };
    assert!(of_module(c).is_empty());
    let crowd = |label: &str| -> Vec<(String, Run)> {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                let id = unique_id(label);
                let mount = mount.clone();
                std::thread::spawn(move || {
                    let run = containerd().run_wasm("probe", &id, &["--mount", &mount], &["/slow/slow.wasm"]);
                    (id, run)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    // ten at once on an empty cache: every one compiles or maps, runs, and exits 7
    for (id, run) in crowd("crowd") {
        assert_eq!(run.code, 7, "{id}: {run:#?}");
        c.assert_no_leftovers(&id);
    }
    let new = of_module(c);
    assert_eq!(new.len(), 1, "one whole entry, no temporary files: {new:?}");
    let entry = c.cache_dir().join(&new[0]);
    // ten more, all from the cache
    for (id, run) in crowd("crowd-cached") {
        assert_eq!(run.code, 7, "{id}: {run:#?}");
        assert!(
            c.log_of(&id).iter().any(|l| l.contains("compiled code mapped from the cache")),
            "{id} did not map: {:#?}",
            c.log_of(&id)
        );
    }
    // a truncated entry and a bit-flipped one are each refused, removed and compiled again
    let whole = std::fs::read(&entry).unwrap();
    let mut flipped = whole.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    for (what, bytes) in [
        ("truncated", whole[..whole.len() / 3].to_vec()),
        ("bit-flipped", flipped),
        ("zero-filled", vec![0; whole.len()]),
    ] {
        std::fs::write(&entry, &bytes).unwrap();
        let id = unique_id("damaged");
        let run = c.run_wasm("probe", &id, &["--mount", &mount], &["/slow/slow.wasm"]);
        assert_eq!(run.code, 7, "{what}: {run:#?}");
        let log = c.log_of(&id);
        assert!(log.iter().any(|l| l.contains("refused and removed")), "{what}: {log:#?}");
        assert!(log.iter().any(|l| l.contains("compiled in")), "{what}: {log:#?}");
        assert_eq!(std::fs::read(&entry).unwrap(), whole, "{what}: the entry was not written again whole");
        c.assert_no_leftovers(&id);
    }
}

/// `/proc/PID/status` lines that say what a process may do, and its mount table reduced to what
/// confines it (mount point, options, type), for one running task.
fn confinement(c: &Containerd, id: &str) -> (Vec<String>, Vec<String>) {
    let (pid, status) = c.task(id).unwrap_or_else(|| panic!("no task {id}"));
    assert_eq!(status, "RUNNING");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let keys =
        ["Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", "NoNewPrivs:", "Seccomp:"];
    let status = status.lines().filter(|l| keys.iter().any(|k| l.starts_with(k))).map(str::to_owned).collect();
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mounts = mountinfo
        .lines()
        .map(|line| {
            let (before, after) = line.split_once(" - ").unwrap();
            let fields: Vec<&str> = before.split(' ').collect();
            let after: Vec<&str> = after.split(' ').collect();
            // the root's overlay options name each container's own snapshot: keep its mode only
            let superblock_mode =
                after.get(2).and_then(|o| o.split(',').find(|o| *o == "ro" || *o == "rw")).unwrap_or("");
            format!("{} {} {} {} super:{superblock_mode}", fields[3], fields[4], fields[5], after[0])
        })
        .collect();
    (status, mounts)
}

#[test]
fn a_wasm_task_is_confined_as_runc_confines_a_linux_task() {
    let c = containerd();
    let variants: [&[&str]; 6] = [
        &[],
        &["--seccomp"],
        &["--read-only", "--seccomp"],
        &["--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_SYS_PTRACE"],
        &["--allow-new-privs"],
        &["--privileged"],
    ];
    for flags in variants {
        let wasm = unique_id("parity-wasm");
        let linux = unique_id("parity-runc");
        c.start_detached("probe", &wasm, flags, &["/probe.wasm", "sleep", "30"]);
        let image = c.image("busybox");
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[image.as_str(), linux.as_str(), "/bin/busybox", "sleep", "30"]);
        let out = c.ctr_output(&args);
        assert!(out.status.success(), "{out:?}");
        std::thread::sleep(Duration::from_millis(300));
        let (wasm_status, wasm_mounts) = confinement(c, &wasm);
        let (linux_status, linux_mounts) = confinement(c, &linux);
        assert_eq!(wasm_status, linux_status, "{flags:?}: /proc/PID/status differs from runc's");
        assert_eq!(wasm_mounts, linux_mounts, "{flags:?}: the mount table differs from runc's");
        for id in [&wasm, &linux] {
            assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", id]).status.success());
            assert_eq!(c.wait_stopped(id), 137);
        }
        c.assert_no_leftovers(&wasm);
    }
}

#[test]
fn a_paused_task_stays_paused_after_sigterm() {
    let c = containerd();
    let id = unique_id("paused-term");
    c.start_detached("probe", &id, &[], &["/probe.wasm", "sleep", "60"]);
    assert!(c.ctr_output(&["tasks", "pause", &id]).status.success());
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGTERM", &id]).status.success());
    std::thread::sleep(Duration::from_millis(300));
    let path = format!("/{NAMESPACE}/{id}");
    assert_eq!(CgroupLayout::detect().read(&path, Knob::Freezer), "FROZEN", "the signal does not thaw it");
    assert_eq!(c.task(&id).map(|t| t.1).as_deref(), Some("PAUSED"), "ctr must say what the cgroup says");
    // resumed, it takes the pending SIGTERM
    assert!(c.ctr_output(&["tasks", "resume", &id]).status.success());
    assert_eq!(c.wait_stopped(&id), 143);
    c.assert_no_leftovers(&id);
}

#[test]
fn stopping_a_private_containerd_touches_only_its_own_containers() {
    // Two containerds, each with a running container of the same id (in other namespaces):
    // stopping one must leave the other's container, cgroup and runtime state alone.
    let c = containerd();
    let other = Containerd::start("neighbour", &[]);
    let id = unique_id("twin");
    c.start_detached("probe", &id, &[], &["/probe.wasm", "sleep", "60"]);
    let image = other.import_tar("wasmbox-other", "probe", &common::images_dir().join("probe.tar"));
    let fifo_dir = other.fifo_dir();
    let out = std::process::Command::new(other.ctr_binary())
        .arg("-a")
        .arg(other.socket())
        .args([
            "-n",
            "wasmbox-other",
            "run",
            "--fifo-dir",
            fifo_dir.to_str().unwrap(),
            "-d",
            "--runtime",
            common::WASMBOX,
            &image,
            &id,
            "/probe.wasm",
            "sleep",
            "60",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    other.stop();
    let (pid, status) = c.task(&id).expect("the first containerd's container is still listed");
    assert_eq!(status, "RUNNING");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "its process was killed");
    assert!(c.state_dir().join(NAMESPACE).join(&id).exists(), "its runtime state was removed");
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &id]).status.success());
    assert_eq!(c.wait_stopped(&id), 137);
    c.assert_no_leftovers(&id);
    assert!(
        !CgroupLayout::detect().dirs(&format!("/wasmbox-other/{id}")).iter().any(|d| d.exists()),
        "the stopped one left its cgroup"
    );
}
