/* spin: a hostile app that never ends. It loops forever without a system
 * call, so only the sandbox's fuel limit (or, with unbounded fuel, its wall
 * time limit) stops it: the result is an error "fuel limit exceeded" or
 * "wall time limit exceeded". */
#include <stdint.h>

int main(void) {
    /* volatile: the loop has a side effect, so the compiler keeps it. */
    volatile uint64_t counter = 0;
    for (;;) {
        counter++;
    }
}
