//! End-to-end through Docker Engine 28 (containerd image store) on containerd 2.1:
//! `docker run --runtime io.containerd.wasmbox.v1` of Wasm and Linux images.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::docker::{Dockerd, text};

const RUNTIME: &str = "io.containerd.wasmbox.v1";

fn dockerd() -> &'static Dockerd {
    static DOCKERD: OnceLock<Dockerd> = OnceLock::new();
    DOCKERD.get_or_init(|| Dockerd::start("docker", "2.1"))
}

/// `docker run --rm --runtime wasmbox [flags] IMAGE [args]`: (exit code, stdout, stderr).
fn run(image: &str, flags: &[&str], args: &[&str]) -> (i32, String, String) {
    run_with(RUNTIME, image, flags, args)
}

/// `docker run --rm --runtime RUNTIME [flags] IMAGE [args]`: (exit code, stdout, stderr).
fn run_with(runtime: &str, image: &str, flags: &[&str], args: &[&str]) -> (i32, String, String) {
    let d = dockerd();
    let reference = d.load(image);
    let name = common::unique_id("docker");
    let mut all = vec!["run", "--rm", "--name", &name, "--runtime", runtime];
    all.extend_from_slice(flags);
    all.push(&reference);
    all.extend_from_slice(args);
    let out = d.docker(&all);
    let (stdout, stderr) = text(&out);
    assert_nothing_left(&name);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// No Docker container named `name`, no containerd task or container in Docker's namespace, no
/// wasmbox shim of this containerd left running.
fn assert_nothing_left(name: &str) {
    let d = dockerd();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = Vec::new();
        let ps = d.docker(&["ps", "-a", "--filter", &format!("name=^{name}$"), "--format", "{{.ID}}"]);
        left.extend(String::from_utf8_lossy(&ps.stdout).lines().map(|l| format!("docker container {l}")));
        for what in ["tasks", "containers"] {
            let out = std::process::Command::new(d.containerd.ctr_binary())
                .arg("-a")
                .arg(d.containerd.socket())
                .args(["-n", "moby", what, "ls", "-q"])
                .output()
                .unwrap();
            left.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("containerd {what} {l}")));
        }
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left behind by {name}: {left:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn wasm_modules_and_components_run_with_docker() {
    let (code, stdout, stderr) = run("hello", &[], &[]);
    assert_eq!((code, stdout.as_str()), (0, "Hello from Rust on wasmbox (wasm32-wasip1)!\n"), "{stderr}");
    let (code, stdout, _) = run("hello-component", &["--workdir", "/dev"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("Hello from a Rust component on wasmbox (wasm32-wasip2)!\ncwd: /dev\n"), "{stdout}");
    // args and env: the probe image's entry point is /probe.wasm
    let (code, stdout, _) = run("probe", &["--env", "GREETING=hi"], &["env", "GREETING"]);
    assert_eq!((code, stdout.as_str()), (0, "GREETING=hi\n"));
    // the CNCF Wasm artifact layout
    let (code, stdout, stderr) = run("hello-artifact", &["--platform", "wasip1/wasm"], &["hello.wasm", "from docker"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Hello from Rust on wasmbox (wasm32-wasip1)!\nargs: from docker\n"),
        "{stderr}"
    );
}

#[test]
fn the_precompiled_python_component_runs_with_docker() {
    let (code, stdout, stderr) = run("python", &[], &["one"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("Hello from Python 3."), "{stdout}");
    assert!(stdout.contains("args: one\n"), "{stdout}");
}

#[test]
fn exit_codes_and_failures_reach_docker() {
    assert_eq!(run("probe", &[], &["exit", "7"]).0, 7);
    let (code, _, stderr) = run("probe", &[], &["trap"]);
    assert_eq!(code, 134, "{stderr}");
    assert!(stderr.starts_with("wasmbox: /probe.wasm: wasm trap: "), "{stderr}");
    let (code, _, stderr) = run("probe", &["--entrypoint", "/no/such.wasm"], &[]);
    assert_eq!(code, 127, "{stderr}");
    assert_eq!(stderr, "wasmbox: /no/such.wasm: No such file or directory\n");
}

#[test]
fn a_detached_http_server_is_served_logged_and_stopped() {
    let d = dockerd();
    let reference = d.load("hello-http");
    let port = common::free_port();
    let name = common::unique_id("docker-http");
    let address = format!("WASMBOX_HTTP_ADDRESS=127.0.0.1:{port}");
    let out = d.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--runtime",
        RUNTIME,
        "--env",
        &address,
        &reference,
    ]);
    assert!(out.status.success(), "{out:?}");
    common::wait_for_server(port);
    let (status, body) = common::http(port, "GET", "/from-docker", "").unwrap();
    assert_eq!((status, body.as_str()), (200, "Hello from a wasi:http component on wasmbox! GET /from-docker\n"));
    // docker stop sends SIGTERM: the server drains and exits 0
    let stop = d.docker(&["stop", &name]);
    assert!(stop.status.success(), "{stop:?}");
    let state = d.docker(&["inspect", &name, "--format", "{{.State.Status}} {{.State.ExitCode}}"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "exited 0");
    let logs = d.docker(&["logs", &name]);
    let (_, stderr) = text(&logs);
    assert_eq!(stderr, format!("wasmbox: serving HTTP on 127.0.0.1:{port}\nwasmbox: HTTP server stopped\n"));
    assert!(d.docker(&["rm", &name]).status.success());
    assert_nothing_left(&name);
}

#[test]
fn a_linux_image_runs_through_the_same_runtime() {
    let (code, stdout, stderr) = run("busybox", &[], &[]);
    assert_eq!((code, stdout.as_str()), (0, "Hello from busybox\n"), "{stderr}");
    let (code, _, _) = run("busybox", &[], &["sh", "-c", "exit 5"]);
    assert_eq!(code, 5);
}

#[test]
fn the_wasmbox_oci_runtime_runs_through_dockers_runtimes_setting() {
    // daemon.json: "runtimes": {"wasmbox-oci": {"path": ".../wasmbox-oci"}}; containerd's runc
    // shim drives it with runc's command line.
    let (code, stdout, stderr) = run_with("wasmbox-oci", "hello", &[], &["via", "runtimes"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Hello from Rust on wasmbox (wasm32-wasip1)!\nargs: via runtimes\n"),
        "{stderr}"
    );
    let (code, _, stderr) = run_with("wasmbox-oci", "probe", &["--entrypoint", "/no/such.wasm"], &[]);
    assert_eq!((code, stderr.as_str()), (127, "wasmbox: /no/such.wasm: No such file or directory\n"));
    let (code, stdout, stderr) = run_with("wasmbox-oci", "busybox", &[], &[]);
    assert_eq!((code, stdout.as_str()), (0, "Hello from busybox\n"), "{stderr}");
}
