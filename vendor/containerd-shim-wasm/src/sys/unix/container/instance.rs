use std::collections::HashMap;
use std::marker::PhantomData;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use containerd_client::tonic::async_trait;
use containerd_shimkit::sandbox::instance::Metrics;
use containerd_shimkit::sandbox::sync::WaitableCell;
use containerd_shimkit::sandbox::{
    Error as SandboxError, Instance as SandboxInstance, InstanceConfig,
};
use containerd_shimkit::set_logger_kv;
use libcontainer::container::Container as YoukiContainer;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::WaitStatus;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::container::{Container, PendingCreate, RELAYED_STDIN_FD, serve_create_request};
use super::stdin_relay;
pub(crate) use super::container::CREATE_HELPER_ARG;
use crate::containerd;
use crate::sandbox::context::WasmLayer;
use crate::shim::{Compiler, Shim};
use crate::sys::container::executor::Executor;
use crate::sys::pid_fd::PidFd;

pub struct Instance<S: Shim> {
    exit_code: WaitableCell<(u32, DateTime<Utc>)>,
    container: Container,
    id: String,
    /// When the container was started (wasmbox addition: its exit logs `phase run`).
    started: Arc<OnceLock<std::time::Instant>>,
    _phantom: PhantomData<S>,
}

#[async_trait]
trait OciClient {
    async fn load_modules(&self, id: &str) -> Result<Vec<WasmLayer>, SandboxError>;
    async fn container_labels(&self, id: &str) -> Result<HashMap<String, String>, SandboxError>;
}

struct EngineOciClient<P: Compiler> {
    client: containerd::Client,
    precompiler: Option<P>,
    supported_layer_types: &'static [&'static str],
    name: &'static str,
}

#[async_trait]
impl<P: Compiler> OciClient for EngineOciClient<P> {
    async fn load_modules(&self, id: &str) -> Result<Vec<WasmLayer>, SandboxError> {
        self.client
            .load_modules(
                id,
                self.name,
                self.supported_layer_types,
                self.precompiler.as_ref(),
            )
            .await
    }

    async fn container_labels(&self, id: &str) -> Result<HashMap<String, String>, SandboxError> {
        self.client.container_labels(id).await
    }
}

/// What the shim sends its create helper (wasmbox addition, see `container.rs`).
#[derive(Serialize, Deserialize)]
struct CreateRequest {
    id: String,
    cfg: InstanceConfig,
    modules: Vec<WasmLayer>,
    container_labels: HashMap<String, String>,
    /// The shim's log level, for the helper's and the container's logger.
    log_level: String,
    /// The container's stdin is the relay's pipe at `RELAYED_STDIN_FD` (wasmbox addition).
    relayed_stdin: bool,
}

/// The create helper's main: creates the container the shim asks for on stdin; returns the
/// helper's exit status (wasmbox addition).
pub fn create_helper_main<S: Shim>() -> i32 {
    serve_create_request(|request: CreateRequest| {
        // The shim's log FIFO, in the directory containerd started the shim in; if that
        // container's bundle is gone (a group's first container was deleted), its stderr.
        let _ = containerd_shimkit::init_fifo_logger(false, &request.log_level);
        if let Ok(level) = request.log_level.parse() {
            log::set_max_level(level);
        }
        create_container::<S>(request)
    })
}

/// Lets go of the code pages the shim's calls mapped (see `crate::sys::resident`); the shim runs
/// it once quiet (wasmbox addition).
fn release_the_shims_code() {
    if let Err(err) = crate::sys::resident::release_unmodified_code() {
        log::warn!("keeping the shim's code mapped: {err:#}");
    }
}

/// Has libcontainer create the container (in the create helper): namespaces, cgroup, root file
/// system, mounts and stdio; the init process loads the guest before it reports ready.
fn create_container<S: Shim>(request: CreateRequest) -> anyhow::Result<YoukiContainer> {
    let CreateRequest {
        id,
        cfg,
        modules,
        container_labels,
        relayed_stdin: request_relayed_stdin,
        ..
    } = request;
    let spec = Spec::load(cfg.bundle.join("config.json"))?;
    match pod_id(&spec) {
        Some(pod_id) => set_logger_kv([("instance", id.as_str()), ("pod", pod_id)]),
        None => set_logger_kv([("instance", id.as_str())]),
    };

    let rootdir = match S::runtime_root() {
        Some(root) => root.join(&cfg.namespace),
        None => cfg.determine_rootdir(S::name())?,
    };

    let mut builder = ContainerBuilder::new(id, SyscallType::Linux)
        .with_executor(Executor::<S>::new(
            modules,
            container_labels,
            cfg.config.options_as_text(),
        ))
        .with_root_path(rootdir)?;

    if request_relayed_stdin {
        // SAFETY: the shim put the relay's read end at this number for this process (see
        // `PendingCreate::spawn`); nothing else in the helper owns it.
        builder = builder.with_stdin(unsafe { OwnedFd::from_raw_fd(RELAYED_STDIN_FD) });
    } else if let Ok(f) = cfg.open_stdin() {
        builder = builder.with_stdin(f);
    }
    if let Ok(f) = cfg.open_stdout() {
        builder = builder.with_stdout(f);
    }
    if let Ok(f) = cfg.open_stderr() {
        builder = builder.with_stderr(f);
    }

    Ok(builder
        .as_init(&cfg.bundle)
        .as_sibling(true)
        .with_systemd(cfg.config.systemd_cgroup)
        .build()?)
}

