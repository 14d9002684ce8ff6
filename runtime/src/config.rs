//! What a guest is given to run with: its entry point, args, env, working directory and preopened directories.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use oci_spec::runtime::Spec;

use crate::annotations::{NetworkPolicy, WorkloadOptions};

/// The entry point named by a container's `argv[0]`: a file, and optionally `#func`, an export to call.
///
/// `"/app/hello.wasm"` runs the file's `_start` (modules) or `wasi:cli/run` (components);
/// `"/app/lib.wasm#add"` calls the export `add` instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entrypoint {
    /// Path of the module, component or `.wat` file inside the container.
    pub path: PathBuf,
    /// The export to call, when `#func` was given.
    pub func: Option<String>,
}

impl Entrypoint {
    /// Splits `path#func` into its parts; an empty `func` counts as none.
    pub fn parse(arg0: &str) -> Self {
        let (path, func) = match arg0.split_once('#') {
            Some((path, func)) => (path, Some(func).filter(|f| !f.is_empty())),
            None => (arg0, None),
        };
        Entrypoint {
            path: PathBuf::from(path),
            func: func.map(str::to_owned),
        }
    }
}

/// A host directory that the guest sees at `guest` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    /// Refuse writes through WASI even where the host file system would allow them.
    pub read_only: bool,
}

/// Everything about the guest's process that comes from the container's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// `argv`, with `argv[0]` as the image gives it (including any `#func`).
    pub args: Vec<String>,
    /// Environment variables in order; `PWD` is added from `cwd` when the spec does not set it.
    pub env: Vec<(String, String)>,
    /// The process's working directory: components get it as their initial cwd,
    /// preview 1 guests see it as `PWD`.
    pub cwd: String,
    /// Directories the guest may open.
    pub preopens: Vec<Preopen>,
    /// Which sockets the guest may use.
    pub network: NetworkPolicy,
    /// The container's memory limit in bytes (`linux.resources.memory.limit`), if any: the
    /// guest's linear memories may not grow past what is left of it.
    pub memory_limit: Option<u64>,
    /// Where a `wasi:http/incoming-handler` component is served (see [`crate::http`]).
    pub http_address: SocketAddr,
}

/// Where `wasi:http` components are served unless configured otherwise.
pub const DEFAULT_HTTP_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
/// The container environment variable that sets the address `wasi:http` components are served on.
pub const HTTP_ADDRESS_ENV: &str = "WASMBOX_HTTP_ADDRESS";

/// The serving address from `WASMBOX_HTTP_ADDRESS` in `env`, else the default.
pub fn http_address_from_env(env: &[(String, String)]) -> Result<SocketAddr> {
    match env.iter().rev().find(|(key, _)| key == HTTP_ADDRESS_ENV) {
        Some((_, value)) => value
            .parse()
            .with_context(|| format!("environment variable {HTTP_ADDRESS_ENV}={value:?}: expected IP:PORT")),
        None => Ok(DEFAULT_HTTP_ADDRESS),
    }
}

impl RunConfig {
    /// A config with these args, no env, cwd `/` and the whole root file system preopened.
    pub fn new(args: Vec<String>) -> Self {
        RunConfig {
            args,
            env: Vec::new(),
            cwd: "/".to_owned(),
            preopens: vec![root_preopen()],
            network: NetworkPolicy::None,
            memory_limit: None,
            http_address: DEFAULT_HTTP_ADDRESS,
        }
    }

    /// Builds the config from an OCI runtime spec, as seen from inside the container
    /// (after the runtime has pivoted into its root file system).
    ///
    /// The guest gets the container's whole file system, mounts included, as the preopen `/`;
    /// call [`preopens_from_mountinfo`] to make read-only mounts read-only at the WASI level too.
    pub fn from_oci_spec(spec: &Spec) -> Result<Self> {
        let process = spec
            .process()
            .as_ref()
            .context("the OCI spec has no `process` section")?;
        let args = process.args().clone().unwrap_or_default();
        let cwd = process.cwd().to_string_lossy().into_owned();
        let env: Vec<(String, String)> = process
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|pair| parse_env(pair))
            .collect();
        let memory_limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|limit| *limit > 0)
            .map(|limit| limit as u64);
        let http_address = http_address_from_env(&env)?;
        Ok(RunConfig {
            args,
            env,
            cwd: if cwd.is_empty() { "/".to_owned() } else { cwd },
            preopens: vec![root_preopen()],
            network: NetworkPolicy::None,
            memory_limit,
            http_address,
        })
        .map(RunConfig::with_pwd)
    }

    /// Applies a workload's annotations: its preopens (when given) and its network policy.
    pub fn with_options(mut self, options: &WorkloadOptions) -> Self {
        if let Some(preopens) = &options.preopens {
            self.preopens = preopens.clone();
        }
        self.network = options.network.clone();
        if let Some(address) = options.http_address {
            self.http_address = address;
        }
        self
    }

    /// Adds `PWD=<cwd>` unless the environment already names `PWD`.
    pub fn with_pwd(mut self) -> Self {
        if !self.env.iter().any(|(key, _)| key == "PWD") {
            self.env.push(("PWD".to_owned(), self.cwd.clone()));
        }
        self
    }

    /// The entry point named by `argv[0]`.
    pub fn entrypoint(&self) -> Result<Entrypoint> {
        let arg0 = self
            .args
            .first()
            .context("the container has no args: argv[0] must name a Wasm file")?;
        Ok(Entrypoint::parse(arg0))
    }
}

