//! The container's stdin, relayed from its FIFO through a pipe so that the guest sees its end
//! (wasmbox addition).
//!
//! containerd hands a shim the path of a FIFO for the container's stdin. runwasi opened it
//! read-write and gave that to the container: a process holding a FIFO's write end never reads
//! its end, so a guest (or a Linux container) reading its stdin to the end hung forever after
//! `echo hi | ctr run …` had written and closed its side. containerd-shim-runc-v2 copies the FIFO
//! into a pipe instead; so does this: the container gets the pipe's read end, and a thread of
//! the shim copies what the FIFO brings into the write end until the last writer closes the
//! FIFO, then closes the pipe. The thread also ends when the container's side of the pipe is
//! gone (the container exited), so nothing outlives the container.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::pipe::{PipeFlags, pipe_with};

/// Opens the FIFO at `fifo` and starts the relay; returns the read end to give the container.
pub fn start(fifo: &Path, container_id: &str) -> Result<OwnedFd> {
    Ok(spawn(fifo, container_id)?.0)
}

fn spawn(fifo: &Path, container_id: &str) -> Result<(OwnedFd, JoinHandle<()>)> {
    // A FIFO opened for reading without blocking needs no writer yet.
    let source = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .with_context(|| format!("opening the stdin FIFO {}", fifo.display()))?;
    let (reader, writer) = pipe_with(PipeFlags::CLOEXEC).context("creating the stdin pipe")?;
    let id = container_id.to_owned();
    // Most containers given a stdin FIFO (`ctr run -d`) are never written to: the thread is
    // kept small, and its buffer is allocated when input first comes.
    let relay = std::thread::Builder::new()
        .name("stdin-relay".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            if let Err(err) = relay(source, File::from(writer)) {
                log::debug!("{id}: stdin relay ended: {err:#}");
            }
        })
        .context("starting the stdin relay")?;
    Ok((reader, relay))
}

/// Copies `source` into `sink` until the FIFO's writers are gone (after the first one came) or
/// nobody reads `sink` any more.
fn relay(mut source: File, mut sink: File) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        let (readable, hung_up, sink_gone) = {
            // Linux reports POLLHUP on a FIFO only once a writer has come and gone, and POLLERR
            // on a pipe's write end once no process holds its read end.
            let mut fds = [PollFd::new(&source, PollFlags::IN), PollFd::new(&sink, PollFlags::empty())];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err).context("waiting for stdin"),
            }
            let (source_events, sink_events) = (fds[0].revents(), fds[1].revents());
            (
                source_events.contains(PollFlags::IN),
                source_events.intersects(PollFlags::HUP | PollFlags::ERR),
                sink_events.intersects(PollFlags::ERR | PollFlags::HUP),
            )
        };
        if sink_gone {
            return Ok(());
        }
        if readable || hung_up {
            if buf.is_empty() {
                buf = vec![0u8; 16 * 1024];
            }
            match source.read(&mut buf) {
                // End of input: every writer closed the FIFO.
                Ok(0) => return Ok(()),
                Ok(n) => sink.write_all(&buf[..n]).context("writing the container's stdin")?,
                Err(err) if err.kind() == ErrorKind::WouldBlock || err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err).context("reading the stdin FIFO"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("stdin");
        rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
        path
    }

    #[test]
    fn the_reader_sees_what_was_written_then_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let reader = start(&path, "t").unwrap();
        // the client connects after the relay started, writes and closes
        let mut writer = OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        let mut got = String::new();
        File::from(reader).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello\n");
    }

    #[test]
    fn no_writer_yet_is_not_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let reader = File::from(start(&path, "t").unwrap());
        let mut fds = [PollFd::new(&reader, PollFlags::IN)];
        let none = poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 200_000_000 })).unwrap();
        assert_eq!(none, 0, "the container's stdin must wait for a writer, not end");
    }

    #[test]
    fn the_relay_ends_when_the_container_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = fifo(dir.path());
        let (reader, relay) = spawn(&path, "t").unwrap();
        drop(reader);
        // nothing reads the pipe any more: the relay stops without any writer having come
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !relay.is_finished() {
            assert!(std::time::Instant::now() < deadline, "the relay outlived its container");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