impl<S: Shim> SandboxInstance for Instance<S> {
    #[cfg_attr(feature = "tracing", tracing::instrument(level = "Info"))]
    async fn new(id: String, cfg: &InstanceConfig) -> Result<Self, SandboxError> {
        // wasmbox addition: a cgroup path of one driver given to the other fails the create
        // with the reason, instead of a cgroup made in the wrong place.
        let spec = Spec::load(cfg.bundle.join("config.json")).map_err(|err| {
            SandboxError::InvalidArgument(format!("could not load runtime spec: {err}"))
        })?;
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|linux| linux.cgroups_path().clone());
        check_cgroup_driver(
            cgroups_path.as_deref(),
            cfg.config.systemd_cgroup,
            Path::new("/run/systemd/system"),
        )
        .map_err(SandboxError::InvalidArgument)?;

        let started = std::time::Instant::now();
        // wasmbox: a create helper (the shim binary exec'd afresh) creates the container; see
        // `container.rs`. The init it forks is a child of this process.
        // wasmbox: the container's stdin comes through a pipe the shim feeds from the FIFO, so
        // that the container sees the end of its input (see `stdin_relay`).
        let stdin = if cfg.stdin.as_os_str().is_empty() {
            None
        } else {
            Some(stdin_relay::start(&cfg.stdin, &id).map_err(|err| SandboxError::Others(format!("{err:#}")))?)
        };
        let relayed_stdin = stdin.is_some();
        let helper = S::create_helper().map_err(|err| SandboxError::Others(format!("{err:#}")))?;
        // The helper execs and starts while the image is read from containerd; it waits for its
        // request (dropped on an error below, it is killed).
        let pending = PendingCreate::spawn(&helper, &id, stdin).map_err(|err| SandboxError::Others(format!("{err:#}")))?;

