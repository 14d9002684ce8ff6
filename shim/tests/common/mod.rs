//! End-to-end test harness: private containerds, driven through the real `ctr` and containerd's API.
//!
//! Each test binary starts its own containerd with `scripts/containerd.sh` (the same script the
//! demo and the benchmarks use) and the shim this build produced; a test may start more (with
//! other node settings) with [`Containerd::start`]. All are stopped by their PIDs when the test
//! binary exits. Images come from `make images`. Missing root, containerd or images make every
//! test fail with the reason: nothing is skipped.
//!
//! `WASMBOX_CONTAINERD=1.7` or `2.1` runs a binary's containerds on that release (from
//! `scripts/releases.sh`, which `make deps` runs) instead of the host's 1.6: `make test-matrix`.

#![allow(dead_code)]

pub mod cgroups;
pub mod docker;
pub mod forge;
pub mod hygiene;
pub mod podman;
pub mod procs;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{DeleteContainerRequest, DeleteTaskRequest, WaitRequest};
use containerd_client::tonic::Request;
use containerd_client::with_namespace;

pub use cgroups::CgroupLayout;

pub const WASMBOX: &str = "io.containerd.wasmbox.v1";
pub const NAMESPACE: &str = "wasmbox-test";

pub struct Containerd {
    pub work: PathBuf,
    script: PathBuf,
    images: PathBuf,
    imported: Mutex<HashSet<String>>,
    /// The `ctr` of its release.
    ctr: PathBuf,
    /// Its release: `host` (Debian 12's 1.6), `1.7` or `2.1`.
    pub release: String,
}

/// A containerd release the tests can run: `host` (the host's), `1.7` or `2.1`.
pub fn release_bin_dir(release: &str) -> Option<PathBuf> {
    match release {
        "host" | "" | "1.6" => None,
        "1.7" | "2.1" => {
            let dir = releases_dir().join(format!("containerd-{release}/usr/bin"));
            assert!(dir.join("containerd").is_file(), "no containerd {release} in {}: run `make deps`", dir.display());
            Some(dir)
        }
        other => panic!("unknown containerd release {other:?} (host, 1.7, 2.1)"),
    }
}

/// Where `scripts/releases.sh` unpacked the other releases: `$WASMBOX_RELEASES`, else
/// `~/.cache/wasmbox/releases`.
pub fn releases_dir() -> PathBuf {
    match std::env::var_os("WASMBOX_RELEASES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/wasmbox/releases"),
    }
}

/// The outcome of one `ctr run`.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

static CONTAINERD: OnceLock<Containerd> = OnceLock::new();
/// (script, work directory) of every daemon this test binary started, stopped at exit, the
/// last started first (a dockerd before its containerd).
static STARTED: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

extern "C" fn stop_at_exit() {
    let started = std::mem::take(&mut *STARTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    for (script, work) in started.into_iter().rev() {
        let _ = Command::new(&script).arg("stop").arg(&work).status();
        if std::env::var_os("WASMBOX_KEEP_WORK").is_none() {
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}

/// The repository: the nearest ancestor of the testing crate that has `scripts/containerd.sh`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("scripts/containerd.sh").is_file())
        .expect("the repository root")
        .to_owned()
}

/// The build's target directory (…/target/x86_64-unknown-linux-gnu/release/deps/test-binary →
/// …/target): the outermost of the test binary's near ancestors where cargo keeps a
/// `CACHEDIR.TAG` (it keeps one in each target's directory too).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().take(5).filter(|dir| dir.join("CACHEDIR.TAG").is_file()).last().expect("the target dir").to_owned()
}

/// The images directory: `$WASMBOX_IMAGES`, else `wasmbox-images` in this build's target dir.
pub fn images_dir() -> PathBuf {
    match std::env::var_os("WASMBOX_IMAGES") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("wasmbox-images"),
    }
}

/// A guest built by `make images`: `wasm32-wasip1/release/NAME`, …
pub fn guest(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(path.is_file(), "no guest at {}: run `make images`", path.display());
    path
}

/// A binary of this build (`containerd-shim-wasmbox-v1`, `wasmbox`): cargo names the shim for
/// the shim crate's own tests; other binaries and crates find them beside `deps/`.
///
/// `WASMBOX_TEST_SHIM` runs the suite against another shim build (an older commit's, to watch a
/// test fail on the defect it guards against).
pub fn binary(name: &str) -> PathBuf {
    if name == "containerd-shim-wasmbox-v1" {
        if let Some(path) = std::env::var_os("WASMBOX_TEST_SHIM") {
            return PathBuf::from(path);
        }
        if let Some(path) = option_env!("CARGO_BIN_EXE_containerd-shim-wasmbox-v1") {
            return PathBuf::from(path);
        }
    }
    let exe = std::env::current_exe().expect("current exe");
    let path = exe.ancestors().nth(2).expect("profile dir").join(name);
    assert!(path.is_file(), "no {name} at {}: run `make build` first", path.display());
    path
}

