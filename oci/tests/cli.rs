//! The `wasmbox` command as users call it: build is reproducible, inspect describes, errors are one line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wasmbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmbox")).args(args).output().expect("running wasmbox")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn build_twice_gives_the_same_digest_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let wat = repo().join("examples/wat/hello.wat");
    let fixtures = repo().join("examples/fixtures");
    let mut outputs = Vec::new();
    for n in 0..2 {
        let out_path = dir.path().join(format!("hello-{n}.tar"));
        let out = wasmbox(&[
            "image",
            "build",
            wat.to_str().unwrap(),
            "-t",
            "localhost/wasmbox/t:1",
            "-o",
            out_path.to_str().unwrap(),
            "--env",
            "A=1",
            "--workdir",
            "/srv",
            "--cmd",
            "x",
            "--add",
            &format!("{}:/fixtures", fixtures.display()),
            "--label",
            "wasmbox.io/deadline=30s",
            "--label",
            "org.opencontainers.image.title=hello",
        ]);
        assert!(out.status.success(), "{out:?}");
        let (stdout, _) = text(&out);
        let digest = stdout.split_whitespace().nth(2).expect("digest printed").to_owned();
        assert!(digest.starts_with("sha256:"), "{stdout}");
        outputs.push((digest, std::fs::read(&out_path).unwrap()));
    }
    assert_eq!(outputs[0].0, outputs[1].0);
    assert!(outputs[0].1 == outputs[1].1, "tarballs differ");

    let inspect = wasmbox(&["image", "inspect", dir.path().join("hello-0.tar").to_str().unwrap()]);
    let (stdout, stderr) = text(&inspect);
    assert!(inspect.status.success(), "{stderr}");
    for needle in [
        "image:      localhost/wasmbox/t:1",
        &format!("manifest:   {}", outputs[0].0),
        "entrypoint: [\"/hello.wat\"]",
        "cmd:        [\"x\"]",
        "env:        [\"A=1\"]",
        "workdir:    /srv",
        "labels:     [\"org.opencontainers.image.title=hello\", \"wasmbox.io/deadline=30s\"]",
        "/hello.wat: module (core Wasm, WASI preview 1), WebAssembly text",
        "imports: wasi_snapshot_preview1::fd_write",
        "exports: memory, _start",
        "/fixtures/missing-import.wat: module",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn inspect_shows_a_components_wit_imports_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("c.wat");
    std::fs::write(
        &component,
        r#"(component
             (import "wasi:cli/environment@0.2.0" (instance))
             (core module $m (func (export "run") (result i32) i32.const 0))
             (core instance $i (instantiate $m))
             (func $run (result (result)) (canon lift (core func $i "run")))
             (instance $runner (export "run" (func $run)))
             (export "wasi:cli/run@0.2.0" (instance $runner)))"#,
    )
    .unwrap();
    let tar = dir.path().join("c.tar");
    let out = wasmbox(&["image", "build", component.to_str().unwrap(), "-o", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let (stdout, _) = text(&wasmbox(&["image", "inspect", tar.to_str().unwrap()]));
    assert!(stdout.contains("/c.wat: component (WASI preview 2)"), "{stdout}");
    assert!(stdout.contains("imports: wasi:cli/environment@0.2.0"), "{stdout}");
    assert!(stdout.contains("exports: wasi:cli/run@0.2.0"), "{stdout}");
}

#[test]
fn bad_input_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let wat = repo().join("examples/wat/hello.wat");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, [0u8, 1, 2, 3]).unwrap();
    for args in [
        vec!["image", "build", junk.to_str().unwrap(), "-o", "/dev/null"],
        vec!["image", "build", "/no/such.wasm"],
        vec!["image", "inspect", junk.to_str().unwrap()],
        vec!["image", "build", wat.to_str().unwrap(), "-o", "/dev/null", "--label", "no-equals-sign"],
        vec!["image", "build", wat.to_str().unwrap(), "-o", "/dev/null", "--layout", "artifact", "--label", "a=b"],
    ] {
        let out = wasmbox(&args);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("wasmbox: "), "{stderr}");
    }
}

