//! A private rootful Podman (`scripts/podman.sh`: its own storage, run root, temporary directory,
//! events log and network configuration) with `wasmbox-oci` as its runtime, driven through the
//! Podman CLI. The runtime keeps its state in its default root, `/run/wasmbox-oci` (Podman passes
//! no `--root`); the checks below look only at this binary's own containers there.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{CgroupLayout, Run, binary, images_dir, repo_root, stop_at_exit_too};

/// Podman 4.3's default limits exceed this machine's hard ones (even runc fails without these).
pub const ULIMITS: [&str; 4] = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
/// Where wasmbox-oci keeps its containers' state when Podman runs it.
pub const RUNTIME_ROOT: &str = "/run/wasmbox-oci";

pub struct Podman {
    pub work: PathBuf,
    script: PathBuf,
    /// The `wasmbox-oci` of this build.
    pub runtime: PathBuf,
    loaded: Mutex<HashSet<String>>,
    /// Held by each test while its containers exist, so that "nothing left under WORK" is exact.
    one_at_a_time: Mutex<()>,
}

impl Podman {
    /// Sets a private Podman up; `settings` (`VAR=VALUE`) reach the runtime through conmon.
    pub fn start(label: &str, settings: &[&str]) -> Podman {
        assert_eq!(unsafe { libc::geteuid() }, 0, "the Podman tests need root (rootful Podman)");
        let images = images_dir();
        assert!(images.join("hello.tar").is_file(), "no example images in {}: run `make images`", images.display());
        let script = repo_root().join("scripts/podman.sh");
        // Short: Podman refuses a run root path longer than 50 characters.
        let work = PathBuf::from(format!("/tmp/wasmbox-e2e-{label}-{}", std::process::id()));
        let runtime = binary("wasmbox-oci");
        stop_at_exit_too(&script, &work);
        let status = Command::new(&script)
            .arg("init")
            .arg(&work)
            .arg(&runtime)
            .args(settings)
            .status()
            .expect("running scripts/podman.sh");
        assert!(status.success(), "the private Podman could not be set up (see above)");
        Podman { work, script, runtime, loaded: Mutex::new(HashSet::new()), one_at_a_time: Mutex::new(()) }
    }

    /// Only one test at a time has containers in this Podman.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.one_at_a_time.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `podman ARGS` with the private configuration; fails the test after two minutes.
    pub fn podman(&self, args: &[&str]) -> Output {
        self.podman_with_input(args, None)
    }

