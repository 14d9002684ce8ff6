//! End-to-end through Podman 4.3 (Debian 12's, rootful, private storage: `scripts/podman.sh`) with
//! `wasmbox-oci` as its OCI runtime: `podman run --runtime PATH/wasmbox-oci` of Wasm and Linux
//! images, and the runtime's own command line.

mod common;

use std::process::Command;
use std::sync::OnceLock;

use common::cgroups::Knob;
use common::podman::Podman;
use common::{CgroupLayout, Run};

fn podman() -> &'static Podman {
    static PODMAN: OnceLock<Podman> = OnceLock::new();
    // Trusting: the Python image's precompiled code is used (as the other suites' trusting node).
    PODMAN.get_or_init(|| Podman::start("podman", &["WASMBOX_PRECOMPILED=trust"]))
}

/// `podman run --rm` of `image` with the runtime given by path; nothing may be left behind.
fn run(image: &str, flags: &[&str], args: &[&str]) -> Run {
    podman().run(image, flags, args)
}

fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "{run:#?}");
}

#[test]
fn wasm_modules_components_and_text_run_with_podman() {
    let p = podman();
    let _only = p.exclusive();
    let hello = run("hello", &[], &["one", "two"]);
    assert_ok(&hello);
    assert_eq!(hello.stdout, "Hello from Rust on wasmbox (wasm32-wasip1)!\nargs: one two\n");
    let component = run("hello-component", &["--workdir", "/dev"], &[]);
    assert_ok(&component);
    assert!(
        component.stdout.starts_with("Hello from a Rust component on wasmbox (wasm32-wasip2)!\ncwd: /dev\n"),
        "{component:#?}"
    );
    let wat = run("hello-wat", &[], &[]);
    assert_ok(&wat);
    assert_eq!(wat.stdout, "Hello from WebAssembly text!\n");
}

#[test]
fn the_precompiled_python_component_runs_from_its_code_on_a_trusting_node() {
    let p = podman();
    let _only = p.exclusive();
    let python = run("python", &[], &["one"]);
    assert_ok(&python);
    assert!(python.stdout.starts_with("Hello from Python 3."), "{python:#?}");
    assert!(python.stdout.contains("args: one\n"), "{python:#?}");
}

#[test]
fn the_runtime_named_in_containers_conf_is_the_same() {
    let p = podman();
    let _only = p.exclusive();
    let hello = p.run_with("wasmbox", "hello", &[], &[]);
    assert_ok(&hello);
    assert_eq!(hello.stdout, "Hello from Rust on wasmbox (wasm32-wasip1)!\n");
}

#[test]
fn args_env_and_workdir_reach_the_guest() {
    let p = podman();
    let _only = p.exclusive();
    let args = run("probe", &[], &["args", "one", "two words", ""]);
    assert_ok(&args);
    assert_eq!(args.stdout, "/probe.wasm\nargs\none\ntwo words\n\n");
    let env = run("probe", &["--env", "GREETING=hi there", "--env", "EMPTY="], &["env", "GREETING", "EMPTY", "NOPE"]);
    assert_ok(&env);
    assert_eq!(env.stdout, "GREETING=hi there\nEMPTY=\nNOPE unset\n");
    let cwd = run("probe", &["--workdir", "/fixtures"], &["cwd"]);
    assert_ok(&cwd);
    assert!(cwd.stdout.starts_with("PWD=/fixtures\n"), "{cwd:#?}");
}

#[test]
fn stdin_reaches_the_guest_with_dash_i() {
    let p = podman();
    let _only = p.exclusive();
    let echoed = p.run_with_input("probe", &["-i"], &["stdin"], "from podman\n");
    assert_ok(&echoed);
    assert_eq!(echoed.stdout, "12 bytes: FROM PODMAN\n");
    // without -i the guest reads an empty stdin
    let empty = p.run_with_input("probe", &[], &["stdin"], "ignored\n");
    assert_eq!(empty.stdout, "0 bytes: ", "{empty:#?}");
}

