;; Seed example 3: import a function. wasmbox provides console.log: `#logIt` prints 13.
(module
  (import "console" "log" (func $log (param i32)))
  (func (export "logIt")
    i32.const 13
    call $log))
