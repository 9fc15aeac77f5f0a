;; Prints the name of every preopened directory, fd 3 up, one per line
;; (nothing when there is none): what an app sees of the filesystem.
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $fd i32) (local $len i32)
    (local.set $fd (i32.const 3))
    (block $done
      (loop $next
        ;; A prestat is a tag (u8) at 16 and the name's length (u32) at 20; an errno ends the list.
        (br_if $done (call $prestat (local.get $fd) (i32.const 16)))
        (local.set $len (i32.load (i32.const 20)))
        (drop (call $dir_name (local.get $fd) (i32.const 100) (local.get $len)))
        (i32.store8 (i32.add (i32.const 100) (local.get $len)) (i32.const 10))
        ;; One iovec at 0: the name and its newline.
        (i32.store (i32.const 0) (i32.const 100))
        (i32.store (i32.const 4) (i32.add (local.get $len) (i32.const 1)))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $next)))))
