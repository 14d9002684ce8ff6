//! Node settings: what the node's admin decides for every container on the node (trusted input).
//!
//! They come from the shim's environment (containerd's environment, as for any shim) or from the
//! runtime's options in containerd's configuration; never from an image, its labels or a pod's
//! annotations (those are [`crate::settings`]). A runtime option wins over the environment.
//!
//! | setting | where | value | default |
//! |---|---|---|---|
//! | `WASMBOX_CACHE_DIR` | environment | the directory of the node's compiled-code cache (opened by the shim before any container exists, so not a per-runtime option) | `/var/lib/wasmbox/cache` |
//! | `WASMBOX_STATE_DIR` | environment | where the containers' runtime state is kept (libcontainer's root; one directory per containerd namespace below it) | `/run/containerd/wasmbox` |
//! | `WASMBOX_ENGINE` | environment or runtime option | the engine of workloads that do not name one with `wasmbox.io/engine`: `wasmtime` or `wasmer`; the shim installed as `containerd-shim-wasmbox-wasmer-v1` (runtime `io.containerd.wasmbox-wasmer.v1`) sets `wasmer` unless the admin set it | `wasmtime` |
//! | `WASMBOX_PRECOMPILED` | environment or runtime option | `ignore`: the node compiles every module itself and ignores the native code images ship (`wasmbox image build --precompile`); `trust`: image code is used when it fits, as trusted as the image's Linux binaries would be | `ignore` |
//!
//! In containerd's CRI configuration:
//!
//! ```toml
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox.options]
//!   WASMBOX_PRECOMPILED = "trust"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::settings::EngineKind;

/// Where compiled code is kept unless `WASMBOX_CACHE_DIR` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wasmbox/cache";
/// The node setting (environment variable or runtime option) that names the cache directory.
pub const CACHE_DIR: &str = "WASMBOX_CACHE_DIR";
/// Where the containers' runtime state is kept unless `WASMBOX_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/containerd/wasmbox";
/// The node setting (environment variable) that names the runtime state directory.
pub const STATE_DIR: &str = "WASMBOX_STATE_DIR";
/// The node setting that names the engine of workloads that do not choose one.
pub const ENGINE: &str = "WASMBOX_ENGINE";
/// The node setting that decides whether native code shipped in images may run.
pub const PRECOMPILED: &str = "WASMBOX_PRECOMPILED";

/// What the node does with native code that an image ships for its module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrecompiledPolicy {
    /// Ignore it (one log line) and compile the module on the node.
    #[default]
    Ignore,
    /// Use it when it was made for this engine from these very bytes and its digest checks out.
    Trust,
}

impl PrecompiledPolicy {
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim() {
            "ignore" => Ok(PrecompiledPolicy::Ignore),
            "trust" => Ok(PrecompiledPolicy::Trust),
            other => bail!("{PRECOMPILED}={other:?}: expected ignore or trust"),
        }
    }
}

/// The node's settings for every container of this shim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    pub cache_dir: PathBuf,
    pub state_dir: PathBuf,
    pub precompiled: PrecompiledPolicy,
    /// The engine of workloads that do not name one.
    pub engine: EngineKind,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            precompiled: PrecompiledPolicy::default(),
            engine: EngineKind::default(),
        }
    }
}

impl NodeSettings {
    /// The settings from `env` (normally [`std::env::var`]), the policy overridden by the
    /// runtime's `options`; an invalid value is an error naming it (the node admin's mistake,
    /// which must not silently fall back to another policy).
    pub fn read(env: impl Fn(&str) -> Option<String>, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut settings = NodeSettings::default();
        if let Some(dir) = env(CACHE_DIR).filter(|v| !v.trim().is_empty()) {
            settings.cache_dir = PathBuf::from(dir);
        }
        if let Some(dir) = env(STATE_DIR).filter(|v| !v.trim().is_empty()) {
            settings.state_dir = PathBuf::from(dir);
        }
        if let Some(policy) =
            options.get(PRECOMPILED).cloned().or_else(|| env(PRECOMPILED)).filter(|v| !v.trim().is_empty())
        {
            settings.precompiled = PrecompiledPolicy::parse(&policy)?;
        }
        if let Some(engine) = options.get(ENGINE).cloned().or_else(|| env(ENGINE)).filter(|v| !v.trim().is_empty()) {
            settings.engine = EngineKind::parse(engine.trim()).with_context(|| format!("{ENGINE}={engine:?}"))?;
        }
        Ok(settings)
    }

    /// The runtime state directory from this process's environment (a setting that cannot be
    /// invalid, needed where the others are not read).
    pub fn state_dir_from_env() -> PathBuf {
        std::env::var_os(STATE_DIR)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// The settings of this process's environment and the runtime's `options`.
    pub fn from_env(options: &BTreeMap<String, String>) -> Result<Self> {
        Self::read(|key| std::env::var(key).ok(), options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_env_then_options() -> Result<()> {
        let none = BTreeMap::new();
        assert_eq!(NodeSettings::read(|_| None, &none)?, NodeSettings::default());
        assert_eq!(NodeSettings::default().precompiled, PrecompiledPolicy::Ignore);
        let env = |key: &str| (key == PRECOMPILED).then(|| "trust".to_owned());
        assert_eq!(NodeSettings::read(env, &none)?.precompiled, PrecompiledPolicy::Trust);
        let options = BTreeMap::from([(PRECOMPILED.to_owned(), "ignore".to_owned())]);
        let settings = NodeSettings::read(env, &options)?;
        assert_eq!(settings.precompiled, PrecompiledPolicy::Ignore);
        let env = |key: &str| (key == CACHE_DIR).then(|| "/c".to_owned());
        assert_eq!(NodeSettings::read(env, &none)?.cache_dir, PathBuf::from("/c"));
        let bad = BTreeMap::from([(PRECOMPILED.to_owned(), "yes".to_owned())]);
        let err = NodeSettings::read(|_| None, &bad).unwrap_err().to_string();
        assert_eq!(err, "WASMBOX_PRECOMPILED=\"yes\": expected ignore or trust");
        let env = |key: &str| (key == ENGINE).then(|| "wasmer".to_owned());
        assert_eq!(NodeSettings::read(env, &none)?.engine, EngineKind::Wasmer);
        let options = BTreeMap::from([(ENGINE.to_owned(), "wasmtime".to_owned())]);
        assert_eq!(NodeSettings::read(env, &options)?.engine, EngineKind::Wasmtime);
        let bad = BTreeMap::from([(ENGINE.to_owned(), "v8".to_owned())]);
        let err = format!("{:#}", NodeSettings::read(|_| None, &bad).unwrap_err());
        assert_eq!(err, "WASMBOX_ENGINE=\"v8\": expected one of wasmtime, wasmer");
        Ok(())
    }
}
