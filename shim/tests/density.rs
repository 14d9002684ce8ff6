//! End-to-end: what a Wasm container costs in processes, and shims shared by a group.
//!
//! A container is its init process and a share of a shim: the shim execs a create helper for
//! each create, which exits when the container exists (no zygotes). Containers that carry the
//! `io.containerd.runc.v2.group` annotation share one shim, as with containerd-shim-runc-v2, and
//! the guests in it stay independent: one crashing or being OOM-killed ends only its container.

mod common;

use std::path::Path;

use common::procs::{alive, children, thread_files};
use common::{containerd, start_detached, unique_id, wait_stopped};

/// The PID of task `id`, which must be RUNNING.
fn running_pid(id: &str) -> u32 {
    let (pid, status) = containerd().task(id).unwrap_or_else(|| panic!("task {id} is not listed"));
    assert_eq!(status, "RUNNING", "task {id}");
    pid
}

/// The one shim serving `shim_id`.
fn the_shim(shim_id: &str) -> u32 {
    let shims = containerd().shim_pids(shim_id);
    assert_eq!(shims.len(), 1, "shims with -id {shim_id}: {shims:?}");
    shims[0]
}

/// Starts a `probe sleep` container whose id starts with `prefix`: (its id, its init, its shim).
fn idle_probe(prefix: &str) -> (String, u32, u32) {
    idle_probe_on(containerd(), prefix)
}

/// Starts a `probe sleep` container on containerd `c`, whose id starts with `prefix`: (its id,
/// its init, its shim).
fn idle_probe_on(c: &common::Containerd, prefix: &str) -> (String, u32, u32) {
    let id = unique_id(prefix);
    c.start_detached("probe", &id, &[], &["/probe.wasm", "sleep", "60"]);
    let (init, status) = c.task(&id).unwrap_or_else(|| panic!("task {id} is not listed"));
    assert_eq!(status, "RUNNING", "task {id}");
    let shims = c.shim_pids(&id);
    assert_eq!(shims.len(), 1, "shims with -id {id}: {shims:?}");
    (id, init, shims[0])
}

/// Kills task `id` of containerd `c` and checks that it left nothing.
fn kill_on(c: &common::Containerd, id: &str) {
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", id]).status.success());
    assert_eq!(c.wait_stopped(id), 137);
    c.assert_no_leftovers(id);
}

fn stop(id: &str) -> u32 {
    assert!(containerd().ctr_output(&["tasks", "kill", "-s", "SIGKILL", id]).status.success());
    wait_stopped(id)
}

#[test]
fn an_idle_wasm_container_is_its_init_and_its_shim() {
    let (id, init, shim) = idle_probe("two-processes");
    // No helper outlives the create, no zygote stays: the shim's only child is the init, which
    // has none of its own, and the container's cgroup holds the init alone.
    assert_eq!(children(shim), [init], "the shim's children");
    assert_eq!(children(init), Vec::<u32>::new(), "the init's children");
    assert_eq!(containerd().task_pids(&id), [init], "ctr tasks ps");
    // Only the create helper opens the node's code cache: the long-lived shim holds no handle on it.
    let cache = containerd().cache_dir();
    let held: Vec<_> = std::fs::read_dir(format!("/proc/{shim}/fd"))
        .expect("listing the shim's descriptors")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(&cache))
        .collect();
    assert!(held.is_empty(), "the shim holds {held:?}");
    // Nor a connection to containerd's gRPC API: the create read the image's layers and labels
    // through one, dropped once read (the event publisher's ttrpc connection stays).
    let grpc = common::hygiene::clients_of(&containerd().socket());
    let shim_tag = format!("pid={shim},");
    assert!(!grpc.iter().any(|users| users.contains(&shim_tag)), "the idle shim {shim} holds {grpc:?}");
    assert_eq!(stop(&id), 137);
    containerd().assert_no_leftovers(&id);
}

/// KiB of process `pid`'s own binary (`/proc/PID/exe`) that are mapped in it (its smaps `Rss`).
fn binary_resident_kib(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the process's binary");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("the process's smaps");
    let mut in_binary = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            in_binary = line.split_whitespace().nth(5).is_some_and(|path| Path::new(path) == exe);
        } else if in_binary && first == "Rss:" {
            kib += line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    kib
}

