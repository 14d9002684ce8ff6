//! Typed calls of a component's exports with arbitrary WAVE arguments (`file#echo ARGS…`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wasmbox_runtime::{Engine, Entrypoint, Loader, PrecompiledPolicy, Program, RunConfig};

const CALC: &[u8] = include_bytes!("../../../examples/wat/calc-component.wat");

fuzz_target!(|input: (bool, Vec<String>)| {
    static LOADED: OnceLock<(Engine, Program)> = OnceLock::new();
    let (engine, program) = LOADED.get_or_init(|| {
        let engine = Engine::new().expect("an engine");
        let program = Loader::new(&engine, None, PrecompiledPolicy::Ignore).load_bytes(CALC, "calc.wat").expect("calc");
        (engine, program)
    });
    let (echo, args) = input;
    let arg0 = if echo { "calc.wat#echo" } else { "calc.wat#add" };
    let mut argv = vec![arg0.to_owned()];
    argv.extend(args);
    let config = RunConfig::new(argv);
    if let Err(err) = wasmbox_runtime::run(engine, program, &Entrypoint::parse(arg0), &config) {
        assert!(!err.to_string().contains('\n'));
    }
});
