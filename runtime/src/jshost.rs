//! Host imports for modules written for a JavaScript embedding (the MDN examples): `console.log`, `js.*` globals, memories and tables.
//!
//! They are defined only for the imports a module actually declares, with the types it declares:
//!
//! | import | what the host provides |
//! |---|---|
//! | `console.log (param i32 i32)` | prints the UTF-8 string at (offset, length) of the module's memory (`js.mem`, else its exported `memory`) |
//! | `console.log` with other number params | prints the numbers, separated by spaces |
//! | `js.<name>` global | a global of the declared type, starting at zero |
//! | `js.<name>` memory | a memory of the declared type (e.g. `js.mem`) |
//! | `js.<name>` table | a table of the declared type, all elements null |
//!
//! Any other import is left alone, so an unknown one still fails instantiation, naming it.

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::{Caller, Extern, ExternType, Global, Linker, Memory, Module, Ref, Store, Table, Val, ValType};

/// Defines the JavaScript-embedding imports `module` declares.
pub fn define_imports<T: 'static>(linker: &mut Linker<T>, store: &mut Store<T>, module: &Module) -> Result<()> {
    let mut memory: Option<Memory> = None;
    // Memories first, so that `console.log` can read the one the module imports.
    for import in module.imports().filter(|i| i.module() == "js") {
        let value: Extern = match import.ty() {
            ExternType::Memory(ty) => {
                let created = Memory::new(&mut *store, ty).map_err(anyhow::Error::from)?;
                memory.get_or_insert(created);
                created.into()
            }
            ExternType::Global(ty) => {
                let zero = zero_of(ty.content()).with_context(|| format!("import js.{}", import.name()))?;
                Global::new(&mut *store, ty, zero).map_err(anyhow::Error::from)?.into()
            }
            ExternType::Table(ty) => {
                let null = if ty.element().heap_type().top().is_extern() { Ref::Extern(None) } else { Ref::Func(None) };
                Table::new(&mut *store, ty, null).map_err(anyhow::Error::from)?.into()
            }
            ExternType::Func(_) | ExternType::Tag(_) => continue,
        };
        linker.define(&*store, "js", import.name(), value).map_err(anyhow::Error::from)?;
    }
    for import in module.imports().filter(|i| i.module() == "console" && i.name() == "log") {
        let ExternType::Func(ty) = import.ty() else { continue };
        let params: Vec<ValType> = ty.params().collect();
        let as_string = params.len() == 2 && params.iter().all(|p| matches!(p, ValType::I32));
        if !as_string && !params.iter().all(|p| p.is_num()) {
            bail!("console.log with parameters ({params:?}) is not supported");
        }
        linker
            .func_new("console", "log", ty, move |mut caller: Caller<'_, T>, args, _results| {
                let line = if as_string {
                    let (Val::I32(offset), Val::I32(len)) = (&args[0], &args[1]) else { unreachable!() };
                    read_string(&mut caller, memory, *offset as u32, *len as u32)?
                } else {
                    args.iter().map(format_number).collect::<Vec<_>>().join(" ")
                };
                println!("{line}");
                Ok(())
            })
            .map_err(anyhow::Error::from)?;
    }
    Ok(())
}

fn read_string<T>(
    caller: &mut Caller<'_, T>,
    imported: Option<Memory>,
    offset: u32,
    len: u32,
) -> wasmtime::Result<String> {
    let memory = match imported {
        Some(memory) => memory,
        None => match caller.get_export("memory") {
            Some(Extern::Memory(memory)) => memory,
            // The guest's fault, so a trap (exit 134), not a host error.
            _ => {
                return Err(wasmtime::Error::from(wasmtime::Trap::MemoryOutOfBounds)
                    .context("console.log(offset, length): the module has no memory"));
            }
        },
    };
    let data = memory.data(&*caller);
    let range = offset as usize..(offset as usize).saturating_add(len as usize);
    let bytes = data.get(range).ok_or_else(|| {
        wasmtime::Error::from(wasmtime::Trap::MemoryOutOfBounds)
            .context(format!("console.log: {len} bytes at {offset} are outside memory"))
    })?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn zero_of(ty: &ValType) -> Result<Val> {
    Ok(match ty {
        ValType::I32 => Val::I32(0),
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        other => return Err(anyhow!("globals of type {other} are not supported")),
    })
}

/// A number as text: integers in decimal, floats in their shortest form.
pub fn format_number(value: &Val) -> String {
    match value {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        other => format!("{other:?}"),
    }
}
