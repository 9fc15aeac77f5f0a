;; primes.wat: counts the prime numbers in a range, as a quorum app.
;;
;; A WASI preview 1 command module, written by hand so that it needs no
;; toolchain (wasmtime runs the text directly; `quorum submit` converts it to a
;; binary module before upload).
;;
;;   stdin:  "START END" (ASCII decimal u64s separated by whitespace, a
;;           trailing newline is optional)
;;   stdout: "COUNT\n", the number of primes p with START <= p < END
;;   exit:   0 on success; 1 with a message on stderr when the input is invalid
;;
;; Try it:  echo "0 100" | wasmtime primes.wat     # prints 25
;;
;; Primality is trial division by 2 and the odd numbers up to sqrt(n). Numbers
;; are u64 held in i64 with unsigned operations throughout.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))

  ;; Memory layout (one 64 KiB page):
  ;;     0..8      iovec {ptr, len} for fd_read and fd_write
  ;;     8..12     bytes read or written by the last call
  ;;    16..48     decimal digits of the answer, written backwards
  ;;   256..512    error messages
  ;;  1024..65536  input buffer
  (memory (export "memory") 1)

  (global $INPUT i32 (i32.const 1024))
  (global $INPUT_END i32 (i32.const 65536))
  ;; Parse cursor and end of the bytes read, both absolute addresses.
  (global $pos (mut i32) (i32.const 0))
  (global $end (mut i32) (i32.const 0))

  (data (i32.const 256) "primes: expected \"START END\" on stdin: two decimal integers\n") ;; 60 bytes
  (data (i32.const 320) "primes: number too large for u64\n") ;; 33 bytes
  (data (i32.const 384) "primes: input too long\n") ;; 23 bytes
  (data (i32.const 416) "primes: cannot read stdin\n") ;; 26 bytes

  ;; Writes memory[ptr..ptr+len) to fd, retrying short writes. Returns 0 on
  ;; success, the WASI errno otherwise.
  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (local $errno i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (local.set $errno
          (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (local.get $errno) (then (return (local.get $errno))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
        (br $more)))
    (i32.const 0))

  ;; Writes an error message to stderr and exits with code 1.
  (func $fail (param $ptr i32) (param $len i32)
    (drop (call $write_all (i32.const 2) (local.get $ptr) (local.get $len)))
    (call $proc_exit (i32.const 1))
    (unreachable))

  (func $fail_format (call $fail (i32.const 256) (i32.const 60)))

  ;; Reads all of stdin into the input buffer and sets $end.
  (func $read_all
    (local $n i32)
    (global.set $end (global.get $INPUT))
    (loop $more
      (if (i32.ge_u (global.get $end) (global.get $INPUT_END))
        (then (call $fail (i32.const 384) (i32.const 23))))
      (i32.store (i32.const 0) (global.get $end))
      (i32.store (i32.const 4) (i32.sub (global.get $INPUT_END) (global.get $end)))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $fail (i32.const 416) (i32.const 26))))
      (local.set $n (i32.load (i32.const 8)))
      (global.set $end (i32.add (global.get $end) (local.get $n)))
      (br_if $more (local.get $n))))

  ;; 1 if the byte at the cursor is ASCII whitespace (not past the end).
  (func $at_space (result i32)
    (local $c i32)
    (if (i32.ge_u (global.get $pos) (global.get $end)) (then (return (i32.const 0))))
    (local.set $c (i32.load8_u (global.get $pos)))
    (i32.or
      (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
      (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13)))))

  ;; Advances the cursor past whitespace; returns how many bytes it skipped.
  (func $skip_space (result i32)
    (local $start i32)
    (local.set $start (global.get $pos))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (call $at_space)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (br $more)))
    (i32.sub (global.get $pos) (local.get $start)))

  ;; The digit at the cursor (0-9), or -1 when there is none.
  (func $digit (result i32)
    (local $d i32)
    (if (i32.ge_u (global.get $pos) (global.get $end)) (then (return (i32.const -1))))
    (local.set $d (i32.sub (i32.load8_u (global.get $pos)) (i32.const 48)))
    (if (result i32) (i32.lt_u (local.get $d) (i32.const 10))
      (then (local.get $d))
      (else (i32.const -1))))

  ;; Parses a decimal u64 at the cursor (at least one digit).
  (func $parse_u64 (result i64)
    (local $value i64)
    (local $d i32)
    (local.set $d (call $digit))
    (if (i32.lt_s (local.get $d) (i32.const 0)) (then (call $fail_format)))
    (loop $more
      ;; value * 10 + d must not exceed 18446744073709551615.
      (if (i64.gt_u (local.get $value) (i64.const 1844674407370955161))
        (then (call $fail (i32.const 320) (i32.const 33))))
      (local.set $value (i64.mul (local.get $value) (i64.const 10)))
      (local.set $value (i64.add (local.get $value) (i64.extend_i32_u (local.get $d))))
      (if (i64.lt_u (local.get $value) (i64.extend_i32_u (local.get $d)))
        (then (call $fail (i32.const 320) (i32.const 33))))
      (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
      (local.set $d (call $digit))
      (br_if $more (i32.ge_s (local.get $d) (i32.const 0))))
    (local.get $value))

  ;; 1 if n is prime, else 0.
  (func $is_prime (param $n i64) (result i32)
    (local $d i64)
    (local $q i64)
    (if (i64.lt_u (local.get $n) (i64.const 2)) (then (return (i32.const 0))))
    (if (i64.lt_u (local.get $n) (i64.const 4)) (then (return (i32.const 1))))
    (if (i64.eqz (i64.and (local.get $n) (i64.const 1))) (then (return (i32.const 0))))
    (local.set $d (i64.const 3))
    (loop $more
      ;; d > sqrt(n) exactly when n / d < d; one division gives both tests
      ;; and cannot overflow, unlike d * d.
      (local.set $q (i64.div_u (local.get $n) (local.get $d)))
      (if (i64.lt_u (local.get $q) (local.get $d)) (then (return (i32.const 1))))
      (if (i64.eq (i64.mul (local.get $q) (local.get $d)) (local.get $n))
        (then (return (i32.const 0))))
      (local.set $d (i64.add (local.get $d) (i64.const 2)))
      (br $more))
    (unreachable))

  (func $main (export "_start")
    (local $start i64)
    (local $stop i64)
    (local $n i64)
    (local $count i64)
    (local $ptr i32)

    (call $read_all)
    (global.set $pos (global.get $INPUT))
    (drop (call $skip_space))
    (local.set $start (call $parse_u64))
    (if (i32.eqz (call $skip_space)) (then (call $fail_format)))
    (local.set $stop (call $parse_u64))
    (drop (call $skip_space))
    (if (i32.ne (global.get $pos) (global.get $end)) (then (call $fail_format)))

    (local.set $n (local.get $start))
    (block $done
      (loop $more
        (br_if $done (i64.ge_u (local.get $n) (local.get $stop)))
        (local.set $count
          (i64.add (local.get $count) (i64.extend_i32_u (call $is_prime (local.get $n)))))
        (local.set $n (i64.add (local.get $n) (i64.const 1)))
        (br $more)))

    ;; Format COUNT followed by a newline, backwards from address 48.
    (local.set $ptr (i32.const 47))
    (i32.store8 (local.get $ptr) (i32.const 10))
    (loop $digits
      (local.set $ptr (i32.sub (local.get $ptr) (i32.const 1)))
      (i32.store8 (local.get $ptr)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $count) (i64.const 10)))))
      (local.set $count (i64.div_u (local.get $count) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $count) (i64.const 0))))
    (if (call $write_all (i32.const 1) (local.get $ptr) (i32.sub (i32.const 48) (local.get $ptr)))
      (then (call $proc_exit (i32.const 1))))))
