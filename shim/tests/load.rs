//! End-to-end: many Wasm containers, one after another and at once, leave nothing behind.
//!
//! `WASMBOX_LOAD=SEQUENTIALxCONCURRENT` sets the load: `make test` runs 200x20, `make stress`
//! 1000x50 and records the figures this prints in docs/benchmarks.md. `WASMBOX_IDLE=N` sets how
//! many idle containers run at once, of each runtime: `make test` 20, `make stress` 1000.

mod common;

use std::time::Instant;

use common::{NAMESPACE, containerd, unique_id};

fn load() -> (usize, usize) {
    let spec = std::env::var("WASMBOX_LOAD").unwrap_or_else(|_| "200x20".to_owned());
    let (sequential, concurrent) = spec.split_once('x').expect("WASMBOX_LOAD is SEQUENTIALxCONCURRENT");
    (sequential.parse().expect("a number"), concurrent.parse().expect("a number"))
}

#[test]
fn sequential_and_concurrent_runs_leave_nothing_behind() {
    let c = containerd();
    let (sequential, concurrent) = load();
    c.image("hello");

    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..sequential {
        let id = unique_id("seq");
        let run = c.run_wasm("hello", &id, &[], &[]);
        assert_eq!(run.code, 0, "{run:#?}");
        ids.push(id);
    }
    let sequential_time = started.elapsed();

    let started = Instant::now();
    let concurrent_ids: Vec<String> = (0..concurrent).map(|_| unique_id("par")).collect();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            concurrent_ids.iter().map(|id| scope.spawn(|| c.run_wasm("hello", id, &[], &[]))).collect();
        handles.into_iter().map(|h| h.join().expect("runner thread")).collect()
    });
    ids.extend(concurrent_ids);
    let concurrent_time = started.elapsed();
    for run in &runs {
        assert_eq!(run.code, 0, "{run:#?}");
        assert_eq!(run.stdout, "Hello from Rust on wasmbox (wasm32-wasip1)!\n");
    }

    assert_nothing_left(c, &ids);
    // Every line the shims and their containers logged is whole in containerd's log: a line
    // written in pieces could be read in pieces and mixed with another shim's line.
    let log = std::fs::read_to_string(c.work.join("containerd.log")).expect("reading containerd.log");
    let mixed: Vec<&str> = log
        .lines()
        .filter(|line| ids.iter().any(|id| line.contains(id.as_str())))
        .filter(|line| line.matches("time=\"").count() > 1)
        .collect();
    assert!(mixed.is_empty(), "lines of containerd's log mixed from two writers: {mixed:#?}");
    println!(
        "load: {sequential} sequential runs in {:.1} s ({:.1} ms each); {concurrent} concurrent runs in {:.1} s; nothing left behind",
        sequential_time.as_secs_f64(),
        sequential_time.as_secs_f64() * 1e3 / sequential.max(1) as f64,
        concurrent_time.as_secs_f64()
    );
}