/// The long-lived shim holds no engine: its binary has neither Cranelift nor the sandbox (the shim
/// execs `wasmbox-oci` to create each container, and the container's init is cloned from that),
/// and an idle container's processes keep mapped only a part of the code they ran: a second
/// after the start, the code that creating and starting the container needed is let go
/// (`resident.rs` of containerd-shim-wasm). Before, the init kept about 16 MiB and the shim
/// about 9 MiB of a 51 MB binary mapped; now about 1 and 3.
#[test]
fn an_idle_container_keeps_little_of_its_binaries_mapped() {
    // On a containerd of its own: another test's `ctr tasks ls` asks every shim of its namespace
    // for its state, which maps the code that answers it.
    let c = common::Containerd::start("resident", &[]);
    let (id, init, shim) = idle_probe_on(&c, "resident");
    // Past the moment both let go (`SETTLED_AFTER`, a second after the last call), with a margin.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let shim_exe = std::fs::read_link(format!("/proc/{shim}/exe")).expect("the shim's binary");
    let init_cmdline = std::fs::read(format!("/proc/{init}/cmdline")).expect("the init's command line");
    let mapped = (binary_resident_kib(shim), binary_resident_kib(init));
    kill_on(&c, &id);

    let shim_binary = std::fs::read(&shim_exe).expect("reading the shim's binary");
    // Strings of Cranelift's settings and of the sandbox that loads a guest: in `wasmbox-oci`,
    // not in the shim.
    for engine in [&b"regalloc_algorithm"[..], b"phase load"] {
        let found = shim_binary.windows(engine.len()).any(|window| window == engine);
        assert!(!found, "{} holds {:?}", shim_exe.display(), String::from_utf8_lossy(engine));
    }
    let helper = init_cmdline.split(|b| *b == 0).next().unwrap_or_default();
    assert!(helper.ends_with(b"/wasmbox-oci"), "the init's program: {}", String::from_utf8_lossy(helper));
    eprintln!("mapped of their binaries: shim {} KiB, init {} KiB", mapped.0, mapped.1);
    assert!(
        mapped.0 <= 5 << 10 && mapped.1 <= 4 << 10,
        "KiB of their binaries mapped in the idle shim and init: {mapped:?}"
    );
}

/// A call maps the code that answers it again (`ctr tasks ps` runs the shim's Pids, which reads
/// the container's cgroup), and the shim lets it go once it has been quiet for a second, as after
/// the start: an idle shim of a node whose containers are listed and watched keeps mapped what an
/// idle shim runs, not everything it was ever asked. (It let go once, after the start, and kept
/// about 4 MiB of its binary mapped from the first `ctr tasks ps` on.)
#[test]
fn a_shim_lets_go_of_the_code_a_call_mapped_once_quiet() {
    // On a containerd of its own: another test's `ctr tasks ls` would keep the shim busy.
    let c = common::Containerd::start("quiet-again", &[]);
    let (id, _init, shim) = idle_probe_on(&c, "quiet-again");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let settled = binary_resident_kib(shim);
    assert_eq!(c.task_pids(&id).len(), 1, "ctr tasks ps {id}");
    assert!(c.ctr_output(&["tasks", "metrics", &id]).status.success(), "ctr tasks metrics {id}");
    let asked = binary_resident_kib(shim);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let quiet = binary_resident_kib(shim);
    kill_on(&c, &id);
    eprintln!("KiB of the shim's binary mapped: settled {settled}, after the calls {asked}, quiet again {quiet}");
    // The calls mapped code (else this test shows nothing), and the quiet shim let it go.
    assert!(asked >= settled + 512, "the calls mapped {settled} -> {asked} KiB");
    assert!(
        quiet <= settled + 256,
        "KiB mapped: settled {settled}, after the calls {asked}, a quiet second later {quiet}"
    );
}

/// The serving shim runs without glibc's per-thread cache of freed memory (80 KiB less per idle
/// shim), and the container's init keeps it (an HTTP server's threads would queue on malloc's
/// lock without it): `start` hands the shim the tunable and the create helper the node's.
/// glibc's loader splits `GLIBC_TUNABLES` in place, so each tunable is a string of its own in
/// `/proc/PID/environ`.
#[test]
fn only_the_shim_runs_without_mallocs_per_thread_cache() {
    let (id, init, shim) = idle_probe("tcache");
    let environment = |pid: u32| {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("reading the environment");
        raw.split(|b| *b == 0).map(|entry| String::from_utf8_lossy(entry).into_owned()).collect::<Vec<_>>()
    };
    let (of_shim, of_init) = (environment(shim), environment(init));
    assert_eq!(stop(&id), 137);
    containerd().assert_no_leftovers(&id);
    let tcache_off = |entries: &[String]| entries.iter().any(|entry| entry.ends_with("glibc.malloc.tcache_count=0"));
    assert!(tcache_off(&of_shim), "the shim's environment: {of_shim:?}");
    assert!(!tcache_off(&of_init), "the init's environment: {of_init:?}");
}

/// Context switches of each thread of process `pid` so far, by thread id.
fn context_switches(pid: u32) -> std::collections::HashMap<String, u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("listing the process's threads");
    tasks
        .flatten()
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
            Some((task.file_name().to_string_lossy().into_owned(), switches))
        })
        .collect()
}

