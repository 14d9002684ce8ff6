//! End-to-end on both engines: every case runs through `ctr run` once with
//! `io.containerd.wasmbox.v1` (wasmtime) and once with `io.containerd.wasmbox-wasmer.v1` (the same
//! shim under its Wasmer name), and must give the same result on each: the foundation cases (args,
//! env, cwd, stdin, mounts, exit codes, traps, bad input), the seed's six text examples, the C and
//! Go seed guests, the memory limit, the code cache and the preopen boundary. Then what is
//! Wasmer's own: choosing the engine per workload, and the clear refusal of what only wasmtime runs.

mod common;

use common::{Run, containerd, unique_id};

/// Each engine and the runtime whose default it is.
const ENGINES: [(&str, &str); 2] = [("wasmtime", common::WASMBOX), ("wasmer", WASMER)];
const WASMER: &str = "io.containerd.wasmbox-wasmer.v1";

/// `ctr run --rm --runtime RUNTIME [flags] IMAGE ID args`, checking that nothing was left behind.
fn run_on(runtime: &str, image: &str, flags: &[&str], args: &[&str]) -> Run {
    let c = containerd();
    let id = unique_id("engines");
    let run = c.run_with(Some(runtime), image, &id, flags, args);
    c.assert_no_leftovers(&id);
    run
}

/// The probe guest with `args` on each engine: (engine name, run).
fn probe_on_both(flags: &[&str], args: &[&str]) -> Vec<(&'static str, Run)> {
    let mut full = vec!["/probe.wasm"];
    full.extend_from_slice(args);
    ENGINES.iter().map(|(engine, runtime)| (*engine, run_on(runtime, "probe", flags, &full))).collect()
}

/// `image` with `args` on each engine must print `stdout` and exit 0.
fn prints_on_both(image: &str, args: &[&str], stdout: &str) {
    for (engine, runtime) in ENGINES {
        let run = run_on(runtime, image, &[], args);
        assert_eq!((run.code, run.stdout.as_str()), (0, stdout), "{engine}: {run:#?}");
    }
}

/// One line of cause on stderr, starting `wasmbox: `, containing `needle`, and exit `code`.
fn fails_with(engine: &str, run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, code, "{engine}: {run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{engine}: one line of cause: {run:#?}");
    assert!(lines[0].starts_with("wasmbox: ") && lines[0].contains(needle), "{engine}: {run:#?}");
}

#[test]
fn hello_modules_in_rust_and_text_run_on_both() {
    prints_on_both("hello", &[], "Hello from Rust on wasmbox (wasm32-wasip1)!\n");
    prints_on_both("hello-wat", &[], "Hello from WebAssembly text!\n");
}

#[test]
fn the_engine_that_ran_is_the_one_chosen() {
    let c = containerd();
    for (engine, runtime) in ENGINES {
        let id = unique_id("which-engine");
        let run = c.run_with(Some(runtime), "hello", &id, &[], &[]);
        assert_eq!(run.code, 0, "{engine}: {run:#?}");
        let log = c.log_of(&id);
        let load = format!("({engine})");
        assert!(log.iter().any(|l| l.contains("phase load: ") && l.contains(&load)), "{engine}: {log:#?}");
        c.assert_no_leftovers(&id);
    }
}

#[test]
fn args_env_and_cwd_reach_the_guest_on_both() {
    for (engine, run) in probe_on_both(&[], &["args", "one", "two words", ""]) {
        assert_eq!((run.code, run.stdout.as_str()), (0, "/probe.wasm\nargs\none\ntwo words\n\n"), "{engine}: {run:#?}");
    }
    for (engine, run) in
        probe_on_both(&["--env", "GREETING=hi there", "--env", "EMPTY="], &["env", "GREETING", "EMPTY", "NOPE"])
    {
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, "GREETING=hi there\nEMPTY=\nNOPE unset\n"),
            "{engine}: {run:#?}"
        );
    }
    for (engine, run) in probe_on_both(&["--cwd", "/fixtures"], &["cwd"]) {
        assert_eq!((run.code, run.stdout.as_str()), (0, "PWD=/fixtures\ncurrent_dir=/\n"), "{engine}: {run:#?}");
    }
}

