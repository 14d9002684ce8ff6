//! End-to-end through containerd's CRI plugin, as the kubelet drives it: pods with runtime handler
//! `wasmbox`, Wasm and Linux containers side by side, CRI log files, exit codes, resources, env and args.

#[path = "../../../shim/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

use common::containerd;

const CGROUP_PARENT: &str = "/wasmbox-cri";
const NAMESPACE_MODE_POD: i32 = 0;
const NAMESPACE_MODE_CONTAINER: i32 = 1;
const NAMESPACE_MODE_NODE: i32 = 2;

async fn client() -> RuntimeServiceClient<Channel> {
    client_at(containerd().work.join("containerd.sock")).await
}

/// A CRI client of the containerd listening on `socket`.
async fn client_at(socket: PathBuf) -> RuntimeServiceClient<Channel> {
    let channel = Endpoint::try_from("http://[::]")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connecting to containerd's CRI service");
    RuntimeServiceClient::new(channel)
}

/// Imports `images` into CRI's namespace (`k8s.io`) and connects to the CRI service.
async fn cri_with(images: &[&str]) -> RuntimeServiceClient<Channel> {
    for image in images {
        containerd().image_in("k8s.io", image);
    }
    client().await
}

struct Pod {
    id: String,
    config: PodSandboxConfig,
    log_dir: PathBuf,
    /// The containers created in it (their cgroups are checked when the pod is gone).
    containers: std::sync::Mutex<Vec<String>>,
}

async fn run_pod(cri: &mut RuntimeServiceClient<Channel>, name: &str, annotations: HashMap<String, String>) -> Pod {
    try_run_pod(cri, &containerd().work, name, annotations).await.expect("RunPodSandbox")
}

/// RunPodSandbox with handler `wasmbox`, the pod's logs under `work/pods/NAME`.
async fn try_run_pod(
    cri: &mut RuntimeServiceClient<Channel>,
    work: &Path,
    name: &str,
    annotations: HashMap<String, String>,
) -> Result<Pod, tonic::Status> {
    try_run_pod_on(cri, work, name, annotations, "wasmbox").await
}

/// RunPodSandbox with the runtime `handler` (a RuntimeClass's), the pod's logs under `work/pods/NAME`.
async fn try_run_pod_on(
    cri: &mut RuntimeServiceClient<Channel>,
    work: &Path,
    name: &str,
    annotations: HashMap<String, String>,
    handler: &str,
) -> Result<Pod, tonic::Status> {
    let log_dir = work.join("pods").join(name);
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: CGROUP_PARENT.to_owned(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(kubelet_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = cri
        .run_pod_sandbox(RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.to_owned() })
        .await?
        .into_inner()
        .pod_sandbox_id;
    Ok(Pod { id, config, log_dir, containers: Default::default() })
}

/// Creates and starts a container in `pod`; returns its id.
async fn start_container(cri: &mut RuntimeServiceClient<Channel>, pod: &Pod, config: ContainerConfig) -> String {
    try_start_container(cri, pod, config).await.expect("StartContainer")
}

/// Creates a container in `pod` and tries to start it (where CRI creates the task).
async fn try_start_container(
    cri: &mut RuntimeServiceClient<Channel>,
    pod: &Pod,
    config: ContainerConfig,
) -> Result<String, tonic::Status> {
    let id = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    pod.containers.lock().unwrap().push(id.clone());
    cri.start_container(StartContainerRequest { container_id: id.clone() }).await?;
    Ok(id)
}

/// Creates and starts a container, waits for it to exit; returns (exit code, stdout lines from the CRI log).
async fn run_container(
    cri: &mut RuntimeServiceClient<Channel>,
    pod: &Pod,
    config: ContainerConfig,
) -> (i32, Vec<String>) {
    let (_, code, out) = run_container_with_id(cri, pod, config).await;
    (code, out)
}

/// [`run_container`], also returning the container's id.
async fn run_container_with_id(
    cri: &mut RuntimeServiceClient<Channel>,
    pod: &Pod,
    config: ContainerConfig,
) -> (String, i32, Vec<String>) {
    let log_path = config.log_path.clone();
    let id = start_container(cri, pod, config).await;
    let status = wait_exited(cri, &id).await;
    let log = std::fs::read_to_string(pod.log_dir.join(&log_path)).unwrap_or_default();
    (id, status.exit_code, parse_cri_log(&log))
}

async fn wait_exited(cri: &mut RuntimeServiceClient<Channel>, id: &str) -> ContainerStatus {
    for _ in 0..100 {
        let status = cri
            .container_status(ContainerStatusRequest { container_id: id.to_owned(), verbose: false })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status");
        if status.state == ContainerState::ContainerExited as i32 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("container {id} did not exit");
}

/// The `stdout` lines of a CRI log file (`TIMESTAMP STREAM TAG TEXT` per line).
fn parse_cri_log(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (_time, stream, _tag, text) = (parts.next()?, parts.next()?, parts.next()?, parts.next().unwrap_or(""));
            (stream == "stdout").then(|| text.to_owned())
        })
        .collect()
}

