//! `wasmbox-run`: run one Wasm file in this process with the wasmbox engine, as the shim would inside a container.
//!
//! Used for debugging guests without containerd, and by `make bench` as the in-process floor:
//! `--repeat N` compiles once, then instantiates and runs the program N times, and prints the
//! compile time and the median run time on stderr. `--engine wasmer` runs it on Wasmer instead
//! of wasmtime.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use wasmbox_runtime::{EngineKind, GuestSource, PrecompiledPolicy, RunConfig, RunError, engine_for};

const USAGE: &str = "usage: wasmbox-run [--engine wasmtime|wasmer] [--repeat N] FILE[#FUNC] [ARGS...]
Runs a WASI module, component or .wat file in-process; the whole host file system is preopened at /.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeat = None;
    let mut engine_kind = EngineKind::Wasmtime;
    if args.first().map(String::as_str) == Some("--engine") {
        match args.get(1).map(|name| EngineKind::parse(name)) {
            Some(Ok(kind)) => engine_kind = kind,
            _ => {
                eprintln!("wasmbox-run: --engine takes wasmtime or wasmer");
                return ExitCode::from(2);
            }
        }
        args.drain(..2);
    }
    if args.first().map(String::as_str) == Some("--repeat") {
        repeat = args.get(1).and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0);
        if repeat.is_none() {
            eprintln!("wasmbox-run: --repeat takes a positive number");
            return ExitCode::from(2);
        }
        args.drain(..2);
    }
    if args.is_empty() || args[0] == "--help" || args[0] == "-h" {
        eprintln!("{USAGE}");
        return ExitCode::from(if args.is_empty() { 2 } else { 0 });
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let config = match RunConfig::for_host(args, std::env::vars().collect(), &cwd) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("wasmbox-run: {err:#}");
            return ExitCode::from(2);
        }
    };
    let result = (|| {
        let entry = config.entrypoint().map_err(RunError::invalid)?;
        let engine = engine_for(engine_kind, &[]).map_err(RunError::internal)?;
        let started = Instant::now();
        let source = GuestSource::File { path: &entry.path, precompiled_dir: None };
        let guest = engine.load(source, None, PrecompiledPolicy::Ignore)?;
        let compiled = started.elapsed();
        let mut runs = Vec::new();
        let mut code = 0;
        for _ in 0..repeat.unwrap_or(1) {
            let started = Instant::now();
            code = guest.run(&entry, &config)?;
            runs.push(started.elapsed());
        }
        if repeat.is_some() {
            runs.sort();
            eprintln!(
                "compile_ms={:.3} run_median_ms={:.3}",
                compiled.as_secs_f64() * 1e3,
                runs[runs.len() / 2].as_secs_f64() * 1e3
            );
        }
        Ok::<_, RunError>(code)
    })();
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            eprintln!("wasmbox-run: {}", err.report());
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
