//! End-to-end test harness: one private containerd per test binary, driven through the real `ctr`.
//!
//! The containerd is started by `scripts/containerd.sh` (the same script the demo and the
//! benchmarks use) with the shim this build produced, and stopped by its PID when the test
//! binary exits. Images come from `make images`. Missing root, containerd or images make every
//! test fail with the reason: nothing is skipped.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const WASMBOX: &str = "io.containerd.wasmbox.v1";
pub const NAMESPACE: &str = "wasmbox-test";

pub struct Containerd {
    pub work: PathBuf,
    script: PathBuf,
    images: PathBuf,
    imported: Mutex<HashSet<String>>,
}

/// The outcome of one `ctr run`.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

static CONTAINERD: OnceLock<Containerd> = OnceLock::new();

extern "C" fn stop_at_exit() {
    if let Some(containerd) = CONTAINERD.get() {
        let _ = Command::new(&containerd.script).arg("stop").arg(&containerd.work).status();
        if std::env::var_os("WASMBOX_KEEP_WORK").is_none() {
            let _ = std::fs::remove_dir_all(&containerd.work);
        }
    }
}

/// The repository: the nearest ancestor of the testing crate that has `scripts/containerd.sh`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/containerd.sh").is_file())
        .expect("the repository root")
        .to_owned()
}

/// The images directory: `$WASMBOX_IMAGES`, else `wasmbox-images` in this build's target dir.
fn images_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WASMBOX_IMAGES") {
        return PathBuf::from(dir);
    }
    // …/target/release/deps/test-binary → …/target/wasmbox-images
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).expect("target dir").join("wasmbox-images")
}

/// The shim this build produced: cargo names it for the shim crate's own tests; other crates'
/// tests (the CRI tests in `k8s/`) find it beside their own binary's `deps/` directory.
fn shim_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_containerd-shim-wasmbox-v1") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("current exe");
            let shim = exe.ancestors().nth(2).expect("profile dir").join("containerd-shim-wasmbox-v1");
            assert!(shim.is_file(), "no shim at {}: run `make build` first", shim.display());
            shim
        }
    }
}

/// The private containerd of this test binary, started on first use.
pub fn containerd() -> &'static Containerd {
    CONTAINERD.get_or_init(|| {
        assert_eq!(unsafe { libc::geteuid() }, 0, "the end-to-end tests need root (they run containerd)");
        let images = images_dir();
        assert!(
            images.join("hello.tar").is_file(),
            "no example images in {}: run `make images` (or `make test`) first",
            images.display()
        );
        let binary = std::env::current_exe().expect("current exe");
        let name = binary.file_name().unwrap().to_string_lossy().into_owned();
        let work = PathBuf::from(format!("/tmp/wasmbox-e2e-{name}-{}", std::process::id()));
        let script = repo_root().join("scripts/containerd.sh");
        let shim = shim_binary();
        let status = Command::new(&script)
            .args(["start"])
            .arg(&work)
            .arg(shim)
            .status()
            .expect("running scripts/containerd.sh");
        assert!(status.success(), "the private containerd did not start (see above)");
        unsafe { libc::atexit(stop_at_exit) };
        Containerd { work, script, images, imported: Mutex::new(HashSet::new()) }
    })
}

impl Containerd {
    /// Restarts containerd alone: running shims and containers stay.
    pub fn restart(&self) {
        let status = Command::new(&self.script).arg("restart").arg(&self.work).status().expect("restart");
        assert!(status.success(), "containerd did not restart");
    }

