//! `wasmbox`: build and inspect OCI images of WebAssembly programs for the wasmbox containerd shim.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use wasmbox_oci::build::{BuildOptions, ImageLayout, build_to_file};
use wasmbox_oci::inspect::summarize;
use wasmbox_oci::layout::Layout;

#[derive(Parser)]
#[command(
    name = "wasmbox",
    version,
    about = "Build and inspect OCI images of WebAssembly programs for the wasmbox containerd shim"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Kubernetes node tasks of the node installer.
    #[command(subcommand)]
    Node(NodeCommand),
}

/// Where a node keeps containerd's configuration.
#[derive(Clone, Copy, ValueEnum)]
enum NodeLayoutArg {
    /// The first layout whose files are found under --root, else containerd.
    Auto,
    /// /etc/containerd/config.toml (kubeadm, kind, EKS, GKE, AKS nodes, plain containerd).
    Containerd,
    /// /var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl (seeded from the generated config.toml).
    K3s,
    /// /var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl (seeded from the generated config.toml).
    Rke2,
    /// /var/snap/microk8s/current/args/containerd-template.toml.
    Microk8s,
    /// A drop-in /etc/k0s/containerd.d/wasmbox.toml.
    K0s,
}

/// Which containerd configuration `node configure` and `node unconfigure` edit.
#[derive(Args)]
struct NodeConfigArgs {
    /// The node's root file system (the installer mounts it at /host).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The node's layout.
    #[arg(long, value_enum, default_value = "auto")]
    layout: NodeLayoutArg,
    /// The configuration file to edit, under --root, instead of the layout's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The runtime's name for CRI: the RuntimeClass handler. Its Wasmer twin is NAME-wasmer.
    #[arg(long, default_value = "wasmbox")]
    runtime_name: String,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Add the wasmbox runtime and its Wasmer twin to the node's containerd configuration (idempotent).
    ///
    /// Two runtimes: `wasmbox` (io.containerd.wasmbox.v1, wasmtime unless a workload sets
    /// wasmbox.io/engine) and `wasmbox-wasmer` (io.containerd.wasmbox-wasmer.v1, Wasmer unless it
    /// does), one RuntimeClass handler each. The file is edited in place, comments and order kept: the runtime's CRI table for the
    /// configuration's version (2, 3 or 4), or a drop-in wasmbox.toml in the directory its
    /// `imports` names. Pod annotations wasmbox.io/* are passed to the runtime; the runc
    /// runtime's SystemdCgroup is copied. Prints `configured: FILE` (restart containerd for CRI
    /// to use it) or `unchanged: FILE`. `unconfigure` restores the file byte for byte.
    Configure {
        #[command(flatten)]
        target: NodeConfigArgs,
        /// A runtime option, KEY=VALUE (e.g. WASMBOX_PRECOMPILED=trust; true/false are booleans).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
    },
    /// Print the node's layout: containerd, k3s, rke2, microk8s or k0s.
    Layout {
        /// The node's root file system (the installer mounts it at /host).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Take the wasmbox runtime and its Wasmer twin out of the node's containerd configuration again.
    ///
    /// A file nobody else changed since `configure` is put back byte for byte (a file or
    /// template `configure` created is removed); otherwise only the runtime's table is taken
    /// out. Prints `unconfigured: FILE` or `unchanged: FILE`.
    Unconfigure {
        #[command(flatten)]
        target: NodeConfigArgs,
    },
    /// Set (KEY=VALUE) or remove (KEY-) a label of a node, as `kubectl label node` does.
    ///
    /// In a pod, the API server, token and CA come from the service account; the pod's service
    /// account needs `patch` on `nodes`.
    Label {
        /// The node's name (the installer takes it from the downward API, spec.nodeName).
        node: String,
        /// KEY=VALUE to set, KEY- to remove.
        change: String,
        /// API server URL [default: in-cluster, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT].
        #[arg(long, requires = "token_file")]
        api_server: Option<String>,
        /// File with the bearer token [default: the pod's service-account token].
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// PEM file of the CA that signed the API server's certificate [default: the service account's ca.crt].
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build an OCI image tarball from a .wasm or .wat file plus optional extra files.
    ///
    /// The result is an OCI image layout tarball with one gzip tar layer, which containerd 1.6
    /// imports and unpacks with no extra flags. The same inputs always give the same bytes and
    /// digest.
    #[command(after_long_help = "Example:\n  \
        wasmbox image build hello.wasm\n  \
        ctr images import hello.tar\n  \
        ctr run --rm --runtime io.containerd.wasmbox.v1 localhost/wasmbox/hello:latest hello")]
    Build(Box<BuildArgs>),
    /// Describe an image tarball: manifest, config, layers, and each Wasm file's kind, imports and exports.
    Inspect {
        /// The OCI image layout tarball.
        image: PathBuf,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// The entry point: a WebAssembly module or component (.wasm) or text (.wat).
    /// An ELF executable or #! script is also accepted; it runs as an ordinary Linux container.
    module: PathBuf,
    /// Where to write the image tarball [default: <module stem>.tar].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Full image name [default: localhost/wasmbox/<module stem>:latest].
    #[arg(short = 't', long = "tag")]
    name: Option<String>,
    /// Path of the module inside the image [default: /<module file name>].
    #[arg(long = "path", value_name = "PATH")]
    module_path: Option<String>,
    /// Entry point argument; repeat for several [default: the module's path, `/hello.wasm`].
    /// `/lib.wasm#add` calls the export `add` instead of `_start`.
    #[arg(long = "entrypoint", value_name = "ARG")]
    entrypoint: Vec<String>,
    /// Default argument after the entry point; repeat for several.
    #[arg(long = "cmd", value_name = "ARG")]
    cmd: Vec<String>,
    /// Environment variable KEY=VALUE; repeat for several.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory of the process.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Label KEY=VALUE of the image config; repeat for several. `wasmbox.io/` labels set the
    /// image's defaults for the per-workload settings (`wasmbox.io/deadline=30s`…), which the
    /// container's annotations override (tar layout only).
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Extra file or directory to add, as HOST_PATH:IMAGE_PATH; repeat for several.
    #[arg(short, long = "add", value_name = "HOST_PATH:IMAGE_PATH")]
    add: Vec<String>,
    /// Platform of the image config as os/arch [default: linux/<this machine>] (tar layout only).
    #[arg(long)]
    platform: Option<String>,
    /// `tar`: the module in an ordinary tar layer, for `ctr run` and CRI on containerd 1.6.
    /// `artifact`: the CNCF Wasm OCI artifact (config application/vnd.wasm.config.v0+json, one
    /// application/wasm layer), which containerd 1.6 runs through CRI only; import it with
    /// `ctr images import --all-platforms`.
    #[arg(long, value_enum, default_value = "tar")]
    layout: LayoutArg,
    /// Also ship the module's code compiled ahead of time, in a layer of its own, so that
    /// containers start without compiling. Nodes ignore it unless their admin trusts image code
    /// (WASMBOX_PRECOMPILED=trust); then it is used only when it was compiled by an engine with
    /// the same key (same wasmtime, settings and CPU features) from the same module, otherwise
    /// the shim logs why and compiles.
    #[arg(long)]
    precompile: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Tar,
    Artifact,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wasmbox: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Image(ImageCommand::Build(args)) => image_build(*args),
        Command::Node(NodeCommand::Label { node, change, api_server, token_file, ca_file }) => {
            let api = match api_server {
                Some(url) => wasmbox_oci::node::ApiServer { url, token_file: token_file.unwrap_or_default(), ca_file },
                None => wasmbox_oci::node::ApiServer::in_cluster()?,
            };
            wasmbox_oci::node::label(&api, &node, &change)?;
            println!("node {node} labelled: {change}");
            Ok(())
        }
        Command::Node(NodeCommand::Configure { target, options }) => {
            use wasmbox_oci::containerd_config::{self as config, OptionValue, Outcome, Runtime};
            let options = options
                .iter()
                .map(|option| {
                    let (key, value) =
                        option.split_once('=').with_context(|| format!("--option {option:?}: expected KEY=VALUE"))?;
                    let value = match value {
                        "true" => OptionValue::Bool(true),
                        "false" => OptionValue::Bool(false),
                        text => OptionValue::Text(text.to_owned()),
                    };
                    Ok((key.to_owned(), value))
                })
                .collect::<Result<_>>()?;
            let runtime = Runtime { name: target.runtime_name.clone(), options, ..Runtime::default() };
            match config::configure(&target.root, node_layout(&target), target.config.as_deref(), &runtime)? {
                Outcome::Changed(path) => println!("configured: {}", path.display()),
                Outcome::Unchanged(path) => println!("unchanged: {}", path.display()),
            }
            Ok(())
        }
        Command::Node(NodeCommand::Layout { root }) => {
            let layout = wasmbox_oci::containerd_config::Layout::detect(&root);
            let name = wasmbox_oci::containerd_config::Layout::ALL.iter().find(|(_, l)| *l == layout).map(|(n, _)| *n);
            println!("{}", name.unwrap_or("containerd"));
            Ok(())
        }
        Command::Node(NodeCommand::Unconfigure { target }) => {
            use wasmbox_oci::containerd_config::{self as config, Outcome};
            match config::unconfigure(
                &target.root,
                node_layout(&target),
                target.config.as_deref(),
                &target.runtime_name,
            )? {
                Outcome::Changed(path) => println!("unconfigured: {}", path.display()),
                Outcome::Unchanged(path) => println!("unchanged: {}", path.display()),
            }
            Ok(())
        }
        Command::Image(ImageCommand::Inspect { image }) => {
            let layout = Layout::read_file(&image)?;
            print!("{}", summarize(&layout)?.render());
            Ok(())
        }
    }
}

fn node_layout(args: &NodeConfigArgs) -> wasmbox_oci::containerd_config::Layout {
    use wasmbox_oci::containerd_config::Layout;
    match args.layout {
        NodeLayoutArg::Auto => Layout::detect(&args.root),
        NodeLayoutArg::Containerd => Layout::Containerd,
        NodeLayoutArg::K3s => Layout::K3s,
        NodeLayoutArg::Rke2 => Layout::Rke2,
        NodeLayoutArg::Microk8s => Layout::MicroK8s,
        NodeLayoutArg::K0s => Layout::K0s,
    }
}

fn image_build(args: BuildArgs) -> Result<()> {
    let stem = args
        .module
        .file_stem()
        .with_context(|| format!("{} has no file name", args.module.display()))?
        .to_string_lossy()
        .into_owned();
    let name = args.name.unwrap_or_else(|| format!("localhost/wasmbox/{stem}:latest"));
    let output = args.output.unwrap_or_else(|| PathBuf::from(format!("{stem}.tar")));
    let files = args
        .add
        .iter()
        .map(|spec| {
            spec.split_once(':')
                .map(|(host, dest)| (PathBuf::from(host), dest.to_owned()))
                .with_context(|| format!("--add {spec:?}: expected HOST_PATH:IMAGE_PATH"))
        })
        .collect::<Result<_>>()?;
    let options = BuildOptions {
        module: args.module,
        module_path: args.module_path,
        name,
        entrypoint: (!args.entrypoint.is_empty()).then_some(args.entrypoint),
        cmd: args.cmd,
        env: args.env,
        workdir: args.workdir,
        labels: args.label,
        files,
        platform: args.platform,
        layout: match args.layout {
            LayoutArg::Tar => ImageLayout::Tar,
            LayoutArg::Artifact => ImageLayout::Artifact,
        },
        precompile: args.precompile,
    };
    let layout = build_to_file(&options, &output)?;
    let (manifest, _) = layout.manifest()?;
    println!("{} {} {}", output.display(), options.name, manifest.digest());
    Ok(())
}
