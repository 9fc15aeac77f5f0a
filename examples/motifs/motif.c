/* motif: counts a DNA motif in one work unit's chunk of reads and in a
 * reference sequence shared by every work unit: an example of input and
 * output files in quorum.
 *
 *   argv[1]               the motif, e.g. "GATTACA" (from the project's args)
 *   /input/reference.txt  the reference sequence (a shared file: every work unit)
 *   /input/reads.txt      this work unit's reads, one per line (its own file)
 *   /output/hits.txt      written: for each read holding the motif, its line
 *                         number and the offsets of every occurrence
 *   stdout                "reads N hits H reference R\n": reads holding the motif,
 *                         occurrences in the reads, occurrences in the reference
 *
 * Build (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32):
 *   ./build.sh
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_all(const char *path, size_t *size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(3);
    }
    size_t capacity = 1 << 16, length = 0;
    char *data = malloc(capacity + 1);
    size_t n;
    while ((n = fread(data + length, 1, capacity - length, file)) > 0) {
        length += n;
        if (length == capacity) {
            capacity *= 2;
            data = realloc(data, capacity + 1);
        }
    }
    fclose(file);
    data[length] = '\0';
    *size = length;
    return data;
}

static unsigned long count(const char *text, size_t length, const char *motif, size_t motif_length) {
    unsigned long n = 0;
    for (size_t i = 0; i + motif_length <= length; i++) {
        if (memcmp(text + i, motif, motif_length) == 0) {
            n++;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '\0') {
        fprintf(stderr, "usage: %s MOTIF (give the motif in the project's args)\n", argc > 0 ? argv[0] : "motif");
        return 2;
    }
    const char *motif = argv[1];
    size_t motif_length = strlen(motif);
    size_t reference_length, reads_length;
    char *reference = read_all("/input/reference.txt", &reference_length);
    char *reads = read_all("/input/reads.txt", &reads_length);
    FILE *hits = fopen("/output/hits.txt", "w");
    if (!hits) {
        fprintf(stderr, "cannot create /output/hits.txt (does the project allow output files?)\n");
        return 4;
    }
    unsigned long matching_reads = 0, occurrences = 0, line = 0;
    char *read = reads;
    while (*read != '\0') {
        char *end = strchr(read, '\n');
        size_t length = end ? (size_t)(end - read) : strlen(read);
        line++;
        int first = 1;
        for (size_t i = 0; i + motif_length <= length; i++) {
            if (memcmp(read + i, motif, motif_length) == 0) {
                fprintf(hits, first ? "%lu: %zu" : " %zu", line, i);
                if (first) {
                    first = 0;
                    matching_reads++;
                }
                occurrences++;
            }
        }
        if (!first) {
            fputc('\n', hits);
        }
        read = end ? end + 1 : read + length;
    }
    fclose(hits);
    printf("reads %lu hits %lu reference %lu\n", matching_reads, occurrences,
           count(reference, reference_length, motif, motif_length));
    return 0;
}
