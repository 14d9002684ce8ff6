//! Calling named exports with arguments given as text, and printing their results: `file.wasm#f1,f2 ARGS…`.
//!
//! Core modules: each function takes as many of the remaining args as it has parameters, parsed
//! as `i32`, `i64`, `f32` or `f64`. An argument written `str:TEXT` fills a `(ptr, len)` pair of
//! `i32` parameters: the host allocates `len + 1` bytes through the guest's `malloc` (or
//! `cabi_realloc`), copies TEXT and a NUL byte there (so C's `%s` works), passes the pointer and
//! TEXT's length, and after the call gives the memory back with the guest's `free` if it has one.
//! Results are printed one per line.
//!
//! Components: arguments and results are WAVE values, the text syntax `wasmtime run --invoke`
//! uses (`42`, `"Alice"`, `[1, 2]`, `{a: 1}`, `some(3)`). `#name` is a function exported at the
//! top level; `#interface#name` one inside an exported interface such as `example:calc/math`.

use anyhow::{Context, anyhow};
use wasmtime::component::{Func as ComponentFunc, Instance as ComponentInstance, Val as ComponentVal, wasm_wave};
use wasmtime::{AsContextMut, Extern, Instance, Memory, Store, Val, ValType};

use crate::error::RunError;
use crate::jshost::format_number;

/// The marker of a string argument for a `(ptr, len)` pair.
pub const STRING_PREFIX: &str = "str:";

/// What a call needs: where the text comes from (for messages) and the args still to consume.
pub struct Args<'a> {
    pub origin: &'a str,
    pub remaining: std::slice::Iter<'a, String>,
}

impl Args<'_> {
    /// Fails when some args were not used by any function.
    pub fn finish(mut self, names: &str) -> Result<(), RunError> {
        let left: Vec<&String> = self.remaining.by_ref().collect();
        if left.is_empty() {
            return Ok(());
        }
        Err(RunError::invalid(anyhow!(
            "{}: {} argument(s) left over after calling `{names}`: {left:?}",
            self.origin,
            left.len()
        )))
    }
}

/// A string copied into guest memory for the duration of one call.
struct GuestString {
    ptr: i32,
}

/// A core parameter or result type, as text arguments see it (the same for both engines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreType {
    I32,
    I64,
    F32,
    F64,
    /// A type no text argument can give (a reference, `v128`): its engine's name for it.
    Other(String),
}

impl std::fmt::Display for CoreType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreType::I32 => f.write_str("i32"),
            CoreType::I64 => f.write_str("i64"),
            CoreType::F32 => f.write_str("f32"),
            CoreType::F64 => f.write_str("f64"),
            CoreType::Other(name) => f.write_str(name),
        }
    }
}

/// One argument of a core call, read from the text args.
#[derive(Clone, Debug, PartialEq)]
pub enum CoreArg<'a> {
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// `str:TEXT`: fills an `(i32 ptr, i32 len)` pair once the text is copied into guest memory.
    Str(&'a str),
}

/// `name(i32, i64) -> (f64)`, for messages.
pub fn core_signature(name: &str, params: &[CoreType], results: &[CoreType]) -> String {
    let list = |types: &[CoreType]| types.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    format!("{name}({}) -> ({})", list(params), list(results))
}

