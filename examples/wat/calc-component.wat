;; calc-component.wat: a component (in text) with typed exports, for `#name` calls with WAVE values.
;;   #add 6 27          -> 33
;;   #echo '"Alice"'    -> "Alice"
(component
  (core module $m
    (memory (export "mem") 1)
    (global $next (mut i32) (i32.const 2048))
    ;; cabi_realloc: a bump allocator, enough for one call's arguments
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $next))
      (global.set $next (i32.add (global.get $next) (local.get 3)))
      (local.get $p))
    (func (export "add") (param i32 i32) (result i32)
      (i32.add (local.get 0) (local.get 1)))
    ;; returns its string argument: (ptr, len) stored at 1024
    (func (export "echo") (param i32 i32) (result i32)
      (i32.store (i32.const 1024) (local.get 0))
      (i32.store (i32.const 1028) (local.get 1))
      (i32.const 1024)))
  (core instance $i (instantiate $m))
  (func $add (param "a" u32) (param "b" u32) (result u32)
    (canon lift (core func $i "add")))
  (func $echo (param "s" string) (result string)
    (canon lift (core func $i "echo") (memory (core memory $i "mem")) (realloc (core func $i "realloc"))))
  (export "add" (func $add))
  (export "echo" (func $echo)))
