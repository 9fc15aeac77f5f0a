/* The compute kernels of `quorum-bench worker --app`: each file is one
 * kernel, compiled twice from the same source:
 *
 * - to WebAssembly (WASI preview 1) with clang, as a quorum app: `main`
 *   (kernel_main.h) reads the work unit's input on stdin, calls the kernel
 *   and writes its output on stdout (build.sh; the .wasm files are committed);
 * - natively with the C compiler of the bench crate's build script (gcc -O2,
 *   -DQUORUM_NATIVE, KERNEL_ENTRY renamed per kernel), as the reference the
 *   benchmark compares the sandbox with, called in-process through FFI.
 *
 * A kernel reads its parameters from `input` (a NUL-terminated line of
 * numbers), writes one line of output into `output` (at most `capacity`
 * bytes) and returns its length, or -1 on bad input. Only IEEE-exact
 * operations (+ - * / sqrt) and no libm, so that both builds print the same
 * bytes. */
#ifndef QUORUM_KERNEL_H
#define QUORUM_KERNEL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KERNEL_ENTRY
#define KERNEL_ENTRY kernel
#endif

int KERNEL_ENTRY(const char *input, char *output, size_t capacity);

/* The square root, IEEE-exact on both targets (sqrtsd, f64.sqrt; built
 * with -fno-math-errno so that no libm call remains). */
static inline double sqrt_exact(double x) { return __builtin_sqrt(x); }

/* A 64-bit linear congruential generator (Knuth's MMIX constants). */
static inline uint64_t lcg_next(uint64_t *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return *state;
}

/* A double in [0, 1) from the generator's top 53 bits. */
static inline double lcg_unit(uint64_t *state) {
    return (double)(lcg_next(state) >> 11) * (1.0 / 9007199254740992.0);
}
#endif