/// Reads the arguments of a core function with these `params` from `args`: one number per
/// parameter, or one `str:TEXT` per `(i32, i32)` pair.
pub fn read_core_args<'a>(
    args: &mut Args<'a>,
    signature: &str,
    params: &[CoreType],
) -> Result<Vec<CoreArg<'a>>, RunError> {
    let origin = args.origin;
    let mut values = Vec::with_capacity(params.len());
    let mut index = 0;
    while index < params.len() {
        let arg = args.remaining.next().ok_or_else(|| {
            RunError::invalid(anyhow!(
                "{origin}: `{signature}` takes {} argument(s), fewer given{}",
                params.len(),
                string_hint(params)
            ))
        })?;
        if let Some(text) = arg.strip_prefix(STRING_PREFIX) {
            if !matches!(params.get(index..index + 2), Some([CoreType::I32, CoreType::I32])) {
                return Err(RunError::invalid(anyhow!(
                    "{origin}: argument {} of `{signature}`: {arg:?} is a string, but parameters {} and {} are not an (i32 ptr, i32 len) pair",
                    index + 1,
                    index + 1,
                    index + 2
                )));
            }
            values.push(CoreArg::Str(text));
            index += 2;
        } else {
            let value = parse_number(&params[index], arg).with_context(|| {
                format!("{origin}: argument {} of `{signature}`: cannot read {arg:?} as {}", index + 1, params[index])
            });
            values.push(value.map_err(RunError::invalid)?);
            index += 1;
        }
    }
    Ok(values)
}

/// Calls core export `name` with its args taken from `args`; returns the results as text.
pub fn call_module_func<T>(
    store: &mut Store<T>,
    instance: &Instance,
    name: &str,
    args: &mut Args<'_>,
    module_exports: &[String],
) -> Result<Vec<String>, RunError> {
    let origin = args.origin;
    let func = instance.get_func(&mut *store, name).ok_or_else(|| no_such_export(origin, name, module_exports))?;
    let ty = func.ty(&*store);
    let params: Vec<CoreType> = ty.params().map(|ty| core_type(&ty)).collect();
    let results: Vec<CoreType> = ty.results().map(|ty| core_type(&ty)).collect();
    let signature = core_signature(name, &params, &results);

    let mut values = Vec::with_capacity(params.len());
    let mut strings = Vec::new();
    for arg in read_core_args(args, &signature, &params)? {
        match arg {
            CoreArg::I32(v) => values.push(Val::I32(v)),
            CoreArg::I64(v) => values.push(Val::I64(v)),
            CoreArg::F32(v) => values.push(Val::F32(v.to_bits())),
            CoreArg::F64(v) => values.push(Val::F64(v.to_bits())),
            CoreArg::Str(text) => {
                let ptr = write_guest_string(store, instance, text).map_err(|err| {
                    RunError::invalid(anyhow!("{origin}: passing \"str:{text}\" to `{signature}`: {err:#}"))
                })?;
                strings.push(GuestString { ptr });
                values.push(Val::I32(ptr));
                values.push(Val::I32(text.len() as i32));
            }
        }
    }
    let mut results = vec![Val::I32(0); ty.results().len()];
    let outcome = func.call(&mut *store, &values, &mut results);
    for string in strings {
        free_guest_memory(store, instance, string.ptr);
    }
    outcome.map_err(|err| RunError::from_guest(origin, err))?;
    Ok(results.iter().map(format_number).collect())
}

fn core_type(ty: &ValType) -> CoreType {
    match ty {
        ValType::I32 => CoreType::I32,
        ValType::I64 => CoreType::I64,
        ValType::F32 => CoreType::F32,
        ValType::F64 => CoreType::F64,
        other => CoreType::Other(other.to_string()),
    }
}

fn string_hint(params: &[CoreType]) -> &'static str {
    if params.windows(2).any(|w| matches!(w, [CoreType::I32, CoreType::I32])) {
        " (a string for an (i32 ptr, i32 len) pair is written str:TEXT)"
    } else {
        ""
    }
}

fn parse_number<'a>(ty: &CoreType, text: &str) -> anyhow::Result<CoreArg<'a>> {
    Ok(match ty {
        CoreType::I32 => CoreArg::I32(text.parse()?),
        CoreType::I64 => CoreArg::I64(text.parse()?),
        CoreType::F32 => CoreArg::F32(text.parse()?),
        CoreType::F64 => CoreArg::F64(text.parse()?),
        CoreType::Other(other) => anyhow::bail!("parameters of type {other} cannot be given as text"),
    })
}

pub fn no_such_export(origin: &str, name: &str, exports: &[String]) -> RunError {
    RunError::invalid(anyhow!(
        "{origin}: no exported function `{name}` (exported functions: {})",
        if exports.is_empty() { "none".to_owned() } else { exports.join(", ") }
    ))
}

