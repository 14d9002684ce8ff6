;; hello.wat: a WASI preview 1 module written in the text format; prints one line with fd_write.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; an iovec {buf=16, len=29} at offset 0, the text at 16
  (data (i32.const 0) "\10\00\00\00\1d\00\00\00")
  (data (i32.const 16) "Hello from WebAssembly text!\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
