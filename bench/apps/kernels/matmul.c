/* matmul: C = A * B for dense N x N matrices of doubles drawn from a seeded
 * generator, in the i-k-j loop order (row-major, the inner loop streams a
 * row of B and of C), REPS times with A replaced by C scaled down.
 * Input: "N REPS SEED". Output: the sum and the trace of the last C, "%.17g %.17g". */
#include "kernel.h"

int KERNEL_ENTRY(const char *input, char *output, size_t capacity) {
    long n, reps;
    unsigned long long seed;
    if (sscanf(input, "%ld %ld %llu", &n, &reps, &seed) != 3 || n < 1 || n > 2048 || reps < 1) return -1;
    size_t size = (size_t)n * (size_t)n;
    double *a = malloc(size * sizeof *a), *b = malloc(size * sizeof *b), *c = malloc(size * sizeof *c);
    if (!a || !b || !c) return -1;
    uint64_t state = seed;
    for (size_t i = 0; i < size; i++) a[i] = lcg_unit(&state) - 0.5;
    for (size_t i = 0; i < size; i++) b[i] = lcg_unit(&state) - 0.5;
    for (long r = 0; r < reps; r++) {
        memset(c, 0, size * sizeof *c);
        for (long i = 0; i < n; i++) {
            double *ci = c + i * n;
            for (long k = 0; k < n; k++) {
                double aik = a[i * n + k];
                const double *bk = b + k * n;
                for (long j = 0; j < n; j++) ci[j] += aik * bk[j];
            }
        }
        double scale = 1.0 / (double)n;
        for (size_t i = 0; i < size; i++) a[i] = c[i] * scale;
    }
    double sum = 0, trace = 0;
    for (size_t i = 0; i < size; i++) sum += c[i];
    for (long i = 0; i < n; i++) trace += c[i * n + i];
    free(a);
    free(b);
    free(c);
    return snprintf(output, capacity, "%.17g %.17g\n", sum, trace);
}

#include "kernel_main.h"
