//! A guest's bytes (binary, text or anything) into WebAssembly: loaded or refused with one line.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmbox_runtime::{Engine, Loader, PrecompiledPolicy};

fuzz_target!(|bytes: &[u8]| {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| Engine::new().expect("an engine"));
    if let Err(err) = Loader::new(engine, None, PrecompiledPolicy::Ignore).load_bytes(bytes, "fuzz.wasm") {
        assert!(!err.to_string().contains('\n'));
    }
});
