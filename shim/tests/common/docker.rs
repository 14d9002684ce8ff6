//! A private Docker Engine (`scripts/dockerd.sh`) on a private containerd, driven through the
//! Docker CLI; both from `scripts/releases.sh` (Docker Engine and CLI 28.5.2, containerd 2.1.9).

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{Containerd, releases_dir, repo_root, stop_at_exit_too};

pub struct Dockerd {
    pub work: PathBuf,
    script: PathBuf,
    /// The containerd it runs on (the wasmbox shim is on its PATH).
    pub containerd: Containerd,
}

impl Dockerd {
    /// Starts containerd `release` (`WASMBOX_PRECOMPILED=trust`: the images are built here) and a
    /// dockerd on it with the containerd image store, and with this build's `wasmbox-oci` as its
    /// runtime "wasmbox-oci" (`runtimes` in daemon.json).
    pub fn start(label: &str, release: &str) -> Dockerd {
        let containerd =
            Containerd::start_release(release, &format!("{label}-containerd"), &[("WASMBOX_PRECOMPILED", "trust")]);
        let docker = releases_dir().join("docker/usr");
        assert!(docker.join("sbin/dockerd").is_file(), "no dockerd in {}: run `make deps`", docker.display());
        let script = repo_root().join("scripts/dockerd.sh");
        let work = containerd
            .work
            .with_file_name(format!("{}-dockerd", containerd.work.file_name().unwrap().to_string_lossy()));
        stop_at_exit_too(&script, &work);
        let status = Command::new(&script)
            .arg("start")
            .arg(&work)
            .arg(&containerd.work)
            .arg(&docker)
            .env("WASMBOX_OCI", super::binary("wasmbox-oci"))
            .status()
            .expect("running scripts/dockerd.sh");
        assert!(status.success(), "the private dockerd did not start (see above)");
        Dockerd { work, script, containerd }
    }

    /// `docker ARGS` against this dockerd; fails the test if it does not return within two
    /// minutes (the task that never started made `docker run` hang).
    pub fn docker(&self, args: &[&str]) -> Output {
        let child = Command::new(&self.script)
            .arg("docker")
            .arg(&self.work)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running docker");
        let pid = child.id();
        let (done, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        match waited.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(output) => output.expect("waiting for docker"),
            Err(_) => {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("docker {args:?} did not return within 120 s");
            }
        }
    }

    /// `docker load` of `<images>/NAME.tar` (once per name); returns the image's reference.
    pub fn load(&self, name: &str) -> String {
        let reference = format!("localhost/wasmbox/{name}:latest");
        let listed = self.docker(&["image", "inspect", &reference]);
        if !listed.status.success() {
            let tar = super::images_dir().join(format!("{name}.tar"));
            let out = self.docker(&["load", "-i", tar.to_str().unwrap()]);
            assert!(out.status.success(), "docker load {}: {out:?}", tar.display());
        }
        reference
    }
}

/// stdout and stderr of a docker run, without the daemon's warnings (this node has no IP
/// forwarding: `WARNING: IPv4 forwarding is disabled…`).
pub fn text(out: &Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("WARNING: "))
        .map(|l| format!("{l}\n"))
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}