#[test]
fn stdin_reaches_the_guest_and_ends_on_both() {
    use std::io::Write;
    let c = containerd();
    for (engine, runtime) in ENGINES {
        let id = unique_id("engines-stdin");
        let image = c.image("probe");
        let mut child = c
            .ctr()
            .args(["run", "--rm", "--fifo-dir"])
            .arg(c.fifo_dir())
            .args(["--runtime", runtime, &image, &id, "/probe.wasm", "stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running ctr");
        child.stdin.take().expect("stdin").write_all(b"from ctr\n").expect("writing stdin");
        let out = child.wait_with_output().expect("waiting for ctr");
        assert!(out.status.success(), "{engine}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "9 bytes: FROM CTR\n", "{engine}");
        c.assert_no_leftovers(&id);
    }
}

#[test]
fn exit_codes_and_traps_are_the_same_on_both() {
    for (engine, run) in probe_on_both(&[], &["exit", "3"]) {
        assert_eq!(run.code, 3, "{engine}: {run:#?}");
    }
    for (engine, run) in probe_on_both(&[], &["trap"]) {
        assert_eq!(run.code, 134, "{engine}: {run:#?}");
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("wasmbox: /probe.wasm: wasm trap: "), "{engine}: {run:#?}");
        assert!(first.contains("unreachable"), "{engine}: {run:#?}");
        assert!(run.stderr.contains("wasm backtrace"), "{engine}: the backtrace follows: {run:#?}");
    }
}

#[test]
fn mounts_and_their_read_only_flags_hold_on_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("in.txt"), "from the host\n").expect("writing in.txt");
    let rw = format!("type=bind,src={},dst=/data,options=rbind:rw", dir.path().display());
    let ro = format!("type=bind,src={},dst=/data,options=rbind:ro", dir.path().display());
    for (engine, run) in probe_on_both(&["--mount", &rw], &["cat", "/data/in.txt"]) {
        assert_eq!((run.code, run.stdout.as_str()), (0, "from the host\n"), "{engine}: {run:#?}");
    }
    for (engine, runtime) in ENGINES {
        let out = dir.path().join(format!("out-{engine}.txt"));
        let guest_path = format!("/data/out-{engine}.txt");
        let run = run_on(runtime, "probe", &["--mount", &rw], &["/probe.wasm", "write", &guest_path, engine]);
        assert_eq!(run.code, 0, "{engine}: {run:#?}");
        assert_eq!(std::fs::read_to_string(&out).expect("reading what the guest wrote"), engine);
        let run = run_on(runtime, "probe", &["--mount", &ro], &["/probe.wasm", "write", "/data/refused.txt", "x"]);
        assert_eq!(run.code, 1, "{engine}: {run:#?}");
        assert!(run.stderr.contains("cannot write /data/refused.txt"), "{engine}: {run:#?}");
        assert!(!dir.path().join("refused.txt").exists(), "{engine} wrote through a read-only mount");
        let run = run_on(runtime, "probe", &["--read-only"], &["/probe.wasm", "write", "/new.txt", "x"]);
        assert_eq!(run.code, 1, "{engine}: {run:#?}");
        assert!(run.stderr.contains("cannot write /new.txt"), "{engine}: {run:#?}");
    }
}

/// The preopens annotation is the guest's boundary on both engines: nothing outside it is
/// readable, through `..` or a symlink.
#[test]
fn preopens_bound_the_guest_on_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("inside.txt"), "inside\n").expect("writing inside.txt");
    std::os::unix::fs::symlink("/probe.wasm", dir.path().join("absolute")).expect("symlink");
    std::os::unix::fs::symlink("../../probe.wasm", dir.path().join("relative")).expect("symlink");
    let mount = format!("type=bind,src={},dst=/data,options=rbind:ro", dir.path().display());
    let flags = ["--mount", &mount, "--annotation", "wasmbox.io/preopens=/data"];
    for (engine, run) in probe_on_both(&flags, &["cat", "/data/inside.txt"]) {
        assert_eq!((run.code, run.stdout.as_str()), (0, "inside\n"), "{engine}: {run:#?}");
    }
    for outside in ["/probe.wasm", "/data/../probe.wasm", "/data/../../probe.wasm", "/data/absolute", "/data/relative"]
    {
        for (engine, run) in probe_on_both(&flags, &["cat", outside]) {
            assert_eq!(run.code, 1, "{engine}: {outside} must not be readable: {run:#?}");
            assert!(run.stderr.contains("cannot read"), "{engine}: {run:#?}");
        }
    }
    for (engine, run) in probe_on_both(&flags, &["ls", "/"]) {
        assert!(!run.stdout.contains("probe.wasm"), "{engine}: the root is not preopened: {run:#?}");
    }
}

#[test]
fn bad_input_fails_with_one_line_on_both() {
    for (engine, runtime) in ENGINES {
        let run = run_on(runtime, "probe", &[], &["/fixtures/invalid.wasm"]);
        fails_with(engine, &run, 126, "/fixtures/invalid.wasm: invalid WebAssembly");
        let run = run_on(runtime, "probe", &[], &["/no/such.wasm"]);
        assert_eq!((run.code, run.stderr.as_str()), (127, "wasmbox: /no/such.wasm: No such file or directory\n"));
        let run = run_on(runtime, "probe", &[], &["/fixtures/missing-import.wat"]);
        fails_with(engine, &run, 126, "env::no_such_function");
        let run = run_on(runtime, "probe", &[], &["/fixtures/hello.wat#nope"]);
        fails_with(engine, &run, 126, "no exported function `nope` (exported functions: _start)");
    }
}