/// Nothing of the test namespace's containers is left: tasks, containers, shims (wasmbox's and
/// runc's), mounts, cgroups, runtime state, and the sockets of the shims of `ids` (wasmbox's).
fn assert_nothing_left(c: &common::Containerd, ids: &[String]) {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut left = Vec::new();
        for what in ["tasks", "containers"] {
            let out = c.ctr_output(&[what, "ls", "-q"]);
            left.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("{what}: {l}")));
        }
        let shims = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|cmd| {
                let text = String::from_utf8_lossy(cmd);
                (text.contains("containerd-shim-wasmbox-v1") || text.contains("containerd-shim-runc-v2"))
                    && text.contains(&*c.work.to_string_lossy())
            })
            .count();
        if shims > 0 {
            left.push(format!("{shims} shim processes"));
        }
        let task_dir = format!("{}/state/io.containerd.runtime.v2.task/{NAMESPACE}/", c.work.display());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        left.extend(mounts.lines().filter(|l| l.contains(&task_dir)).map(|l| format!("mount {l}")));
        for dir in common::CgroupLayout::detect().dirs(&format!("/{NAMESPACE}")) {
            if let Ok(children) = std::fs::read_dir(dir) {
                left.extend(
                    children.flatten().filter(|e| e.path().is_dir()).map(|e| format!("cgroup {}", e.path().display())),
                );
            }
        }
        if let Ok(states) = std::fs::read_dir(c.state_dir().join(NAMESPACE)) {
            left.extend(states.flatten().map(|e| format!("runtime state {}", e.path().display())));
        }
        left.extend(
            ids.iter()
                .map(|id| c.shim_socket(id))
                .filter(|s| s.exists())
                .map(|s| format!("shim socket {}", s.display())),
        );
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind after the load: {left:#?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Idle containers: `WASMBOX_IDLE` (20) sleeping Wasm guests, started four at a time, all
/// RUNNING and answering `ctr tasks ps`; then as many busybox `sleep` containers with runc. Prints
/// the time to start them and their total PSS; stops them all and checks that nothing is left.
#[test]
fn idle_containers_all_run_and_leave_nothing_behind() {
    let c = containerd();
    let n: usize = std::env::var("WASMBOX_IDLE").map_or(20, |v| v.parse().expect("WASMBOX_IDLE is a number"));
    let runtimes: [(&str, Option<&str>, &str, &[&str]); 2] = [
        ("wasmbox", Some(common::WASMBOX), "probe", &["/probe.wasm", "sleep", "3600"]),
        ("runc", None, "busybox", &["/bin/busybox", "sleep", "3600"]),
    ];
    let mut report = Vec::new();
    for (name, runtime, image, args) in runtimes {
        let reference = c.image(image);
        let ids: Vec<String> = (0..n).map(|_| unique_id(&format!("idle-{name}"))).collect();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for chunk in ids.chunks(n.div_ceil(4).max(1)) {
                let reference = &reference;
                scope.spawn(move || {
                    for id in chunk {
                        let mut argv = vec!["run", "-d"];
                        if let Some(runtime) = runtime {
                            argv.extend(["--runtime", runtime]);
                        }
                        argv.extend([reference.as_str(), id.as_str()]);
                        argv.extend(args);
                        let out = c.ctr_output(&argv);
                        assert!(out.status.success(), "ctr run -d {id}: {out:?}");
                    }
                });
            }
        });
        let start_time = started.elapsed();
        let listed = c.ctr_output(&["tasks", "ls"]);
        let listed = String::from_utf8_lossy(&listed.stdout);
        let mut pids = Vec::new();
        for id in &ids {
            let line = listed.lines().find(|l| l.split_whitespace().next() == Some(id.as_str()));
            assert!(line.is_some_and(|l| l.contains("RUNNING")), "{id} is not RUNNING: {line:?}");
            let ps = c.task_pids(id);
            assert!(!ps.is_empty(), "ctr tasks ps {id} lists no process");
            pids.extend(ps);
        }
        // Every process these containers cost: theirs and their shims.
        let mut all: Vec<u32> = pids.iter().filter_map(|pid| common::procs::parent(*pid)).collect();
        all.extend(&pids);
        all.sort_unstable();
        all.dedup();
        let pss_kib: u64 = all.iter().map(|pid| pss_kib(*pid)).sum();
        report.push(format!(
            "{name}: {n} idle containers started in {:.1} s ({:.0} ms each, 4 at a time), all RUNNING and answering ps; \
             {} processes, total PSS {:.1} MiB ({:.2} MiB per container)",
            start_time.as_secs_f64(),
            start_time.as_secs_f64() * 1e3 / n.max(1) as f64,
            all.len(),
            pss_kib as f64 / 1024.0,
            pss_kib as f64 / 1024.0 / n.max(1) as f64,
        ));
        for id in &ids {
            let _ = c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", id]);
        }
        for id in &ids {
            common::wait_stopped(id);
        }
        assert_nothing_left(c, if runtime.is_some() { &ids } else { &[] });
    }
    for line in report {
        println!("idle: {line}");
    }
}

/// The PSS of process `pid` in KiB (0 if it is gone).
fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}