/// Allocates `text.len() + 1` bytes with the guest's allocator and copies `text` and a NUL there.
fn write_guest_string<T>(store: &mut Store<T>, instance: &Instance, text: &str) -> anyhow::Result<i32> {
    let size = i32::try_from(text.len() + 1).context("string too long")?;
    let ptr = if let Ok(malloc) = instance.get_typed_func::<i32, i32>(&mut *store, "malloc") {
        malloc.call(&mut *store, size).map_err(anyhow::Error::from).context("calling the guest's malloc")?
    } else if let Ok(realloc) = instance.get_typed_func::<(i32, i32, i32, i32), i32>(&mut *store, "cabi_realloc") {
        realloc
            .call(&mut *store, (0, 0, 1, size))
            .map_err(anyhow::Error::from)
            .context("calling the guest's cabi_realloc")?
    } else {
        anyhow::bail!("the module exports no allocator (`malloc(i32) -> i32` or `cabi_realloc`)");
    };
    anyhow::ensure!(ptr != 0, "the guest's allocator returned NULL");
    let memory = guest_memory(store, instance).context("the module exports no `memory`")?;
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    memory
        .write(&mut *store, ptr as u32 as usize, &bytes)
        .map_err(|err| anyhow!("writing the string at {ptr}: {err}"))?;
    Ok(ptr)
}

fn free_guest_memory<T>(store: &mut Store<T>, instance: &Instance, ptr: i32) {
    if let Ok(free) = instance.get_typed_func::<i32, ()>(&mut *store, "free")
        && let Err(err) = free.call(&mut *store, ptr)
    {
        log::warn!("the guest's free({ptr}) failed: {err:#}");
    }
}

fn guest_memory<T>(store: &mut Store<T>, instance: &Instance) -> Option<Memory> {
    match instance.get_export(store.as_context_mut(), "memory") {
        Some(Extern::Memory(memory)) => Some(memory),
        _ => None,
    }
}

/// Finds `name` (`func` or `interface#func`) among a component instance's exports.
pub fn component_func<T>(store: &mut Store<T>, instance: &ComponentInstance, name: &str) -> Option<ComponentFunc> {
    match name.rsplit_once('#') {
        Some((interface, func)) => {
            let interface = instance.get_export_index(&mut *store, None, interface)?;
            let func = instance.get_export_index(&mut *store, Some(&interface), func)?;
            instance.get_func(&mut *store, func)
        }
        None => instance.get_func(&mut *store, name),
    }
}

/// Calls a component function with WAVE-text args from `args`; returns the results as WAVE text.
pub fn call_component_func<T>(
    store: &mut Store<T>,
    func: ComponentFunc,
    name: &str,
    args: &mut Args<'_>,
) -> Result<Vec<String>, RunError> {
    let origin = args.origin;
    let ty = func.ty(&*store);
    let params: Vec<(String, wasmtime::component::Type)> = ty.params().map(|(n, t)| (n.to_owned(), t)).collect();
    let signature = format!(
        "{name}({})",
        params.iter().map(|(n, t)| format!("{n}: {}", wave_type_name(t))).collect::<Vec<_>>().join(", ")
    );
    let mut values = Vec::with_capacity(params.len());
    for (i, (param, ty)) in params.iter().enumerate() {
        let arg = args.remaining.next().ok_or_else(|| {
            RunError::invalid(anyhow!("{origin}: `{signature}` takes {} argument(s), fewer given", params.len()))
        })?;
        let value: ComponentVal = wasm_wave::from_str(ty, arg).map_err(|err| {
            RunError::invalid(anyhow!(
                "{origin}: argument {} (`{param}`) of `{signature}`: cannot read {arg:?} as a WAVE value: {err}",
                i + 1
            ))
        })?;
        values.push(value);
    }
    let mut results = vec![ComponentVal::Bool(false); ty.results().len()];
    func.call(&mut *store, &values, &mut results).map_err(|err| RunError::from_guest(origin, err))?;
    results
        .iter()
        .map(|value| {
            wasm_wave::to_string(value)
                .map_err(|err| RunError::internal(anyhow!("{origin}: printing a result of `{name}`: {err}")))
        })
        .collect()
}