#[test]
fn a_bind_mount_is_read_and_written_and_a_read_only_one_refuses_writes() {
    let p = podman();
    let _only = p.exclusive();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "from the host\n").unwrap();
    let mount = format!("{}:/data", dir.path().display());
    let read = run("probe", &["-v", &mount], &["cat", "/data/in.txt"]);
    assert_ok(&read);
    assert_eq!(read.stdout, "from the host\n");
    let write = run("probe", &["-v", &mount], &["write", "/data/out.txt", "from the guest"]);
    assert_ok(&write);
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "from the guest");

    let read_only = format!("{mount}:ro");
    let read = run("probe", &["-v", &read_only], &["cat", "/data/in.txt"]);
    assert_eq!(read.stdout, "from the host\n", "{read:#?}");
    let refused = run("probe", &["-v", &read_only], &["write", "/data/refused.txt", "nope"]);
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert!(refused.stderr.contains("cannot write /data/refused.txt"), "{refused:#?}");
    assert!(!dir.path().join("refused.txt").exists());
}

#[test]
fn exit_codes_the_trap_message_and_bad_input_reach_podman() {
    let p = podman();
    let _only = p.exclusive();
    assert_eq!(run("probe", &[], &["exit", "3"]).code, 3);
    let trap = run("probe", &[], &["trap"]);
    assert_eq!(trap.code, 134, "{trap:#?}");
    let first = trap.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("wasmbox: /probe.wasm: wasm trap: ") && first.contains("unreachable"), "{trap:#?}");
    let missing = run("probe", &["--entrypoint", "/no/such.wasm"], &[]);
    assert_eq!((missing.code, missing.stderr.as_str()), (127, "wasmbox: /no/such.wasm: No such file or directory\n"));
    let invalid = run("probe", &["--entrypoint", "/fixtures/invalid.wasm"], &[]);
    assert_eq!(invalid.code, 126, "{invalid:#?}");
    assert!(invalid.stderr.starts_with("wasmbox: /fixtures/invalid.wasm: invalid WebAssembly"), "{invalid:#?}");
    assert_eq!(invalid.stderr.lines().count(), 1, "{invalid:#?}");
}

#[test]
fn an_invalid_annotation_fails_the_create_naming_it() {
    let p = podman();
    let _only = p.exclusive();
    let refused = run("probe", &["--annotation", "wasmbox.io/deadline=soon"], &["args"]);
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert_eq!(refused.stderr.lines().count(), 1, "one line of cause: {refused:#?}");
    assert!(
        refused.stderr.contains(": wasmbox: annotation wasmbox.io/deadline=\"soon\": expected a duration"),
        "the cause names the annotation: {refused:#?}"
    );
    assert!(refused.stdout.is_empty(), "{refused:#?}");
    let deadline = run("probe", &["--annotation", "wasmbox.io/deadline=1s"], &["spin"]);
    assert_eq!(deadline.code, 124, "{deadline:#?}");
}

/// The cgroup path of process `pid` (its memory controller's on cgroup v1).
fn cgroup_of(pid: u32) -> String {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    cgroup
        .lines()
        .find_map(|line| line.split_once(":memory:").map(|(_, path)| path.to_owned()))
        .or_else(|| cgroup.lines().find_map(|line| line.strip_prefix("0::").map(str::to_owned)))
        .unwrap_or_else(|| panic!("no cgroup for {pid}: {cgroup}"))
}

