/* sort: sorts N 64-bit integers drawn from a seeded generator with an
 * introspective quicksort (median of three, insertion sort below 16
 * elements, heapsort past a depth limit), written here rather than libc's
 * qsort so that both builds run the same code. Input: "N SEED". Output: a
 * checksum of the sorted array and its median, "%llu %llu". */
#include "kernel.h"

static void insertion(uint64_t *a, long n) {
    for (long i = 1; i < n; i++) {
        uint64_t x = a[i];
        long j = i;
        for (; j > 0 && a[j - 1] > x; j--) a[j] = a[j - 1];
        a[j] = x;
    }
}

static void sift(uint64_t *a, long start, long n) {
    uint64_t x = a[start];
    long i = start;
    for (long child; (child = 2 * i + 1) < n; i = child) {
        if (child + 1 < n && a[child + 1] > a[child]) child++;
        if (a[child] <= x) break;
        a[i] = a[child];
    }
    a[i] = x;
}

static void heapsort(uint64_t *a, long n) {
    for (long i = n / 2 - 1; i >= 0; i--) sift(a, i, n);
    for (long end = n - 1; end > 0; end--) {
        uint64_t t = a[0]; a[0] = a[end]; a[end] = t;
        sift(a, 0, end);
    }
}

static void introsort(uint64_t *a, long n, int depth) {
    while (n > 16) {
        if (depth-- == 0) {
            heapsort(a, n);
            return;
        }
        uint64_t x = a[0], y = a[n / 2], z = a[n - 1];
        uint64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        long i = 0, j = n - 1;
        for (;;) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            uint64_t t = a[i]; a[i] = a[j]; a[j] = t;
            i++, j--;
        }
        introsort(a, j + 1, depth);
        a += j + 1, n -= j + 1;
    }
    insertion(a, n);
}

int KERNEL_ENTRY(const char *input, char *output, size_t capacity) {
    long n;
    unsigned long long seed;
    if (sscanf(input, "%ld %llu", &n, &seed) != 2 || n < 1 || n > (1L << 26)) return -1;
    uint64_t *a = malloc((size_t)n * sizeof *a);
    if (!a) return -1;
    uint64_t state = seed;
    for (long i = 0; i < n; i++) a[i] = lcg_next(&state) >> 8;
    int depth = 0;
    for (long m = n; m > 1; m >>= 1) depth += 2;
    introsort(a, n, depth);
    uint64_t checksum = 0;
    for (long i = 0; i < n; i++) {
        if (i > 0 && a[i - 1] > a[i]) return -1;
        checksum = checksum * 31 + a[i];
    }
    uint64_t median = a[n / 2];
    free(a);
    return snprintf(output, capacity, "%llu %llu\n", (unsigned long long)checksum, (unsigned long long)median);
}

#include "kernel_main.h"