#[test]
fn the_seeds_six_text_examples_run_on_both() {
    prints_on_both("seed", &[], "33\n");
    prints_on_both("seed", &["/seed/add.wat#add", "-5", "2"], "-3\n");
    prints_on_both("seed", &["/seed/call.wat#getAnswerPlus1"], "43\n");
    prints_on_both("seed", &["/seed/logit.wat#logIt"], "13\n");
    prints_on_both("seed", &["/seed/global.wat#getGlobal,incGlobal,incGlobal,getGlobal"], "0\n2\n");
    prints_on_both("seed", &["/seed/writehi.wat#writeHi"], "Hi\n");
    prints_on_both("seed", &["/seed/table.wat#callByIndex", "1"], "13\n");
    for (engine, runtime) in ENGINES {
        let run = run_on(runtime, "seed", &[], &["/seed/table.wat#callByIndex", "2"]);
        assert_eq!(run.code, 134, "{engine}: {run:#?}");
        assert!(run.stderr.starts_with("wasmbox: /seed/table.wat: wasm trap: "), "{engine}: {run:#?}");
        let run = run_on(runtime, "seed", &[], &["/seed/add.wat#add", "6", "twenty"]);
        fails_with(engine, &run, 126, "argument 2 of `add(i32, i32) -> (i32)`: cannot read \"twenty\" as i32");
    }
}

#[test]
fn the_c_and_go_seed_guests_run_on_both() {
    prints_on_both("c-seed", &[], "hello, world!\n");
    prints_on_both("c-seed", &["/lib.wasm#Add", "6", "27"], "33\n");
    prints_on_both("c-seed", &["/lib.wasm#AddUser", "str:Alice", "30"], "name:Alice, len:5, age:30\n1\n");
    prints_on_both("go-seed", &[], "Hello, WebAssembly!\n");
    prints_on_both("go-seed", &["/lib.wasm#Add", "6", "27"], "33\n");
    prints_on_both("go-seed", &["/lib.wasm#AddUser", "str:Alice", "30"], "Add User:{Alice 30}\n1\n");
}

