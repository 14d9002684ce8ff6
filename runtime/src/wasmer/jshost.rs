//! The JavaScript-embedding imports of [`crate::jshost`] (`console.log`, `js.*` globals,
//! memories and tables) on Wasmer: the same imports, the same output, defined only for what the
//! module declares, so that an unknown import still fails instantiation, naming it.

use anyhow::{Result, anyhow, bail};
use wasmer::{
    Extern, ExternType, Function, FunctionEnv, FunctionEnvMut, Global, Imports, Memory, Module, Mutability,
    RuntimeError, Store, Table, Type, Value,
};

/// The memory `console.log(offset, length)` reads: the module's `js.*` memory, else (set once
/// the instance exists) its exported `memory`.
#[derive(Default)]
pub struct JsMemory {
    memory: Option<Memory>,
}

/// Adds to `imports` the JavaScript-embedding imports `module` declares; returns the state to
/// complete with [`set_exported_memory`] once the module is instantiated.
pub fn define_imports(store: &mut Store, module: &Module, imports: &mut Imports) -> Result<FunctionEnv<JsMemory>> {
    let env = FunctionEnv::new(store, JsMemory::default());
    for import in module.imports().filter(|i| i.module() == "js") {
        let value: Extern = match import.ty() {
            ExternType::Memory(ty) => {
                let memory = Memory::new(store, *ty).map_err(|err| anyhow!("import js.{}: {err}", import.name()))?;
                if env.as_ref(store).memory.is_none() {
                    env.as_mut(store).memory = Some(memory.clone());
                }
                memory.into()
            }
            ExternType::Global(ty) => {
                let zero = zero_of(ty.ty).map_err(|err| anyhow!("import js.{}: {err}", import.name()))?;
                match ty.mutability {
                    Mutability::Var => Global::new_mut(store, zero).into(),
                    Mutability::Const => Global::new(store, zero).into(),
                }
            }
            ExternType::Table(ty) => {
                let null = match ty.ty {
                    Type::ExternRef => Value::ExternRef(None),
                    _ => Value::FuncRef(None),
                };
                Table::new(store, *ty, null)
                    .map_err(|err| anyhow!("import js.{}: {}", import.name(), err.message()))?
                    .into()
            }
            ExternType::Function(_) | ExternType::Tag(_) => continue,
        };
        imports.define("js", import.name(), value);
    }
    for import in module.imports().filter(|i| i.module() == "console" && i.name() == "log") {
        let ExternType::Function(ty) = import.ty() else { continue };
        let params = ty.params().to_vec();
        let as_string = params.len() == 2 && params.iter().all(|p| *p == Type::I32);
        if !as_string && !params.iter().all(|p| matches!(p, Type::I32 | Type::I64 | Type::F32 | Type::F64)) {
            bail!("console.log with parameters ({params:?}) is not supported");
        }
        let log = Function::new_with_env(store, &env, ty.clone(), move |env: FunctionEnvMut<JsMemory>, args| {
            let line = match (as_string, args) {
                (true, [Value::I32(offset), Value::I32(len)]) => read_string(&env, *offset as u32, *len as u32)?,
                _ => args.iter().map(format_number).collect::<Vec<_>>().join(" "),
            };
            println!("{line}");
            Ok(vec![])
        });
        imports.define("console", "log", log);
    }
    Ok(env)
}

/// Once the module is instantiated: `console.log` reads its exported `memory` when it imports none.
pub fn set_exported_memory(store: &mut Store, env: &FunctionEnv<JsMemory>, instance: &wasmer::Instance) {
    if env.as_ref(store).memory.is_none()
        && let Ok(memory) = instance.exports.get_memory("memory")
    {
        env.as_mut(store).memory = Some(memory.clone());
    }
}

fn read_string(env: &FunctionEnvMut<JsMemory>, offset: u32, len: u32) -> Result<String, RuntimeError> {
    // The guest's fault, so a trap (exit 134), not a host error.
    let memory = env.data().memory.as_ref().ok_or_else(|| {
        RuntimeError::new("out of bounds memory access: console.log(offset, length): the module has no memory")
    })?;
    let view = memory.view(env);
    let outside = || {
        RuntimeError::new(format!(
            "out of bounds memory access: console.log: {len} bytes at {offset} are outside memory"
        ))
    };
    // Checked before anything is allocated: `len` is the guest's.
    if u64::from(offset) + u64::from(len) > view.data_size() {
        return Err(outside());
    }
    let mut bytes = vec![0; len as usize];
    view.read(u64::from(offset), &mut bytes).map_err(|_| outside())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn zero_of(ty: Type) -> Result<Value> {
    Ok(match ty {
        Type::I32 => Value::I32(0),
        Type::I64 => Value::I64(0),
        Type::F32 => Value::F32(0.0),
        Type::F64 => Value::F64(0.0),
        other => bail!("globals of type {other:?} are not supported"),
    })
}

/// A number as text, as [`crate::jshost::format_number`] writes it.
pub fn format_number(value: &Value) -> String {
    match value {
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::F32(v) => v.to_string(),
        Value::F64(v) => v.to_string(),
        other => format!("{other:?}"),
    }
}
