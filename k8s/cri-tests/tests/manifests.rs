//! The Kubernetes manifests in `k8s/`: validated against the Kubernetes API schemas (offline,
//! with `kubernetes-validate` from PyPI, strict: unknown fields are errors), and every image
//! they name is one that `make images` builds.

use std::path::{Path, PathBuf};
use std::process::Command;

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifests() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![k8s_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "cri-tests") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    assert!(files.len() >= 6, "manifests missing: {files:?}");
    // `python3 -m`: works wherever pip put the package, on PATH or not.
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(&files)
        .output()
        .expect("running python3");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("No module named"),
        "kubernetes-validate is not installed (make deps installs it from PyPI)"
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for kind in [
        "runtimeclass/wasmbox",
        "runtimeclass/wasmbox-wasmer",
        "job/",
        "deployment/",
        "service/",
        "pod/",
        "daemonset/wasmbox-installer",
    ] {
        assert!(text.contains(&format!("passed for resource {kind}")), "no {kind} validated: {text}");
    }
}

#[test]
fn manifests_name_only_images_that_make_images_builds() {
    let images = std::env::var_os("WASMBOX_IMAGES").map(PathBuf::from).unwrap_or_else(|| {
        // The target dir: the outermost near ancestor with cargo's CACHEDIR.TAG (each target's
        // directory has one too).
        let exe = std::env::current_exe().unwrap();
        exe.ancestors().take(5).filter(|dir| dir.join("CACHEDIR.TAG").is_file()).last().unwrap().join("wasmbox-images")
    });
    for file in manifests() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter_map(|l| l.trim().strip_prefix("image: ")) {
            let name = line
                .strip_prefix("localhost/wasmbox/")
                .and_then(|rest| rest.strip_suffix(":latest"))
                .unwrap_or_else(|| panic!("{}: image {line} is not one built here", file.display()));
            assert!(
                images.join(format!("{name}.tar")).is_file(),
                "{}: no image {name} in {}",
                file.display(),
                images.display()
            );
        }
    }
}
