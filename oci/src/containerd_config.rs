//! Adding the wasmbox runtime to a node's containerd configuration, and taking it out again
//! byte for byte (`wasmbox node configure|unconfigure`), for each common node layout.
//!
//! The file is edited with `toml_edit`, which keeps comments, order and formatting. The runtime's
//! table depends on the configuration's `version`:
//!
//! | `version` | containerd | the runtime's table |
//! |---|---|---|
//! | none or 1 | 1.x, old format | `plugins.cri.containerd.runtimes.wasmbox` |
//! | 2 | 1.6, 1.7 (2.x migrates it) | `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbox` |
//! | 3, 4 | 2.x | `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.wasmbox` |
//!
//! A configuration whose `imports` names a directory of drop-ins (`"/etc/containerd/conf.d/*.toml"`)
//! gets a drop-in `wasmbox.toml` there instead of an edit. Before the first change to a file,
//! its original content (or its absence) is saved next to it in `FILE.wasmbox-original`; `unconfigure`
//! puts it back as it was when the file still holds only wasmbox's change, and otherwise takes
//! out wasmbox's table alone, keeping the admin's later edits.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml_edit::{Array, DocumentMut, Item, Table, Value, value};

/// Where a kind of node keeps containerd's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `/etc/containerd/config.toml` (kubeadm, kind, EKS, GKE, AKS nodes, plain containerd).
    Containerd,
    /// k3s regenerates `config.toml` at each start from `config.toml.tmpl` when there is one;
    /// the template is seeded from the generated file.
    K3s,
    /// RKE2: as k3s, under `/var/lib/rancher/rke2`.
    Rke2,
    /// MicroK8s renders containerd's configuration from `args/containerd-template.toml`.
    MicroK8s,
    /// k0s merges every file of `/etc/k0s/containerd.d/` into the configuration it generates.
    K0s,
}

impl Layout {
    pub const ALL: [(&'static str, Layout); 5] = [
        ("containerd", Layout::Containerd),
        ("k3s", Layout::K3s),
        ("rke2", Layout::Rke2),
        ("microk8s", Layout::MicroK8s),
        ("k0s", Layout::K0s),
    ];

    /// The file edited on this layout (for k0s: the drop-in written), on the node.
    pub fn config_path(self) -> &'static str {
        match self {
            Layout::Containerd => "/etc/containerd/config.toml",
            Layout::K3s => "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl",
            Layout::Rke2 => "/var/lib/rancher/rke2/agent/etc/containerd/config.toml.tmpl",
            Layout::MicroK8s => "/var/snap/microk8s/current/args/containerd-template.toml",
            Layout::K0s => "/etc/k0s/containerd.d/wasmbox.toml",
        }
    }

    /// The file a missing template is seeded from (k3s, RKE2: the configuration they generated).
    fn seed_path(self) -> Option<&'static str> {
        match self {
            Layout::K3s => Some("/var/lib/rancher/k3s/agent/etc/containerd/config.toml"),
            Layout::Rke2 => Some("/var/lib/rancher/rke2/agent/etc/containerd/config.toml"),
            _ => None,
        }
    }

    /// Which layout this node has: the first whose files exist under `root`; plain containerd
    /// otherwise.
    pub fn detect(root: &Path) -> Layout {
        let exists = |path: &str| on_node(root, path).exists();
        if exists("/var/lib/rancher/rke2/agent/etc/containerd") {
            Layout::Rke2
        } else if exists("/var/lib/rancher/k3s/agent/etc/containerd") {
            Layout::K3s
        } else if exists("/var/snap/microk8s/current/args") {
            Layout::MicroK8s
        } else if exists("/etc/k0s") {
            Layout::K0s
        } else {
            Layout::Containerd
        }
    }
}

/// What `configure` adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    /// The runtime's name for CRI (the RuntimeClass handler): `wasmbox`.
    pub name: String,
    /// `runtime_type`: `io.containerd.wasmbox.v1`.
    pub runtime_type: String,
    /// Pod annotations CRI passes on to the runtime.
    pub pod_annotations: Vec<String>,
    /// The runtime's options (`WASMBOX_PRECOMPILED`, `SystemdCgroup`…), as strings or booleans.
    pub options: Vec<(String, OptionValue)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionValue {
    Text(String),
    Bool(bool),
}

