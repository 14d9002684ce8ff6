//! End-to-end: Wasm images run through a real containerd with `ctr run --runtime io.containerd.wasmbox.v1`.

mod common;

use std::process::Command;

use common::{Containerd, Run, binary, containerd, unique_id};

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "expected exit 0: {run:#?}");
}

/// Runs the probe guest with `args` and checks the container left nothing behind.
fn probe(flags: &[&str], args: &[&str]) -> Run {
    let c = containerd();
    let id = unique_id("probe");
    let mut full = vec!["/probe.wasm"];
    full.extend_from_slice(args);
    let run = c.run_wasm("probe", &id, flags, &full);
    c.assert_no_leftovers(&id);
    run
}

#[test]
fn rust_wasip1_module_prints_its_greeting() {
    let c = containerd();
    let id = unique_id("hello");
    let run = c.run_wasm("hello", &id, &[], &[]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Hello from Rust on wasmbox (wasm32-wasip1)!\n");
    c.assert_no_leftovers(&id);
}

/// Each step of a run is timed in containerd's log (`phase NAME: MS`), as `make bench` reads it:
/// the shim's create, start, run (from the start to the init's exit) and delete, and the init's
/// load (which it logs before its guest runs: after that it holds no descriptor to the shim).
#[test]
fn a_run_logs_the_time_of_each_phase() {
    let c = containerd();
    let id = unique_id("phases");
    let run = c.run_wasm("hello", &id, &[], &[]);
    assert_ok(&run);
    // containerd copies the shim's log into its own as it comes: the last lines may land just
    // after `ctr run` returned.
    let phases = ["create", "load", "start", "run", "delete"];
    let times_of = |log: &str, phase: &str| -> Vec<f64> {
        let shim_line = format!("{id}: phase {phase}: ");
        let init_line = format!("instance=\"{id}\" msg=\"phase {phase}: ");
        log.lines()
            .filter_map(|line| line.split_once(&shim_line).or_else(|| line.split_once(&init_line)))
            .filter_map(|(_, rest)| rest.split(' ').next()?.parse().ok())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(c.work.join("containerd.log")).expect("reading containerd.log");
        if phases.iter().all(|phase| !times_of(&log, phase).is_empty()) || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    for phase in phases {
        let times = times_of(&log, phase);
        assert_eq!(times.len(), 1, "phase {phase} of {id}: {times:?}");
    }
    c.assert_no_leftovers(&id);
}

#[test]
fn rust_wasip2_component_runs_in_its_cwd() {
    let c = containerd();
    let id = unique_id("component");
    let run = c.run_wasm("hello-component", &id, &["--cwd", "/dev"], &[]);
    assert_ok(&run);
    assert!(run.stdout.contains("Hello from a Rust component on wasmbox (wasm32-wasip2)!"), "{run:#?}");
    assert!(run.stdout.contains("cwd: /dev\n"), "components get process.cwd as their cwd: {run:#?}");
    c.assert_no_leftovers(&id);
}

#[test]
fn wat_text_module_runs() {
    let c = containerd();
    let id = unique_id("wat");
    let run = c.run_wasm("hello-wat", &id, &[], &[]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Hello from WebAssembly text!\n");
    c.assert_no_leftovers(&id);
}

#[test]
fn exit_code_of_proc_exit_is_the_containers() {
    assert_eq!(probe(&[], &["exit", "3"]).code, 3);
    assert_eq!(probe(&[], &["exit", "0"]).code, 0);
}

#[test]
fn trap_exits_non_zero_with_message_and_backtrace() {
    let run = probe(&[], &["trap"]);
    assert_eq!(run.code, 134, "{run:#?}");
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("wasmbox: /probe.wasm: wasm trap: "), "{run:#?}");
    assert!(first.contains("unreachable"), "{run:#?}");
    assert!(run.stderr.contains("wasm backtrace"), "the backtrace follows: {run:#?}");
}

#[test]
fn args_reach_the_guest_with_argv0_as_given() {
    let run = probe(&[], &["args", "one", "two words", ""]);
    assert_ok(&run);
    assert_eq!(run.stdout, "/probe.wasm\nargs\none\ntwo words\n\n");
}

#[test]
fn env_reaches_the_guest() {
    let run = probe(&["--env", "GREETING=hi there", "--env", "EMPTY="], &["env", "GREETING", "EMPTY", "NOPE"]);
    assert_ok(&run);
    assert_eq!(run.stdout, "GREETING=hi there\nEMPTY=\nNOPE unset\n");
}

/// `ctr run --rm` with `input` written to its stdin and then closed; fails the test if the
/// container does not end within 30 s (a container that never sees the end of its input).
fn run_with_stdin(image: &str, id: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let c = containerd();
    let image = c.image(image);
    let mut ctr = c.ctr();
    ctr.args(["run", "--rm", "--fifo-dir"]).arg(c.fifo_dir());
    let mut child = ctr
        .args(["--runtime", common::WASMBOX, &image, id])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waited.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", id]);
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{id}: the container never saw the end of its stdin");
        }
    }
}

