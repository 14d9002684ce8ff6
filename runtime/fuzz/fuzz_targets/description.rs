//! The description of precompiled code an image ships (JSON), and the digests it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmbox_runtime::code::decode::SourceKind;
use wasmbox_runtime::code::image::{PrecompiledInfo, digest_hex};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(info) = PrecompiledInfo::parse(bytes) {
        let _ = info.check_fits("0000000000000000", &info.source, SourceKind::Module);
        if let Ok(hex) = digest_hex(&info.code) {
            assert!(hex.len() == 64 && !hex.contains('/'));
        }
    }
});
