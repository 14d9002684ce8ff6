//! Choosing a workload's engine: the [`WasmEngine`] of its kind, made with its WebAssembly features.
//!
//! Which kind a workload gets is decided by its settings and the node's ([`crate::settings`]'s
//! `wasmbox.io/engine`, then [`crate::node`]'s `WASMBOX_ENGINE`); this module only makes it.

use crate::engines::{WasmEngine, Wasmtime};
use crate::settings::{EngineKind, WasmFeature};

/// The engine `kind`, with these WebAssembly features switched on or off.
pub fn engine_for(kind: EngineKind, features: &[(WasmFeature, bool)]) -> anyhow::Result<Box<dyn WasmEngine>> {
    match kind {
        EngineKind::Wasmtime => Ok(Box::new(Wasmtime::with_features(features)?)),
        EngineKind::Wasmer => wasmer_engine(features),
    }
}

#[cfg(feature = "wasmer")]
fn wasmer_engine(features: &[(WasmFeature, bool)]) -> anyhow::Result<Box<dyn WasmEngine>> {
    Ok(Box::new(crate::wasmer::WasmerEngine::with_features(features)?))
}

#[cfg(not(feature = "wasmer"))]
fn wasmer_engine(_: &[(WasmFeature, bool)]) -> anyhow::Result<Box<dyn WasmEngine>> {
    anyhow::bail!("this build of wasmbox has no Wasmer engine (it was built without the `wasmer` feature)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::decode::SourceKind;
    use crate::config::RunConfig;
    use crate::engines::{GuestSource, engines_for};
    use crate::error::{ExitStatus, FailureKind, RunError};
    use crate::node::PrecompiledPolicy;
    use crate::settings::NetworkPolicy;

    /// A WASI module that exits with its number of args (`proc_exit(argc)`), traps on `trap`,
    /// and exports `add` and a string function through a bump `malloc`.
    const MODULE: &str = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (global $next (mut i32) (i32.const 1024))
        (func (export "malloc") (param i32) (result i32) (local $p i32)
            global.get $next local.set $p
            global.get $next local.get 0 i32.add global.set $next
            local.get $p)
        (func (export "_start")
            (drop (call $sizes (i32.const 0) (i32.const 4)))
            (call $exit (i32.load (i32.const 0))))
        (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
        (func (export "len") (param i32 i32) (result i32) local.get 1)
        (func (export "trap") unreachable))"#;

    /// Loads `wat` on `kind` and runs `argv` (`argv[0]` names the entry point).
    fn run_on(kind: EngineKind, wat: &str, argv: &[&str]) -> Result<ExitStatus, RunError> {
        let engine = engine_for(kind, &[]).map_err(RunError::internal)?;
        let guest = engine.load(
            GuestSource::Bytes { bytes: wat.as_bytes(), origin: "m.wat" },
            None,
            PrecompiledPolicy::Ignore,
        )?;
        let config = RunConfig::new(argv.iter().map(|a| a.to_string()).collect());
        let entry = config.entrypoint().map_err(RunError::invalid)?;
        guest.run(&entry, &config)
    }

    #[test]
    fn both_engines_give_the_same_outcomes() {
        for kind in EngineKind::ALL {
            // argc: proc_exit(3) with three args
            assert_eq!(run_on(kind, MODULE, &["m.wat", "a", "b"]).ok(), Some(3), "{kind}");
            assert_eq!(run_on(kind, MODULE, &["m.wat#add", "6", "27"]).ok(), Some(0), "{kind}");
            assert_eq!(run_on(kind, MODULE, &["m.wat#len", "str:Alice"]).ok(), Some(0), "{kind}");
            let trap = run_on(kind, MODULE, &["m.wat#trap"]).expect_err("a trap");
            assert_eq!((trap.kind, trap.exit_code()), (FailureKind::Trap, 134), "{kind}");
            assert!(trap.to_string().starts_with("m.wat: wasm trap: "), "{kind}: {trap}");
            let missing = run_on(kind, MODULE, &["m.wat#nope"]).expect_err("no such export");
            assert_eq!(missing.exit_code(), 126, "{kind}");
            assert!(missing.to_string().contains("no exported function `nope`"), "{kind}: {missing}");
            let few = run_on(kind, MODULE, &["m.wat#add", "6"]).expect_err("too few arguments");
            assert!(few.to_string().contains("`add(i32, i32) -> (i32)` takes 2 argument(s)"), "{kind}: {few}");
            let import = run_on(kind, r#"(module (import "env" "nope" (func)) (func (export "_start")))"#, &["i.wat"])
                .expect_err("an unknown import");
            assert!(import.to_string().contains("env::nope"), "{kind}: {import}");
        }
    }

    #[test]
    fn wasmer_refuses_what_only_wasmtime_runs() -> anyhow::Result<()> {
        let component = "(component)";
        assert_eq!(run_on(EngineKind::Wasmtime, component, &["c.wat#nope"]).map_err(|e| e.exit_code()), Err(126));
        let refused = run_on(EngineKind::Wasmer, component, &["c.wat"]).expect_err("Wasmer runs no component");
        assert_eq!(refused.kind, FailureKind::Unsupported);
        assert!(refused.to_string().contains("is a component: the wasmer engine cannot run it"), "{refused}");
        let wasix = r#"(module (import "wasix_32v1" "proc_fork" (func (param i32) (result i32))) (memory (export "memory") 1))"#;
        let refused = run_on(EngineKind::Wasmer, wasix, &["x.wat"]).expect_err("no WASIX");
        assert_eq!(refused.kind, FailureKind::Unsupported);
        let engine = engine_for(EngineKind::Wasmer, &[])?;
        let mut networked = RunConfig::new(vec!["m.wat".into()]);
        networked.network = NetworkPolicy::All;
        assert!(engine.check_config(&networked).is_err());
        assert!(engine_for(EngineKind::Wasmtime, &[])?.check_config(&networked).is_ok());
        assert_eq!(engines_for(SourceKind::Component), [EngineKind::Wasmtime]);
        Ok(())
    }
}