/// Context switches between two samples of [`context_switches`], of the threads in both (a
/// thread that ended meanwhile, such as the events client's, is not counted).
fn woke_between(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after.iter().filter_map(|(tid, n)| Some(n.saturating_sub(*before.get(tid)?))).sum()
}

/// An idle container's shim and init sleep: a thousand idle containers must not keep a node's
/// cores busy. (ttrpc's client polled its connection to containerd every 10 ms: about 100 wake-ups
/// a second in every shim.) On a containerd of its own: another test's `ctr tasks ls` asks every
/// shim of its namespace for its state, which wakes it.
#[test]
fn an_idle_containers_processes_sleep() {
    let c = common::Containerd::start("asleep", &[]);
    let (id, init, shim) = idle_probe_on(&c, "asleep");
    // Past the start: containerd and the shim exchange a few messages after the task starts, and
    // the shim's events connection goes a second after its last event.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = (context_switches(shim), context_switches(init));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = (context_switches(shim), context_switches(init));
    let woke = (woke_between(&before.0, &after.0), woke_between(&before.1, &after.1));
    kill_on(&c, &id);
    c.stop();
    eprintln!("wake-ups in 3 idle seconds: shim {}, init {}", woke.0, woke.1);
    assert!(woke.0 <= 30 && woke.1 <= 30, "wake-ups in 3 idle seconds: shim {}, init {}", woke.0, woke.1);
}

/// How many threads of process `pid` have the name `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    thread_files(pid, "comm").iter().filter(|comm| comm.trim() == name).count()
}

