//! End-to-end: many Wasm containers, one after another and at once, leave nothing behind.
//!
//! `WASMBOX_LOAD=SEQUENTIALxCONCURRENT` sets the load: `make test` runs 200x20, `make stress`
//! 1000x50 and records the figures this prints in docs/benchmarks.md.

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
    for _ in 0..sequential {
        let run = c.run_wasm("hello", &unique_id("seq"), &[], &[]);
        assert_eq!(run.code, 0, "{run:#?}");
    }
    let sequential_time = started.elapsed();

    let started = Instant::now();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..concurrent).map(|_| scope.spawn(|| c.run_wasm("hello", &unique_id("par"), &[], &[]))).collect();
        handles.into_iter().map(|h| h.join().expect("runner thread")).collect()
    });
    let concurrent_time = started.elapsed();
    for run in &runs {
        assert_eq!(run.code, 0, "{run:#?}");
        assert_eq!(run.stdout, "Hello from Rust on wasmbox (wasm32-wasip1)!\n");
    }

    // Nothing of any of them is left: tasks, containers, shims, mounts, cgroups, runtime state.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
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
                text.contains("containerd-shim-wasmbox-v1") && text.contains(&*c.work.to_string_lossy())
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
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind after the load: {left:#?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    println!(
        "load: {sequential} sequential runs in {:.1} s ({:.1} ms each); {concurrent} concurrent runs in {:.1} s; nothing left behind",
        sequential_time.as_secs_f64(),
        sequential_time.as_secs_f64() * 1e3 / sequential.max(1) as f64,
        concurrent_time.as_secs_f64()
    );
}