#[test]
fn stdin_reaches_the_guest_and_ends() {
    let c = containerd();
    let id = unique_id("stdin");
    let out = run_with_stdin("probe", &id, &["/probe.wasm", "stdin"], "from ctr\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "9 bytes: FROM CTR\n");
    c.assert_no_leftovers(&id);
    // a Linux container through the same shim: busybox cat
    let id = unique_id("stdin-linux");
    let out = run_with_stdin("busybox", &id, &["/bin/busybox", "cat"], "to cat\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to cat\n");
    c.assert_no_leftovers(&id);
}

#[test]
fn cwd_is_pwd_for_preview1_guests() {
    let run = probe(&["--cwd", "/fixtures"], &["cwd"]);
    assert_ok(&run);
    // wasi-libc starts every preview 1 guest at `/`: the cwd reaches it as PWD.
    assert_eq!(run.stdout, "PWD=/fixtures\ncurrent_dir=/\n");
}

#[test]
fn guest_sees_the_image_root_file_system() {
    let run = probe(&[], &["ls", "/fixtures"]);
    assert_ok(&run);
    assert_eq!(run.stdout, "calc.wat\nhello.wat\nimported-table.wat\ninvalid.wasm\nmissing-import.wat\nsimd.wat\n");
}

#[test]
fn bind_mount_is_readable_and_writable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from the host\n").unwrap();
    let mount = format!("type=bind,src={},dst=/data,options=rbind:rw", dir.path().display());
    let run = probe(&["--mount", &mount], &["cat", "/data/in.txt"]);
    assert_ok(&run);
    assert_eq!(run.stdout, "from the host\n");
    let run = probe(&["--mount", &mount], &["write", "/data/out.txt", "from the guest"]);
    assert_ok(&run);
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "from the guest");
}

#[test]
fn write_to_read_only_mount_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "read me\n").unwrap();
    let mount = format!("type=bind,src={},dst=/data,options=rbind:ro", dir.path().display());
    let run = probe(&["--mount", &mount], &["cat", "/data/in.txt"]);
    assert_eq!(run.stdout, "read me\n", "{run:#?}");
    let run = probe(&["--mount", &mount], &["write", "/data/out.txt", "nope"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("cannot write /data/out.txt: Operation not permitted"), "{run:#?}");
    assert!(!dir.path().join("out.txt").exists());
}

#[test]
fn write_to_read_only_rootfs_is_refused() {
    let run = probe(&["--read-only"], &["write", "/new.txt", "nope"]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("cannot write /new.txt: Operation not permitted"), "{run:#?}");
}

#[test]
fn linux_container_runs_next_to_a_wasm_one() {
    let c = containerd();
    let linux = unique_id("busybox-runc");
    let image = c.image("busybox");
    let out = c.ctr_output(&["run", "-d", &image, &linux, "/bin/busybox", "sleep", "30"]);
    assert!(out.status.success(), "{out:?}");

    let wasm = unique_id("hello-beside");
    let run = c.run_wasm("hello", &wasm, &[], &[]);
    assert_ok(&run);
    let tasks = String::from_utf8_lossy(&c.ctr_output(&["tasks", "ls"]).stdout).into_owned();
    assert!(tasks.lines().any(|l| l.starts_with(&linux) && l.contains("RUNNING")), "{tasks}");

    let out = c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &linux]);
    assert!(out.status.success(), "{out:?}");
    for _ in 0..50 {
        if c.ctr_output(&["tasks", "delete", &linux]).status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(c.ctr_output(&["containers", "delete", &linux]).status.success());
    c.assert_no_leftovers(&wasm);
}