#[test]
fn the_memory_limit_holds_on_both() {
    for (engine, run) in probe_on_both(&["--memory-limit", "67108864"], &["alloc", "200"]) {
        assert_eq!(run.code, 2, "{engine}: {run:#?}");
        let got: u32 = run
            .stdout
            .trim()
            .strip_prefix("memory.grow refused after ")
            .and_then(|rest| rest.strip_suffix(" MiB"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{engine}: {run:#?}"));
        assert!(got > 8 && got < 64, "{engine}: {run:#?}");
    }
    for (engine, run) in probe_on_both(&[], &["alloc", "200"]) {
        assert_eq!(run.stdout, "grew 200 MiB\n", "{engine}: {run:#?}");
    }
    for (engine, run) in probe_on_both(&["--memory-limit", "67108864"], &["vec", "200"]) {
        assert_eq!(run.code, 134, "{engine}: {run:#?}");
        assert!(run.stderr.contains("the container's memory limit was hit"), "{engine}: {run:#?}");
    }
}

#[test]
fn a_deadline_ends_a_runaway_guest_on_both() {
    for (engine, run) in probe_on_both(&["--annotation", "wasmbox.io/deadline=1s"], &["spin"]) {
        assert_eq!(run.code, 124, "{engine}: {run:#?}");
        assert!(run.stderr.contains("deadline of 1s exceeded"), "{engine}: {run:#?}");
    }
}

/// Wasmer's compiled code is cached under its own entry, keyed apart from wasmtime's, and the
/// next container loads it from there.
#[test]
fn wasmer_code_is_cached_apart_from_wasmtimes_and_reused() {
    let c = containerd();
    let wasm = wat::parse_file(common::repo_root().join("examples/wat/hello.wat")).expect("hello.wat");
    let digest = wasmbox_runtime::code::image::sha256_digest(&wasm);
    let hex = digest.trim_start_matches("sha256:").to_owned();
    let ids: Vec<String> = (0..2).map(|_| unique_id("wasmer-cache")).collect();
    for id in &ids {
        let run = c.run_with(Some(WASMER), "hello-wat", id, &[], &["/hello.wat"]);
        assert_eq!((run.code, run.stdout.as_str()), (0, "Hello from WebAssembly text!\n"), "{run:#?}");
        c.assert_no_leftovers(id);
    }
    let entries: Vec<String> = std::fs::read_dir(c.cache_dir())
        .expect("reading the cache")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&hex) && name.contains("-wasmer-"))
        .collect();
    assert_eq!(entries.len(), 1, "one Wasmer entry for the module: {entries:?}");
    let loaded = format!("/hello.wat: compiled code loaded from the cache ({})", entries[0]);
    let second = c.log_of(&ids[1]);
    assert!(second.iter().any(|l| l.contains(&loaded)), "no cache hit for {}: {second:#?}", ids[1]);
}

/// The engine is chosen per workload: `wasmbox.io/engine` (annotation or image label) wins over
/// the runtime's default, both ways.
#[test]
fn the_engine_setting_wins_over_the_runtimes_default() {
    let c = containerd();
    for (runtime, flags, expected) in [
        (common::WASMBOX, ["--annotation", "wasmbox.io/engine=wasmer"], "(wasmer)"),
        (WASMER, ["--annotation", "wasmbox.io/engine=wasmtime"], "(wasmtime)"),
        (common::WASMBOX, ["--label", "wasmbox.io/engine=wasmer"], "(wasmer)"),
    ] {
        let id = unique_id("choose-engine");
        let run = c.run_with(Some(runtime), "hello", &id, &flags, &[]);
        assert_eq!(run.code, 0, "{runtime} {flags:?}: {run:#?}");
        let log = c.log_of(&id);
        assert!(
            log.iter().any(|l| l.contains("phase load: ") && l.contains(expected)),
            "{runtime} {flags:?}: {log:#?}"
        );
        c.assert_no_leftovers(&id);
    }
    let id = unique_id("bad-engine");
    let run = c.run_with(Some(common::WASMBOX), "hello", &id, &["--annotation", "wasmbox.io/engine=wasmedge"], &[]);
    assert!(run.stderr.starts_with("ctr: failed to create shim task:"), "{run:#?}");
    assert!(
        run.stderr.contains("annotation wasmbox.io/engine=\"wasmedge\": expected one of wasmtime, wasmer"),
        "{run:#?}"
    );
    c.assert_no_leftovers(&id);
}

/// What only wasmtime runs fails the create on Wasmer, saying why and what to choose instead.
#[test]
fn wasmer_refuses_components_and_networks_at_create() {
    let c = containerd();
    for (image, flags, needle) in [
        (
            "hello-component",
            &[][..],
            "is a component: the wasmer engine cannot run it (choose wasmtime with wasmbox.io/engine)",
        ),
        ("hello-http", &[][..], "is a component: the wasmer engine cannot run it"),
        (
            "probe",
            &["--annotation", "wasmbox.io/network=all"][..],
            "wasmbox.io/network other than `none`: the wasmer engine cannot run it",
        ),
    ] {
        let id = unique_id("wasmer-refuses");
        let args: &[&str] = if image == "probe" { &["/probe.wasm", "args"] } else { &[] };
        let run = c.run_with(Some(WASMER), image, &id, flags, args);
        assert_ne!(run.code, 0, "{image}: {run:#?}");
        assert_eq!(run.stdout, "", "{image}: the guest must not run: {run:#?}");
        assert_eq!(run.stderr.lines().count(), 1, "{image}: one line: {run:#?}");
        assert!(run.stderr.starts_with("ctr: failed to create shim task:"), "{image}: {run:#?}");
        assert!(run.stderr.contains("wasmbox: wasmbox.io/engine=wasmer: "), "{image}: {run:#?}");
        assert!(run.stderr.contains(needle), "{image}: {run:#?}");
        c.assert_no_leftovers(&id);
    }
    // WASIX, Wasmer's own extensions (processes, threads, sockets), is not offered either.
    let dir = tempfile::tempdir().expect("tempdir");
    let wat = r#"(module (import "wasix_32v1" "proc_fork" (func (param i32) (result i32)))
                          (memory (export "memory") 1) (func (export "_start")))"#;
    std::fs::write(dir.path().join("wasix.wat"), wat).expect("writing wasix.wat");
    let mount = format!("type=bind,src={},dst=/data,options=rbind:ro", dir.path().display());
    let id = unique_id("wasmer-wasix");
    let run = c.run_with(Some(WASMER), "probe", &id, &["--mount", &mount], &["/data/wasix.wat"]);
    assert!(run.stderr.starts_with("ctr: failed to create shim task:"), "{run:#?}");
    assert!(
        run.stderr.contains("/data/wasix.wat imports WASIX (`wasix_32v1`), which wasmbox does not offer"),
        "{run:#?}"
    );
    c.assert_no_leftovers(&id);
}