impl Runtime {
    /// The same runtime with Wasmer as its default engine, for a RuntimeClass per engine: named
    /// `NAME-wasmer`, of type `io.containerd.wasmbox-wasmer.v1` (the shim installed as
    /// `containerd-shim-wasmbox-wasmer-v1`), with the same annotations and options.
    pub fn wasmer_twin(&self) -> Runtime {
        Runtime { name: wasmer_twin_name(&self.name), runtime_type: WASMER_RUNTIME_TYPE.to_owned(), ..self.clone() }
    }
}

/// The runtime type whose shim runs workloads on Wasmer unless they name an engine.
pub const WASMER_RUNTIME_TYPE: &str = "io.containerd.wasmbox-wasmer.v1";

/// `NAME-wasmer`.
fn wasmer_twin_name(name: &str) -> String {
    format!("{name}-wasmer")
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            name: "wasmbox".into(),
            runtime_type: "io.containerd.wasmbox.v1".into(),
            pod_annotations: vec!["wasmbox.io/*".into()],
            options: Vec::new(),
        }
    }
}

/// What an edit did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file was written (containerd must be restarted for CRI to see it).
    Changed(PathBuf),
    /// It was as asked already.
    Unchanged(PathBuf),
}

/// `path` (absolute, on the node) under the node's root `root` (`/`, or `/host` in the installer).
fn on_node(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The runtime table's path for a configuration `version`.
fn runtimes_path(version: i64) -> &'static [&'static str] {
    match version {
        ..=1 => &["plugins", "cri", "containerd", "runtimes"],
        2 => &["plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes"],
        _ => &["plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes"],
    }
}

fn version_of(doc: &DocumentMut) -> Result<i64> {
    match doc.get("version") {
        None => Ok(1),
        Some(item) => item.as_integer().context("`version` is not an integer"),
    }
}

/// The drop-in directory a configuration's `imports` names (`"/dir/*.toml"`), if any.
fn dropin_dir(doc: &DocumentMut) -> Option<String> {
    let imports = doc.get("imports")?.as_array()?;
    imports
        .iter()
        .filter_map(Value::as_str)
        .find_map(|glob| glob.strip_suffix("/*.toml").filter(|d| d.starts_with('/')).map(str::to_owned))
}

/// The file `configure` edits, and the text it starts from when the file does not exist yet:
/// the layout's file (`config` overrides it), or the drop-in its `imports` names.
fn target(root: &Path, layout: Layout, config: Option<&Path>) -> Result<(PathBuf, String)> {
    let main = config.map(Path::to_owned).unwrap_or_else(|| on_node(root, layout.config_path()));
    let read = |path: &Path| -> Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    };
    // k0s: a drop-in of its own; k3s, RKE2: a missing template starts as the generated file
    let main_text = match (read(&main)?, layout.seed_path().filter(|_| config.is_none())) {
        (Some(text), _) => text,
        (None, Some(seed)) => read(&on_node(root, seed))?.unwrap_or_default(),
        (None, None) => String::new(),
    };
    if layout == Layout::K0s && config.is_none() {
        return Ok((main, main_text));
    }
    let doc: DocumentMut = main_text.parse().map_err(|err| toml_error(&main, &main_text, err))?;
    match dropin_dir(&doc) {
        Some(dir) => {
            let version = version_of(&doc)?;
            let dropin = on_node(root, &format!("{dir}/wasmbox.toml"));
            Ok((dropin, format!("version = {version}\n")))
        }
        None => Ok((main, main_text)),
    }
}