/// The namespaces the kubelet asks for, for a pod and for each of its containers, when the pod has
/// hostNetwork and no shareProcessNamespace: the node's network, a PID namespace per container.
/// (Without them in a container's config, containerd puts it in the pause container's PID namespace.)
fn kubelet_namespaces() -> NamespaceOption {
    NamespaceOption { network: NAMESPACE_MODE_NODE, pid: NAMESPACE_MODE_CONTAINER, ..Default::default() }
}

fn container(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.to_owned(), attempt: 0 }),
        image: Some(ImageSpec { image: format!("localhost/wasmbox/{image}:latest"), ..Default::default() }),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(kubelet_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn remove_pod(cri: &mut RuntimeServiceClient<Channel>, pod: &Pod) {
    cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await.expect("StopPodSandbox");
    cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await.expect("RemovePodSandbox");
}

/// Asserts no shim, mount or cgroup of the pod is left.
fn assert_pod_left_nothing(pod: &Pod) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            if String::from_utf8_lossy(&cmdline).contains(&pod.id) {
                left.push(format!("process {}", entry.file_name().to_string_lossy()));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        left.extend(mounts.lines().filter(|l| l.contains(&pod.id)).map(|l| format!("mount {l}")));
        let ids: Vec<String> =
            std::iter::once(pod.id.clone()).chain(pod.containers.lock().unwrap().iter().cloned()).collect();
        let layout = common::CgroupLayout::detect();
        for id in &ids {
            for dir in layout.dirs(&format!("{CGROUP_PARENT}/{id}")) {
                if dir.is_dir() {
                    left.push(format!("cgroup {}", dir.display()));
                }
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "pod {} left behind: {left:#?}", pod.id);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of `knob` in a CRI container's cgroup, on this node's cgroup layout.
fn cgroup_value(container_id: &str, knob: common::cgroups::Knob) -> String {
    common::CgroupLayout::detect().read(&format!("{CGROUP_PARENT}/{container_id}"), knob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_wasm_containers_through_cri() {
    let mut cri = cri_with(&["pause", "hello", "probe", "probe-labelled"]).await;

    // 1. a Wasm container in a pod with handler wasmbox, its pause container run natively
    let pod = run_pod(&mut cri, "mixed", HashMap::new()).await;
    let (code, out) = run_container(&mut cri, &pod, container("hello", "hello")).await;
    assert_eq!((code, out.as_slice()), (0, &["Hello from Rust on wasmbox (wasm32-wasip1)!".to_owned()][..]));
    // 2. args, env and the exit code from the container config
    let mut probe = container("probe-env", "probe");
    probe.args = vec!["env".into(), "GREETING".into()];
    probe.envs = vec![KeyValue { key: "GREETING".into(), value: "hello from CRI".into() }];
    let (code, out) = run_container(&mut cri, &pod, probe).await;
    assert_eq!((code, out.as_slice()), (0, &["GREETING=hello from CRI".to_owned()][..]));
    let mut exit = container("probe-exit", "probe");
    exit.args = vec!["exit".into(), "3".into()];
    assert_eq!(run_container(&mut cri, &pod, exit).await.0, 3);

    // 3. resources.limits reach the container's cgroup, and the engine's memory limit follows
    let limits = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut sleeper = container("probe-limited", "probe");
    sleeper.args = vec!["sleep".into(), "2".into()];
    sleeper.linux = limits.clone();
    let id = start_container(&mut cri, &pod, sleeper).await;
    assert_eq!(cgroup_value(&id, common::cgroups::Knob::MemoryLimit), "67108864");
    assert_eq!(cgroup_value(&id, common::cgroups::Knob::CpuQuota), "50000");
    // the kubelet's figures (`kubectl top`) come from the task's metrics
    let stats = cri
        .container_stats(ContainerStatsRequest { container_id: id.clone() })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats of a running container");
    let cpu = stats.cpu.and_then(|cpu| cpu.usage_core_nano_seconds).map(|v| v.value);
    let memory = stats.memory.and_then(|memory| memory.working_set_bytes).map(|v| v.value);
    assert!(cpu.is_some_and(|ns| ns > 0), "CPU usage: {cpu:?}");
    assert!(memory.is_some_and(|bytes| bytes > 0 && bytes < 64 << 20), "working set: {memory:?}");
    assert_eq!(wait_exited(&mut cri, &id).await.exit_code, 0);
    let mut grower = container("probe-grower", "probe");
    grower.args = vec!["alloc".into(), "200".into()];
    grower.linux = limits;
    let (code, out) = run_container(&mut cri, &pod, grower).await;
    assert_eq!(code, 2, "{out:?}");
    assert!(out.iter().any(|l| l.starts_with("memory.grow refused after")), "{out:?}");
    // the image config's wasmbox.io/ labels are the container's defaults (CRI copies them too)
    let mut labelled = container("labelled", "probe-labelled");
    labelled.args = vec!["spin".into()];
    let (code, out) = run_container(&mut cri, &pod, labelled).await;
    assert_eq!(code, 124, "the image's wasmbox.io/deadline=1s: {out:?}");

    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);

    // 4. pod annotations reach the Wasm container (containerd passes wasmbox.io/* to the runtime)
    let annotations = HashMap::from([("wasmbox.io/deadline".to_owned(), "1s".to_owned())]);
    let pod = run_pod(&mut cri, "annotated", annotations).await;
    let mut spin = container("spin", "probe");
    spin.args = vec!["spin".into()];
    assert_eq!(run_container(&mut cri, &pod, spin).await.0, 124);
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);

    // 5. an invalid one fails the task's create, which CRI does in StartContainer (the kubelet
    //    reports it as RunContainerError), with its cause
    let annotations = HashMap::from([("wasmbox.io/deadline".to_owned(), "soon".to_owned())]);
    let pod = run_pod(&mut cri, "misannotated", annotations).await;
    let refused = try_start_container(&mut cri, &pod, container("refused", "probe"))
        .await
        .expect_err("a container with an invalid annotation must not start");
    assert!(
        refused.message().contains("wasmbox: annotation wasmbox.io/deadline=\"soon\": expected a duration"),
        "{refused:?}"
    );
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}

/// A pod of the RuntimeClass whose handler is `wasmbox-wasmer` (runtime type
/// `io.containerd.wasmbox-wasmer.v1`) runs its modules on Wasmer, with the container's args, env
/// and memory limit; a component is refused at StartContainer with its cause; a pod annotation
/// `wasmbox.io/engine=wasmtime` takes it back to wasmtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasmer_pod_runs_modules_through_cri() {
    let mut cri = cri_with(&["pause", "hello", "probe", "hello-component"]).await;
    let c = containerd();
    let pod =
        try_run_pod_on(&mut cri, &c.work, "wasmer", HashMap::new(), "wasmbox-wasmer").await.expect("RunPodSandbox");
    let (code, out) = run_container(&mut cri, &pod, container("hello", "hello")).await;
    assert_eq!((code, out.as_slice()), (0, &["Hello from Rust on wasmbox (wasm32-wasip1)!".to_owned()][..]));
    let mut probe = container("probe-env", "probe");
    probe.args = vec!["env".into(), "GREETING".into()];
    probe.envs = vec![KeyValue { key: "GREETING".into(), value: "hello from CRI on Wasmer".into() }];
    let id = start_container(&mut cri, &pod, probe).await;
    assert_eq!(wait_exited(&mut cri, &id).await.exit_code, 0);
    let log = c.log_of(&id);
    assert!(log.iter().any(|l| l.contains("phase load: ") && l.contains("(wasmer)")), "{log:#?}");
    let mut limited = container("probe-limited", "probe");
    limited.args = vec!["alloc".into(), "200".into()];
    limited.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources { memory_limit_in_bytes: 64 << 20, ..Default::default() }),
        ..Default::default()
    });
    let (code, out) = run_container(&mut cri, &pod, limited).await;
    assert_eq!(code, 2, "memory.grow refused at the limit: {out:?}");
    let refused = try_start_container(&mut cri, &pod, container("component", "hello-component"))
        .await
        .expect_err("Wasmer must refuse a component");
    assert!(refused.message().contains("is a component: the wasmer engine cannot run it"), "{refused:?}");
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);

    let annotations = HashMap::from([("wasmbox.io/engine".to_owned(), "wasmtime".to_owned())]);
    let pod = try_run_pod_on(&mut cri, &c.work, "wasmer-to-wasmtime", annotations, "wasmbox-wasmer")
        .await
        .expect("RunPodSandbox");
    let (code, out) = run_container(&mut cri, &pod, container("component", "hello-component")).await;
    assert_eq!(code, 0, "{out:?}");
    assert!(out.iter().any(|line| line.contains("Hello from a Rust component on wasmbox")), "{out:?}");
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_oci_artifacts_run_through_cri() {
    let mut cri = cri_with(&["pause", "hello-artifact", "hello-component-artifact", "js-artifact"]).await;
    let pod = run_pod(&mut cri, "artifacts", HashMap::new()).await;
    // The artifact has no file system: the shim reads the `application/wasm` layer from
    // containerd's content store; argv[0] only names the program.
    let mut module = container("module", "hello-artifact");
    module.command = vec!["hello.wasm".into(), "from".into(), "an artifact".into()];
    let (code, out) = run_container(&mut cri, &pod, module).await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out, ["Hello from Rust on wasmbox (wasm32-wasip1)!", "args: from an artifact"]);
    let mut component = container("component", "hello-component-artifact");
    component.command = vec!["hello.wasm".into()];
    let (code, out) = run_container(&mut cri, &pod, component).await;
    assert_eq!(code, 0, "{out:?}");
    assert_eq!(out.first().map(String::as_str), Some("Hello from a Rust component on wasmbox (wasm32-wasip2)!"));
    // A JavaScript component with a precompiled-code layer: this node does not trust image
    // code (the default), so it compiles the component itself.
    let mut js = container("js", "js-artifact");
    js.command = vec!["hello.wasm".into()];
    let (id, code, out) = run_container_with_id(&mut cri, &pod, js).await;
    assert_eq!(
        (code, out.as_slice()),
        (0, &["Hello from JavaScript in WebAssembly!".to_owned(), "sum of 1..10 = 55".to_owned()][..])
    );
    let log = containerd().log_of(&id);
    assert!(log.iter().any(|l| l.contains("precompiled code in the image ignored")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("compiled in")), "it did not compile: {log:#?}");
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}

