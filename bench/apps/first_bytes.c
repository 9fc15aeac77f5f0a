/* first_bytes: for each name in argv[1..], opens /input/NAME and prints its
 * size and its first 8 bytes in hex. The app of `quorum-bench files`: it
 * costs almost nothing to run, so the benchmark measures files, not compute,
 * and it never reads a file whole.
 *
 * Build: clang --target=wasm32-wasi --sysroot=/usr -O2 -Wl,--strip-all -o first_bytes.wasm first_bytes.c
 * (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32)
 */
#include <stdio.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char path[512];
        snprintf(path, sizeof path, "/input/%s", argv[i]);
        FILE *file = fopen(path, "rb");
        if (!file) {
            fprintf(stderr, "cannot open %s\n", path);
            return 3;
        }
        unsigned char head[8] = {0};
        size_t n = fread(head, 1, sizeof head, file);
        fseek(file, 0, SEEK_END);
        long size = ftell(file);
        fclose(file);
        printf("%s %ld ", argv[i], size);
        for (size_t j = 0; j < n; j++) {
            printf("%02x", head[j]);
        }
        printf("\n");
    }
    return 0;
}
