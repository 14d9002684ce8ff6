//! hello-rust: a WASI preview 1 command (`wasm32-wasip1`) that greets and echoes its arguments.
fn main() {
    println!("Hello from Rust on wasmbox (wasm32-wasip1)!");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        println!("args: {}", args.join(" "));
    }
}
