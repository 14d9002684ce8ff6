//! Per-workload settings read from OCI annotations (`ctr run --annotation`, Kubernetes pod
//! annotations) and, as defaults, from the image's labels.
//!
//! | annotation | value | default |
//! |---|---|---|
//! | `wasmbox.io/preopens` | comma-separated directories, each `DIR` or `DIR:ro`; only these are visible to the guest | the whole root file system, mounts mirrored with their `ro` flags |
//! | `wasmbox.io/network` | `none`, `all`, or comma-separated addresses `IP` / `IP/PREFIX` the guest may connect to (and bind) | `none`: every socket operation fails |
//! | `wasmbox.io/wasm-features` | comma-separated wasmtime features, `-name` to turn one off: `simd`, `relaxed-simd`, `threads`, `multi-memory`, `memory64`, `tail-call`, `gc`, `function-references`, `reference-types`, `bulk-memory`, `multi-value`, `extended-const`, `wide-arithmetic` | wasmtime's defaults |
//! | `wasmbox.io/deadline` | a wall-clock limit: `500ms`, `30s`, `5m`, `1h` | none |
//! | `wasmbox.io/log-level` | `off`, `error`, `warn`, `info`, `debug`, `trace` | the shim's level |
//! | `wasmbox.io/http-address` | `IP:PORT` a `wasi:http/incoming-handler` component is served on (the container env `WASMBOX_HTTP_ADDRESS` also sets it; the annotation wins) | `0.0.0.0:8080` |
//!
//! An image sets defaults with the same keys as labels of its config (`wasmbox image build --label
//! wasmbox.io/deadline=30s`); containerd copies them to the container's labels, and an annotation
//! of the same key wins. An invalid value is an error that names the annotation (or label);
//! unknown `wasmbox.io/` keys are errors too, so a typo is not silently ignored.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::IpNet;

use crate::config::Preopen;

pub const PREOPENS: &str = "wasmbox.io/preopens";
pub const NETWORK: &str = "wasmbox.io/network";
pub const WASM_FEATURES: &str = "wasmbox.io/wasm-features";
pub const DEADLINE: &str = "wasmbox.io/deadline";
pub const LOG_LEVEL: &str = "wasmbox.io/log-level";
pub const HTTP_ADDRESS: &str = "wasmbox.io/http-address";
const PREFIX: &str = "wasmbox.io/";
const KNOWN: [&str; 6] = [PREOPENS, NETWORK, WASM_FEATURES, DEADLINE, LOG_LEVEL, HTTP_ADDRESS];

/// Which sockets the guest may use.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum NetworkPolicy {
    /// No socket operation is allowed.
    #[default]
    None,
    /// Any address.
    All,
    /// Connections to (and binds on) these networks only.
    Allow(Vec<IpNet>),
}

impl NetworkPolicy {
    /// Whether the guest may use `ip`. Binding the unspecified address (an implicit bind before
    /// a connect) is allowed whenever any network is.
    pub fn allows(&self, ip: IpAddr, binding: bool) -> bool {
        match self {
            NetworkPolicy::None => false,
            NetworkPolicy::All => true,
            NetworkPolicy::Allow(nets) => (binding && ip.is_unspecified()) || nets.iter().any(|n| n.contains(&ip)),
        }
    }
}

/// The settings of one workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadOptions {
    /// `Some`: exactly these preopens instead of the whole file system.
    pub preopens: Option<Vec<Preopen>>,
    pub network: NetworkPolicy,
    /// (feature, enabled), in the order given.
    pub wasm_features: Vec<(WasmFeature, bool)>,
    pub deadline: Option<Duration>,
    pub log_level: Option<log::LevelFilter>,
    /// Where a `wasi:http` component is served.
    pub http_address: Option<SocketAddr>,
}

/// A WebAssembly feature that can be switched with `wasmbox.io/wasm-features`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmFeature {
    Simd,
    RelaxedSimd,
    Threads,
    MultiMemory,
    Memory64,
    TailCall,
    Gc,
    FunctionReferences,
    ReferenceTypes,
    BulkMemory,
    MultiValue,
    ExtendedConst,
    WideArithmetic,
}

