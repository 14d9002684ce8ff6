//! What a file in an image is (Wasm module, Wasm component, WebAssembly text, Linux executable) and its imports and exports.

use anyhow::{Context, Result, bail};
use wasmparser::{Parser, Payload};

/// The kind of an entry-point file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A core module: WASI preview 1.
    Module,
    /// A component: WASI preview 2.
    Component,
    /// An ELF binary or a `#!` script: runs as an ordinary Linux container.
    Linux,
}

impl FileKind {
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Module => "module (core Wasm, WASI preview 1)",
            FileKind::Component => "component (WASI preview 2)",
            FileKind::Linux => "Linux executable (runs as an ordinary container)",
        }
    }

    /// The engines of this build that can run it (`None`: not Wasm).
    pub fn engines(self) -> Option<Vec<wasmbox_runtime::EngineKind>> {
        use wasmbox_runtime::code::decode::SourceKind;
        match self {
            FileKind::Module => Some(wasmbox_runtime::engines::engines_for(SourceKind::Module)),
            FileKind::Component => Some(wasmbox_runtime::engines::engines_for(SourceKind::Component)),
            FileKind::Linux => None,
        }
    }
}

/// A file's kind and, for Wasm, its imports and exports.
#[derive(Clone, Debug)]
pub struct WasmInfo {
    pub kind: FileKind,
    /// True when the file is WebAssembly text (`.wat`), assembled for this description.
    pub text: bool,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Describes file contents; errors name why they are neither Wasm nor a Linux executable.
pub fn describe(bytes: &[u8]) -> Result<WasmInfo> {
    if bytes.starts_with(b"\x7fELF") || bytes.starts_with(b"#!") {
        return Ok(WasmInfo { kind: FileKind::Linux, text: false, imports: vec![], exports: vec![] });
    }
    let (binary, text) = if bytes.starts_with(b"\0asm") {
        (bytes.to_vec(), false)
    } else {
        let text = std::str::from_utf8(bytes).context("neither WebAssembly nor text")?;
        let binary = wat::parse_str(text).map_err(|err| {
            anyhow::anyhow!("not valid WebAssembly text: {}", err.to_string().lines().next().unwrap_or_default())
        })?;
        (binary, true)
    };
    let kind = if Parser::is_component(&binary) {
        FileKind::Component
    } else if Parser::is_core_wasm(&binary) {
        FileKind::Module
    } else {
        bail!("unsupported WebAssembly binary version");
    };
    let (imports, exports) = imports_and_exports(&binary, kind)?;
    Ok(WasmInfo { kind, text, imports, exports })
}

/// The top-level imports and exports: `module::name` for modules, WIT names for components.
fn imports_and_exports(binary: &[u8], kind: FileKind) -> Result<(Vec<String>, Vec<String>)> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(binary) {
        match payload.context("parsing the WebAssembly binary")? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(section) if depth == 0 && kind == FileKind::Module => {
                for import in section.into_imports() {
                    let import = import?;
                    imports.push(format!("{}::{}", import.module, import.name));
                }
            }
            Payload::ExportSection(section) if depth == 0 && kind == FileKind::Module => {
                for export in section {
                    exports.push(export?.name.to_owned());
                }
            }
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.push(import?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_imports_and_exports() -> Result<()> {
        let info = describe(
            br#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                        (memory (export "memory") 1) (func (export "_start")))"#,
        )?;
        assert_eq!(info.kind, FileKind::Module);
        assert!(info.text);
        assert_eq!(info.imports, ["wasi_snapshot_preview1::proc_exit"]);
        assert_eq!(info.exports, ["memory", "_start"]);
        Ok(())
    }

    #[test]
    fn components_and_linux_files() -> Result<()> {
        assert_eq!(describe(&wat::parse_str("(component)")?)?.kind, FileKind::Component);
        assert_eq!(describe(b"\x7fELF\x02")?.kind, FileKind::Linux);
        assert_eq!(describe(b"#!/bin/sh\necho")?.kind, FileKind::Linux);
        assert!(describe(b"\x00\x01\x02").is_err());
        assert!(describe(b"(module").is_err());
        Ok(())
    }
}
