/* clockrand: prints everything an app could use to make its output differ
 * between runs: the wall clock (time, clock_gettime), the monotonic clock
 * before and after a one-second sleep, and random bytes (getentropy,
 * arc4random, rand). In quorum's sandbox the clocks are fixed and the random
 * bytes come from the result's seed: the same seed gives the same output on
 * every host, another seed other random bytes (rand() is libc's own
 * generator, seeded with 1 unless the app calls srand: it never varies). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void print_hex(const char *label, const unsigned char *bytes, size_t n) {
    printf("%s", label);
    for (size_t i = 0; i < n; i++) {
        printf("%02x", bytes[i]);
    }
    printf("\n");
}

static void print_clock(const char *label, clockid_t clock) {
    struct timespec now;
    if (clock_gettime(clock, &now) != 0) {
        printf("%s: unavailable\n", label);
        return;
    }
    printf("%s: %lld.%09ld\n", label, (long long)now.tv_sec, now.tv_nsec);
}

int main(void) {
    printf("time: %lld\n", (long long)time(NULL));
    print_clock("realtime", CLOCK_REALTIME);
    print_clock("monotonic", CLOCK_MONOTONIC);
    sleep(1);
    print_clock("monotonic after sleep(1)", CLOCK_MONOTONIC);

    unsigned char entropy[16];
    if (getentropy(entropy, sizeof entropy) == 0) {
        print_hex("getentropy: ", entropy, sizeof entropy);
    } else {
        printf("getentropy: failed\n");
    }
    /* One call per statement: the order of evaluation of arguments is unspecified. */
    uint32_t r0 = arc4random();
    uint32_t r1 = arc4random();
    printf("arc4random: %08x %08x\n", (unsigned)r0, (unsigned)r1);
    int a = rand(), b = rand(), c = rand();
    printf("rand: %d %d %d\n", a, b, c);
    return 0;
}
