//! Per-workload settings (`wasmbox.io/*`), read from OCI annotations and, as defaults, from the image's labels.
//!
//! These come from whoever wrote the pod or the image: they are untrusted input. Each is parsed
//! strictly, an invalid value is an error that names the setting, and none of them can widen
//! what the node allows (trusted node settings live in [`crate::node`]).
//!
//! | key | value | default |
//! |---|---|---|
//! | `wasmbox.io/preopens` | comma-separated directories, each `DIR`, `DIR:ro` or `DIR:rw`; only these are visible to the guest | the whole root file system, mounts mirrored with their `ro` flags |
//! | `wasmbox.io/network` | `none`, `all`, or comma-separated `IP` / `IP/PREFIX` the guest may connect to (and bind) | `none`: every socket operation fails |
//! | `wasmbox.io/engine` | `wasmtime` or `wasmer` (see [`EngineKind`]) | the runtime's: `wasmer` for `io.containerd.wasmbox-wasmer.v1`, else the node's `WASMBOX_ENGINE`, else `wasmtime` |
//! | `wasmbox.io/wasm-features` | comma-separated wasmtime features, `-name` to turn one off (see [`WasmFeature`]) | wasmtime's defaults |
//! | `wasmbox.io/deadline` | a wall-clock limit for the whole container: `500ms`, `30s`, `5m`, `1h 30m` (a bare number is seconds) | none |
//! | `wasmbox.io/log-level` | `off`, `error`, `warn`, `info`, `debug`, `trace` | the shim's level |
//! | `wasmbox.io/http-address` | `IP:PORT` a `wasi:http/incoming-handler` component is served on (the container env `WASMBOX_HTTP_ADDRESS` also sets it; the setting wins) | `0.0.0.0:8080` |
//! | `wasmbox.io/http-request-timeout` | how long one HTTP request may run before it is answered `500` and its instance dropped | `60s` |
//!
//! An image sets defaults with the same keys as labels of its config (`wasmbox image build --label
//! wasmbox.io/deadline=30s`); containerd copies them to the container's labels, and an annotation
//! of the same key wins. Unknown `wasmbox.io/` keys are errors too, so that a typo (or a try at a
//! node setting such as the precompiled-code policy) is not silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use ipnet::IpNet;

pub const PREOPENS: &str = "wasmbox.io/preopens";
pub const NETWORK: &str = "wasmbox.io/network";
pub const ENGINE: &str = "wasmbox.io/engine";
pub const WASM_FEATURES: &str = "wasmbox.io/wasm-features";
pub const DEADLINE: &str = "wasmbox.io/deadline";
pub const LOG_LEVEL: &str = "wasmbox.io/log-level";
pub const HTTP_ADDRESS: &str = "wasmbox.io/http-address";
pub const HTTP_REQUEST_TIMEOUT: &str = "wasmbox.io/http-request-timeout";
const PREFIX: &str = "wasmbox.io/";
const KNOWN: [&str; 8] =
    [PREOPENS, NETWORK, ENGINE, WASM_FEATURES, DEADLINE, LOG_LEVEL, HTTP_ADDRESS, HTTP_REQUEST_TIMEOUT];
/// No setting needs more; a longer value is refused rather than parsed.
const MAX_VALUE_LEN: usize = 4096;
/// The longest wall-clock limit accepted: a year.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long an HTTP request may run unless `wasmbox.io/http-request-timeout` says otherwise.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory the guest sees at `guest`, opened from `host` (the same path inside the container).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    /// Refuse writes through WASI even where the file system would allow them.
    pub read_only: bool,
}

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
pub struct WorkloadSettings {
    /// `Some`: exactly these preopens instead of the whole file system.
    pub preopens: Option<Vec<Preopen>>,
    pub network: NetworkPolicy,
    /// The engine the workload asks for, when it names one.
    pub engine: Option<EngineKind>,
    /// (feature, enabled), in the order given.
    pub wasm_features: Vec<(WasmFeature, bool)>,
    pub deadline: Option<Duration>,
    pub log_level: Option<log::LevelFilter>,
    /// Where a `wasi:http` component is served, when set.
    pub http_address: Option<SocketAddr>,
    /// How long one HTTP request may run, when set.
    pub http_request_timeout: Option<Duration>,
}