impl WasmFeature {
    const ALL: [(&'static str, WasmFeature); 13] = [
        ("simd", WasmFeature::Simd),
        ("relaxed-simd", WasmFeature::RelaxedSimd),
        ("threads", WasmFeature::Threads),
        ("multi-memory", WasmFeature::MultiMemory),
        ("memory64", WasmFeature::Memory64),
        ("tail-call", WasmFeature::TailCall),
        ("gc", WasmFeature::Gc),
        ("function-references", WasmFeature::FunctionReferences),
        ("reference-types", WasmFeature::ReferenceTypes),
        ("bulk-memory", WasmFeature::BulkMemory),
        ("multi-value", WasmFeature::MultiValue),
        ("extended-const", WasmFeature::ExtendedConst),
        ("wide-arithmetic", WasmFeature::WideArithmetic),
    ];

    fn parse(name: &str) -> Result<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
            anyhow!("unknown feature {name:?} (known: {})", names.join(", "))
        })
    }

    /// Turns the feature on or off in a wasmtime configuration.
    pub fn apply(self, config: &mut wasmtime::Config, on: bool) {
        match self {
            // Relaxed SIMD builds on SIMD: turning SIMD off turns it off too.
            WasmFeature::Simd if !on => config.wasm_simd(false).wasm_relaxed_simd(false),
            WasmFeature::Simd => config.wasm_simd(on),
            WasmFeature::RelaxedSimd => config.wasm_relaxed_simd(on),
            WasmFeature::Threads => config.wasm_threads(on),
            WasmFeature::MultiMemory => config.wasm_multi_memory(on),
            WasmFeature::Memory64 => config.wasm_memory64(on),
            WasmFeature::TailCall => config.wasm_tail_call(on),
            WasmFeature::Gc => config.wasm_gc(on),
            WasmFeature::FunctionReferences => config.wasm_function_references(on),
            WasmFeature::ReferenceTypes => config.wasm_reference_types(on),
            WasmFeature::BulkMemory => config.wasm_bulk_memory(on),
            WasmFeature::MultiValue => config.wasm_multi_value(on),
            WasmFeature::ExtendedConst => config.wasm_extended_const(on),
            WasmFeature::WideArithmetic => config.wasm_wide_arithmetic(on),
        };
    }
}

impl WorkloadOptions {
    /// Reads the `wasmbox.io/` annotations; other annotations are ignored.
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Result<Self> {
        Self::from_labels_and_annotations(&HashMap::new(), annotations)
    }

    /// Reads the `wasmbox.io/` labels (the image's defaults) and annotations; an annotation
    /// overrides the label of the same key. Other keys are ignored.
    pub fn from_labels_and_annotations(
        labels: &HashMap<String, String>,
        annotations: &HashMap<String, String>,
    ) -> Result<Self> {
        let mut settings = std::collections::BTreeMap::new();
        for (source, map) in [("label", labels), ("annotation", annotations)] {
            for (key, value) in map.iter().filter(|(key, _)| key.starts_with(PREFIX)) {
                settings.insert(key.as_str(), (source, value.trim()));
            }
        }
        let mut options = WorkloadOptions::default();
        for (key, (source, value)) in settings {
            let parsed = match key {
                PREOPENS => parse_preopens(value).map(|p| options.preopens = Some(p)),
                NETWORK => parse_network(value).map(|n| options.network = n),
                WASM_FEATURES => parse_features(value).map(|f| options.wasm_features = f),
                DEADLINE => parse_duration(value).map(|d| options.deadline = Some(d)),
                LOG_LEVEL => value
                    .parse::<log::LevelFilter>()
                    .map(|l| options.log_level = Some(l))
                    .map_err(|_| anyhow!("expected one of off, error, warn, info, debug, trace")),
                HTTP_ADDRESS => value
                    .parse::<SocketAddr>()
                    .map(|a| options.http_address = Some(a))
                    .map_err(|_| anyhow!("expected IP:PORT, such as 0.0.0.0:8080")),
                _ => Err(anyhow!("unknown wasmbox.io/ key (known: {})", KNOWN.join(", "))),
            };
            parsed.with_context(|| format!("{source} {key}={value:?}"))?;
        }
        Ok(options)
    }
}

fn parse_preopens(value: &str) -> Result<Vec<Preopen>> {
    let mut preopens = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (dir, read_only) = match item.rsplit_once(':') {
            Some((dir, "ro")) => (dir, true),
            Some((dir, "rw")) => (dir, false),
            Some((_, mode)) => bail!("{item:?}: the mode after ':' must be ro or rw, not {mode:?}"),
            None => (item, false),
        };
        if !dir.starts_with('/') || dir.split('/').any(|part| part == "..") {
            bail!("{dir:?} must be an absolute path without '..'");
        }
        preopens.push(Preopen { host: dir.into(), guest: dir.to_owned(), read_only });
    }
    if preopens.is_empty() {
        bail!("no directory given");
    }
    Ok(preopens)
}

