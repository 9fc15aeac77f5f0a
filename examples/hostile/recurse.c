/* recurse: a hostile app that recurses without bound (the depth is read from
 * stdin: a number, 4294967295 when absent). Its frames hold only scalars, so
 * they live on wasmtime's native stack, not on C's shadow stack in linear
 * memory: the run ends with the trap "call stack exhausted". */
#include <stdio.h>

/* The division after the call keeps the recursion from becoming a loop
 * (a tail call, or an accumulator the compiler could carry). */
__attribute__((noinline)) static unsigned depth(unsigned n, unsigned salt) {
    if (n == 0) {
        return salt;
    }
    unsigned below = depth(n - 1, salt * 31u + n);
    return below / 3u + n;
}

int main(void) {
    unsigned n = 4294967295u;
    if (scanf("%u", &n) != 1) {
        n = 4294967295u;
    }
    printf("%u\n", depth(n, 1));
    return 0;
}