/// The WebAssembly engines wasmbox runs guests on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// wasmtime: modules, components, `wasi:http` servers.
    #[default]
    Wasmtime,
    /// Wasmer with its Cranelift compiler: WASI preview 1 modules (`.wasm`, `.wat`).
    Wasmer,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [EngineKind::Wasmtime, EngineKind::Wasmer];

    /// The engine's name in settings and messages.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Wasmtime => "wasmtime",
            EngineKind::Wasmer => "wasmer",
        }
    }

    /// `wasmtime` or `wasmer`.
    pub fn parse(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|engine| engine.name() == value)
            .ok_or_else(|| anyhow!("expected one of wasmtime, wasmer"))
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    pub const ALL: [(&'static str, WasmFeature); 13] = [
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
}

impl WorkloadSettings {
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
        let mut settings = BTreeMap::new();
        for (source, map) in [("label", labels), ("annotation", annotations)] {
            for (key, value) in map.iter().filter(|(key, _)| key.starts_with(PREFIX)) {
                settings.insert(key.as_str(), (source, value.trim()));
            }
        }
        let mut parsed = WorkloadSettings::default();
        for (key, (source, value)) in settings {
            parsed.set(key, value).with_context(|| format!("{source} {key}={}", quoted(value)))?;
        }
        Ok(parsed)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        ensure!(value.len() <= MAX_VALUE_LEN, "longer than {MAX_VALUE_LEN} bytes");
        match key {
            PREOPENS => self.preopens = Some(parse_preopens(value)?),
            NETWORK => self.network = parse_network(value)?,
            ENGINE => self.engine = Some(EngineKind::parse(value)?),
            WASM_FEATURES => self.wasm_features = parse_features(value)?,
            DEADLINE => self.deadline = Some(parse_duration(value)?),
            HTTP_REQUEST_TIMEOUT => self.http_request_timeout = Some(parse_duration(value)?),
            LOG_LEVEL => {
                let level = value.parse::<log::LevelFilter>();
                self.log_level =
                    Some(level.map_err(|_| anyhow!("expected one of off, error, warn, info, debug, trace"))?);
            }
            HTTP_ADDRESS => {
                let address = value.parse::<SocketAddr>();
                self.http_address = Some(address.map_err(|_| anyhow!("expected IP:PORT, such as 0.0.0.0:8080"))?);
            }
            _ => bail!("unknown wasmbox.io/ key (known: {})", KNOWN.join(", ")),
        }
        Ok(())
    }
}

/// A value for a message: quoted, and cut short when long.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
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
        if !dir.starts_with('/') || dir.split('/').any(|part| part == "..") || dir.contains('\0') {
            bail!("{dir:?} must be an absolute path without '..'");
        }
        preopens.push(Preopen { host: dir.into(), guest: dir.to_owned(), read_only });
    }
    ensure!(!preopens.is_empty(), "no directory given");
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