/// Preopens that mirror the mount table seen from inside the container (`/proc/self/mountinfo`):
/// `/` and every mounted directory outside `/proc`, `/sys` and `/dev`, each read-only exactly
/// when its mount is. WASI resolves a path through the longest matching preopen, so a write
/// under a read-only mount is refused by WASI itself (`EPERM`), and a writable mount under a
/// read-only root stays writable.
pub fn preopens_from_mountinfo(mountinfo: &str) -> Vec<Preopen> {
    let mut preopens = vec![root_preopen()];
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount_point), Some(options)) = (fields.get(4), fields.get(5)) else { continue };
        let mount_point = unescape_mountinfo(mount_point);
        let read_only = options.split(',').any(|o| o == "ro");
        let system = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|p| mount_point == *p || mount_point.starts_with(&format!("{p}/")));
        if mount_point == "/" {
            preopens[0].read_only = read_only;
        } else if !system && std::path::Path::new(&mount_point).is_dir() {
            preopens.retain(|p| p.guest != mount_point);
            preopens.push(Preopen { host: PathBuf::from(&mount_point), guest: mount_point, read_only });
        }
    }
    preopens
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn root_preopen() -> Preopen {
    Preopen {
        host: PathBuf::from("/"),
        guest: "/".to_owned(),
        read_only: false,
    }
}

/// Splits `KEY=VALUE` at the first `=`; a pair without one is a key with an empty value.
pub fn parse_env(pair: &str) -> (String, String) {
    match pair.split_once('=') {
        Some((key, value)) => (key.to_owned(), value.to_owned()),
        None => (pair.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{ProcessBuilder, SpecBuilder};

    #[test]
    fn entrypoint_splits_function() {
        assert_eq!(
            Entrypoint::parse("/a/b.wasm#add"),
            Entrypoint { path: "/a/b.wasm".into(), func: Some("add".into()) }
        );
        assert_eq!(Entrypoint::parse("/a/b.wasm").func, None);
        assert_eq!(Entrypoint::parse("/a/b.wasm#").func, None);
    }

    #[test]
    fn config_from_spec_keeps_args_env_and_cwd() -> Result<()> {
        let spec = SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(vec!["/hello.wasm".to_owned(), "x y".to_owned()])
                    .env(vec!["A=1".to_owned(), "B=two=2".to_owned(), "EMPTY".to_owned()])
                    .cwd("/work")
                    .build()?,
            )
            .build()?;
        let config = RunConfig::from_oci_spec(&spec)?;
        assert_eq!(config.args, ["/hello.wasm", "x y"]);
        assert_eq!(
            config.env,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two=2".into()),
                ("EMPTY".into(), String::new()),
                ("PWD".into(), "/work".into())
            ]
        );
        assert_eq!(config.cwd, "/work");
        assert_eq!(config.entrypoint()?.path, PathBuf::from("/hello.wasm"));
        Ok(())
    }

    #[test]
    fn explicit_pwd_is_kept() -> Result<()> {
        let spec = SpecBuilder::default()
            .process(ProcessBuilder::default().args(vec!["/x".into()]).env(vec!["PWD=/elsewhere".into()]).cwd("/work").build()?)
            .build()?;
        let config = RunConfig::from_oci_spec(&spec)?;
        assert_eq!(config.env, [("PWD".into(), "/elsewhere".into())]);
        Ok(())
    }

    #[test]
    fn preopens_follow_the_mount_table() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("my data");
        std::fs::create_dir(&data)?;
        let escaped = data.display().to_string().replace(' ', "\\040");
        let mountinfo = format!(
            "1 0 8:1 / / ro,relatime - overlay overlay rw\n\
             2 1 0:5 / /proc rw - proc proc rw\n\
             3 1 0:6 / /sys ro - sysfs sysfs ro\n\
             4 1 8:1 /x {escaped} rw,relatime - ext4 /dev/vda rw\n\
             5 1 8:1 /y /no/such/dir ro - ext4 /dev/vda rw\n"
        );
        let preopens = preopens_from_mountinfo(&mountinfo);
        assert_eq!(
            preopens,
            [
                Preopen { host: "/".into(), guest: "/".into(), read_only: true },
                Preopen { host: data.clone(), guest: data.display().to_string(), read_only: false },
            ]
        );
        Ok(())
    }

    #[test]
    fn no_args_is_an_error() {
        let err = RunConfig::new(vec![]).entrypoint().unwrap_err();
        assert!(err.to_string().contains("argv[0]"), "{err}");
    }
}