/// The shim's and the guest's async runtimes run one worker thread each, not one per core of the
/// node (tokio's default): on a 64-core node every idle container had 128 of them.
#[test]
fn an_idle_container_runs_one_async_worker_per_process() {
    let (id, init, shim) = idle_probe("workers");
    // Once the guest sleeps (wasmtime-wasi starts its runtime at the guest's first poll).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let workers = (threads_named(shim, "tokio-rt-worker"), threads_named(init, "tokio-rt-worker"));
    assert_eq!(stop(&id), 137);
    containerd().assert_no_leftovers(&id);
    // The shim has two runtimes (the shim library's and the instance's), the init one.
    assert!(
        workers.0 <= 2 && workers.1 <= 1,
        "tokio workers in the shim and in the init: {workers:?} ({} cores here)",
        num_cores()
    );
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn a_group_shares_one_shim_and_outlives_a_guest_crash_and_an_oom_kill() {
    let c = containerd();
    let group = unique_id("group");
    let annotation = format!("io.containerd.runc.v2.group={group}");
    let in_group = ["--annotation", annotation.as_str()];
    let ids: Vec<String> = ["sleeper", "victim", "crasher"].iter().map(|name| format!("{group}-{name}")).collect();
    for id in &ids {
        start_detached("probe", id, &in_group, &["/probe.wasm", "sleep", "120"]);
    }
    // containerd starts the shim for the first container (its `-id`) and hands the group's
    // later containers to it.
    let shim = the_shim(&ids[0]);
    for id in &ids[1..] {
        assert!(c.shim_pids(id).is_empty(), "{id} has a shim of its own");
    }
    let inits: Vec<u32> = ids.iter().map(|id| running_pid(id)).collect();
    let mut expected = inits.clone();
    expected.sort_unstable();
    assert_eq!(children(shim), expected, "the group's shim has one child per container and no helper");

    // A Linux container of the group is OOM-killed by its cgroup's memory limit.
    let oom = format!("{group}-oom");
    let busybox = c.image("busybox");
    let out = c.ctr_output(&[
        "run",
        "-d",
        "--runtime",
        common::WASMBOX,
        "--annotation",
        &annotation,
        "--memory-limit",
        "33554432",
        &busybox,
        &oom,
        "/bin/busybox",
        "sh",
        "-c",
        "x=$(/bin/busybox head -c 200000000 /dev/zero | /bin/busybox tr '\\0' a); echo survived",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(wait_stopped(&oom), 137, "the OOM-killed container's exit status");
    // A Wasm guest exhausts its memory limit and aborts (a trap ends its process).
    let victim = &ids[1];
    let out = c.ctr_output(&[
        "run",
        "--rm",
        "--runtime",
        common::WASMBOX,
        "--annotation",
        &annotation,
        "--memory-limit",
        "67108864",
        &c.image("probe"),
        &format!("{victim}-vec"),
        "/probe.wasm",
        "vec",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(134), "{out:?}");
    // The process of a running guest is killed from outside, as the kernel's OOM killer ends a
    // process (SIGSEGV or SIGABRT sent by `kill` would not do: PID 1 of a PID namespace gets
    // only the signals it handles, and the engine handles SIGSEGV as a possible trap).
    let crasher = &ids[2];
    unsafe { libc::kill(inits[2] as i32, libc::SIGKILL) };
    assert_eq!(wait_stopped(crasher), 137, "the killed container's exit status");

    // The shim and the other guests are untouched.
    assert!(alive(shim), "the group's shim died");
    for (id, init) in ids.iter().zip(&inits).take(2) {
        assert_eq!(running_pid(id), *init, "{id} after the others ended");
        assert_eq!(containerd().task_pids(id), [*init], "{id} answers ps");
    }
    assert_eq!(stop(&ids[1]), 137);
    assert!(alive(shim), "the group's shim left while a container remains");
    assert_eq!(children(shim), [inits[0]]);
    assert_eq!(stop(&ids[0]), 137);
    for id in ids.iter().chain([&oom]) {
        c.assert_no_leftovers(id);
    }
}

/// An idle shim lets its connection to containerd's ttrpc API go (its events client is dropped a
/// second after its last event) and keeps few threads: 14 to 17 before (two tokio workers, five
/// ttrpc workers, the events client's two, stacks of ended threads kept by glibc), 11 now, and
/// a 12th for a second after the shim let go of its code (the blocking pool's thread that did it).
#[test]
fn an_idle_shim_lets_its_events_connection_go_and_keeps_few_threads() {
    let (id, _init, shim) = idle_probe("quiet");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let ttrpc = Path::new(&format!("{}.ttrpc", containerd().socket().display())).to_owned();
    let clients = common::hygiene::clients_of(&ttrpc);
    let names = thread_files(shim, "comm");
    assert_eq!(stop(&id), 137);
    containerd().assert_no_leftovers(&id);
    let shim_tag = format!("pid={shim},");
    assert!(!clients.iter().any(|users| users.contains(&shim_tag)), "the idle shim {shim} holds {clients:?}");
    assert!(names.len() <= 12, "threads of the idle shim: {}", names.join(" ").replace('\n', ""));
}

/// The exit of a guest that ends after its shim went quiet (its events connection dropped) still
/// reaches containerd, through a new connection: `ctr run` waits for that event.
#[test]
fn a_guest_that_ends_after_its_shim_went_quiet_reports_its_exit() {
    let c = containerd();
    let id = unique_id("late-exit");
    let mut ctr = c.ctr();
    ctr.args(["run", "--rm", "--fifo-dir"]).arg(c.fifo_dir()).args(["--runtime", common::WASMBOX]);
    ctr.arg(c.image("probe")).arg(&id).args(["/probe.wasm", "sleep", "2.5"]);
    let mut run = ctr.stdout(std::process::Stdio::null()).spawn().expect("running ctr run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = run.try_wait().expect("waiting for ctr run") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            panic!("ctr run of a 2.5 s guest did not end in 30 s: its exit event was lost");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success(), "ctr run: {status}");
    c.assert_no_leftovers(&id);
}

/// KiB of private dirty memory of process `pid` (its smaps_rollup).
fn private_dirty_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("the process's smaps_rollup");
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Private_Dirty:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("Private_Dirty in smaps_rollup")
}

/// The container whose init compiled its module (the node's cache had no entry for it) ends up
/// no bigger than one that mapped the module from the cache: the compiler's reusable contexts and
/// its thread pool go once the module is compiled (they kept 3.5 MiB and two threads for the
/// container's life). On a containerd of its own, whose cache starts empty.
#[test]
fn the_container_that_compiled_its_module_keeps_nothing_of_the_compiler() {
    let c = common::Containerd::start("cold-compile", &[]);
    let (cold, warm) = (unique_id("cold"), unique_id("warm"));
    let mut inits = vec![];
    for id in [&cold, &warm] {
        c.start_detached("probe", id, &[], &["/probe.wasm", "sleep", "60"]);
        let (pid, status) = c.task(id).unwrap_or_else(|| panic!("task {id} is not listed"));
        assert_eq!(status, "RUNNING", "task {id}");
        inits.push(pid);
    }
    // Past the start, when an init lets go of the code it no longer runs.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let private: Vec<u64> = inits.iter().map(|pid| private_dirty_kib(*pid)).collect();
    let threads: Vec<usize> = inits.iter().map(|pid| thread_files(*pid, "comm").len()).collect();
    let compiled = c.log_of(&cold).iter().any(|line| line.contains("compiled in"));
    for id in [&cold, &warm] {
        assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", id]).status.success());
        assert_eq!(c.wait_stopped(id), 137);
        c.assert_no_leftovers(id);
    }
    c.stop();
    assert!(compiled, "the first container did not compile its module");
    eprintln!("private memory of the inits: compiled {} KiB, mapped from the cache {} KiB", private[0], private[1]);
    assert!(private[0] <= private[1] + 512, "private KiB of the init that compiled and of the other: {private:?}");
    assert_eq!(threads[0], threads[1], "threads of the init that compiled and of the other");
}
