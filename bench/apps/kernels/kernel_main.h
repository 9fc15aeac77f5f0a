/* The WASI command around a kernel: stdin to kernel, kernel to stdout. */
#ifndef QUORUM_NATIVE
int main(void) {
    static char input[4096];
    static char output[4096];
    size_t n = fread(input, 1, sizeof input - 1, stdin);
    input[n] = 0;
    int len = KERNEL_ENTRY(input, output, sizeof output);
    if (len < 0) {
        fprintf(stderr, "bad input: %s\n", input);
        return 2;
    }
    fwrite(output, 1, (size_t)len, stdout);
    return 0;
}
#endif
