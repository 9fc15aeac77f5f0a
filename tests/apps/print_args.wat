;; An app that prints what it was given: its command line, one argument per
;; line, then a line "--", then its environment, one NAME=VALUE per line
;; (WASI preview 1 args_get and environ_get). Used by the sandbox's unit
;; tests and the e2e test `app_args`.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; 0: argc, 4: size of the arguments, 8: environc, 12: size of the
  ;; environment, 16: an iovec, 24: bytes written, 32: "--\n";
  ;; 1024: argument pointers, 4096: variable pointers,
  ;; 8192: the arguments' strings, 81920: the variables' strings.
  (memory (export "memory") 3)
  (data (i32.const 32) "--\n")
  ;; Writes `len` bytes at `ptr` to stdout, each NUL turned into a newline.
  (func $print (param $ptr i32) (param $len i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.eqz (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
          (then (i32.store8 (i32.add (local.get $ptr) (local.get $i)) (i32.const 10))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $args_get (i32.const 1024) (i32.const 8192)))
    (call $print (i32.const 8192) (i32.load (i32.const 4)))
    (call $print (i32.const 32) (i32.const 3))
    (drop (call $environ_sizes_get (i32.const 8) (i32.const 12)))
    (drop (call $environ_get (i32.const 4096) (i32.const 81920)))
    (call $print (i32.const 81920) (i32.load (i32.const 12)))))
