/*
   Copyright The containerd Authors.

   Licensed under the Apache License, Version 2.0 (the "License");
   you may not use this file except in compliance with the License.
   You may obtain a copy of the License at

       http://www.apache.org/licenses/LICENSE-2.0

   Unless required by applicable law or agreed to in writing, software
   distributed under the License is distributed on an "AS IS" BASIS,
   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
   See the License for the specific language governing permissions and
   limitations under the License.
*/

//! VENDORED CODE FROM containerd-shim v0.8.0
//!
//! This file is vendored from the containerd-shim crate and should be replaced
//! with the upstream version when a new release is available.
//!
//! Source: <https://github.com/containerd/rust-extensions/blob/main/crates/containerd-shim/src/logger.rs>

use std::borrow::BorrowMut;
use std::fmt::Write as fmtwrite;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use log::kv::{self, Visitor};
use log::{Metadata, Record};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[cfg(windows)]
use crate::vendor::containerd_shim::sys::windows::NamedPipeLogger;

pub const LOG_ENV: &str = "RUST_LOG";

pub struct FifoLogger {
    file: Mutex<File>,
}

impl FifoLogger {
    #[allow(dead_code)]
    pub fn new() -> Result<FifoLogger, io::Error> {
        Self::with_path("log")
    }

    #[allow(dead_code)]
    pub fn with_path<P: AsRef<Path>>(path: P) -> Result<FifoLogger, io::Error> {
        let f = OpenOptions::new()
            .write(true)
            .read(false)
            .create(false)
            .open(path)?;

        Ok(FifoLogger {
            file: Mutex::new(f),
        })
    }
}

pub(crate) struct SimpleWriteVisitor {
    key_values: String,
}

impl<'kvs> Visitor<'kvs> for SimpleWriteVisitor {
    fn visit_pair(&mut self, k: kv::Key<'kvs>, v: kv::Value<'kvs>) -> Result<(), kv::Error> {
        write!(&mut self.key_values, " {k}=\"{v}\"")?;
        Ok(())
    }
}

impl SimpleWriteVisitor {
    pub(crate) fn new() -> SimpleWriteVisitor {
        SimpleWriteVisitor {
            key_values: String::new(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.key_values
    }
}

pub(super) static KEY_VALUES: Mutex<String> = Mutex::new(String::new());

pub fn set_logger_kv(kv: impl kv::Source) {
    let mut writer = SimpleWriteVisitor::new();
    let _ = kv.visit(&mut writer);
    *KEY_VALUES.lock().unwrap() = writer.key_values;
}

impl log::Log for FifoLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let mut guard = self.file.lock().unwrap();

            // collect key_values but don't fail if error parsing
            let mut writer = SimpleWriteVisitor::new();
            let _ = record.key_values().visit(&mut writer);

            let kvs = KEY_VALUES.lock().unwrap().clone();

            // The logger server may have temporarily shutdown, ignore the error instead of panic.
            //
            // Manual for pipe/FIFO: https://man7.org/linux/man-pages/man7/pipe.7.html
            // If all file descriptors referring to the read end of a pipe have been closed, then
            // a write(2) will cause a SIGPIPE signal to be generated for the calling process.
            // If the calling process is ignoring this signal, then write(2) fails with the error
            // EPIPE.
            //
            // wasmbox: the line is formatted first and written in one `write`. Written piece by
            // piece (`writeln!` on a `File`), containerd could read part of a line from one
            // shim's FIFO and interleave another shim's line into its log, which garbled lines
            // when containers started together.
            let line = format!(
                "time=\"{}\" level={}{}{} msg=\"{}\"\n\n",
                rfc3339_formatted(),
                record.level().as_str().to_lowercase(),
                kvs,
                writer.as_str(),
                record.args()
            );
            let _ = guard.borrow_mut().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        // The logger server may have temporarily shutdown, ignore the error instead of panic.
        let _ = self.file.lock().unwrap().sync_all();
    }
}

/// wasmbox addition: the logger of a process the shim execs (its create helpers), which finds
/// the shim's `log` FIFO in the current directory, or else writes to its stderr.
#[cfg(unix)]
pub fn init_fifo_or_stderr(
    debug: bool,
    default_log_level: &str,
) -> Result<(), log::SetLoggerError> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking open: with no reader on the FIFO (containerd gone) it fails at once
    // (ENXIO) instead of hanging the helper; writes then block as usual.
    let fifo = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("log")
        .and_then(|file| {
            let flags = nix::fcntl::OFlag::from_bits_truncate(
                nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?,
            );
            nix::fcntl::fcntl(
                &file,
                nix::fcntl::FcntlArg::F_SETFL(flags - nix::fcntl::OFlag::O_NONBLOCK),
            )?;
            Ok(FifoLogger {
                file: Mutex::new(file),
            })
        });
    let logger = fifo.or_else(|_: io::Error| {
        io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(|fd| FifoLogger {
                file: Mutex::new(File::from(fd)),
            })
    });
    configure_logging_level(debug, default_log_level);
    match logger {
        Ok(logger) => log::set_boxed_logger(Box::new(logger)),
        Err(_) => Ok(()),
    }
}

fn configure_logging_level(debug: bool, default_log_level: &str) {
    let debug_level = std::env::var(LOG_ENV).unwrap_or(default_log_level.to_string());
    let debug_level = log::LevelFilter::from_str(&debug_level).unwrap_or(log::LevelFilter::Info);
    let level = if debug && log::LevelFilter::Debug > debug_level {
        log::LevelFilter::Debug
    } else {
        debug_level
    };
    log::set_max_level(level);
}

pub(crate) fn rfc3339_formatted() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or(OffsetDateTime::now_utc().to_string())
}
