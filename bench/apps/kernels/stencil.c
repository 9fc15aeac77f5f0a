/* stencil: Jacobi iterations of the 5-point Laplacian on an N x N grid of
 * doubles (fixed boundary: 1 on the top edge, 0 elsewhere), STEPS sweeps
 * between two buffers. Input: "N STEPS". Output: the sum of the grid and the
 * value at its centre, "%.17g %.17g". */
#include "kernel.h"

int KERNEL_ENTRY(const char *input, char *output, size_t capacity) {
    long n, steps;
    if (sscanf(input, "%ld %ld", &n, &steps) != 2 || n < 3 || n > 8192 || steps < 0) return -1;
    size_t size = (size_t)n * (size_t)n;
    double *u = calloc(size, sizeof *u), *v = calloc(size, sizeof *v);
    if (!u || !v) return -1;
    for (long j = 0; j < n; j++) u[j] = v[j] = 1;
    for (long s = 0; s < steps; s++) {
        for (long i = 1; i < n - 1; i++) {
            const double *up = u + (i - 1) * n, *row = u + i * n, *down = u + (i + 1) * n;
            double *out = v + i * n;
            for (long j = 1; j < n - 1; j++) out[j] = 0.25 * (up[j] + down[j] + row[j - 1] + row[j + 1]);
        }
        double *t = u; u = v; v = t;
    }
    double sum = 0;
    for (size_t i = 0; i < size; i++) sum += u[i];
    double centre = u[(n / 2) * n + n / 2];
    free(u), free(v);
    return snprintf(output, capacity, "%.17g %.17g\n", sum, centre);
}

#include "kernel_main.h"
