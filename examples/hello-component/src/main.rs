//! hello-component: a WASI preview 2 component (`wasm32-wasip2`, exports `wasi:cli/run`) that greets.
fn main() {
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    println!("Hello from a Rust component on wasmbox (wasm32-wasip2)!");
    println!("cwd: {cwd}");
}
