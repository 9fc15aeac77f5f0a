;; A custom validator: two outputs agree when their first lines (up to the
;; first newline) are byte-for-byte equal; whatever follows (timings, logs) is
;; ignored.
;;
;; The validator protocol: stdin holds output A and output B, each preceded by
;; its length as a little-endian u64. Exit 0 means they agree, exit 1 that they
;; do not; anything else is a validator error.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 17 pages: the iovec at 0, stdin from 1024 to the end (1,114,112).
  (memory (export "memory") 17)

  ;; The length of the first line of the `len` bytes at `start`.
  (func $line_length (param $start i32) (param $len i32) (result i32)
    (local $i i32)
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $start) (local.get $i))) (i32.const 10)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (local.get $i))

  (func (export "_start")
    (local $end i32) (local $n i32)
    (local $a i32) (local $len_a i32) (local $b i32) (local $len_b i32)
    (local $line i32) (local $i i32)
    ;; Read all of stdin.
    (local.set $end (i32.const 1024))
    (block $eof
      (loop $read
        (i32.store (i32.const 0) (local.get $end))
        (i32.store (i32.const 4) (i32.sub (i32.const 1114112) (local.get $end)))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 2))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $end (i32.add (local.get $end) (local.get $n)))
        (br $read)))
    ;; Too large, or not two framed outputs: a validator error.
    (if (i32.ge_u (local.get $end) (i32.const 1114112)) (then (call $proc_exit (i32.const 2))))
    (if (i32.lt_u (local.get $end) (i32.const 1040)) (then (call $proc_exit (i32.const 2))))
    (local.set $a (i32.const 1032))
    (local.set $len_a (i32.wrap_i64 (i64.load (i32.const 1024))))
    (if (i32.gt_u (local.get $len_a) (i32.sub (local.get $end) (i32.const 1040)))
      (then (call $proc_exit (i32.const 2))))
    (local.set $b (i32.add (i32.add (local.get $a) (local.get $len_a)) (i32.const 8)))
    (local.set $len_b (i32.wrap_i64 (i64.load (i32.add (local.get $a) (local.get $len_a)))))
    (if (i32.ne (i32.add (local.get $b) (local.get $len_b)) (local.get $end))
      (then (call $proc_exit (i32.const 2))))
    ;; Compare the first lines.
    (local.set $line (call $line_length (local.get $a) (local.get $len_a)))
    (if (i32.ne (local.get $line) (call $line_length (local.get $b) (local.get $len_b)))
      (then (call $proc_exit (i32.const 1))))
    (block $differ
      (loop $compare
        (if (i32.ge_u (local.get $i) (local.get $line)) (then (return)))
        (br_if $differ
          (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $compare)))
    (call $proc_exit (i32.const 1)))
)
