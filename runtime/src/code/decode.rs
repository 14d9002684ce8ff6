//! Guest bytes as the image gives them (a `.wasm` binary or WebAssembly text) into WebAssembly
//! binary, and whether that is a core module or a component.

use std::borrow::Cow;

use anyhow::anyhow;

use crate::error::RunError;

/// Whether a binary is a core module (WASI preview 1) or a component (WASI preview 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Module,
    Component,
}

impl SourceKind {
    /// `module` or `component`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Module => "module",
            SourceKind::Component => "component",
        }
    }

    /// Classifies WebAssembly binary bytes; `None` when they are not WebAssembly at all.
    pub fn of_binary(bytes: &[u8]) -> Option<Self> {
        if wasmparser::Parser::is_component(bytes) {
            Some(SourceKind::Component)
        } else if wasmparser::Parser::is_core_wasm(bytes) {
            Some(SourceKind::Module)
        } else {
            None
        }
    }
}

/// [`decode`], then whether the binary is a module or a component.
pub fn decode_with_kind<'a>(bytes: &'a [u8], origin: &str) -> Result<(Cow<'a, [u8]>, SourceKind), RunError> {
    let wasm = decode(bytes, origin)?;
    let kind = SourceKind::of_binary(&wasm)
        .ok_or_else(|| RunError::invalid(anyhow!("{origin}: unsupported WebAssembly binary version")))?;
    Ok((wasm, kind))
}

/// Turns file contents into WebAssembly binary: binary passes through, text is assembled.
pub fn decode<'a>(bytes: &'a [u8], origin: &str) -> Result<Cow<'a, [u8]>, RunError> {
    if bytes.starts_with(b"\0asm") {
        return Ok(Cow::Borrowed(bytes));
    }
    // WebAssembly text starts with `(` or a `;;` comment once white space is skipped.
    let looks_like_text = std::str::from_utf8(bytes).is_ok_and(|text| text.trim_start().starts_with(['(', ';']));
    if !looks_like_text {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(RunError::invalid(anyhow!(
            "{origin}: not a WebAssembly file (no \\0asm magic number; starts with bytes {})",
            head.join(" ")
        )));
    }
    wat::parse_bytes(bytes).map_err(|err| {
        let first_line = err.to_string().lines().next().unwrap_or_default().to_owned();
        RunError::invalid(anyhow!("{origin}: not a WebAssembly binary, and not valid WebAssembly text: {first_line}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_binary_and_garbage() {
        assert!(matches!(decode(b"\0asm\x01\0\0\0", "x"), Ok(Cow::Borrowed(_))));
        assert!(matches!(decode(b"(module)", "x"), Ok(Cow::Owned(_))));
        let err = decode(b"\x7fELF", "x").unwrap_err().to_string();
        assert_eq!(err, "x: not a WebAssembly file (no \\0asm magic number; starts with bytes 7f 45 4c 46)");
        assert_eq!(decode_with_kind(b"(component)", "c").map(|(_, k)| k).ok(), Some(SourceKind::Component));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_with_one_line(bytes in prop_oneof![
            any::<Vec<u8>>(),
            any::<Vec<u8>>().prop_map(|b| [b"\0asm".as_slice(), &b].concat()),
            "[(); a-z0-9\"$.\n]{0,200}".prop_map(String::into_bytes),
        ]) {
            if let Err(err) = decode_with_kind(&bytes, "f.wasm") {
                prop_assert!(!err.to_string().contains('\n'));
                prop_assert_eq!(err.exit_code(), 126);
            }
        }
    }
}