fn parse_network(value: &str) -> Result<NetworkPolicy> {
    match value {
        "none" => Ok(NetworkPolicy::None),
        "all" => Ok(NetworkPolicy::All),
        list => list
            .split(',')
            .map(str::trim)
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| anyhow!("{item:?} is not an IP address or IP/PREFIX network"))
            })
            .collect::<Result<_>>()
            .map(NetworkPolicy::Allow),
    }
}

fn parse_features(value: &str) -> Result<Vec<(WasmFeature, bool)>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|item| match item.strip_prefix('-') {
            Some(name) => WasmFeature::parse(name).map(|f| (f, false)),
            None => WasmFeature::parse(item.trim_start_matches('+')).map(|f| (f, true)),
        })
        .collect()
}

/// `500ms`, `30s`, `5m`, `1h` (a plain number is seconds).
pub fn parse_duration(value: &str) -> Result<Duration> {
    let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().map_err(|_| anyhow!("expected a duration such as 500ms, 30s, 5m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => bail!("unknown unit {other:?} (use ms, s, m or h)"),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        bail!("the duration must be positive");
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<WorkloadOptions> {
        WorkloadOptions::from_annotations(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_annotation_is_read() -> Result<()> {
        let options = parse(&[
            (PREOPENS, "/data:ro, /out"),
            (NETWORK, "127.0.0.1, 10.0.0.0/8"),
            (WASM_FEATURES, "threads,-simd"),
            (DEADLINE, "1500ms"),
            (LOG_LEVEL, "debug"),
            ("io.kubernetes.cri.container-type", "container"),
        ])?;
        assert_eq!(
            options.preopens,
            Some(vec![
                Preopen { host: "/data".into(), guest: "/data".into(), read_only: true },
                Preopen { host: "/out".into(), guest: "/out".into(), read_only: false },
            ])
        );
        assert!(options.network.allows("10.1.2.3".parse()?, false));
        assert!(options.network.allows("127.0.0.1".parse()?, false));
        assert!(!options.network.allows("192.168.1.1".parse()?, false));
        assert!(options.network.allows("0.0.0.0".parse()?, true));
        assert_eq!(options.wasm_features, [(WasmFeature::Threads, true), (WasmFeature::Simd, false)]);
        assert_eq!(options.deadline, Some(Duration::from_millis(1500)));
        assert_eq!(options.log_level, Some(log::LevelFilter::Debug));
        assert_eq!(parse(&[])?, WorkloadOptions::default());
        assert!(!NetworkPolicy::None.allows("127.0.0.1".parse()?, false));
        Ok(())
    }

    #[test]
    fn annotations_override_the_images_labels_key_by_key() -> Result<()> {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let labels = map(&[(DEADLINE, "5s"), (LOG_LEVEL, "debug"), ("org.example", "x")]);
        let annotations = map(&[(DEADLINE, "1s")]);
        let options = WorkloadOptions::from_labels_and_annotations(&labels, &annotations)?;
        assert_eq!(options.deadline, Some(Duration::from_secs(1)));
        assert_eq!(options.log_level, Some(log::LevelFilter::Debug));
        // an invalid label is named as a label; an annotation over it hides it
        let bad = map(&[(DEADLINE, "soon")]);
        let err = format!("{:#}", WorkloadOptions::from_labels_and_annotations(&bad, &HashMap::new()).unwrap_err());
        assert!(err.starts_with("label wasmbox.io/deadline=\"soon\": expected a duration"), "{err}");
        assert!(WorkloadOptions::from_labels_and_annotations(&bad, &annotations).is_ok());
        Ok(())
    }

    #[test]
    fn invalid_values_name_the_annotation() {
        for (key, value, needle) in [
            (PREOPENS, "relative", "absolute path"),
            (PREOPENS, "/a:rx", "ro or rw"),
            (PREOPENS, "/a/../b", "absolute path without"),
            (NETWORK, "somewhere", "not an IP address"),
            (WASM_FEATURES, "teleport", "unknown feature \"teleport\""),
            (DEADLINE, "soon", "duration"),
            (DEADLINE, "5d", "unknown unit"),
            (DEADLINE, "0s", "positive"),
            (LOG_LEVEL, "loud", "expected one of"),
            ("wasmbox.io/dedline", "5s", "unknown wasmbox.io/ key"),
        ] {
            let err = format!("{:#}", parse(&[(key, value)]).unwrap_err());
            assert!(err.starts_with(&format!("annotation {key}=")), "{err}");
            assert!(err.contains(needle), "{err}");
        }
    }
}
