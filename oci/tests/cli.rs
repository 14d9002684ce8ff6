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
