//! What a guest is given to run with: its entry point, args, env, working directory, preopened
//! directories, network policy, memory limit and serving address, from the container's OCI spec
//! and its [`WorkloadSettings`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use oci_spec::runtime::Spec;
use procfs_core::FromRead;
use procfs_core::process::MountInfos;

use crate::settings::{DEFAULT_HTTP_REQUEST_TIMEOUT, NetworkPolicy, Preopen, WorkloadSettings};

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
        Entrypoint { path: PathBuf::from(path), func: func.map(str::to_owned) }
    }
}

/// Everything about the guest's process that comes from the container's spec and settings.
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
    /// guest's linear memories together may not grow past what is left of it.
    pub memory_limit: Option<u64>,
    /// Where a `wasi:http/incoming-handler` component is served (see [`crate::http`]).
    pub http_address: SocketAddr,
    /// How long one HTTP request may run.
    pub http_request_timeout: Duration,
}

/// Where `wasi:http` components are served unless configured otherwise.
pub const DEFAULT_HTTP_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
/// The container environment variable that sets the address `wasi:http` components are served on.
pub const HTTP_ADDRESS_ENV: &str = "WASMBOX_HTTP_ADDRESS";

impl RunConfig {
    /// A config with these args, no env, cwd `/`, the whole root file system preopened and the
    /// default settings.
    pub fn new(args: Vec<String>) -> Self {
        RunConfig {
            args,
            env: Vec::new(),
            cwd: "/".to_owned(),
            preopens: vec![root_preopen(false)],
            network: NetworkPolicy::None,
            memory_limit: None,
            http_address: DEFAULT_HTTP_ADDRESS,
            http_request_timeout: DEFAULT_HTTP_REQUEST_TIMEOUT,
        }
    }

    /// Builds the config from an OCI runtime spec and the workload's settings, as seen from
    /// inside the container (after the runtime has pivoted into its root file system).
    ///
    /// `mountinfo` is the container's mount table (`/proc/self/mountinfo`): the guest gets the
    /// root file system and every mounted directory, each read-only exactly when its mount is
    /// (see [`preopens_from_mountinfo`]), unless `wasmbox.io/preopens` names the directories.
    pub fn from_spec(spec: &Spec, settings: &WorkloadSettings, mountinfo: &str) -> Result<Self> {
        let process = spec.process().as_ref().context("the OCI spec has no `process` section")?;
        let args = process.args().clone().unwrap_or_default();
        let cwd = process.cwd().to_string_lossy().into_owned();
        let env: Vec<(String, String)> =
            process.env().as_deref().unwrap_or_default().iter().map(|pair| parse_env(pair)).collect();
        let memory_limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|limit| *limit > 0)
            .map(|limit| limit as u64);
        let preopens = match &settings.preopens {
            Some(preopens) => preopens.clone(),
            None => preopens_from_mountinfo(mountinfo)?,
        };
        let http_address = http_address(settings, &env)?;
        let config = RunConfig {
            args,
            env,
            cwd: if cwd.is_empty() { "/".to_owned() } else { cwd },
            preopens,
            network: settings.network.clone(),
            memory_limit,
            http_address,
            http_request_timeout: settings.http_request_timeout.unwrap_or(DEFAULT_HTTP_REQUEST_TIMEOUT),
        };
        Ok(config.with_pwd())
    }

    /// A config for running a file on this host (`wasmbox-run`): this process's environment
    /// and working directory, the whole host file system preopened at `/`.
    pub fn for_host(args: Vec<String>, env: Vec<(String, String)>, cwd: &Path) -> Result<Self> {
        let settings = WorkloadSettings::default();
        let http_address = http_address(&settings, &env)?;
        let config = RunConfig { env, cwd: cwd.display().to_string(), http_address, ..RunConfig::new(args) };
        Ok(config.with_pwd())
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
        let arg0 = self.args.first().context("the container has no args: argv[0] must name a Wasm file")?;
        Ok(Entrypoint::parse(arg0))
    }
}

/// The serving address: the `wasmbox.io/http-address` setting, else `WASMBOX_HTTP_ADDRESS` from
/// the guest's environment, else [`DEFAULT_HTTP_ADDRESS`]. The one place it is worked out.
pub fn http_address(settings: &WorkloadSettings, env: &[(String, String)]) -> Result<SocketAddr> {
    if let Some(address) = settings.http_address {
        return Ok(address);
    }
    match env.iter().rev().find(|(key, _)| key == HTTP_ADDRESS_ENV) {
        Some((_, value)) => value
            .parse()
            .with_context(|| format!("environment variable {HTTP_ADDRESS_ENV}={value:?}: expected IP:PORT")),
        None => Ok(DEFAULT_HTTP_ADDRESS),
    }
}