/// The private containerd of this test binary, started on first use.
pub fn containerd() -> &'static Containerd {
    CONTAINERD.get_or_init(|| Containerd::start("main", &[]))
}

/// Registers a daemon's `script stop WORK` to run when the test binary exits.
pub(crate) fn stop_at_exit_too(script: &Path, work: &Path) {
    let mut started = STARTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if started.is_empty() {
        unsafe { libc::atexit(stop_at_exit) };
    }
    started.push((script.to_owned(), work.to_owned()));
}

/// A second private containerd of this test binary, whose node setting trusts the native code
/// images ship (`WASMBOX_PRECOMPILED=trust` in its environment), started on first use.
pub fn trusting_containerd() -> &'static Containerd {
    static TRUSTING: OnceLock<Containerd> = OnceLock::new();
    TRUSTING.get_or_init(|| Containerd::start("trusting", &[("WASMBOX_PRECOMPILED", "trust")]))
}

impl Containerd {
    /// Starts another private containerd of the release `WASMBOX_CONTAINERD` names (the host's
    /// by default), `label` naming its work directory; `env` goes to `scripts/containerd.sh
    /// start` (`WASMBOX_PRECOMPILED`, `WASMBOX_CRI_OPTIONS`).
    pub fn start(label: &str, env: &[(&str, &str)]) -> Containerd {
        let release = std::env::var("WASMBOX_CONTAINERD").unwrap_or_else(|_| "host".into());
        Self::start_release(&release, label, env)
    }

    /// Starts another private containerd of `release` (`host`, `1.7`, `2.1`).
    pub fn start_release(release: &str, label: &str, env: &[(&str, &str)]) -> Containerd {
        assert_eq!(unsafe { libc::geteuid() }, 0, "the end-to-end tests need root (they run containerd)");
        let images = images_dir();
        assert!(
            images.join("hello.tar").is_file(),
            "no example images in {}: run `make images` (or `make test`) first",
            images.display()
        );
        let binary_name = std::env::current_exe().expect("current exe");
        let name = binary_name.file_name().unwrap().to_string_lossy().into_owned();
        let work = PathBuf::from(format!("/tmp/wasmbox-e2e-{name}-{label}-{}", std::process::id()));
        let script = repo_root().join("scripts/containerd.sh");
        let bin_dir = release_bin_dir(release);
        let ctr = bin_dir.as_ref().map(|dir| dir.join("ctr")).unwrap_or_else(|| PathBuf::from("ctr"));
        let mut command = Command::new(&script);
        command.arg("start").arg(&work).arg(binary("containerd-shim-wasmbox-v1"));
        command.env_remove("WASMBOX_PRECOMPILED").env_remove("WASMBOX_CRI_OPTIONS").envs(env.iter().copied());
        match &bin_dir {
            Some(dir) => command.env("CONTAINERD_BIN_DIR", dir),
            None => command.env_remove("CONTAINERD_BIN_DIR"),
        };
        stop_at_exit_too(&script, &work);
        let status = command.status().expect("running scripts/containerd.sh");
        assert!(status.success(), "the private containerd did not start (see above)");
        Containerd { work, script, images, imported: Mutex::new(HashSet::new()), ctr, release: release.to_owned() }
    }

    /// The `ctr` binary of this containerd's release.
    pub fn ctr_binary(&self) -> &Path {
        &self.ctr
    }

    /// Restarts containerd alone: running shims and containers stay.
    pub fn restart(&self) {
        let status = Command::new(&self.script).arg("restart").arg(&self.work).status().expect("restart");
        assert!(status.success(), "containerd did not restart");
    }

    /// Stops this containerd now (as at exit), removing what it left.
    pub fn stop(&self) {
        let status = Command::new(&self.script).arg("stop").arg(&self.work).status().expect("stop");
        assert!(status.success(), "containerd.sh stop failed");
    }

    /// The socket of its API.
    pub fn socket(&self) -> PathBuf {
        self.work.join("containerd.sock")
    }

