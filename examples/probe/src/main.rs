//! probe: a WASI preview 1 test guest; each subcommand shows one thing the host gave it.
//!
//! - `args A B…` prints every argv entry (argv[0] included), one per line
//! - `env NAME…` prints `NAME=value` (or `NAME unset`) for each name
//! - `cwd` prints `PWD` and what `current_dir` says
//! - `exit N` exits with code N
//! - `trap` executes `unreachable`
//! - `cat FILE` prints a file; `write FILE TEXT` writes one, reporting any error and exiting 1
//! - `ls DIR` lists a directory
//! - `sleep SECONDS` sleeps; `spin` loops forever without a system call
//! - `alloc MIB` grows memory 1 MiB at a time up to MIB, printing how far it got when growth fails
//! - `vec MIB` allocates (and touches) 1 MiB vectors up to MIB; Rust aborts when allocation fails
//! - `connect ADDR` opens a TCP connection and reports the outcome
//! - `stdin` reads its standard input to the end and prints it back upper-cased, with the count
use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rest = &args[2.min(args.len())..];
    match args.get(1).map(String::as_str) {
        Some("args") => args.iter().for_each(|a| println!("{a}")),
        Some("env") => rest.iter().for_each(|name| match std::env::var(name) {
            Ok(value) => println!("{name}={value}"),
            Err(_) => println!("{name} unset"),
        }),
        Some("cwd") => {
            println!("PWD={}", std::env::var("PWD").unwrap_or_default());
            println!("current_dir={}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|e| e.to_string()));
        }
        Some("exit") => std::process::exit(rest.first().and_then(|n| n.parse().ok()).unwrap_or(1)),
        Some("trap") => trap(),
        Some("cat") => match std::fs::read_to_string(&rest[0]) {
            Ok(text) => print!("{text}"),
            Err(err) => fail(&format!("cannot read {}: {err}", rest[0])),
        },
        Some("write") => match std::fs::write(&rest[0], rest.get(1).map(String::as_str).unwrap_or("")) {
            Ok(()) => println!("wrote {}", rest[0]),
            Err(err) => fail(&format!("cannot write {}: {err}", rest[0])),
        },
        Some("ls") => match std::fs::read_dir(&rest[0]) {
            Ok(entries) => {
                let mut names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                names.iter().for_each(|n| println!("{n}"));
            }
            Err(err) => fail(&format!("cannot list {}: {err}", rest[0])),
        },
        Some("sleep") => std::thread::sleep(std::time::Duration::from_secs_f64(rest[0].parse().unwrap_or(1.0))),
        Some("spin") => spin(),
        Some("stdin") => {
            let mut input = String::new();
            match std::io::stdin().read_to_string(&mut input) {
                Ok(n) => print!("{n} bytes: {}", input.to_uppercase()),
                Err(err) => fail(&format!("cannot read stdin: {err}")),
            }
        }
        Some("alloc") => alloc(rest.first().and_then(|n| n.parse().ok()).unwrap_or(64)),
        Some("vec") => {
            let mib: usize = rest.first().and_then(|n| n.parse().ok()).unwrap_or(64);
            let mut kept = Vec::new();
            for _ in 0..mib {
                kept.push(vec![1u8; 1 << 20]);
            }
            println!("allocated {} MiB", kept.len());
        }
        Some("connect") => match std::net::TcpStream::connect(&rest[0]) {
            Ok(_) => println!("connected to {}", rest[0]),
            Err(err) => fail(&format!("cannot connect to {}: {err}", rest[0])),
        },
        other => fail(&format!("unknown probe command {other:?}")),
    }
}

#[inline(never)]
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Grows linear memory with `memory.grow` directly, so that a refused growth is seen as such
/// (Rust's allocator would abort instead).
fn alloc(mib: usize) {
    let mut got = 0;
    while got < mib {
        #[cfg(target_arch = "wasm32")]
        let grown = core::arch::wasm32::memory_grow(0, 16) != usize::MAX;
        #[cfg(not(target_arch = "wasm32"))]
        let grown = false;
        if !grown {
            println!("memory.grow refused after {got} MiB");
            std::process::exit(2);
        }
        got += 1;
    }
    println!("grew {got} MiB");
}

#[inline(never)]
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn fail(message: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "probe: {message}");
    std::process::exit(1);
}
