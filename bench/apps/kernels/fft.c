/* fft: an iterative radix-2 complex FFT (bit reversal, then butterflies) of
 * 2^LOG2N points drawn from a seeded generator, forward then inverse, REPS
 * times. The twiddle factors come from the half-angle formulas (sqrt only),
 * not from libm, so both builds compute the same bits.
 * Input: "LOG2N REPS SEED". Output: the largest round-trip error and a
 * checksum of the spectrum, "%.17g %.17g". */
#include "kernel.h"

/* cos and sin of -2*pi/2^k for k = 0..62, by halving the angle from -2*pi. */
static void roots(double *cosines, double *sines, int levels) {
    cosines[0] = 1, sines[0] = 0;   /* -2*pi */
    if (levels > 1) cosines[1] = -1, sines[1] = 0;  /* -pi */
    if (levels > 2) cosines[2] = 0, sines[2] = -1;  /* -pi/2 */
    for (int k = 3; k < levels; k++) {
        double c = sqrt_exact((1 + cosines[k - 1]) / 2);
        cosines[k] = c;
        sines[k] = sines[k - 1] / (2 * c);
    }
}

static void transform(double *re, double *im, long n, int log2n, const double *cosines, const double *sines, int inverse) {
    for (long i = 1, j = 0; i < n; i++) {
        long bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (int level = 1; level <= log2n; level++) {
        long half = 1L << (level - 1), span = 1L << level;
        double wr = cosines[level], wi = inverse ? -sines[level] : sines[level];
        for (long start = 0; start < n; start += span) {
            double ur = 1, ui = 0;
            for (long k = 0; k < half; k++) {
                long p = start + k, q = p + half;
                double tr = ur * re[q] - ui * im[q], ti = ur * im[q] + ui * re[q];
                re[q] = re[p] - tr, im[q] = im[p] - ti;
                re[p] += tr, im[p] += ti;
                double nr = ur * wr - ui * wi;
                ui = ur * wi + ui * wr, ur = nr;
            }
        }
    }
    if (inverse) {
        double scale = 1.0 / (double)n;
        for (long i = 0; i < n; i++) re[i] *= scale, im[i] *= scale;
    }
}

int KERNEL_ENTRY(const char *input, char *output, size_t capacity) {
    int log2n;
    long reps;
    unsigned long long seed;
    if (sscanf(input, "%d %ld %llu", &log2n, &reps, &seed) != 3 || log2n < 1 || log2n > 24 || reps < 1) return -1;
    long n = 1L << log2n;
    double cosines[64], sines[64];
    roots(cosines, sines, log2n + 1);
    double *re = malloc(n * sizeof *re), *im = malloc(n * sizeof *im);
    double *re0 = malloc(n * sizeof *re0), *im0 = malloc(n * sizeof *im0);
    if (!re || !im || !re0 || !im0) return -1;
    uint64_t state = seed;
    for (long i = 0; i < n; i++) re0[i] = re[i] = lcg_unit(&state) - 0.5, im0[i] = im[i] = lcg_unit(&state) - 0.5;
    double error = 0, checksum = 0;
    for (long r = 0; r < reps; r++) {
        transform(re, im, n, log2n, cosines, sines, 0);
        for (long i = 0; i < n; i += 97) checksum += re[i] - im[i];
        transform(re, im, n, log2n, cosines, sines, 1);
    }
    for (long i = 0; i < n; i++) {
        double dr = re[i] - re0[i], di = im[i] - im0[i];
        double e = dr * dr + di * di;
        if (e > error) error = e;
    }
    free(re), free(im), free(re0), free(im0);
    return snprintf(output, capacity, "%.17g %.17g\n", sqrt_exact(error), checksum);
}

#include "kernel_main.h"
