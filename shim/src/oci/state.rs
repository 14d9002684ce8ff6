//! `state`: the container's state as the OCI runtime spec defines it, in JSON.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use libcontainer::container::ContainerStatus;
use libcontainer::oci_spec::runtime::Spec as RuntimeSpec;
use liboci_cli::State;
use serde::Serialize;

use super::{Global, load_container};

/// runc's `state` output.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StateOutput<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: ContainerStatus,
    /// 0 once the container has stopped, as runc says it.
    pid: i32,
    bundle: &'a Path,
    rootfs: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'a DateTime<Utc>>,
    owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a HashMap<String, String>>,
}

pub fn state(args: State, global: &Global) -> Result<()> {
    let container = load_container(&args.container_id, global)?;
    let state = &container.state;
    let pid = match state.status {
        ContainerStatus::Stopped => 0,
        _ => state.pid.unwrap_or_default(),
    };
    let rootfs = RuntimeSpec::load(state.bundle.join("config.json"))
        .ok()
        .and_then(|spec| spec.root().as_ref().map(|root| root.path().clone()))
        .map(|root| if root.is_absolute() { root } else { state.bundle.join(root) })
        .map(|root| root.display().to_string())
        .unwrap_or_default();
    let output = StateOutput {
        oci_version: &state.oci_version,
        id: &state.id,
        status: state.status,
        pid,
        bundle: &state.bundle,
        rootfs,
        created: state.created.as_ref(),
        owner: String::new(),
        annotations: state.annotations.as_ref(),
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
