/* stderr_flood: a hostile app that writes to stderr forever (stderr is
 * unbuffered: one write per line). The sandbox's stderr limit (1 MiB unless
 * the task sets another) stops it: "stderr limit exceeded"; the report keeps
 * the last 4 KiB. */
#include <stdio.h>
#include <string.h>

int main(void) {
    char line[1024];
    memset(line, 'E', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (;;) {
        fwrite(line, 1, sizeof line, stderr);
    }
}