/// Adds `runtime` and its Wasmer twin ([`Runtime::wasmer_twin`]) to the node's containerd
/// configuration under `root`.
pub fn configure(root: &Path, layout: Layout, config: Option<&Path>, runtime: &Runtime) -> Result<Outcome> {
    let (path, start) = target(root, layout, config)?;
    let original = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let current = match &original {
        Some(bytes) => String::from_utf8(bytes.clone()).with_context(|| format!("{}: not UTF-8", path.display()))?,
        None => start.clone(),
    };
    let mut doc: DocumentMut = current.parse().map_err(|err| toml_error(&path, &current, err))?;
    if current.trim().is_empty() {
        // a new file: the format containerd 1.6, 1.7 and 2.x all read
        doc.insert("version", value(2));
    }
    let version = version_of(&doc)?;
    let runtimes = table_at(&mut doc, runtimes_path(version))?;
    // the node's cgroup driver, as the runc runtime is configured for it
    let systemd_cgroup = runtimes
        .get("runc")
        .and_then(|runc| runc.get("options"))
        .and_then(|options| options.get("SystemdCgroup"))
        .and_then(Item::as_bool)
        .filter(|on| *on && !runtime.options.iter().any(|(key, _)| key == "SystemdCgroup"));
    let mut options = runtime.options.clone();
    if let Some(on) = systemd_cgroup {
        options.push(("SystemdCgroup".to_owned(), OptionValue::Bool(on)));
    }
    for runtime in [runtime.clone(), runtime.wasmer_twin()] {
        let table = runtimes
            .entry(&runtime.name)
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .with_context(|| format!("{}: runtime `{}` is not a table", path.display(), runtime.name))?;
        table.insert("runtime_type", value(&runtime.runtime_type));
        let mut annotations = Array::new();
        for annotation in &runtime.pod_annotations {
            annotations.push(annotation.as_str());
        }
        table.insert("pod_annotations", value(annotations));
        if !options.is_empty() {
            let table_options = table
                .entry("options")
                .or_insert_with(|| Item::Table(Table::new()))
                .as_table_mut()
                .context("the runtime's `options` is not a table")?;
            for (key, option) in &options {
                match option {
                    OptionValue::Text(text) => table_options.insert(key, value(text)),
                    OptionValue::Bool(flag) => table_options.insert(key, value(*flag)),
                };
            }
        }
    }
    let edited = doc.to_string();
    if original.as_deref() == Some(edited.as_bytes()) {
        return Ok(Outcome::Unchanged(path));
    }
    let backup = backup_path(&path);
    if !backup.exists() {
        let before = match original {
            Some(bytes) => Original::Present(bytes),
            None => Original::Absent(start),
        };
        write_atomically(&backup, &before.encode())?;
    }
    write_atomically(&path, edited.as_bytes())?;
    Ok(Outcome::Changed(path))
}

/// Takes the runtime named `name` and its Wasmer twin out of the node's containerd configuration
/// under `root`.
pub fn unconfigure(root: &Path, layout: Layout, config: Option<&Path>, name: &str) -> Result<Outcome> {
    let (path, _) = target(root, layout, config)?;
    let backup = backup_path(&path);
    let current = match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let Some(current_bytes) = current else {
        let _ = std::fs::remove_file(&backup);
        return Ok(Outcome::Unchanged(path));
    };
    let text = String::from_utf8(current_bytes.clone()).with_context(|| format!("{}: not UTF-8", path.display()))?;
    let mut doc: DocumentMut = text.parse().map_err(|err| toml_error(&path, &text, err))?;
    let version = version_of(&doc)?;
    let twin = wasmer_twin_name(name);
    let removed = [name, twin.as_str()]
        .into_iter()
        .fold(false, |removed, name| remove_runtime(&mut doc, runtimes_path(version), name) | removed);
    let original = std::fs::read(&backup).ok().map(|bytes| Original::decode(&bytes)).transpose()?;
    let outcome = match original {
        // Only wasmbox's change since: put the file back as it was (or remove it).
        Some(original) if is_only_wasmbox_change(&original, &doc) => {
            match original {
                Original::Present(bytes) => write_atomically(&path, &bytes)?,
                Original::Absent(_) => {
                    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?
                }
            }
            Outcome::Changed(path.clone())
        }
        // Edited by someone else too: take wasmbox's table out, keep the rest.
        _ if removed => {
            write_atomically(&path, doc.to_string().as_bytes())?;
            Outcome::Changed(path.clone())
        }
        _ => Outcome::Unchanged(path.clone()),
    };
    let _ = std::fs::remove_file(&backup);
    Ok(outcome)
}

