;; integral.wat: one slice of a numerical integral, as a quorum app that uses
;; floating point.
;;
;; A WASI preview 1 command module, written by hand so that it needs no
;; toolchain (wasmtime runs the text directly; `quorum submit` converts it to a
;; binary module before upload).
;;
;;   stdin:  "START END" (ASCII decimal integers, in millionths of x, separated
;;           by whitespace, a trailing newline is optional; a leading '-' is
;;           allowed; |START|, |END| <= 10^15; START <= END)
;;   stdout: the integral of f(x) = 4 / (1 + x*x) over [START/10^6, END/10^6],
;;           as a decimal with 15 digits after the point, then "\n"
;;           (e.g. "0.039998666746661\n" for "0 10000")
;;   exit:   0 on success; 1 with a message on stderr when the input is invalid
;;
;; Try it:  echo "0 1000000" | wasmtime integral.wat    # prints pi
;;
;; The integral is the midpoint rule with 100 steps per millionth (step
;; h = 1e-8), summed with Kahan's compensated summation in f64. Since the
;; integral of f over [0, 1] is pi, the outputs of any split of 0..1000000 into
;; slices add up to pi (to about 1e-13). WebAssembly floating point is
;; IEEE 754 and deterministic except for NaN bit patterns, which the project
;; canonicalizes anyway as an example of the option (see project.toml).
;;
;; The value is formatted with integer arithmetic on round(value * 10^15): the
;; integral of f over any interval is below pi, so that fits an i64.
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
  ;;    16..64     the answer's text, written backwards
  ;;   256..512    error messages
  ;;  1024..65536  input buffer
  (memory (export "memory") 1)

  (global $INPUT i32 (i32.const 1024))
  (global $INPUT_END i32 (i32.const 65536))
  ;; Parse cursor and end of the bytes read, both absolute addresses.
  (global $pos (mut i32) (i32.const 0))
  (global $end (mut i32) (i32.const 0))

  (data (i32.const 256) "integral: expected \"START END\" on stdin: two decimal integers\n") ;; 62 bytes
  (data (i32.const 320) "integral: numbers must be within +-1e15\n") ;; 40 bytes
  (data (i32.const 384) "integral: START must not exceed END\n") ;; 36 bytes
  (data (i32.const 448) "integral: input too long\n") ;; 25 bytes
  (data (i32.const 480) "integral: cannot read stdin\n") ;; 28 bytes

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

  (func $fail_format (call $fail (i32.const 256) (i32.const 62)))

  ;; Reads all of stdin into the input buffer and sets $end.
  (func $read_all
    (local $n i32)
    (global.set $end (global.get $INPUT))
    (loop $more
      (if (i32.ge_u (global.get $end) (global.get $INPUT_END))
        (then (call $fail (i32.const 448) (i32.const 25))))
      (i32.store (i32.const 0) (global.get $end))
      (i32.store (i32.const 4) (i32.sub (global.get $INPUT_END) (global.get $end)))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $fail (i32.const 480) (i32.const 28))))
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

  ;; Parses an optionally negative decimal integer at the cursor, at most
  ;; 10^15 in magnitude.
  (func $parse_i64 (result i64)
    (local $negative i32)
    (local $value i64)
    (local $d i32)
    (if (i32.lt_u (global.get $pos) (global.get $end))
      (then
        (if (i32.eq (i32.load8_u (global.get $pos)) (i32.const 45)) ;; '-'
          (then
            (local.set $negative (i32.const 1))
            (global.set $pos (i32.add (global.get $pos) (i32.const 1)))))))
    (local.set $d (call $digit))
    (if (i32.lt_s (local.get $d) (i32.const 0)) (then (call $fail_format)))
    (loop $more
      (local.set $value
        (i64.add (i64.mul (local.get $value) (i64.const 10)) (i64.extend_i32_u (local.get $d))))
      (if (i64.gt_u (local.get $value) (i64.const 1000000000000000))
        (then (call $fail (i32.const 320) (i32.const 40))))
      (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
      (local.set $d (call $digit))
      (br_if $more (i32.ge_s (local.get $d) (i32.const 0))))
    (if (result i64) (local.get $negative)
      (then (i64.sub (i64.const 0) (local.get $value)))
      (else (local.get $value))))

  ;; Midpoint-rule integral of 4 / (1 + x*x) over [start, stop] millionths.
  (func $integral (param $start i64) (param $stop i64) (result f64)
    (local $i i64)
    (local $last i64)
    (local $x f64)
    (local $y f64)
    (local $t f64)
    (local $sum f64)
    (local $compensation f64)
    (local $next f64)
    ;; Step indices: step i covers [i, i+1] * 1e-8, its midpoint is (i + 0.5) * 1e-8.
    (local.set $i (i64.mul (local.get $start) (i64.const 100)))
    (local.set $last (i64.mul (local.get $stop) (i64.const 100)))
    (block $done
      (loop $more
        (br_if $done (i64.ge_s (local.get $i) (local.get $last)))
        (local.set $x
          (f64.div
            (f64.add (f64.convert_i64_s (local.get $i)) (f64.const 0.5))
            (f64.const 1e8)))
        (local.set $y
          (f64.div
            (f64.const 4)
            (f64.add (f64.const 1) (f64.mul (local.get $x) (local.get $x)))))
        ;; Kahan summation: $compensation carries the low bits lost so far.
        (local.set $t (f64.sub (local.get $y) (local.get $compensation)))
        (local.set $next (f64.add (local.get $sum) (local.get $t)))
        (local.set $compensation
          (f64.sub (f64.sub (local.get $next) (local.get $sum)) (local.get $t)))
        (local.set $sum (local.get $next))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $more)))
    ;; Multiply by the step h = 1e-8 (a division by 1e8 is correctly rounded).
    (f64.div (local.get $sum) (f64.const 1e8)))

  (func $main (export "_start")
    (local $start i64)
    (local $stop i64)
    (local $scaled i64)
    (local $integer i64)
    (local $fraction i64)
    (local $ptr i32)
    (local $k i32)

    (call $read_all)
    (global.set $pos (global.get $INPUT))
    (drop (call $skip_space))
    (local.set $start (call $parse_i64))
    (if (i32.eqz (call $skip_space)) (then (call $fail_format)))
    (local.set $stop (call $parse_i64))
    (drop (call $skip_space))
    (if (i32.ne (global.get $pos) (global.get $end)) (then (call $fail_format)))
    (if (i64.gt_s (local.get $start) (local.get $stop))
      (then (call $fail (i32.const 384) (i32.const 36))))

    ;; round(value * 10^15), ties to even; 0 <= value < pi.
    (local.set $scaled
      (i64.trunc_f64_s
        (f64.nearest
          (f64.mul
            (call $integral (local.get $start) (local.get $stop))
            (f64.const 1e15)))))
    (local.set $integer (i64.div_u (local.get $scaled) (i64.const 1000000000000000)))
    (local.set $fraction (i64.rem_u (local.get $scaled) (i64.const 1000000000000000)))

    ;; Format "INTEGER.FRACTION\n" backwards from address 64.
    (local.set $ptr (i32.const 63))
    (i32.store8 (local.get $ptr) (i32.const 10))
    (local.set $k (i32.const 15))
    (loop $fraction_digits
      (local.set $ptr (i32.sub (local.get $ptr) (i32.const 1)))
      (i32.store8 (local.get $ptr)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $fraction) (i64.const 10)))))
      (local.set $fraction (i64.div_u (local.get $fraction) (i64.const 10)))
      (local.set $k (i32.sub (local.get $k) (i32.const 1)))
      (br_if $fraction_digits (local.get $k)))
    (local.set $ptr (i32.sub (local.get $ptr) (i32.const 1)))
    (i32.store8 (local.get $ptr) (i32.const 46)) ;; '.'
    (loop $integer_digits
      (local.set $ptr (i32.sub (local.get $ptr) (i32.const 1)))
      (i32.store8 (local.get $ptr)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $integer) (i64.const 10)))))
      (local.set $integer (i64.div_u (local.get $integer) (i64.const 10)))
      (br_if $integer_digits (i64.ne (local.get $integer) (i64.const 0))))
    (if (call $write_all (i32.const 1) (local.get $ptr) (i32.sub (i32.const 64) (local.get $ptr)))
      (then (call $proc_exit (i32.const 1))))))