        // wasmbox: a client of containerd's gRPC API for this create only, dropped once the
        // modules and labels are read: a shim (one per container unless they are grouped) held
        // a connection to containerd, its buffers and its tasks, for its whole life.
        let oci_client: Box<dyn OciClient + Send + Sync + 'static> = {
            let client = containerd::Client::connect(&cfg.containerd_address, &cfg.namespace).await?;
            Box::new(EngineOciClient {
                client,
                precompiler: S::compiler().await,
                supported_layer_types: S::supported_layers_types(),
                name: S::name(),
            })
        };

        // check if container is OCI image with wasm layers and attempt to read the module
        // wasmbox: the labels (the engine reads settings from them, image config labels
        // included) are read at the same time, on the same connection.
        let (modules, container_labels) = futures::join!(oci_client.load_modules(&id), oci_client.container_labels(&id));
        let modules = modules.unwrap_or_else(|e| {
            log::warn!("Error obtaining wasm layers for container {id}.  Will attempt to use files inside container image. Error: {e}");
            vec![]
        });
        let container_labels = container_labels.unwrap_or_else(|e| {
            log::warn!("Error reading the labels of container {id}: {e}");
            HashMap::new()
        });
        drop(oci_client);

        let request = CreateRequest {
            id: id.clone(),
            cfg: cfg.clone(),
            modules,
            container_labels,
            log_level: log::max_level().to_string(),
            relayed_stdin,
        };
        let container = tokio::task::spawn_blocking(move || pending.finish(&request))
            .await
            .map_err(|err| SandboxError::Others(format!("the create helper's thread: {err}")))??;
        // wasmbox: the phases of a container's life, for `make bench` (create: from the helper's
        // exec, with the image read from containerd meanwhile, to the helper's reply).
        log::info!("{id}: phase create: {:.2} ms", started.elapsed().as_secs_f64() * 1e3);
        // wasmbox: the create's buffers (the request, the modules, the spec) are freed; give the
        // pages back, the shim lives as long as its containers.
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };

        // wasmbox: the container's init exists from now on: watch for its exit here, so that it
        // is reported whether the task is started or killed before (a task whose start failed
        // is killed and waited for by containerd's force-delete).
        let exit_code = WaitableCell::new();
        let pid = container.pid()?;
        // Use a pidfd FD so that we can wait for the process to exit asynchronously.
        let pidfd = PidFd::new(pid)?;
        let guard = exit_code.clone().set_guard_with(|| (137, Utc::now()));
        let exited = exit_code.clone();
        let started: Arc<OnceLock<std::time::Instant>> = Arc::new(OnceLock::new());
        let started_at = started.clone();
        let exit_id = id.clone();
        tokio::spawn(async move {
            // move the exit code guard into this task
            let _guard = guard;
            let status = match pidfd.wait().await {
                Ok(WaitStatus::Exited(_, status)) => status,
                Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
                Ok(res) => {
                    log::error!("waitpid unexpected result: {res:?}");
                    137
                }
                Err(e) => {
                    log::error!("waitpid failed: {e}");
                    137
                }
            } as u32;
            // wasmbox: the phases of a container's life, for `make bench` (the init cannot log
            // once its guest runs: its descriptors to the shim are closed by then).
            if let Some(started) = started_at.get() {
                log::info!("{exit_id}: phase run: {:.2} ms", started.elapsed().as_secs_f64() * 1e3);
            }
            let _ = exited.set((status, Utc::now()));
        });

        Ok(Self {
            id,
            exit_code,
            container,
            started,
            _phantom: Default::default(),
        })
    }

    /// Start the instance
    /// The returned value should be a unique ID (such as a PID) for the instance.
    /// Nothing internally should be using this ID, but it is returned to containerd where a user may want to use it.
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self), level = "Info"))]
    async fn start(&self) -> Result<u32, SandboxError> {
        log::info!("starting instance: {}", self.id);
        // The exit is watched since the container was created (see `new`).
        let pid = self.container.pid()?;
        let started = std::time::Instant::now();
        // wasmbox: set before the init is told to start: a short guest can end, and its exit be
        // watched, before `start` returns here (its `phase run` went unlogged).
        let _ = self.started.set(started);
        self.container.start()?;
        log::info!("{}: phase start: {:.2} ms", self.id, started.elapsed().as_secs_f64() * 1e3);
        // wasmbox addition: the shim now idles until the container ends; the code that created
        // and started it need not stay mapped. A second after the last call (this start, or any
        // later one: state, wait, ps, metrics), off the replies' path.
        containerd_shimkit::sandbox::shim::when_quiet(crate::sys::resident::SETTLED_AFTER, release_the_shims_code);
        Ok(pid as _)
    }

    /// The container's init, which libcontainer created (wasmbox addition).
    async fn created_pid(&self) -> Option<u32> {
        self.container.pid().ok().map(|pid| pid as u32)
    }

    /// Send a signal to the instance
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self), level = "Info"))]
    async fn kill(&self, signal: u32) -> Result<(), SandboxError> {
        log::info!("sending signal {signal} to instance: {}", self.id);
        self.container.kill(signal)?;
        Ok(())
    }

    /// Delete any reference to the instance
    /// This is called after the instance has exited.
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self), level = "Info"))]
    async fn delete(&self) -> Result<(), SandboxError> {
        log::info!("deleting instance: {}", self.id);
        let started = std::time::Instant::now();
        self.container.delete()?;
        log::info!("{}: phase delete: {:.2} ms", self.id, started.elapsed().as_secs_f64() * 1e3);
        Ok(())
    }

    /// Waits for the instance to finish and returns its exit code
    /// Returns None if the timeout is reached before the instance has finished.
    /// This is an async call.
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self), level = "Info"))]
    async fn wait(&self) -> (u32, DateTime<Utc>) {
        *self.exit_code.wait().await
    }

    // wasmbox additions: `ctr task ps`, `pause`, `resume` and `metrics` for Wasm and Linux
    // containers alike, through the container's cgroup.
    async fn pids(&self) -> Result<Vec<u32>, SandboxError> {
        Ok(self.container.pids()?)
    }

    async fn pause(&self) -> Result<(), SandboxError> {
        log::info!("pausing instance: {}", self.id);
        Ok(self.container.pause()?)
    }

    async fn resume(&self) -> Result<(), SandboxError> {
        log::info!("resuming instance: {}", self.id);
        Ok(self.container.resume()?)
    }

    async fn stats(&self) -> Result<Option<Metrics>, SandboxError> {
        match self.container.metrics() {
            Ok(metrics) => Ok(Some(metrics)),
            Err(err) => {
                log::warn!(
                    "cgroup statistics of {}: {err:#}; falling back to the PID's cgroup",
                    self.id
                );
                Ok(None)
            }
        }
    }
}