#[test]
fn install_config_script_is_idempotent_and_reversible() {
    let dir = tempfile::tempdir().unwrap();
    let script = repo().join("scripts/containerd-config.sh");
    for (version, table) in [
        ("2", r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox]"#),
        ("3", r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox]"#),
    ] {
        let config = dir.path().join(format!("config-v{version}.toml"));
        let original = format!("version = {version}\nroot = \"/var/lib/containerd\"\n");
        std::fs::write(&config, &original).unwrap();
        for _ in 0..2 {
            assert!(Command::new(&script).arg("add").arg(&config).status().unwrap().success());
        }
        let added = std::fs::read_to_string(&config).unwrap();
        assert_eq!(added.matches(table).count(), 1, "{added}");
        assert!(added.contains(r#"runtime_type = "io.containerd.wasmbox.v1""#), "{added}");
        assert!(Command::new(&script).arg("remove").arg(&config).status().unwrap().success());
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    }
}

#[test]
fn install_config_script_uses_a_drop_in_where_containerd_2_imports_one() {
    let dir = tempfile::tempdir().unwrap();
    let script = repo().join("scripts/containerd-config.sh");
    let config = dir.path().join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = "version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n";
    std::fs::write(&config, original).unwrap();
    let dropin = dir.path().join("etc/containerd/conf.d/wasmbox.toml");
    for _ in 0..2 {
        let status = Command::new(&script).arg("add").arg(&config).env("HOST_ROOT", dir.path()).status().unwrap();
        assert!(status.success());
    }
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "the main config is not touched");
    let added = std::fs::read_to_string(&dropin).unwrap();
    assert!(added.starts_with("version = 3\n"), "{added}");
    assert_eq!(added.matches(r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox]"#).count(), 1);
    let status = Command::new(&script).arg("remove").arg(&config).env("HOST_ROOT", dir.path()).status().unwrap();
    assert!(status.success());
    assert!(!dropin.exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
}

#[test]
fn node_label_patches_the_node_through_the_api_server() {
    use std::io::{BufRead, BufReader, Read, Write};
    // A one-request HTTP server standing in for the API server: records what it is sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = Vec::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            head.push(line.trim_end().to_owned());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}").unwrap();
        (head, String::from_utf8(body).unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-token\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmbox"))
        .args(["node", "label", "node-1", "wasmbox.io/runtime=installed", "--api-server"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (head, body) = server.join().unwrap();
    assert_eq!(head[0], "PATCH /api/v1/nodes/node-1 HTTP/1.1");
    let header =
        |name: &str| head.iter().find(|l| l.to_ascii_lowercase().starts_with(name)).cloned().unwrap_or_default();
    assert_eq!(header("authorization:"), "authorization: Bearer secret-token");
    assert_eq!(header("content-type:"), "content-type: application/merge-patch+json");
    assert_eq!(body, r#"{"metadata":{"labels":{"wasmbox.io/runtime":"installed"}}}"#);

    // Outside a pod, without --api-server, it says why it cannot.
    let out = Command::new(env!("CARGO_BIN_EXE_wasmbox"))
        .args(["node", "label", "node-1", "k=v"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running in a pod"), "{out:?}");
}

#[test]
fn precompile_refuses_what_it_cannot_compile_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.tar");
    // A Linux executable has nothing to precompile.
    let run = wasmbox(&["image", "build", "/bin/busybox", "--precompile", "-o", out.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--precompile: /bin/busybox is not WebAssembly"), "{stderr}");
    // Invalid WebAssembly fails with the validator's cause.
    let bad = dir.path().join("bad.wat");
    std::fs::write(&bad, "(module (func (result i32)))").unwrap();
    let run = wasmbox(&["image", "build", bad.to_str().unwrap(), "--precompile", "-o", out.to_str().unwrap()]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.starts_with("wasmbox: --precompile: ") && stderr.contains("invalid WebAssembly"), "{stderr}");
    assert!(!out.exists(), "no image is written");
}