/// An idle container of a Wasm artifact keeps none of its image's Wasm bytes. The shim reads the
/// layers from containerd's content store and hands them to the create helper; the container's
/// init, forked from it, kept two copies of them for its whole life (the encoded request and the
/// decoded layers): 32 MiB of private memory for this 16 MiB module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_artifact_container_keeps_none_of_its_modules_bytes() {
    let mut cri = cri_with(&["pause", "probe-big-artifact"]).await;
    let pod = run_pod(&mut cri, "big-artifact", HashMap::new()).await;
    let mut big = container("big", "probe-big-artifact");
    big.command = vec!["probe.wasm".into(), "sleep".into(), "60".into()];
    let id = start_container(&mut cri, &pod, big).await;
    let pids = cri_pids(containerd(), &id);
    assert_eq!(pids.len(), 1, "container {id}: processes {pids:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pids[0])).expect("the init's status");
    let anon_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in the init's status");
    cri.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.expect("StopContainer");
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
    eprintln!("the idle init's anonymous memory: {anon_kib} KiB");
    assert!(anon_kib < 8 << 10, "the idle init holds {anon_kib} KiB of anonymous memory (its module: 16 MiB)");
}

/// A wasi:http component served through CRI, as a Deployment's pod would run it: requests over
/// loopback (the pod is on the node's network), then StopContainer ends it gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_component_serves_through_cri() {
    let mut cri = cri_with(&["pause", "hello-http"]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let annotations = HashMap::from([("wasmbox.io/http-address".to_owned(), format!("127.0.0.1:{port}"))]);
    let pod = run_pod(&mut cri, "http", annotations).await;
    let id = start_container(&mut cri, &pod, container("server", "hello-http")).await;
    let reply = tokio::task::spawn_blocking(move || {
        common::wait_for_server(port);
        common::http(port, "GET", "/from-cri", "")
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply, (200, "Hello from a wasi:http component on wasmbox! GET /from-cri\n".to_owned()));
    cri.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 10 }).await.expect("StopContainer");
    let status = wait_exited(&mut cri, &id).await;
    assert_eq!(status.exit_code, 0, "a graceful stop exits 0: {status:?}");
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}

