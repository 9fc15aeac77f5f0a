/* sumprimes: counts and sums the primes of a range, checkpointing as it goes
 * (quorum's checkpoint contract: see the crate docs of quorum-sandbox).
 *
 * Input: "START END", two decimal integers (u64, START <= END), END
 * exclusive. Output: "COUNT SUM\n", the number of primes p with
 * START <= p < END and their sum modulo 2^64. Invalid input: a message on
 * stderr and exit code 1.
 *
 * The range is walked in chunks of CHUNK numbers. After each chunk the app
 * saves its position and partial results in /checkpoint/state, atomically:
 * it writes /checkpoint/state.tmp, then renames it over /checkpoint/state, so
 * an interruption at any point leaves the old state or the new one, never a
 * torn file. On start it resumes from /checkpoint/state when that file is for
 * the same range; the output is then byte-identical to an uninterrupted
 * run's. Without a /checkpoint directory it runs without checkpoints. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Numbers per chunk, i.e. between two checkpoints. */
#define CHUNK 10000u
#define STATE "/checkpoint/state"
#define STATE_TMP "/checkpoint/state.tmp"
/* The first word of the state file; change it when the format changes. */
#define STATE_MAGIC "sumprimes-1"

struct progress {
    uint64_t start, end; /* the range, from the input */
    uint64_t next;       /* the first number not yet examined */
    uint64_t count;      /* primes in [start, next) */
    uint64_t sum;        /* their sum, modulo 2^64 */
};

static int is_prime(uint64_t n) {
    if (n < 4) {
        return n >= 2;
    }
    if (n % 2 == 0 || n % 3 == 0) {
        return 0;
    }
    for (uint64_t d = 5; d <= n / d; d += 6) {
        if (n % d == 0 || n % (d + 2) == 0) {
            return 0;
        }
    }
    return 1;
}

/* Loads the state of the same range, if any: 1 if `p` was resumed. */
static int load(struct progress *p) {
    FILE *file = fopen(STATE, "r");
    if (file == NULL) {
        return 0;
    }
    struct progress saved;
    int fields = fscanf(file, STATE_MAGIC " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &saved.start,
                        &saved.end, &saved.next, &saved.count, &saved.sum);
    fclose(file);
    if (fields != 5 || saved.start != p->start || saved.end != p->end || saved.next < saved.start ||
        saved.next > saved.end) {
        fprintf(stderr, "sumprimes: ignoring a checkpoint of another range or format\n");
        return 0;
    }
    *p = saved;
    return 1;
}

/* Saves `p` atomically: 0 if the checkpoint directory is unusable. */
static int save(const struct progress *p) {
    FILE *file = fopen(STATE_TMP, "w");
    if (file == NULL) {
        return 0;
    }
    int ok = fprintf(file, STATE_MAGIC " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", p->start,
                     p->end, p->next, p->count, p->sum) > 0;
    ok &= fclose(file) == 0;
    return ok && rename(STATE_TMP, STATE) == 0;
}

int main(void) {
    struct progress p = {0};
    char extra;
    if (scanf("%" SCNu64 " %" SCNu64, &p.start, &p.end) != 2 || scanf(" %c", &extra) == 1 || p.start > p.end) {
        fprintf(stderr, "sumprimes: expected \"START END\" with START <= END\n");
        return 1;
    }
    p.next = p.start;
    if (load(&p)) {
        fprintf(stderr, "sumprimes: resuming at %" PRIu64 "\n", p.next);
    }
    int checkpointing = 1;
    while (p.next < p.end) {
        uint64_t stop = p.end - p.next > CHUNK ? p.next + CHUNK : p.end;
        for (uint64_t n = p.next; n < stop; n++) {
            if (is_prime(n)) {
                p.count++;
                p.sum += n;
            }
        }
        p.next = stop;
        if (checkpointing && p.next < p.end && !save(&p)) {
            fprintf(stderr, "sumprimes: no usable /checkpoint directory: running without checkpoints\n");
            checkpointing = 0;
        }
    }
    printf("%" PRIu64 " %" PRIu64 "\n", p.count, p.sum);
    return 0;
}