#[test]
fn elf_entrypoint_runs_as_a_linux_container_through_the_wasmbox_shim() {
    let c = containerd();
    let id = unique_id("busybox-wasmbox");
    let run = c.run_wasm("busybox", &id, &[], &[]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Hello from busybox\n");
    c.assert_no_leftovers(&id);
    let via_runc = c.run_with(None, "busybox", &unique_id("busybox-runc"), &[], &[]);
    assert_eq!(via_runc.stdout, run.stdout);
}

/// A Linux container through the wasmbox shim gets the environment of its spec, and only it, as
/// runc gives it: it got the shim's (containerd's socket addresses, the node's paths and
/// settings) and not its own.
#[test]
fn a_linux_container_gets_its_specs_environment_and_nothing_of_the_hosts() {
    let c = containerd();
    let flags = ["--env", "GREETING=hi there"];
    let args = ["/bin/busybox", "env"];
    let id = unique_id("busybox-env");
    let run = c.run_wasm("busybox", &id, &flags, &args);
    assert_ok(&run);
    c.assert_no_leftovers(&id);
    let via_runc = c.run_with(None, "busybox", &unique_id("busybox-env-runc"), &flags, &args);
    assert_ok(&via_runc);
    let sorted = |out: &str| {
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert!(run.stdout.contains("GREETING=hi there"), "{run:#?}");
    assert_eq!(sorted(&run.stdout), sorted(&via_runc.stdout), "the environment through wasmbox and through runc");
}

/// Bad input: one line of cause on stderr, a non-zero exit, nothing left behind (checked by `probe`).
fn assert_one_line_failure(run: &Run, code: i32, needle: &str) {
    assert_eq!(run.code, code, "{run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of cause: {run:#?}");
    assert!(lines[0].starts_with("wasmbox: ") && lines[0].contains(needle), "{run:#?}");
}

/// The shim creates its containers with the `wasmbox-oci` installed beside it (the engine is in
/// that binary only): without it, the create fails at once and says what is missing.
#[test]
fn a_shim_without_its_wasmbox_oci_says_what_is_missing() {
    let c = Containerd::start("no-helper", &[]);
    let helper = c.work.join("opt/bin/wasmbox-oci");
    std::fs::remove_file(&helper).expect("removing the private containerd's wasmbox-oci");
    let id = unique_id("no-helper");
    let run = c.run_wasm("hello", &id, &[], &[]);
    let expected =
        format!("wasmbox: {} is missing: the shim creates containers with the wasmbox-oci", helper.display());
    assert!(run.code != 0 && run.stdout.is_empty(), "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line of cause: {run:#?}");
    assert!(run.stderr.contains(&expected), "{run:#?}");
    c.assert_no_leftovers(&id);
    c.stop();
}

/// The shim binary run by hand: help, its version, a bad flag and a missing containerd each get
/// an answer of their own, never a panic.
#[test]
fn the_shim_binary_run_by_hand_answers_clearly() {
    let shim = binary("containerd-shim-wasmbox-v1");
    let run = |args: &[&str]| {
        let output = Command::new(&shim)
            .args(args)
            .env_remove("TTRPC_ADDRESS")
            .env_remove("GRPC_ADDRESS")
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("running the shim binary");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
    };
    for help in ["-h", "-help", "--help"] {
        let (code, stdout, stderr) = run(&[help]);
        assert_eq!(code, Some(0), "{help}: {stderr}");
        assert!(stdout.contains("containerd runs this shim") && stdout.contains("-namespace"), "{help}: {stdout}");
    }
    let (code, stdout, _) = run(&["-v"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Runtime: wasmbox"), "{stdout}");
    for (args, cause) in [
        (&["--version"][..], "flag provided but not defined: -version"),
        (&["-bogus"][..], "flag provided but not defined: -bogus"),
        (&["-namespace"][..], "flag needs an argument: -namespace"),
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(cause) && stderr.contains("-h"), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = run(&["-namespace", "default", "-id", "x", "start"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("TTRPC_ADDRESS is not set"), "{stderr}");
}

#[test]
fn invalid_wasm_bytes_fail_clearly() {
    let c = containerd();
    let id = unique_id("invalid");
    let run = c.run_wasm("probe", &id, &[], &["/fixtures/invalid.wasm"]);
    assert_one_line_failure(&run, 126, "/fixtures/invalid.wasm: invalid WebAssembly");
    c.assert_no_leftovers(&id);
}

#[test]
fn missing_entrypoint_file_fails_clearly() {
    let c = containerd();
    let id = unique_id("missing");
    let run = c.run_wasm("probe", &id, &[], &["/no/such.wasm"]);
    assert_one_line_failure(&run, 127, "/no/such.wasm: No such file or directory");
    assert_eq!(run.stderr, "wasmbox: /no/such.wasm: No such file or directory\n");
    c.assert_no_leftovers(&id);
}

#[test]
fn unknown_import_fails_clearly_naming_it() {
    let c = containerd();
    let id = unique_id("import");
    let run = c.run_wasm("probe", &id, &[], &["/fixtures/missing-import.wat"]);
    assert_one_line_failure(&run, 126, "env::no_such_function");
    c.assert_no_leftovers(&id);
}

#[test]
fn missing_export_fails_clearly_naming_the_exports() {
    let c = containerd();
    let id = unique_id("export");
    let run = c.run_wasm("probe", &id, &[], &["/fixtures/hello.wat#nope"]);
    assert_one_line_failure(&run, 126, "no exported function `nope` (exported functions: _start)");
    c.assert_no_leftovers(&id);
}

#[test]
fn compiled_code_is_cached_and_reused() {
    let c = containerd();
    let (first_id, second_id) = (unique_id("cache"), unique_id("cache"));
    let first = c.run_wasm("hello-wat", &first_id, &[], &["/hello.wat"]);
    assert_ok(&first);
    let second = c.run_wasm("hello-wat", &second_id, &[], &["/hello.wat"]);
    assert_ok(&second);
    assert_eq!(first.stdout, second.stdout);
    // the module's entry: named by the digest of the wasm the text assembles to
    let wasm = wat::parse_file(common::repo_root().join("examples/wat/hello.wat")).unwrap();
    let digest = wasmbox_runtime::code::image::sha256_digest(&wasm);
    let hex = digest.trim_start_matches("sha256:");
    let entries: Vec<String> = std::fs::read_dir(c.cache_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(hex))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    // the second container, and no other's log line, says it mapped the entry
    let mapped = format!("/hello.wat: compiled code mapped from the cache ({})", entries[0]);
    let second_log = c.log_of(&second_id);
    assert!(second_log.iter().any(|l| l.contains(&mapped)), "no cache hit for {second_id}: {second_log:#?}");
    let first_log = c.log_of(&first_id);
    assert!(
        first_log.iter().any(|l| l.contains("/hello.wat: compiled in") || l.contains(&mapped)),
        "{first_id} neither compiled nor mapped: {first_log:#?}"
    );
}

#[test]
fn wordcount_tool_reads_a_mounted_file_and_writes_into_a_mounted_directory() {
    let c = containerd();
    let input = tempfile::tempdir().unwrap();
    let output = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("input.txt"), "the cat and the hat\nThe end\n").unwrap();
    let flags = [
        "--mount".to_owned(),
        format!("type=bind,src={},dst=/in,options=rbind:ro", input.path().display()),
        "--mount".to_owned(),
        format!("type=bind,src={},dst=/out,options=rbind:rw", output.path().display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let id = unique_id("wordcount");
    let run = c.run_wasm("wordcount", &id, &flags, &[]);
    assert_ok(&run);
    let expected = "lines 2\nwords 7\nbytes 28\n3 the\n1 and\n1 cat\n";
    assert_eq!(run.stdout, expected);
    assert_eq!(std::fs::read_to_string(output.path().join("report.txt")).unwrap(), expected);
    c.assert_no_leftovers(&id);
}

#[test]
fn python_component_starts_from_its_precompiled_code_on_a_trusting_node() {
    let c = common::trusting_containerd();
    let id = unique_id("python");
    let run = c.run_wasm("python", &id, &["--env", "GREETING=hi"], &["/hello.wasm", "one", "two"]);
    assert_ok(&run);
    assert!(run.stdout.starts_with("Hello from Python 3."), "{}", run.stdout);
    assert!(run.stdout.contains("in WebAssembly!\nargs: one two\nGREETING: hi\n"), "{}", run.stdout);
    let log = c.log_of(&id);
    assert!(
        log.iter().any(|l| l.contains("/hello.wasm: using the image's precompiled code, not compiling")),
        "no use of the precompiled code in the log: {log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("compiled in")), "it compiled: {log:#?}");
    c.assert_no_leftovers(&id);
}

#[test]
fn stale_precompiled_code_is_refused_and_the_module_compiled() {
    let c = common::trusting_containerd();
    // Another set of Wasm features is another engine: the image's code was not made for it.
    let id = unique_id("stale");
    let run = c.run_wasm("hello-precompiled", &id, &["--annotation", "wasmbox.io/wasm-features=-simd"], &[]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Hello from Rust on wasmbox (wasm32-wasip1)!\n");
    let log = c.log_of(&id);
    assert!(
        log.iter().any(|l| l.contains("precompiled code in the image refused, compiling instead: stale or foreign")),
        "no refusal in the log: {log:#?}"
    );
    assert!(log.iter().any(|l| l.contains("compiled in")), "it did not compile: {log:#?}");
    c.assert_no_leftovers(&id);
}

#[test]
fn javascript_component_runs() {
    let c = containerd();
    let id = unique_id("js");
    let run = c.run_wasm("js", &id, &[], &[]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Hello from JavaScript in WebAssembly!\nsum of 1..10 = 55\n");
    c.assert_no_leftovers(&id);
}

#[test]
fn node_installer_image_has_working_tools() {
    // The installer image runs with runc, like the DaemonSet's pod: its CLI finds its libraries,
    // and the script, the shim and its wasmbox-oci are where the DaemonSet expects them.
    let c = containerd();
    let id = unique_id("installer");
    let run = c.run_with(None, "node-installer", &id, &[], &["/opt/wasmbox/wasmbox", "node", "label", "n", "k=v"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not running in a pod"), "{run:?}");
    let id = unique_id("installer");
    let run = c.run_with(
        None,
        "node-installer",
        &id,
        &[],
        &["/bin/busybox", "sh", "-c", "ls /opt/wasmbox; sh /opt/wasmbox/install.sh; echo exit=$?"],
    );
    assert_eq!(run.stdout, "containerd-shim-wasmbox-v1\ninstall.sh\nwasmbox\nwasmbox-oci\nexit=2\n", "{run:?}");
    assert!(run.stderr.contains("install.sh install|uninstall"), "{run:?}");
}

#[test]
fn exit_statuses_come_from_containerd_for_the_exact_task() {
    // Two tasks whose ids share a prefix: the stopped `ID0` (exit 3) must not be taken for `ID`
    // (which ends with SIGKILL), as a prefix match of `ctr tasks ls` would.
    let c = containerd();
    let id = unique_id("exact");
    let sibling = format!("{id}0");
    c.start_detached("probe", &sibling, &[], &["/probe.wasm", "exit", "3"]);
    c.start_detached("probe", &id, &[], &["/probe.wasm", "sleep", "30"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // wait for `ID` while it still runs (and `ID0` has stopped); kill it meanwhile
    let waiting = {
        let id = id.clone();
        std::thread::spawn(move || containerd().wait_stopped(&id))
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(c.ctr_output(&["tasks", "kill", "-s", "SIGKILL", &id]).status.success());
    assert_eq!(waiting.join().unwrap(), 137);
    assert_eq!(c.wait_stopped(&sibling), 3);
    c.assert_no_leftovers(&id);
    c.assert_no_leftovers(&sibling);
}

#[test]
fn a_created_task_reports_its_own_pid_and_can_be_killed_before_it_starts() {
    // What Docker does on a failed start: create a task, read its PID (Docker sets the
    // container's network up in /proc/PID/ns/net), then kill, wait for and delete it.
    use containerd_client::services::v1::snapshots::MountsRequest;
    use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
    use containerd_client::services::v1::tasks_client::TasksClient;
    use containerd_client::services::v1::{CreateTaskRequest, KillRequest};
    use containerd_client::tonic::Request;
    use containerd_client::with_namespace;

    let c = containerd();
    let id = unique_id("created");
    let image = c.image("probe");
    let created = c.ctr_output(&[
        "containers",
        "create",
        "--runtime",
        common::WASMBOX,
        &image,
        &id,
        "/probe.wasm",
        "sleep",
        "30",
    ]);
    assert!(created.status.success(), "{created:?}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pid = runtime.block_on(async {
        let channel = containerd_client::connect(c.socket()).await.unwrap();
        let mounts = SnapshotsClient::new(channel.clone())
            .mounts(with_namespace!(
                MountsRequest { snapshotter: "overlayfs".into(), key: id.clone() },
                common::NAMESPACE
            ))
            .await
            .expect("the container's snapshot mounts")
            .into_inner()
            .mounts;
        let mut tasks = TasksClient::new(channel);
        let request = CreateTaskRequest { container_id: id.clone(), rootfs: mounts, ..Default::default() };
        tasks.create(with_namespace!(request, common::NAMESPACE)).await.expect("create").into_inner().pid
    });
    // the container's init (not the shim, which runs in the node's namespaces): in the
    // container's own PID and network namespaces
    let ns = |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    for kind in ["pid", "net"] {
        assert_ne!(ns(pid, kind), ns(std::process::id(), kind), "PID {pid} is not in the container's {kind} namespace");
    }
    assert_eq!(c.task(&id).map(|t| t.0), Some(pid), "ctr tasks ls shows the same PID");
    runtime.block_on(async {
        let channel = containerd_client::connect(c.socket()).await.unwrap();
        let kill = KillRequest { container_id: id.clone(), signal: 9, ..Default::default() };
        TasksClient::new(channel).kill(with_namespace!(kill, common::NAMESPACE)).await.expect("killing a created task");
    });
    assert_eq!(c.wait_stopped(&id), 137);
    c.assert_no_leftovers(&id);
}