/// A pod as Kubernetes runs one with a sidecar: a long-running Linux (busybox) container next to
/// Wasm containers, each in its own PID namespace, each with its own CRI log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_busybox_containers_share_a_pod() {
    sidecar_pod("sidecar", NAMESPACE_MODE_CONTAINER).await;
}

/// The same pod with `shareProcessNamespace: true` (every container joins the pause container's
/// PID namespace). libcontainer 0.6 failed here on cgroup v1 once a Linux container had been
/// created (`Mount(Procfs(NotFound("/proc/N")))`, see vendor/README.md); the vendored copy is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_busybox_containers_share_a_pod_and_its_pid_namespace() {
    sidecar_pod("shared-pid", NAMESPACE_MODE_POD).await;
}

async fn sidecar_pod(name: &str, pid_mode: i32) {
    let mut cri = cri_with(&["pause", "hello", "busybox"]).await;
    let pod = run_pod(&mut cri, name, HashMap::new()).await;
    let in_pid_mode = |mut config: ContainerConfig| {
        if let Some(options) =
            config.linux.as_mut().and_then(|l| l.security_context.as_mut()).and_then(|s| s.namespace_options.as_mut())
        {
            options.pid = pid_mode;
        }
        config
    };
    let hello = "Hello from Rust on wasmbox (wasm32-wasip1)!".to_owned();
    let (code, out) = run_container(&mut cri, &pod, in_pid_mode(container("hello", "hello"))).await;
    assert_eq!((code, out.as_slice()), (0, &[hello.clone()][..]));
    let mut sidecar = in_pid_mode(container("sidecar", "busybox"));
    sidecar.command = vec!["/bin/busybox".into(), "sh".into(), "-c".into(), "echo sidecar up; exec sleep 600".into()];
    let sidecar_id = start_container(&mut cri, &pod, sidecar).await;
    for n in 0..2 {
        let (code, out) = run_container(&mut cri, &pod, in_pid_mode(container(&format!("hello-{n}"), "hello"))).await;
        assert_eq!((code, out.as_slice()), (0, &[hello.clone()][..]));
    }
    let sidecar_log = std::fs::read_to_string(pod.log_dir.join("sidecar.log")).unwrap_or_default();
    assert_eq!(parse_cri_log(&sidecar_log), ["sidecar up"]);
    cri.stop_container(StopContainerRequest { container_id: sidecar_id.clone(), timeout: 2 })
        .await
        .expect("StopContainer");
    // In a PID namespace of its own, busybox `sleep` is PID 1 and ignores SIGTERM (the kill
    // after the timeout ends it); in the pod's shared one the pause container is PID 1, so
    // SIGTERM ends it at once.
    let expected = if pid_mode == NAMESPACE_MODE_POD { 143 } else { 137 };
    assert_eq!(wait_exited(&mut cri, &sidecar_id).await.exit_code, expected, "pid mode {pid_mode}");
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}