fn wave_type_name(ty: &wasmtime::component::Type) -> String {
    use wasmtime::component::Type;
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        other => format!("{other:?}").split(['(', ' ']).next().unwrap_or("value").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use crate::code::{Loader, Program};
    use crate::config::{Entrypoint, RunConfig};
    use crate::engine::Engine;
    use crate::node::PrecompiledPolicy;

    const MODULE: &str = r#"(module
        (memory (export "memory") 1)
        (global $next (mut i32) (i32.const 1024))
        (func (export "malloc") (param i32) (result i32) (local $p i32)
            global.get $next local.set $p
            global.get $next local.get 0 i32.add global.set $next
            local.get $p)
        (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
        (func (export "mix") (param i64 f32 f64) (result f64) local.get 2)
        (func (export "len") (param i32 i32) (result i32) local.get 1))"#;

    fn programs() -> &'static (Engine, Program, Program) {
        static PROGRAMS: OnceLock<(Engine, Program, Program)> = OnceLock::new();
        PROGRAMS.get_or_init(|| {
            let engine = Engine::new().expect("engine");
            let module = Loader::new(&engine, None, PrecompiledPolicy::Ignore)
                .load_bytes(MODULE.as_bytes(), "m.wat")
                .expect("module");
            let calc = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wat/calc-component.wat"))
                .expect("calc");
            let component =
                Loader::new(&engine, None, PrecompiledPolicy::Ignore).load_bytes(&calc, "calc.wat").expect("component");
            (engine, module, component)
        })
    }

    fn call(program: &Program, arg0: &str, args: &[String]) -> Result<i32, crate::error::RunError> {
        let engine = &programs().0;
        let mut argv = vec![arg0.to_owned()];
        argv.extend_from_slice(args);
        let config = RunConfig::new(argv);
        crate::run::run(engine, program, &Entrypoint::parse(arg0), &config)
    }

    #[test]
    fn typed_calls_take_their_arguments() {
        let (_, module, component) = programs();
        assert_eq!(call(module, "m.wat#add", &["6".into(), "27".into()]).ok(), Some(0));
        assert_eq!(call(module, "m.wat#len", &["str:Alice".into()]).ok(), Some(0));
        assert_eq!(call(component, "calc.wat#echo", &["\"Alice\"".into()]).ok(), Some(0));
        let err = call(module, "m.wat#add", &["6".into()]).unwrap_err();
        assert_eq!(err.exit_code(), 126);
        assert!(err.to_string().contains("`add(i32, i32) -> (i32)` takes 2 argument(s)"), "{err}");
    }

    fn arg() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?",
            "str:.{0,40}",
            "\"[^\"]{0,20}\"",
            "[\\[\\]{}(),:a-z0-9 \"-]{0,30}",
        ]
    }

    proptest! {
        /// Any function name and arguments, for a module and a component: a result or a
        /// one-line error, never a panic.
        #[test]
        fn any_call_runs_or_fails_with_one_line(
            name in prop_oneof![
                Just("add".to_owned()), Just("mix".to_owned()), Just("len".to_owned()), Just("nope".to_owned()),
                Just("add,len".to_owned()), Just("echo".to_owned()), ".{0,12}",
            ],
            args in proptest::collection::vec(arg(), 0..5),
            component in any::<bool>(),
        ) {
            let (_, module, calc) = programs();
            let (program, file) = if component { (calc, "calc.wat") } else { (module, "m.wat") };
            if let Err(err) = call(program, &format!("{file}#{name}"), &args) {
                prop_assert!(!err.to_string().contains('\n'), "{}", err);
                prop_assert!([125, 126, 134].contains(&err.exit_code()), "{}: {}", err.exit_code(), err);
            }
        }
    }
}