/// Whether `doc` (with wasmbox's table taken out) holds the same settings as the original file:
/// then nobody else changed the file since `configure`, and the original can be put back.
fn is_only_wasmbox_change(original: &Original, doc: &DocumentMut) -> bool {
    let settings = |text: &str| -> Option<toml::Table> {
        let mut doc: DocumentMut = text.parse().ok()?;
        prune_empty(doc.as_table_mut());
        doc.to_string().parse().ok()
    };
    let Some(mut after) = settings(&doc.to_string()) else { return false };
    let before = match original {
        Original::Present(bytes) => std::str::from_utf8(bytes).ok().and_then(settings),
        Original::Absent(start) => {
            // a new file holds the `version` configure wrote besides what it started from
            let before = settings(start);
            if before.as_ref().is_some_and(|b| !b.contains_key("version")) {
                after.remove("version");
            }
            before
        }
    };
    before.is_some_and(|before| before == after)
}

fn prune_empty(table: &mut Table) {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    for key in keys {
        if let Some(child) = table.get_mut(&key).and_then(Item::as_table_mut) {
            prune_empty(child);
            if child.is_empty() {
                table.remove(&key);
            }
        }
    }
}

/// A TOML error in one line: where, and what (toml_edit's own message draws the line).
fn toml_error(path: &Path, text: &str, err: toml_edit::TomlError) -> anyhow::Error {
    let at = err.span().map(|span| span.start).unwrap_or(0).min(text.len());
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
    let message = err.message().lines().next().unwrap_or("invalid").trim().to_owned();
    anyhow::anyhow!("{}: not valid TOML (line {line}, column {column}): {message}", path.display())
}

/// Removes `runtimes.NAME`, and the tables above it that are left empty; whether it was there.
fn remove_runtime(doc: &mut DocumentMut, path: &[&str], name: &str) -> bool {
    fn walk(table: &mut Table, path: &[&str], name: &str) -> bool {
        match path.split_first() {
            None => table.remove(name).is_some(),
            Some((first, rest)) => {
                let Some(child) = table.get_mut(first).and_then(Item::as_table_mut) else { return false };
                let removed = walk(child, rest, name);
                if removed && child.is_empty() {
                    table.remove(first);
                }
                removed
            }
        }
    }
    walk(doc.as_table_mut(), path, name)
}

/// The table at `path`, created (implicit, so that no empty headers are written) where missing.
fn table_at<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> Result<&'a mut Table> {
    let mut table = doc.as_table_mut();
    for key in path {
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = item.as_table_mut().with_context(|| format!("`{key}` is not a table"))?;
    }
    Ok(table)
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".wasmbox-original");
    path.with_file_name(name)
}

/// What a file was before `configure` first changed it.
enum Original {
    /// It held these bytes: `unconfigure` writes them back.
    Present(Vec<u8>),
    /// It did not exist; `configure` started it from this text (a template seeded from the
    /// generated configuration, or nothing): `unconfigure` removes it.
    Absent(String),
}

impl Original {
    /// The backup's content: `present\n` + the original bytes, or `absent\n` + the start.
    fn encode(&self) -> Vec<u8> {
        match self {
            Original::Present(bytes) => [b"present\n".as_slice(), bytes].concat(),
            Original::Absent(start) => [b"absent\n".as_slice(), start.as_bytes()].concat(),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        if let Some(rest) = bytes.strip_prefix(b"present\n") {
            Ok(Original::Present(rest.to_vec()))
        } else if let Some(rest) = bytes.strip_prefix(b"absent\n") {
            Ok(Original::Absent(String::from_utf8(rest.to_vec())?))
        } else {
            bail!("not a wasmbox backup of a containerd configuration")
        }
    }
}

/// Writes `bytes` to a temporary file next to `path` and renames it over `path` (a containerd
/// that restarts meanwhile reads the old file or the new one, never half of one).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