    /// PIDs of the wasmbox shims serving container `id`.
    pub fn shim_pids(&self, id: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args.first().is_some_and(|a| a.ends_with(b"containerd-shim-wasmbox-v1"));
            if is_shim && args.windows(2).any(|w| w[0] == b"-id" && w[1] == id.as_bytes()) {
                pids.extend(entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()));
            }
        }
        pids
    }

    /// The lines containerd logged for container `id` (the shim tags its lines `instance="ID"`).
    pub fn log_of(&self, id: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.work.join("containerd.log")).expect("reading containerd.log");
        let tag = format!("instance=\"{id}\"");
        log.lines().filter(|line| line.contains(&tag)).map(str::to_owned).collect()
    }

    /// `ctr` against this containerd in the test namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("-a").arg(self.work.join("containerd.sock")).args(["-n", NAMESPACE]);
        cmd
    }

    /// Runs `ctr ARGS` and returns its output, whatever its exit status.
    pub fn ctr_output(&self, args: &[&str]) -> Output {
        self.ctr().args(args).output().expect("running ctr")
    }

    /// Imports image `name` (`<images>/<name>.tar`) once; returns its reference.
    pub fn image(&self, name: &str) -> String {
        self.image_in(NAMESPACE, name)
    }

    /// Imports image `name` once into containerd namespace `namespace` (`k8s.io` for CRI).
    pub fn image_in(&self, namespace: &str, name: &str) -> String {
        let reference = format!("localhost/wasmbox/{name}:latest");
        // A panic elsewhere must not poison every later import.
        let mut imported = self.imported.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if imported.insert(format!("{namespace}/{name}")) {
            // containerd 1.6 cannot unpack Wasm artifacts: import them without unpacking (CRI
            // runs them from the content store); tar-layer images are unpacked as usual.
            let unpack = if name.ends_with("-artifact") { "--no-unpack" } else { "--all-platforms" };
            let tar = self.images.join(format!("{name}.tar"));
            let out = Command::new("ctr")
                .arg("-a")
                .arg(self.work.join("containerd.sock"))
                .args(["-n", namespace, "images", "import", "--all-platforms", unpack, tar.to_str().unwrap()])
                .output()
                .expect("running ctr");
            assert!(out.status.success(), "ctr images import {}: {}", tar.display(), String::from_utf8_lossy(&out.stderr));
        }
        reference
    }

    /// `ctr run --rm [flags] IMAGE ID [args]` with the wasmbox runtime.
    pub fn run_wasm(&self, image: &str, id: &str, flags: &[&str], args: &[&str]) -> Run {
        self.run_with(Some(WASMBOX), image, id, flags, args)
    }

    /// `ctr run --rm` with `runtime` (None: containerd's default, runc).
    pub fn run_with(&self, runtime: Option<&str>, image: &str, id: &str, flags: &[&str], args: &[&str]) -> Run {
        let reference = self.image(image);
        let mut cmd = self.ctr();
        cmd.args(["run", "--rm"]);
        if let Some(runtime) = runtime {
            cmd.args(["--runtime", runtime]);
        }
        cmd.args(flags).arg(&reference).arg(id).args(args);
        let out = cmd.output().expect("running ctr run");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts that container `id` left nothing: no containerd task or container, no shim
    /// process, no mount, no cgroup. Shims exit a moment after `ctr` returns, so this waits a little.
    pub fn assert_no_leftovers(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leftovers = self.leftovers(id);
            if leftovers.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!("container {id} left behind: {leftovers:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        for what in ["tasks", "containers"] {
            let out = self.ctr_output(&[what, "ls", "-q"]);
            if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(id)) {
                found.push(format!("containerd {what} entry"));
            }
        }
        for pid in self.shim_pids(id) {
            found.push(format!("shim process {pid}"));
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines().filter(|l| l.contains(id)) {
            found.push(format!("mount {line}"));
        }
        for controller in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let dir = controller.path().join(NAMESPACE).join(id);
            if dir.exists() {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
        found
    }
}

/// Waits for task `id` to stop, deletes it and its container, and returns its exit status.
pub fn wait_stopped(id: &str) -> i32 {
    let c = containerd();
    for _ in 0..100 {
        let out = c.ctr_output(&["tasks", "ls"]);
        let tasks = String::from_utf8_lossy(&out.stdout).into_owned();
        if tasks.lines().any(|l| l.starts_with(id) && l.contains("STOPPED")) {
            let out = c.ctr_output(&["tasks", "delete", id]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            // ctr says "exit with non-zero exit code N" unless the code is 0
            let code = match text.split_once("exit code ") {
                Some((_, rest)) => rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(-1),
                None => 0,
            };
            assert!(c.ctr_output(&["containers", "delete", id]).status.success());
            return code;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("task {id} did not stop");
}

/// Starts `args` detached in `image` with the wasmbox runtime.
pub fn start_detached(image: &str, id: &str, flags: &[&str], args: &[&str]) {
    let c = containerd();
    let image = c.image(image);
    let mut all = vec!["run", "-d", "--runtime", WASMBOX];
    all.extend_from_slice(flags);
    all.push(&image);
    all.push(id);
    all.extend_from_slice(args);
    let out = c.ctr_output(&all);
    assert!(out.status.success(), "{out:?}");
}

/// A container id unique to this test run.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Sends one HTTP/1.0 request (so that the reply is not chunked) and returns (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Waits until something answers HTTP on `port`.
pub fn wait_for_server(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while http(port, "GET", "/", "").is_err() {
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