/// Preopens that mirror the mount table seen from inside the container (`/proc/self/mountinfo`):
/// `/` and every mounted directory outside `/proc`, `/sys` and `/dev`, each read-only exactly
/// when its mount is. WASI resolves a path through the longest matching preopen, so a write
/// under a read-only mount is refused by WASI itself (`EPERM`), and a writable mount under a
/// read-only root stays writable.
pub fn preopens_from_mountinfo(mountinfo: &str) -> Result<Vec<Preopen>> {
    let mounts = MountInfos::from_read(mountinfo.as_bytes()).context("reading the container's mount table")?;
    let mut preopens = vec![root_preopen(false)];
    for mount in mounts {
        // procfs keeps the kernel's octal escapes of space, tab, newline and backslash.
        let mount_point = unescape_octal(&mount.mount_point.to_string_lossy());
        let read_only = mount.mount_options.contains_key("ro");
        let system =
            ["/proc", "/sys", "/dev"].iter().any(|p| mount_point == *p || mount_point.starts_with(&format!("{p}/")));
        if mount_point == "/" {
            preopens[0].read_only = read_only;
        } else if !system && Path::new(&mount_point).is_dir() {
            preopens.retain(|p| p.guest != mount_point);
            preopens.push(Preopen { host: PathBuf::from(&mount_point), guest: mount_point, read_only });
        }
    }
    Ok(preopens)
}

/// Undoes mountinfo's `\ooo` escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
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

fn root_preopen(read_only: bool) -> Preopen {
    Preopen { host: PathBuf::from("/"), guest: "/".to_owned(), read_only }
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

    fn spec(args: &[&str], env: &[&str], cwd: &str) -> Result<Spec> {
        Ok(SpecBuilder::default()
            .process(
                ProcessBuilder::default()
                    .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
                    .env(env.iter().map(|a| a.to_string()).collect::<Vec<_>>())
                    .cwd(cwd)
                    .build()?,
            )
            .build()?)
    }

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
        let spec = spec(&["/hello.wasm", "x y"], &["A=1", "B=two=2", "EMPTY"], "/work")?;
        let config = RunConfig::from_spec(&spec, &WorkloadSettings::default(), "")?;
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
        assert_eq!(config.http_address, DEFAULT_HTTP_ADDRESS);
        Ok(())
    }

    #[test]
    fn explicit_pwd_is_kept() -> Result<()> {
        let config =
            RunConfig::from_spec(&spec(&["/x"], &["PWD=/elsewhere"], "/work")?, &WorkloadSettings::default(), "")?;
        assert_eq!(config.env, [("PWD".into(), "/elsewhere".into())]);
        Ok(())
    }

    #[test]
    fn the_http_address_setting_wins_over_the_environment() -> Result<()> {
        let spec = spec(&["/x"], &["WASMBOX_HTTP_ADDRESS=127.0.0.1:9000"], "/")?;
        let from_env = RunConfig::from_spec(&spec, &WorkloadSettings::default(), "")?;
        assert_eq!(from_env.http_address, "127.0.0.1:9000".parse::<SocketAddr>()?);
        let settings = WorkloadSettings { http_address: Some("127.0.0.1:9001".parse()?), ..Default::default() };
        assert_eq!(RunConfig::from_spec(&spec, &settings, "")?.http_address, "127.0.0.1:9001".parse::<SocketAddr>()?);
        let bad = crate::config::tests::spec(&["/x"], &["WASMBOX_HTTP_ADDRESS=nowhere"], "/")?;
        let err = RunConfig::from_spec(&bad, &WorkloadSettings::default(), "").unwrap_err().to_string();
        assert!(err.contains("WASMBOX_HTTP_ADDRESS=\"nowhere\""), "{err}");
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
        assert_eq!(
            preopens_from_mountinfo(&mountinfo)?,
            [
                Preopen { host: "/".into(), guest: "/".into(), read_only: true },
                Preopen { host: data.clone(), guest: data.display().to_string(), read_only: false },
            ]
        );
        Ok(())
    }

    #[test]
    fn settings_narrow_the_preopens() -> Result<()> {
        let preopens = vec![Preopen { host: "/data".into(), guest: "/data".into(), read_only: true }];
        let settings = WorkloadSettings { preopens: Some(preopens.clone()), ..Default::default() };
        let config =
            RunConfig::from_spec(&spec(&["/x"], &[], "/")?, &settings, "1 0 8:1 / / rw - overlay overlay rw\n")?;
        assert_eq!(config.preopens, preopens);
        Ok(())
    }

    #[test]
    fn no_args_is_an_error() {
        let err = RunConfig::new(vec![]).entrypoint().unwrap_err();
        assert!(err.to_string().contains("argv[0]"), "{err}");
    }
}