/// Whether a cgroup path is in the systemd driver's form, `slice:prefix:name`
/// (`kubepods-besteffort-pod1.slice:cri-containerd:ID`, what the kubelet sends with the systemd
/// cgroup driver), rather than a path (`/kubepods/besteffort/pod1/ID`).
pub(crate) fn is_systemd_cgroup_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split(':').collect();
    !path.starts_with('/')
        && parts.len() == 3
        && (parts[0].is_empty() || parts[0].ends_with(".slice"))
        && !parts[2].is_empty()
}

/// Checks that the spec's cgroup path is of the driver this runtime uses (`SystemdCgroup` in its
/// options, as runc's shim reads it), and that systemd runs when it is to manage the cgroups
/// (`systemd_marker`: `/run/systemd/system`). The error says what to change.
pub(crate) fn check_cgroup_driver(
    cgroups_path: Option<&Path>,
    systemd: bool,
    systemd_marker: &Path,
) -> Result<(), String> {
    let path = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let systemd_form = is_systemd_cgroup_path(&path);
    if systemd {
        if !systemd_marker.exists() {
            return Err(format!(
                "the runtime's options set SystemdCgroup = true, but systemd does not run on this node ({} is missing): use the cgroupfs driver (SystemdCgroup = false) here",
                systemd_marker.display()
            ));
        }
        if !path.is_empty() && !systemd_form {
            return Err(format!(
                "cgroupsPath {path:?} is not of the systemd driver's form slice:prefix:name, which SystemdCgroup = true needs (the kubelet's cgroupDriver must be systemd too)"
            ));
        }
    } else if systemd_form {
        return Err(format!(
            "cgroupsPath {path:?} is of the systemd driver's form (slice:prefix:name), but this runtime uses the cgroupfs driver: set SystemdCgroup = true in the runtime's options, as for runc (or cgroupDriver: cgroupfs in the kubelet)"
        ));
    }
    Ok(())
}

fn pod_id(spec: &Spec) -> Option<&str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get("io.kubernetes.cri.sandbox-id"))
        .map(|s| s.as_str())
}

#[cfg(test)]
mod tests {
    use anyhow::Result;
    use oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};

    use super::*;

    #[test]
    fn test_get_pod_id() -> Result<()> {
        use std::collections::HashMap;

        let mut annotations = HashMap::new();
        annotations.insert(
            "io.kubernetes.cri.sandbox-id".to_string(),
            "test-pod-id".to_string(),
        );

        let spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build()?)
            .process(ProcessBuilder::default().cwd("/").build()?)
            .annotations(annotations)
            .build()?;

        assert_eq!(pod_id(&spec), Some("test-pod-id"));

        Ok(())
    }

    #[test]
    fn cgroup_paths_must_fit_the_driver() {
        use std::path::Path;
        let present = Path::new("/");
        let absent = Path::new("/no/such/systemd/marker");
        let kubelet_systemd = Path::new("kubepods-besteffort-pod1.slice:cri-containerd:abc");
        let kubelet_cgroupfs = Path::new("/kubepods/besteffort/pod1/abc");
        assert!(is_systemd_cgroup_path(
            "kubepods-besteffort-pod1.slice:cri-containerd:abc"
        ));
        assert!(is_systemd_cgroup_path(":cri-containerd:abc"));
        assert!(!is_systemd_cgroup_path("/kubepods/besteffort/pod1/abc"));
        assert!(!is_systemd_cgroup_path("wasmbox-test/abc"));
        assert!(!is_systemd_cgroup_path("a:b"));
        // cgroupfs driver
        assert!(check_cgroup_driver(Some(kubelet_cgroupfs), false, absent).is_ok());
        assert!(check_cgroup_driver(None, false, absent).is_ok());
        let err = check_cgroup_driver(Some(kubelet_systemd), false, present).unwrap_err();
        assert!(err.contains("set SystemdCgroup = true"), "{err}");
        // systemd driver
        assert!(check_cgroup_driver(Some(kubelet_systemd), true, present).is_ok());
        let err = check_cgroup_driver(Some(kubelet_cgroupfs), true, present).unwrap_err();
        assert!(err.contains("not of the systemd driver's form"), "{err}");
        let err = check_cgroup_driver(Some(kubelet_systemd), true, absent).unwrap_err();
        assert!(err.contains("systemd does not run on this node"), "{err}");
    }

    #[test]
    fn test_get_pod_id_no_annotation() -> Result<()> {
        let spec = SpecBuilder::default()
            .root(RootBuilder::default().path("rootfs").build()?)
            .process(ProcessBuilder::default().cwd("/").build()?)
            .build()?;

        assert_eq!(pod_id(&spec), None);

        Ok(())
    }
}
