//! Labelling a Kubernetes node from inside a pod: the node installer's last step (`wasmbox node label`).
//!
//! One JSON merge patch of the node's `metadata.labels`, sent to the API server with the pod's
//! service-account token and verified against the cluster's CA, as `kubectl label` would do it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Where a pod finds its service account.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach the API server.
pub struct ApiServer {
    /// `https://host:port` (or `http://` for a local test server).
    pub url: String,
    pub token_file: PathBuf,
    /// The CA that signed the API server's certificate; `None`: Mozilla's roots.
    pub ca_file: Option<PathBuf>,
}

impl ApiServer {
    /// The in-cluster API server: `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account's files.
    pub fn in_cluster() -> Result<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .context("KUBERNETES_SERVICE_HOST is not set: not running in a pod (give --api-server)")?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        Ok(ApiServer {
            url: format!("https://{host}:{port}"),
            token_file: dir.join("token"),
            ca_file: Some(dir.join("ca.crt")),
        })
    }
}

/// The merge patch that applies `KEY=VALUE` (set) or `KEY-` (remove).
pub fn label_patch(change: &str) -> Result<serde_json::Value> {
    let (key, value) = match change.split_once('=') {
        Some((key, value)) => (key, serde_json::Value::String(value.to_owned())),
        None => match change.strip_suffix('-') {
            Some(key) => (key, serde_json::Value::Null),
            None => bail!("{change:?}: expected KEY=VALUE to set a label or KEY- to remove it"),
        },
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        bail!("{change:?}: not a label key");
    }
    Ok(serde_json::json!({ "metadata": { "labels": { key: value } } }))
}

/// Applies `change` to the labels of node `node`.
pub fn label(api: &ApiServer, node: &str, change: &str) -> Result<()> {
    let patch = label_patch(change)?;
    let token = std::fs::read_to_string(&api.token_file)
        .with_context(|| format!("reading the service-account token {}", api.token_file.display()))?;
    let roots = match &api.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading the cluster CA {}", path.display()))?;
            let cert =
                Certificate::from_pem(&pem).with_context(|| format!("{}: not a PEM certificate", path.display()))?;
            RootCerts::Specific(Arc::new(vec![cert]))
        }
        None => RootCerts::WebPki,
    };
    let agent = ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("{}/api/v1/nodes/{node}", api.url.trim_end_matches('/'));
    let mut response = agent
        .patch(&url)
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .content_type("application/merge-patch+json")
        .send(patch.to_string())
        .with_context(|| format!("PATCH {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        bail!("PATCH {url}: {status}: {}", body.lines().next().unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_set_and_remove_labels() -> Result<()> {
        assert_eq!(
            label_patch("wasmbox.io/runtime=installed")?.to_string(),
            r#"{"metadata":{"labels":{"wasmbox.io/runtime":"installed"}}}"#
        );
        assert_eq!(
            label_patch("wasmbox.io/runtime-")?.to_string(),
            r#"{"metadata":{"labels":{"wasmbox.io/runtime":null}}}"#
        );
        assert!(label_patch("nonsense").is_err());
        assert!(label_patch("=x").is_err());
        Ok(())
    }
}