/// A private containerd of `release` with no wasmbox runtime, started on the configuration its own
/// `containerd config default` prints (as a node has it), changed only where this machine needs
/// it (its own root, state, socket and opt dir, the local pause image, CNI, OOM scores);
/// stopped on drop.
struct BareContainerd {
    work: PathBuf,
    script: PathBuf,
    ctr: PathBuf,
}

impl BareContainerd {
    fn start(name: &str, release: &str) -> Self {
        use toml_edit::{DocumentMut, value};
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containerd.sh");
        let work = PathBuf::from(format!("/tmp/wasmbox-{name}-{release}-{}", std::process::id()));
        std::fs::create_dir_all(work.join("cni-conf")).unwrap();
        let bin_dir = common::release_bin_dir(release);
        let binary = |name: &str| bin_dir.as_ref().map(|dir| dir.join(name)).unwrap_or_else(|| PathBuf::from(name));
        let default = std::process::Command::new(binary("containerd")).args(["config", "default"]).output().unwrap();
        assert!(default.status.success(), "containerd config default: {default:?}");
        let mut doc: DocumentMut = String::from_utf8(default.stdout).unwrap().parse().unwrap();
        let at = |w: &str| work.join(w).display().to_string();
        doc["root"] = value(at("root"));
        doc["state"] = value(at("state"));
        doc["grpc"]["address"] = value(at("containerd.sock"));
        doc["plugins"]["io.containerd.internal.v1.opt"]["path"] = value(at("opt"));
        let version = doc["version"].as_integer().unwrap_or(1);
        if version >= 3 {
            let runtime = &mut doc["plugins"]["io.containerd.cri.v1.runtime"];
            runtime["restrict_oom_score_adj"] = value(true);
            runtime["netns_mounts_under_state_dir"] = value(true);
            runtime["cni"]["bin_dirs"] = value(toml_edit::Array::from_iter(["/usr/lib/cni"]));
            runtime["cni"]["conf_dir"] = value(at("cni-conf"));
            doc["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] =
                value("localhost/wasmbox/pause:latest");
            doc["plugins"]["io.containerd.nri.v1.nri"]["disable"] = value(true);
        } else {
            let cri = &mut doc["plugins"]["io.containerd.grpc.v1.cri"];
            cri["restrict_oom_score_adj"] = value(true);
            cri["netns_mounts_under_state_dir"] = value(true);
            cri["sandbox_image"] = value("localhost/wasmbox/pause:latest");
            cri["cni"]["bin_dir"] = value("/usr/lib/cni");
            cri["cni"]["conf_dir"] = value(at("cni-conf"));
            if doc["plugins"].get("io.containerd.nri.v1.nri").is_some() {
                doc["plugins"]["io.containerd.nri.v1.nri"]["disable"] = value(true);
            }
        }
        let config = work.join("default.toml");
        std::fs::write(&config, doc.to_string()).unwrap();
        let mut start = std::process::Command::new(&script);
        start.arg("start").arg(&work).arg("none").env("CONTAINERD_CONFIG_FILE", &config);
        match &bin_dir {
            Some(dir) => start.env("CONTAINERD_BIN_DIR", dir),
            None => start.env_remove("CONTAINERD_BIN_DIR"),
        };
        assert!(start.status().unwrap().success(), "the private containerd {release} did not start");
        BareContainerd { work, script, ctr: binary("ctr") }
    }

    fn import(&self, image: &str) {
        let out = std::process::Command::new(&self.ctr)
            .arg("-a")
            .arg(self.work.join("containerd.sock"))
            .args(["-n", "k8s.io", "images", "import"])
            .arg(common::images_dir().join(format!("{image}.tar")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

impl Drop for BareContainerd {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script).arg("stop").arg(&self.work).status();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Runs the node installer script (as the installer image runs it, with busybox's sh) against
/// the private containerd: its config, its shim directory, its restart.
fn node_installer(containerd: &BareContainerd, action: &str) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = std::env::current_exe().unwrap().ancestors().nth(2).unwrap().to_owned();
    let out = std::process::Command::new("busybox")
        .arg("sh")
        .arg(repo.join("k8s/installer/install.sh"))
        .arg(action)
        .env("HOST_ROOT", "/")
        .env("CONTAINERD_CONFIG", containerd.work.join("config.toml"))
        .env("SHIM_DIR", containerd.work.join("opt/bin"))
        .env("SHIM_SOURCE", bin.join("containerd-shim-wasmbox-v1"))
        .env("WASMBOX", bin.join("wasmbox"))
        .env("RESTART_CONTAINERD", format!("{} restart {}", containerd.script.display(), containerd.work.display()))
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install.sh {action}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_installer_installs_idempotently_and_uninstalls_cleanly() {
    // on the configuration each containerd release generates: 1.6 and 1.7 (format 2), 2.1 (format 3)
    for release in ["host", "1.7", "2.1"] {
        let containerd = BareContainerd::start("installer", release);
        let config = containerd.work.join("config.toml");
        let original = std::fs::read_to_string(&config).unwrap();
        let shim = containerd.work.join("opt/bin/containerd-shim-wasmbox-v1");
        containerd.import("pause");
        containerd.import("hello");

        // Before: CRI knows no handler `wasmbox`.
        let mut cri = client_at(containerd.work.join("containerd.sock")).await;
        let refused = try_run_pod(&mut cri, &containerd.work, "before", HashMap::new())
            .await
            .err()
            .expect("no wasmbox runtime yet");
        assert!(refused.message().contains("wasmbox"), "{release}: {refused:?}");

        let first = node_installer(&containerd, "install");
        assert!(first.contains("configured: ") && first.contains("restarting containerd"), "{release}: {first}");
        let second = node_installer(&containerd, "install");
        assert!(second.contains("nothing changed, containerd not restarted"), "{release}: {second}");
        let installed = std::fs::read_to_string(&config).unwrap();
        assert_eq!(installed.matches("containerd.runtimes.wasmbox]").count(), 1, "{release}: {installed}");
        assert_eq!(installed.matches("containerd.runtimes.wasmbox-wasmer]").count(), 1, "{release}: {installed}");
        assert!(shim.is_file());
        assert!(shim.with_file_name("wasmbox-oci").is_file(), "{release}: no wasmbox-oci beside the shim");
        let wasmer_shim = shim.with_file_name("containerd-shim-wasmbox-wasmer-v1");
        assert_eq!(std::fs::read_link(&wasmer_shim).ok(), Some("containerd-shim-wasmbox-v1".into()), "{release}");

        // The runtime works through CRI.
        let mut cri = client_at(containerd.work.join("containerd.sock")).await;
        let pod = try_run_pod(&mut cri, &containerd.work, "installed", HashMap::new()).await.expect("RunPodSandbox");
        let (code, out) = run_container(&mut cri, &pod, container("hello", "hello")).await;
        assert_eq!(
            (code, out.as_slice()),
            (0, &["Hello from Rust on wasmbox (wasm32-wasip1)!".to_owned()][..]),
            "{release}"
        );
        remove_pod(&mut cri, &pod).await;
        // and so does its Wasmer twin, the handler of a second RuntimeClass
        let pod = try_run_pod_on(&mut cri, &containerd.work, "installed-wasmer", HashMap::new(), "wasmbox-wasmer")
            .await
            .expect("RunPodSandbox on wasmbox-wasmer");
        let id = start_container(&mut cri, &pod, container("hello", "hello")).await;
        assert_eq!(wait_exited(&mut cri, &id).await.exit_code, 0, "{release}");
        let log = std::fs::read_to_string(containerd.work.join("containerd.log")).unwrap_or_default();
        assert!(
            log.lines().any(|l| l.contains(&format!("instance=\"{id}\""))
                && l.contains("phase load: ")
                && l.contains("(wasmer)")),
            "{release}: the wasmbox-wasmer handler did not run the guest on Wasmer"
        );
        remove_pod(&mut cri, &pod).await;

        let removed = node_installer(&containerd, "uninstall");
        assert!(
            removed.contains("unconfigured: ") && removed.contains("restarting containerd"),
            "{release}: {removed}"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original, "{release}: the config is back byte for byte");
        assert!(!shim.exists());
        assert!(!shim.with_file_name("wasmbox-oci").exists(), "{release}: wasmbox-oci left");
        assert!(std::fs::symlink_metadata(&wasmer_shim).is_err(), "{release}: the Wasmer shim link left");
        let mut cri = client_at(containerd.work.join("containerd.sock")).await;
        let refused =
            try_run_pod(&mut cri, &containerd.work, "after", HashMap::new()).await.err().expect("the handler is gone");
        assert!(refused.message().contains("wasmbox"), "{release}: {refused:?}");
    }
}

/// A containerd whose wasmbox runtime trusts image code through its CRI runtime options.
fn trusting() -> &'static common::Containerd {
    static TRUSTING: std::sync::OnceLock<common::Containerd> = std::sync::OnceLock::new();
    TRUSTING.get_or_init(|| {
        common::Containerd::start("trusting-cri", &[("WASMBOX_CRI_OPTIONS", "WASMBOX_PRECOMPILED = \"trust\"")])
    })
}

/// Imports the forged artifact (W's Wasm layer, X's code as its precompiled layer) into `c`'s
/// CRI namespace.
fn forged_artifact_in(c: &common::Containerd) {
    let dir = c.work.join("forged");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = common::forge::forged_artifact(&dir);
    c.import_tar("k8s.io", "forged-artifact", &tar);
    let shadow = common::forge::shadow_artifact(&dir, &common::images_dir().join("hello-artifact.tar"));
    c.import_tar("k8s.io", "a-shadow-artifact", &shadow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_artifact_code_runs_only_on_a_trusting_node_and_only_for_its_image() {
    use common::forge::{FORGED_OUTPUT, INNOCENT_OUTPUT};
    let innocent = INNOCENT_OUTPUT.trim_end().to_owned();
    let forged = FORGED_OUTPUT.trim_end().to_owned();
    // By default the node compiles the artifact's Wasm layer itself.
    forged_artifact_in(containerd());
    let mut cri = cri_with(&["pause"]).await;
    let pod = run_pod(&mut cri, "forged-default", HashMap::new()).await;
    let mut attack = container("forged", "forged-artifact");
    attack.command = vec!["hello.wasm".into()];
    let (id, code, out) = run_container_with_id(&mut cri, &pod, attack.clone()).await;
    assert_eq!((code, out.clone()), (0, vec![innocent.clone()]), "{:#?}", containerd().log_of(&id));
    assert!(containerd().log_of(&id).iter().any(|l| l.contains("precompiled code in the image ignored")));
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);

    // A node whose runtime options trust image code runs it, for that image only.
    let t = trusting();
    forged_artifact_in(t);
    for image in ["pause", "hello-artifact", "js-artifact"] {
        t.image_in("k8s.io", image);
    }
    let mut cri = client_at(t.socket()).await;
    let pod = try_run_pod(&mut cri, &t.work, "forged-trusted", HashMap::new()).await.expect("RunPodSandbox");
    let (_, code, out) = run_container_with_id(&mut cri, &pod, attack.clone()).await;
    assert_eq!((code, out), (0, vec![forged.clone()]));
    let mut hello = container("innocent", "hello-artifact");
    hello.command = vec!["hello.wasm".into()];
    let (_, code, out) = run_container_with_id(&mut cri, &pod, hello).await;
    assert_eq!((code, out), (0, vec![innocent.clone()]), "an innocent artifact of W gets the node's code");
    // An image with the innocent one's very config (one image for CRI) and X's code in a layer
    // that config does not list: whichever manifest CRI picks, that layer is not used.
    let mut shadow = container("shadow", "a-shadow-artifact");
    shadow.command = vec!["hello.wasm".into()];
    let (id, code, out) = run_container_with_id(&mut cri, &pod, shadow).await;
    assert_eq!((code, out), (0, vec![innocent.clone()]), "an unbound code layer ran");
    let mut hello = container("innocent-again", "hello-artifact");
    hello.command = vec!["hello.wasm".into()];
    let (_, code, out) = run_container_with_id(&mut cri, &pod, hello).await;
    assert_eq!((code, out), (0, vec![innocent.clone()]));
    let _ = id;
    // CRI did take them for one image: a manifest with the unbound layer was read, and the layer
    // left out.
    let log = std::fs::read_to_string(t.work.join("containerd.log")).unwrap();
    assert!(
        log.contains("is not bound by the image config's layerDigests: ignored"),
        "the shadow image was never read"
    );
    // the same W in a tar image, through ctr, on the same node and cache
    let run = t.run_wasm("hello", &common::unique_id("innocent-tar"), &[], &[]);
    assert_eq!((run.code, run.stdout.as_str()), (0, INNOCENT_OUTPUT), "{run:#?}");
    // and an honest precompiled layer is used as such
    let mut js = container("js", "js-artifact");
    js.command = vec!["hello.wasm".into()];
    let (id, code, _) = run_container_with_id(&mut cri, &pod, js).await;
    assert_eq!(code, 0);
    let log = t.log_of(&id);
    assert!(log.iter().any(|l| l.contains("using the image's precompiled code")), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("compiled in")), "it compiled: {log:#?}");
    remove_pod(&mut cri, &pod).await;
}

/// A pod's containers (its sandbox, two Wasm guests and a Linux one) share one shim, and each is
/// one process, the shim's child: no zygote, no helper left from the create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_containers_share_one_shim_and_are_one_process_each() {
    let mut cri = cri_with(&["pause", "probe", "busybox"]).await;
    let pod = run_pod(&mut cri, "one-shim", HashMap::new()).await;
    let mut ids = vec![];
    for name in ["wasm-a", "wasm-b"] {
        let mut wasm = container(name, "probe");
        wasm.command = vec!["/probe.wasm".into(), "sleep".into(), "60".into()];
        ids.push(start_container(&mut cri, &pod, wasm).await);
    }
    let mut linux = container("linux", "busybox");
    linux.command = vec!["/bin/busybox".into(), "sleep".into(), "60".into()];
    ids.push(start_container(&mut cri, &pod, linux).await);
    let shims: Vec<u32> = std::iter::once(&pod.id).chain(&ids).flat_map(|id| containerd().shim_pids(id)).collect();
    assert_eq!(shims.len(), 1, "the pod's shims: {shims:?}");
    let mut inits: Vec<u32> = cri_pids(containerd(), &pod.id);
    for id in &ids {
        let pids = cri_pids(containerd(), id);
        assert_eq!(pids.len(), 1, "container {id}: processes {pids:?}");
        inits.extend(pids);
    }
    inits.sort_unstable();
    assert_eq!(
        common::procs::children(shims[0]),
        inits,
        "the shim's children: the sandbox's and each container's init"
    );
    for id in &ids {
        cri.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.expect("StopContainer");
    }
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}

/// The PIDs containerd lists for a CRI container.
fn cri_pids(c: &common::Containerd, id: &str) -> Vec<u32> {
    c.task_pids_in("k8s.io", id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_containers_hold_no_host_handle_and_are_confined_as_runc_confines() {
    let mut cri = cri_with(&["pause", "probe", "busybox", "hello-artifact"]).await;
    let pod = run_pod(&mut cri, "confinement", HashMap::new()).await;
    let seccomp =
        SecurityProfile { profile_type: security_profile::ProfileType::RuntimeDefault as i32, ..Default::default() };
    let contexts = [
        LinuxContainerSecurityContext::default(),
        LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            readonly_rootfs: true,
            ..Default::default()
        },
        LinuxContainerSecurityContext { seccomp: Some(seccomp), no_new_privs: true, ..Default::default() },
    ];
    for (n, context) in contexts.into_iter().enumerate() {
        let context = LinuxContainerSecurityContext { namespace_options: Some(kubelet_namespaces()), ..context };
        let mut wasm = container(&format!("wasm-{n}"), "probe");
        wasm.command = vec!["/probe.wasm".into(), "sleep".into(), "30".into()];
        wasm.linux.as_mut().unwrap().security_context = Some(context.clone());
        let mut linux = container(&format!("linux-{n}"), "busybox");
        linux.command = vec!["/bin/busybox".into(), "sleep".into(), "30".into()];
        linux.linux.as_mut().unwrap().security_context = Some(context);
        let wasm = start_container(&mut cri, &pod, wasm).await;
        let linux = start_container(&mut cri, &pod, linux).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let wasm_pids = cri_pids(containerd(), &wasm);
        let found = common::hygiene::host_handles(&wasm_pids, &containerd().cache_dir());
        assert!(found.is_empty(), "case {n}: host handles:\n{}", found.join("\n"));
        let view = |pid: u32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let keys = [
                "Uid:",
                "Gid:",
                "Groups:",
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
            ];
            let status: Vec<String> =
                status.lines().filter(|l| keys.iter().any(|k| l.starts_with(k))).map(str::to_owned).collect();
            let mounts: Vec<String> = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .unwrap()
                .lines()
                .map(|line| {
                    let (before, after) = line.split_once(" - ").unwrap();
                    let fields: Vec<&str> = before.split(' ').collect();
                    let fs_type = after.split(' ').next().unwrap_or_default();
                    // the files CRI binds in (hosts, resolv.conf, termination log) come from each
                    // container's own directory: compare where and how, not from where
                    format!("{} {} {fs_type}", fields[4], fields[5])
                })
                .collect();
            (status, mounts)
        };
        let (wasm_view, linux_view) = (view(wasm_pids[0]), view(cri_pids(containerd(), &linux)[0]));
        assert_eq!(wasm_view.0, linux_view.0, "case {n}: /proc/PID/status differs from runc's");
        assert_eq!(wasm_view.1, linux_view.1, "case {n}: the mount table differs from runc's");
        for id in [&wasm, &linux] {
            cri.stop_container(StopContainerRequest { container_id: id.clone(), timeout: 0 })
                .await
                .expect("StopContainer");
        }
    }
    remove_pod(&mut cri, &pod).await;
    assert_pod_left_nothing(&pod);
}
