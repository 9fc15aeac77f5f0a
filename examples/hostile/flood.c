/* flood: a hostile app that writes to stdout forever. The sandbox's output
 * limit stops it: "output limit exceeded". */
#include <stdio.h>
#include <string.h>

int main(void) {
    char line[1024];
    memset(line, 'F', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (;;) {
        fwrite(line, 1, sizeof line, stdout);
    }
}
