//! `wasmbox-oci`: an OCI runtime command with runc's command line, for Podman, CRI-O and Docker's
//! `runtimes` setting; one file per verb.
//!
//! `liboci-cli` parses runc's command line; youki's libcontainer creates and manages the
//! containers, with the executor the containerd shim uses (`containerd_shim_wasm::shim::Executor`
//! with [`WasmboxShim`](crate::WasmboxShim)), so a Wasm guest runs exactly as it does through the
//! shim (args, env, cwd, mounts, limits, the node's code cache and its rules, exit codes and
//! messages), and an ELF or `#!` entry point is exec'd as an ordinary Linux container.
//!
//! The runtime's state is libcontainer's, one directory per container under `--root` (default
//! [`DEFAULT_ROOT`]). The node's settings come from the environment, as for the shim
//! (`WASMBOX_CACHE_DIR`, `WASMBOX_PRECOMPILED`; Podman passes them with `conmon_env_vars`).

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod log;
mod pause;
mod ps;
mod resume;
mod run;
mod spec;
mod start;
mod state;
mod update;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use containerd_shim_wasm::shim::{create_helper_main, is_create_helper};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

/// Where containers' state is kept unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/wasmbox-oci";

/// The command line: runc's global flags and verbs (each verb's flags are `liboci-cli`'s).
#[derive(Parser, Debug)]
#[command(
    name = "wasmbox-oci",
    about = "wasmbox's OCI runtime: runs Wasm images (and Linux images) with runc's command line",
    long_about = "wasmbox's OCI runtime, with runc's command line, for Podman, CRI-O and Docker's \
                  `runtimes` setting.\n\nAn entry point that is an ELF binary or a `#!` script runs \
                  as a Linux container; any other (a .wasm module or component, a .wat file) runs on \
                  the wasmbox engine inside the container. Node settings come from the environment: \
                  WASMBOX_CACHE_DIR (compiled-code cache, default /var/lib/wasmbox/cache) and \
                  WASMBOX_PRECOMPILED (ignore|trust native code shipped in images, default ignore).",
    disable_version_flag = true
)]
struct Cli {
    /// Write the runtime's log to this file (default: stderr)
    #[arg(short, long)]
    log: Option<PathBuf>,
    /// The log's format: text or json
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log debug messages too
    #[arg(long)]
    debug: bool,
    /// Where the containers' state is kept
    #[arg(short, long, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// The spec's cgroups path is systemd's "slice:prefix:name" (systemd manages the cgroups)
    #[arg(short, long)]
    systemd_cgroup: bool,
    /// Print the versions of wasmbox-oci, of the OCI runtime spec and of the engine
    #[arg(short = 'v', long)]
    version: bool,

    #[command(subcommand)]
    command: Option<Verb>,
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// Create a container from a bundle; its init waits for `start`
    Create(liboci_cli::Create),
    /// Start a created container
    Start(liboci_cli::Start),
    /// Print a container's state (JSON)
    State(liboci_cli::State),
    /// Send a signal to a container's init (or, with --all, to all its processes)
    Kill(liboci_cli::Kill),
    /// Delete a stopped container (with --force, any container)
    Delete(liboci_cli::Delete),
    /// Create and start a container; without --detach, wait for it and exit with its status
    Run(liboci_cli::Run),
    /// Run another process in a running Linux container (refused for a Wasm container)
    Exec(liboci_cli::Exec),
    /// List a container's processes
    Ps(liboci_cli::Ps),
    /// Freeze all processes of a container
    Pause(liboci_cli::Pause),
    /// Thaw a paused container
    Resume(liboci_cli::Resume),
    /// Change a running container's cgroup limits
    Update(liboci_cli::Update),
    /// Print what this runtime supports (JSON)
    Features(liboci_cli::Features),
    /// List the containers under --root
    List(liboci_cli::List),
    /// Print a container's cgroup statistics
    Events(liboci_cli::Events),
    /// Write a starting config.json into a bundle directory
    Spec(liboci_cli::Spec),
}

/// What every verb needs from the global flags.
pub(crate) struct Global {
    /// libcontainer's state directory (`--root`).
    pub root: PathBuf,
    /// `--systemd-cgroup`: the spec's cgroups path is systemd's `slice:prefix:name`.
    pub systemd_cgroup: bool,
}

/// Runs `wasmbox-oci` with this process's arguments; returns its exit status.
pub fn main() -> i32 {
    crate::lean_process_setup();
    if is_create_helper() {
        // The shim exec'd this binary to create one of its containers. The container's init,
        // forked from here, inherits the code cache (and closes it before its guest runs).
        crate::sandbox::open_code_cache();
        return create_helper_main::<crate::WasmboxShim>();
    }
    let cli = Cli::parse();
    if cli.version {
        println!("wasmbox-oci version {}", env!("CARGO_PKG_VERSION"));
        println!("spec: {}", libcontainer::oci_spec::runtime::VERSION);
        println!("engine: wasmtime {}", wasmbox_runtime::code::image::WASMTIME_VERSION);
        return 0;
    }
    let Some(command) = cli.command else {
        eprintln!("wasmbox-oci: no command given (see wasmbox-oci --help)");
        return 2;
    };
    let logs_to_stderr =
        match log::init(cli.log.as_deref(), cli.log_format.as_deref(), cli.debug, container_id(&command)) {
            Ok(to_stderr) => to_stderr,
            Err(err) => {
                eprintln!("wasmbox-oci: {err:#}");
                return 1;
            }
        };
    let global = Global { root: cli.root, systemd_cgroup: cli.systemd_cgroup };
    match dispatch(command, &global) {
        Ok(status) => status,
        Err(err) => {
            ::log::error!("{err:#}");
            if !logs_to_stderr {
                eprintln!("wasmbox-oci: {err:#}");
            }
            1
        }
    }
}

