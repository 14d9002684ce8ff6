;; Seed example 4: an imported mutable global (wasmbox starts it at 0).
;; `#getGlobal,incGlobal,incGlobal,getGlobal` prints 0 then 2: the calls share one instance.
(module
  (global $g (import "js" "global") (mut i32))
  (func (export "getGlobal") (result i32)
    (global.get $g))
  (func (export "incGlobal")
    (global.set $g
      (i32.add (global.get $g) (i32.const 1))))
)