#[test]
fn the_memory_limit_reaches_the_cgroup_and_the_engine() {
    let p = podman();
    let _only = p.exclusive();
    let id = p.run_detached("probe", &["--network", "none", "--memory", "64m"], &["sleep", "60"]);
    let path = cgroup_of(p.init_pid(&id.id));
    assert!(path.ends_with(&format!("libpod-{}", id.id)), "{path}");
    let layout = CgroupLayout::detect();
    assert_eq!(layout.read(&path, Knob::MemoryLimit).trim(), "67108864");
    // podman update changes the cgroup through the runtime's `update`
    p.ok(&["update", "--memory", "96m", &id.id]);
    assert_eq!(layout.read(&path, Knob::MemoryLimit).trim(), "100663296");
    id.remove();

    let grow = run("probe", &["--memory", "64m"], &["alloc", "200"]);
    assert_eq!(grow.code, 2, "{grow:#?}");
    let mib: u64 = grow
        .stdout
        .trim()
        .strip_prefix("memory.grow refused after ")
        .and_then(|rest| rest.strip_suffix(" MiB"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the engine refuses to grow past the limit: {grow:#?}"));
    assert!(mib > 8 && mib < 64, "{grow:#?}");
    assert_eq!(run("probe", &[], &["alloc", "200"]).stdout, "grew 200 MiB\n");
}

#[test]
fn an_http_server_is_published_logged_and_stopped() {
    let p = podman();
    let _only = p.exclusive();
    let port = common::free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    // slirp4netns: port forwarding without a bridge or iptables rules on the host
    let id = p.run_detached("hello-http", &["--network", "slirp4netns", "-p", &publish], &[]);
    common::wait_for_server(port);
    let (status, body) = common::http(port, "GET", "/from-podman", "").unwrap();
    assert_eq!((status, body.as_str()), (200, "Hello from a wasi:http component on wasmbox! GET /from-podman\n"));
    // podman stop sends SIGTERM: the server drains and exits 0
    p.ok(&["stop", "--time", "10", &id.id]);
    let state = p.ok(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", &id.id]);
    assert_eq!(state.trim(), "exited 0");
    let logs = p.podman(&["logs", &id.id]);
    assert_eq!(
        String::from_utf8_lossy(&logs.stderr),
        "wasmbox: serving HTTP on 0.0.0.0:8080\nwasmbox: HTTP server stopped\n",
        "the runtime's own messages stay out of the container's log"
    );
    id.remove();
}

#[test]
fn ps_pause_resume_and_exec_of_a_wasm_container() {
    let p = podman();
    let _only = p.exclusive();
    let id = p.run_detached("probe", &["--network", "none"], &["spin"]);
    let pid = p.init_pid(&id.id);
    let runtime = p.runtime.to_str().unwrap();
    let ps = Command::new(runtime).args(["ps", "--format", "json", &id.id]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), format!("[{pid}]"), "{ps:?}");
    p.ok(&["pause", &id.id]);
    assert_eq!(p.ok(&["inspect", "--format", "{{.State.Status}}", &id.id]).trim(), "paused");
    assert_eq!(CgroupLayout::detect().read(&cgroup_of(pid), Knob::Freezer).trim(), "FROZEN");
    p.ok(&["unpause", &id.id]);
    assert_eq!(p.ok(&["inspect", "--format", "{{.State.Status}}", &id.id]).trim(), "running");
    let exec = p.podman(&["exec", &id.id, "/probe.wasm", "args"]);
    assert!(!exec.status.success(), "{exec:?}");
    let said = String::from_utf8_lossy(&exec.stderr);
    assert!(said.contains("exec is not supported for Wasm container"), "{said}");
    id.remove();
}

#[test]
fn a_linux_image_runs_and_execs_through_the_same_runtime() {
    let p = podman();
    let _only = p.exclusive();
    let hello = run("busybox", &[], &[]);
    assert_ok(&hello);
    assert_eq!(hello.stdout, "Hello from busybox\n");
    assert_eq!(run("busybox", &[], &["sh", "-c", "exit 5"]).code, 5);
    let id = p.run_detached("busybox", &["--network", "none"], &["sleep", "60"]);
    // the image is Debian's static busybox alone: /bin/busybox is its only file
    assert_eq!(p.ok(&["exec", &id.id, "/bin/busybox", "echo", "exec'd"]), "exec'd\n");
    let missing = p.podman(&["exec", &id.id, "no-such-tool"]);
    assert!(!missing.status.success(), "{missing:?}");
    id.remove();
}

#[test]
fn the_runtime_command_line_answers_clearly() {
    let runtime = common::binary("wasmbox-oci");
    let version = Command::new(&runtime).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.starts_with("wasmbox-oci version ") && version.contains("\nspec: 1."), "{version}");
    let features = Command::new(&runtime).arg("features").output().unwrap();
    let features: serde_json::Value = serde_json::from_slice(&features.stdout).expect("features is JSON");
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["linux"]["namespaces"].as_array().is_some_and(|n| n.iter().any(|n| n == "pid")), "{features}");
    let root = tempfile::tempdir().unwrap();
    let root_arg = root.path().to_str().unwrap();
    let missing = Command::new(&runtime).args(["--root", root_arg, "state", "nope"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("container nope does not exist"), "{said}");
    let json = Command::new(&runtime)
        .args(["--root", root_arg, "--log", root.path().join("log.json").to_str().unwrap(), "--log-format", "json"])
        .args(["kill", "nope", "TERM"])
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let logged = std::fs::read_to_string(root.path().join("log.json")).unwrap();
    let line: serde_json::Value = serde_json::from_str(logged.trim()).expect("one JSON line");
    assert_eq!((line["level"].as_str(), line["id"].as_str()), (Some("error"), Some("nope")), "{logged}");
    let unknown = Command::new(&runtime).arg("frobnicate").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn a_guest_run_by_podman_holds_no_host_handle() {
    // The attack of docs/security.md row 3 through wasmbox-oci: code escaping the Wasm sandbox
    // would find whatever the init process inherited from `wasmbox-oci create` and conmon.
    let p = podman();
    let _only = p.exclusive();
    let data = tempfile::tempdir().unwrap();
    let mount = format!("{}:/data", data.path().display());
    let id = p.run_detached("probe", &["--network", "none", "-v", &mount], &["sleep", "60"]);
    let pid = p.init_pid(&id.id);
    // the guest is running (its sleep), past the point where its descriptors are neutralised
    std::thread::sleep(std::time::Duration::from_millis(300));
    let handles = common::hygiene::host_handles(&[pid], &p.work.join("cache"));
    assert!(handles.is_empty(), "the guest's process holds host handles: {handles:#?}");
    assert!(std::fs::read_dir(p.work.join("cache")).unwrap().next().is_some(), "the cache the scan looks for was used");
    id.remove();
}

#[test]
fn the_run_verb_runs_a_bundle_in_the_foreground_and_cleans_up() {
    // runc's `run`: create, start, wait (signals forwarded), delete; the exit status is the guest's.
    let p = podman();
    let bundle = tempfile::tempdir().unwrap();
    let rootfs = bundle.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    {
        let _only = p.exclusive();
        let reference = p.load("probe");
        let id = p.ok(&["create", &reference]).trim().to_owned();
        let tar = bundle.path().join("rootfs.tar");
        p.ok(&["export", "-o", tar.to_str().unwrap(), &id]);
        p.ok(&["rm", &id]);
        let untar = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&rootfs).status().unwrap();
        assert!(untar.success());
    }
    let root = tempfile::tempdir().unwrap();
    let runtime = common::binary("wasmbox-oci");
    let oci = |args: &[&str]| {
        Command::new(&runtime).arg("--root").arg(root.path()).args(args).current_dir(bundle.path()).output().unwrap()
    };
    assert!(oci(&["spec"]).status.success());
    let config_path = bundle.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["/probe.wasm", "args", "from run"]);
    config["process"]["terminal"] = serde_json::json!(false);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let run = oci(&["run", "run-args"]);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "/probe.wasm\nargs\nfrom run\n");
    config["process"]["args"] = serde_json::json!(["/probe.wasm", "exit", "5"]);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    assert_eq!(oci(&["run", "run-exit"]).status.code(), Some(5));
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "run leaves no container state: {left:?}");
    let listed = oci(&["list", "--format", "json"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}
