//! The runtime's log: `--log FILE` (else stderr), `--log-format text|json`, as runc writes it.
//!
//! Podman and CRI-O pass `--log FILE --log-format json` and, when a verb fails, show the `msg` of
//! its `error` lines to the user. Every line names the container. libcontainer's messages come
//! through `tracing`'s `log` bridge.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// The log's format.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// Where log lines go.
enum Sink {
    Stderr,
    File(File),
}

struct RuntimeLog {
    sink: Mutex<Sink>,
    format: Format,
    container: Option<String>,
}

/// Installs the log named by the global flags; returns whether it writes to stderr.
pub fn init(path: Option<&Path>, format: Option<&str>, debug: bool, container: Option<&str>) -> Result<bool> {
    let format = match format {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some(other) => bail!("--log-format {other:?}: expected text or json"),
    };
    let sink = match path {
        Some(path) if path.as_os_str() != "/dev/stderr" => Sink::File(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?,
        ),
        _ => Sink::Stderr,
    };
    let to_stderr = matches!(sink, Sink::Stderr);
    let logger = RuntimeLog { sink: Mutex::new(sink), format, container: container.map(str::to_owned) };
    log::set_max_level(if debug { LevelFilter::Debug } else { LevelFilter::Warn });
    // Only fails if a logger is already installed, which `main` does not do.
    let _ = log::set_boxed_logger(Box::new(logger));
    Ok(to_stderr)
}

/// The libraries' messages are logged with `--debug` only: their warnings are about the node,
/// not the container ("cgroup hugetlb not supported on this system" at every create; Podman shows
/// what a `create` says on stderr as the container's output), and their errors are each a step of
/// the one error the verb returns, which names the cause.
fn is_quiet_library(target: &str) -> bool {
    ["libcontainer", "libcgroups", "containerd_shim_wasm"].iter().any(|library| target.starts_with(library))
}

impl Log for RuntimeLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let level = metadata.level();
        level <= log::max_level() && (log::max_level() >= LevelFilter::Debug || !is_quiet_library(metadata.target()))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let to_stderr = matches!(*sink, Sink::Stderr);
        let line = self.format_line(record.level(), &record.args().to_string(), to_stderr);
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(file) => file.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

impl RuntimeLog {
    /// One line; on stderr in text form, for a person (Podman shows it after "OCI runtime
    /// error"): `wasmbox-oci: MESSAGE` (`wasmbox-oci: LEVEL: MESSAGE` below errors).
    fn format_line(&self, level: Level, message: &str, to_stderr: bool) -> String {
        if to_stderr && self.format == Format::Text {
            let message = message.replace('\n', " ");
            return match level {
                Level::Error => format!("wasmbox-oci: {message}\n"),
                _ => format!("wasmbox-oci: {}: {message}\n", level.as_str().to_ascii_lowercase()),
            };
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let level = level.as_str().to_ascii_lowercase();
        match self.format {
            Format::Json => {
                let mut line = serde_json::json!({ "level": level, "msg": message, "time": time });
                if let Some(id) = &self.container {
                    line["id"] = serde_json::Value::from(id.as_str());
                }
                format!("{line}\n")
            }
            Format::Text => match &self.container {
                Some(id) => format!("time={time:?} level={level} id={id} msg={message:?}\n"),
                None => format!("time={time:?} level={level} msg={message:?}\n"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_level_message_and_container() {
        let log = RuntimeLog { sink: Mutex::new(Sink::Stderr), format: Format::Json, container: Some("c1".into()) };
        let line: serde_json::Value =
            serde_json::from_str(&log.format_line(Level::Error, "a \"b\"\nc", false)).unwrap();
        assert_eq!(line["level"], "error");
        assert_eq!(line["msg"], "a \"b\"\nc");
        assert_eq!(line["id"], "c1");
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn text_lines_quote_the_message() {
        let log = RuntimeLog { sink: Mutex::new(Sink::Stderr), format: Format::Text, container: None };
        let line = log.format_line(Level::Warn, "two\nlines", false);
        assert!(line.contains(r#"level=warn msg="two\nlines""#), "{line}");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let person = log.format_line(Level::Error, "two\nlines", true);
        assert_eq!(person, "wasmbox-oci: two lines\n");
        assert_eq!(log.format_line(Level::Warn, "w", true), "wasmbox-oci: warn: w\n");
    }
}