/// A positive duration of at most a year: `500ms`, `30s`, `5m`, `1h 30m` (humantime's syntax),
/// or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration> {
    const EXPECTED: &str = "expected a duration such as 500ms, 30s, 5m";
    let duration = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().map_err(|_| anyhow!("{EXPECTED}: too large"))?)
    } else {
        humantime::parse_duration(value).map_err(|err| anyhow!("{EXPECTED}: {err}"))?
    };
    ensure!(!duration.is_zero(), "the duration must be positive");
    ensure!(duration <= MAX_DURATION, "the duration must be at most {}", humantime::format_duration(MAX_DURATION));
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<WorkloadSettings> {
        WorkloadSettings::from_annotations(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_setting_is_read() -> Result<()> {
        let settings = parse(&[
            (PREOPENS, "/data:ro, /out"),
            (NETWORK, "127.0.0.1, 10.0.0.0/8"),
            (WASM_FEATURES, "threads,-simd"),
            (ENGINE, "wasmer"),
            (DEADLINE, "1500ms"),
            (LOG_LEVEL, "debug"),
            (HTTP_REQUEST_TIMEOUT, "2s"),
            ("io.kubernetes.cri.container-type", "container"),
        ])?;
        assert_eq!(
            settings.preopens,
            Some(vec![
                Preopen { host: "/data".into(), guest: "/data".into(), read_only: true },
                Preopen { host: "/out".into(), guest: "/out".into(), read_only: false },
            ])
        );
        assert!(settings.network.allows("10.1.2.3".parse()?, false));
        assert!(settings.network.allows("127.0.0.1".parse()?, false));
        assert!(!settings.network.allows("192.168.1.1".parse()?, false));
        assert!(settings.network.allows("0.0.0.0".parse()?, true));
        assert_eq!(settings.wasm_features, [(WasmFeature::Threads, true), (WasmFeature::Simd, false)]);
        assert_eq!(settings.engine, Some(EngineKind::Wasmer));
        assert_eq!(settings.deadline, Some(Duration::from_millis(1500)));
        assert_eq!(settings.http_request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(settings.log_level, Some(log::LevelFilter::Debug));
        assert_eq!(parse(&[])?, WorkloadSettings::default());
        assert!(!NetworkPolicy::None.allows("127.0.0.1".parse()?, false));
        Ok(())
    }

    #[test]
    fn annotations_override_the_images_labels_key_by_key() -> Result<()> {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let labels = map(&[(DEADLINE, "5s"), (LOG_LEVEL, "debug"), ("org.example", "x")]);
        let annotations = map(&[(DEADLINE, "1s")]);
        let settings = WorkloadSettings::from_labels_and_annotations(&labels, &annotations)?;
        assert_eq!(settings.deadline, Some(Duration::from_secs(1)));
        assert_eq!(settings.log_level, Some(log::LevelFilter::Debug));
        // an invalid label is named as a label; an annotation over it hides it
        let bad = map(&[(DEADLINE, "soon")]);
        let err = format!("{:#}", WorkloadSettings::from_labels_and_annotations(&bad, &HashMap::new()).unwrap_err());
        assert!(err.starts_with("label wasmbox.io/deadline=\"soon\": expected a duration"), "{err}");
        assert!(WorkloadSettings::from_labels_and_annotations(&bad, &annotations).is_ok());
        Ok(())
    }

    #[test]
    fn invalid_values_name_the_setting() {
        for (key, value, needle) in [
            (PREOPENS, "relative", "absolute path"),
            (PREOPENS, "/a:rx", "ro or rw"),
            (PREOPENS, "/a/../b", "absolute path without"),
            (NETWORK, "somewhere", "not an IP address"),
            (WASM_FEATURES, "teleport", "unknown feature \"teleport\""),
            (ENGINE, "wasmedge", "expected one of wasmtime, wasmer"),
            (DEADLINE, "soon", "duration"),
            (DEADLINE, "5 fortnights", "duration"),
            (DEADLINE, "0s", "positive"),
            // the value that panicked the container's init (`cannot convert float seconds to Duration`)
            (DEADLINE, "100000000000000000000", "too large"),
            (DEADLINE, "100000000000h", "duration"),
            (DEADLINE, "400days", "at most"),
            (LOG_LEVEL, "loud", "expected one of"),
            ("wasmbox.io/dedline", "5s", "unknown wasmbox.io/ key"),
            // node settings cannot be set by a workload
            ("wasmbox.io/precompiled", "trust", "unknown wasmbox.io/ key"),
        ] {
            let err = format!("{:#}", parse(&[(key, value)]).unwrap_err());
            assert!(err.starts_with(&format!("annotation {key}=")), "{err}");
            assert!(err.contains(needle), "{key}={value}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn long_values_are_refused_and_cut_short_in_messages() {
        let long = "x".repeat(10_000);
        let err = format!("{:#}", parse(&[(DEADLINE, &long)]).unwrap_err());
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        assert!(err.len() < 300, "{err}");
    }

    proptest! {
        /// Any key and value under `wasmbox.io/`, as an annotation or a label: a setting or a
        /// one-line error, never a panic.
        #[test]
        fn any_setting_parses_or_fails_with_one_line(
            key in prop_oneof![
                Just(PREOPENS.to_owned()), Just(NETWORK.to_owned()), Just(WASM_FEATURES.to_owned()),
                Just(DEADLINE.to_owned()), Just(LOG_LEVEL.to_owned()), Just(HTTP_ADDRESS.to_owned()),
                Just(HTTP_REQUEST_TIMEOUT.to_owned()), "wasmbox\\.io/[a-z-]{0,12}",
            ],
            value in prop_oneof![any::<String>(), "[0-9]{1,30}(ms|s|m|h|d)?", "[-+a-z, ]{0,40}", "[/a-z.:, ]{0,40}"],
            as_label in any::<bool>(),
        ) {
            let map: HashMap<String, String> = [(key.clone(), value.clone())].into_iter().collect();
            let result = if as_label {
                WorkloadSettings::from_labels_and_annotations(&map, &HashMap::new())
            } else {
                WorkloadSettings::from_annotations(&map)
            };
            if let Err(err) = result {
                let text = format!("{err:#}");
                prop_assert!(!text.contains('\n'), "{}", text);
                prop_assert!(text.contains(&key), "{}", text);
            }
        }

        #[test]
        fn durations_are_positive_and_bounded(value in any::<String>()) {
            if let Ok(duration) = parse_duration(&value) {
                prop_assert!(!duration.is_zero() && duration <= MAX_DURATION);
            }
        }
    }
}
