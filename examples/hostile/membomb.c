/* membomb: a hostile app that allocates memory and touches every byte,
 * forever. The sandbox's memory limit refuses to grow the linear memory, so
 * malloc returns NULL; the app then exits with 1, and the sandbox reports
 * "memory limit exceeded" (it remembers the refused growth). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK (1u << 20)

/* Every block is chained to the previous one through this global, so no
 * allocation can be optimised away. */
static void *volatile head;

int main(void) {
    size_t total = 0;
    for (;;) {
        void **block = malloc(BLOCK);
        if (block == NULL) {
            fprintf(stderr, "membomb: malloc failed after %zu MiB\n", total / BLOCK);
            return 1;
        }
        memset(block, 0xA5, BLOCK);
        block[0] = head;
        head = block;
        total += BLOCK;
    }
}