/// Why libcontainer could not create container `id`: the engine's own words when it refused the
/// container ("wasmbox: annotation wasmbox.io/deadline=…"), else libcontainer's chain of errors.
fn create_failure(id: &str, err: libcontainer::error::LibcontainerError) -> anyhow::Error {
    let chain = err.to_string();
    match chain.find("wasmbox: ") {
        Some(start) => anyhow::anyhow!("creating container {id}: {}", &chain[start..]),
        None => anyhow::Error::new(err).context(format!("creating container {id}")),
    }
}

/// Runs one verb; `Ok` holds the exit status (`run` and `exec` return their process's).
fn dispatch(command: Verb, global: &Global) -> Result<i32> {
    let done = |result: Result<()>| result.map(|()| 0);
    match command {
        Verb::Create(args) => done(create::create(args, global)),
        Verb::Start(args) => done(start::start(args, global)),
        Verb::State(args) => done(state::state(args, global)),
        Verb::Kill(args) => done(kill::kill(args, global)),
        Verb::Delete(args) => done(delete::delete(args, global)),
        Verb::Run(args) => run::run(args, global),
        Verb::Exec(args) => exec::exec(args, global),
        Verb::Ps(args) => done(ps::ps(args, global)),
        Verb::Pause(args) => done(pause::pause(args, global)),
        Verb::Resume(args) => done(resume::resume(args, global)),
        Verb::Update(args) => done(update::update(args, global)),
        Verb::Features(_) => done(features::features()),
        Verb::List(args) => done(list::list(args, global)),
        Verb::Events(args) => done(events::events(args, global)),
        Verb::Spec(args) => done(spec::spec(args)),
    }
}

/// The container a verb is about, for the log lines.
fn container_id(command: &Verb) -> Option<&str> {
    Some(match command {
        Verb::Create(args) => &args.container_id,
        Verb::Start(args) => &args.container_id,
        Verb::State(args) => &args.container_id,
        Verb::Kill(args) => &args.container_id,
        Verb::Delete(args) => &args.container_id,
        Verb::Run(args) => &args.container_id,
        Verb::Exec(args) => &args.container_id,
        Verb::Ps(args) => &args.container_id,
        Verb::Pause(args) => &args.container_id,
        Verb::Resume(args) => &args.container_id,
        Verb::Update(args) => &args.container_id,
        Verb::Events(args) => &args.container_id,
        Verb::Features(_) | Verb::List(_) | Verb::Spec(_) => return None,
    })
}

/// A container builder with the shim's executor and this runtime's state directory.
fn container_builder(id: &str, global: &Global) -> Result<ContainerBuilder> {
    let executor = containerd_shim_wasm::shim::Executor::<crate::WasmboxShim>::new(
        Vec::new(),
        Default::default(),
        Default::default(),
    );
    ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(&global.root)
        .with_context(|| format!("state directory {}", global.root.display()))?
        .validate_id()
        .with_context(|| format!("container id {id:?}"))
}

/// The state directory of container `id`.
fn container_dir(id: &str, global: &Global) -> Result<PathBuf> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        bail!("invalid container id {id:?}");
    }
    Ok(global.root.join(id))
}

/// Whether libcontainer keeps the state of a container in `dir`.
fn has_state(dir: &std::path::Path) -> bool {
    libcontainer::container::state::State::file_path(dir).exists()
}

/// Loads container `id` from libcontainer's state, with its status refreshed.
fn load_container(id: &str, global: &Global) -> Result<Container> {
    let dir = container_dir(id, global)?;
    if !has_state(&dir) {
        bail!("container {id} does not exist");
    }
    let mut container = Container::load(dir).with_context(|| format!("loading the state of container {id}"))?;
    container.refresh_status().with_context(|| format!("reading the status of container {id}"))?;
    Ok(container)
}

/// The cgroup manager of a container, for the verbs that read or change its cgroup.
fn cgroup_manager(container: &Container) -> Result<libcgroups::common::AnyCgroupManager> {
    let config = container.spec().context("reading the container's saved configuration")?;
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: container.id().to_owned(),
    })
    .context("opening the container's cgroup")
}

/// Whether the container's init runs a Wasm guest: its init is this very program (which never
/// execs for a guest), where a Linux container's init has exec'd the image's entry point.
fn runs_wasm_guest(container: &Container) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let pid = container.pid().context("the container has no init process")?;
    let init = std::fs::metadata(format!("/proc/{pid}/exe")).context("reading the init's executable")?;
    let this = std::fs::metadata("/proc/self/exe").context("reading this program's executable")?;
    Ok((init.dev(), init.ino()) == (this.dev(), this.ino()))
}
