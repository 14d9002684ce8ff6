//! CRI-level end-to-end tests of wasmbox; the tests are in `tests/`. This library is empty.