    /// `podman ARGS` with `input` (if any) on its stdin.
    pub fn podman_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new(&self.script)
            .arg("podman")
            .arg(&self.work)
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running podman");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(input.as_bytes()).expect("writing podman's stdin");
        }
        let pid = child.id();
        let (done, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        match waited.recv_timeout(Duration::from_secs(120)) {
            Ok(output) => output.expect("waiting for podman"),
            Err(_) => {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("podman {args:?} did not return within 120 s");
            }
        }
    }

    /// `podman ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman load` of `<images>/NAME.tar` (once per name); returns the image's reference.
    pub fn load(&self, name: &str) -> String {
        let reference = format!("localhost/wasmbox/{name}:latest");
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded.insert(name.to_owned()) {
            let tar = images_dir().join(format!("{name}.tar"));
            self.ok(&["load", "-q", "-i", tar.to_str().unwrap()]);
        }
        reference
    }

    /// `podman run --rm --runtime <wasmbox-oci> --network none FLAGS IMAGE ARGS`; checks that
    /// the container left nothing behind.
    pub fn run(&self, image: &str, flags: &[&str], args: &[&str]) -> Run {
        let runtime = self.runtime.to_str().unwrap().to_owned();
        self.run_with(&runtime, image, flags, args)
    }

    /// As [`Podman::run`], with `--runtime RUNTIME` (a path, or a name from containers.conf).
    pub fn run_with(&self, runtime: &str, image: &str, flags: &[&str], args: &[&str]) -> Run {
        self.run_full(runtime, image, flags, args, None)
    }

    /// As [`Podman::run`], with `input` on podman's stdin (pass `-i` in `flags` to hand it on).
    pub fn run_with_input(&self, image: &str, flags: &[&str], args: &[&str], input: &str) -> Run {
        let runtime = self.runtime.to_str().unwrap().to_owned();
        self.run_full(&runtime, image, flags, args, Some(input))
    }

    fn run_full(&self, runtime: &str, image: &str, flags: &[&str], args: &[&str], input: Option<&str>) -> Run {
        let reference = self.load(image);
        let cidfile = self.work.join(format!("cid-{}", super::unique_id("run")));
        let cidfile_arg = cidfile.to_str().unwrap();
        let mut all = vec!["run", "--rm", "--cidfile", cidfile_arg, "--runtime", runtime, "--network", "none"];
        all.extend(ULIMITS);
        all.extend_from_slice(flags);
        all.push(&reference);
        all.extend_from_slice(args);
        let out = self.podman_with_input(&all, input);
        let id = std::fs::read_to_string(&cidfile).unwrap_or_default().trim().to_owned();
        let _ = std::fs::remove_file(&cidfile);
        assert!(!id.is_empty(), "podman run wrote no container id: {out:?}");
        self.assert_nothing_left(&id);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `podman run -d …`: the new container, removed (and checked) by [`Detached::remove`], or
    /// force-removed when dropped by a failing test.
    pub fn run_detached(&self, image: &str, flags: &[&str], args: &[&str]) -> Detached<'_> {
        let reference = self.load(image);
        let runtime = self.runtime.to_str().unwrap().to_owned();
        let mut all = vec!["run", "-d", "--runtime", &runtime];
        all.extend(ULIMITS);
        all.extend_from_slice(flags);
        all.push(&reference);
        all.extend_from_slice(args);
        Detached { podman: self, id: self.ok(&all).trim().to_owned() }
    }

    /// The PID of container `id`'s init, as Podman recorded it.
    pub fn init_pid(&self, id: &str) -> u32 {
        let pid = self.ok(&["inspect", "--format", "{{.State.Pid}}", id]);
        pid.trim().parse().unwrap_or_else(|_| panic!("no PID for {id}: {pid:?}"))
    }

    /// Asserts that container `id` left nothing: no Podman container, no process that names it
    /// (its init, conmon), no mount under this Podman's work directory or naming it, no cgroup,
    /// no runtime state. Podman's cleanup runs a moment after `podman run` returns: this waits.
    pub fn assert_nothing_left(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = self.leftovers(id);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "container {id} left behind: {left:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn leftovers(&self, id: &str) -> Vec<String> {
        let mut found = Vec::new();
        let listed = self.ok(&["ps", "-a", "-q", "--no-trunc"]);
        if listed.lines().any(|line| line.trim() == id) {
            found.push("podman container".to_owned());
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let own = entry.file_name().to_str().and_then(|pid| pid.parse::<u32>().ok()) == Some(std::process::id());
            if !own && String::from_utf8_lossy(&cmdline).contains(id) {
                found.push(format!("process {:?}: {}", entry.file_name(), String::from_utf8_lossy(&cmdline)));
            }
        }
        // Podman keeps its overlay directory bind-mounted onto itself; any other mount under its
        // work directory is a container's (its root file system, its /dev/shm).
        let work = format!(" {}/", self.work.display());
        let overlay = format!(" {}/storage/overlay ", self.work.display());
        for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines() {
            let mount_point = line.split(' ').nth(4).map(|point| format!(" {point} "));
            if line.contains(id) || (line.contains(&work) && mount_point.as_deref() != Some(overlay.as_str())) {
                found.push(format!("mount {line}"));
            }
        }
        for cgroup in CgroupLayout::detect().dirs(&format!("/libpod_parent/libpod-{id}")) {
            if cgroup.exists() {
                found.push(format!("cgroup {}", cgroup.display()));
            }
        }
        let state = Path::new(RUNTIME_ROOT).join(id);
        if state.exists() {
            found.push(format!("runtime state {}", state.display()));
        }
        found
    }
}

/// A detached container of a test.
pub struct Detached<'p> {
    podman: &'p Podman,
    pub id: String,
}

impl Detached<'_> {
    /// `podman rm` (forced, without waiting), then checks that it left nothing behind.
    pub fn remove(self) {
        self.podman.ok(&["rm", "--force", "--time", "0", &self.id]);
        self.podman.assert_nothing_left(&self.id);
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.podman.podman(&["rm", "--force", "--time", "0", &self.id]);
        }
    }
}
