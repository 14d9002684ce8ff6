//! hello-component: a WASI preview 2 component (`wasm32-wasip2`, exports `wasi:cli/run`) that greets
//! and shows the working directory the host gave it through `wasi:cli/environment.initial-cwd`.
fn main() {
    println!("Hello from a Rust component on wasmbox (wasm32-wasip2)!");
    // Rust's std (wasi-libc) starts at `/` and does not ask for initial-cwd: ask WASI directly.
    let cwd = wasi::cli::environment::initial_cwd().unwrap_or_else(|| "(none)".to_owned());
    println!("cwd: {cwd}");
}
