//! probe: a WASI preview 1 test guest; each subcommand shows one thing the host gave it.
//!
//! - `args A B…` prints every argv entry (argv[0] included), one per line
//! - `env NAME…` prints `NAME=value` (or `NAME unset`) for each name
//! - `cwd` prints `PWD` and what `current_dir` says
//! - `exit N` exits with code N
//! - `trap` executes `unreachable`
//! - `cat FILE` prints a file; `write FILE TEXT` writes one, reporting any error and exiting 1
//! - `ls DIR` lists a directory
use std::io::Write;

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
        other => fail(&format!("unknown probe command {other:?}")),
    }
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