    /// The socket of the shim this containerd starts for task `id` of the test namespace:
    /// `/run/containerd/s/` and the SHA-256 of `SOCKET/NAMESPACE/ID`, as containerd names it.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let name = format!("{}/{NAMESPACE}/{id}", self.socket().display());
        let digest = wasmbox_runtime::code::image::sha256_digest(name.as_bytes());
        PathBuf::from("/run/containerd/s").join(digest.trim_start_matches("sha256:"))
    }

    /// The node cache of its shims (`WASMBOX_CACHE_DIR`).
    pub fn cache_dir(&self) -> PathBuf {
        self.work.join("cache")
    }

    /// Where its shims keep the containers' runtime state (`WASMBOX_STATE_DIR`).
    pub fn state_dir(&self) -> PathBuf {
        self.work.join("run")
    }

    /// PIDs of the wasmbox shims serving container `id`.
    pub fn shim_pids(&self, id: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args.first().is_some_and(|a| a.ends_with(b"containerd-shim-wasmbox-v1"));
            let ours =
                args.windows(2).any(|w| w[0] == b"-address" && w[1] == self.socket().as_os_str().as_encoded_bytes());
            if is_shim && ours && args.windows(2).any(|w| w[0] == b"-id" && w[1] == id.as_bytes()) {
                pids.extend(entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()));
            }
        }
        pids
    }

    /// The lines of containerd's log that the create helper and the init of container `id` wrote
    /// (`instance="ID"`). containerd copies them from the shim's log as they come, which may be
    /// after `ctr` returned: this waits (up to 3 s) for the shim's `ID: phase create:` line, which
    /// the shim writes, into the same log, after every line of the create.
    pub fn log_of(&self, id: &str) -> Vec<String> {
        let tag = format!("instance=\"{id}\"");
        let created = format!("{id}: phase create: ");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let log = std::fs::read_to_string(self.work.join("containerd.log")).expect("reading containerd.log");
            if log.contains(&created) || Instant::now() > deadline {
                return log.lines().filter(|line| line.contains(&tag)).map(str::to_owned).collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ctr` against this containerd in the test namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("-a").arg(self.socket()).args(["-n", NAMESPACE]);
        cmd
    }

    /// Runs `ctr ARGS` and returns its output, whatever its exit status. A `ctr run` keeps its
    /// stdio FIFOs in this containerd's work directory ([`Containerd::fifo_dir`]).
    pub fn ctr_output(&self, args: &[&str]) -> Output {
        let mut cmd = self.ctr();
        match args.split_first() {
            Some((&"run", rest)) => cmd.arg("run").arg("--fifo-dir").arg(self.fifo_dir()).args(rest),
            _ => cmd.args(args),
        };
        cmd.output().expect("running ctr")
    }

    /// Where `ctr run` makes its stdio FIFOs: ctr's default, `/run/containerd/fifo`, is the
    /// node's, and a detached `ctr run -d` never removes them (one directory per container).
    pub fn fifo_dir(&self) -> PathBuf {
        self.work.join("fifo")
    }

    /// Imports image `name` (`<images>/<name>.tar`) once; returns its reference.
    pub fn image(&self, name: &str) -> String {
        self.image_in(NAMESPACE, name)
    }

    /// Imports image `name` once into containerd namespace `namespace` (`k8s.io` for CRI).
    pub fn image_in(&self, namespace: &str, name: &str) -> String {
        self.import_tar(namespace, name, &self.images.join(format!("{name}.tar")))
    }

    /// Imports the image tarball `tar` (named `name`, image `localhost/wasmbox/NAME:latest`) once.
    pub fn import_tar(&self, namespace: &str, name: &str, tar: &Path) -> String {
        let reference = format!("localhost/wasmbox/{name}:latest");
        // A panic elsewhere must not poison every later import.
        let mut imported = self.imported.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if imported.insert(format!("{namespace}/{name}")) {
            // containerd 1.6 cannot unpack Wasm artifacts: import them without unpacking (CRI
            // runs them from the content store); tar-layer images are unpacked as usual.
            let unpack = if name.ends_with("-artifact") { "--no-unpack" } else { "--all-platforms" };
            let out = Command::new(&self.ctr)
                .arg("-a")
                .arg(self.socket())
                .args(["-n", namespace, "images", "import", "--all-platforms", unpack])
                .arg(tar)
                .output()
                .expect("running ctr");
            assert!(
                out.status.success(),
                "ctr images import {}: {}",
                tar.display(),
                String::from_utf8_lossy(&out.stderr)
            );
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
        self.run_reference(runtime, &reference, id, flags, args)
    }

    /// `ctr run --rm` of an image already imported.
    pub fn run_reference(
        &self,
        runtime: Option<&str>,
        reference: &str,
        id: &str,
        flags: &[&str],
        args: &[&str],
    ) -> Run {
        let mut cmd = self.ctr();
        cmd.args(["run", "--rm", "--fifo-dir"]).arg(self.fifo_dir());
        if let Some(runtime) = runtime {
            cmd.args(["--runtime", runtime]);
        }
        cmd.args(flags).arg(reference).arg(id).args(args);
        let out = cmd.output().expect("running ctr run");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `args` detached in `image` with the wasmbox runtime.
    pub fn start_detached(&self, image: &str, id: &str, flags: &[&str], args: &[&str]) {
        let image = self.image(image);
        let mut all = vec!["run", "-d", "--runtime", WASMBOX];
        all.extend_from_slice(flags);
        all.push(&image);
        all.push(id);
        all.extend_from_slice(args);
        let out = self.ctr_output(&all);
        assert!(out.status.success(), "{out:?}");
    }

    /// The PIDs `ctr tasks ps` lists for task `id` of containerd namespace `namespace` (empty if
    /// it has none or is not there).
    pub fn task_pids_in(&self, namespace: &str, id: &str) -> Vec<u32> {
        let out = Command::new(&self.ctr)
            .arg("-a")
            .arg(self.socket())
            .args(["-n", namespace, "tasks", "ps", id])
            .output()
            .expect("running ctr");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The PIDs `ctr tasks ps` lists for task `id` of the test namespace.
    pub fn task_pids(&self, id: &str) -> Vec<u32> {
        self.task_pids_in(NAMESPACE, id)
    }

    /// The PID and status of task `id` in `ctr tasks ls`.
    pub fn task(&self, id: &str) -> Option<(u32, String)> {
        let out = self.ctr_output(&["tasks", "ls"]);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&id))
                .then(|| (fields[1].parse().unwrap_or(0), fields.get(2).unwrap_or(&"").to_string()))
        })
    }

    /// Waits (at most 30 s) for task `id` to exit, deletes it and its container through
    /// containerd's API, and returns the exit status containerd recorded.
    pub fn wait_stopped(&self, id: &str) -> u32 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(async {
            let channel = containerd_client::connect(self.socket()).await.expect("connecting to containerd");
            let mut tasks = TasksClient::new(channel.clone());
            let wait = WaitRequest { container_id: id.to_owned(), exec_id: String::new() };
            let waited =
                match tokio::time::timeout(Duration::from_secs(30), tasks.wait(with_namespace!(wait, NAMESPACE))).await
                {
                    Ok(Ok(response)) => response.into_inner(),
                    Ok(Err(err)) => panic!("waiting for task {id}: {err}"),
                    Err(_) => panic!("task {id} did not stop within 30 s"),
                };
            let deleted = tasks
                .delete(with_namespace!(DeleteTaskRequest { container_id: id.to_owned() }, NAMESPACE))
                .await
                .unwrap_or_else(|err| panic!("deleting task {id}: {err}"))
                .into_inner();
            assert_eq!(deleted.exit_status, waited.exit_status, "containerd recorded two exit statuses for {id}");
            ContainersClient::new(channel)
                .delete(with_namespace!(DeleteContainerRequest { id: id.to_owned() }, NAMESPACE))
                .await
                .unwrap_or_else(|err| panic!("deleting container {id}: {err}"));
            waited.exit_status
        })
    }

    /// Asserts that container `id` left nothing: no containerd task or container, no shim
    /// process, no mount, no cgroup, no runtime state. Shims exit a moment after `ctr` returns,
    /// so this waits a little.
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
        for dir in CgroupLayout::detect().dirs(&format!("/{NAMESPACE}/{id}")) {
            if dir.exists() {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
        let state = self.state_dir().join(NAMESPACE).join(id);
        if state.exists() {
            found.push(format!("runtime state {}", state.display()));
        }
        found
    }
}

/// Waits for task `id` of this binary's containerd to stop, deletes it and its container, and
/// returns its exit status (see [`Containerd::wait_stopped`]).
pub fn wait_stopped(id: &str) -> u32 {
    containerd().wait_stopped(id)
}

/// Starts `args` detached in `image` with the wasmbox runtime.
pub fn start_detached(image: &str, id: &str, flags: &[&str], args: &[&str]) {
    containerd().start_detached(image, id, flags, args)
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

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
