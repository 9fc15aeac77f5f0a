/* snoop: a hostile app that looks around the host and reports what it got on
 * stdout, one line per probe: files (/etc/passwd, a path escaping the
 * checkpoint directory, a file it tries to create), directory listings (/,
 * .), environment variables and arguments. In quorum's sandbox every probe
 * is denied or empty, so every copy prints the same text. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static void probe_read(const char *path) {
    errno = 0;
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        printf("read %s: denied\n", path);
        return;
    }
    char buffer[256];
    size_t n = fread(buffer, 1, sizeof buffer, file);
    fclose(file);
    printf("read %s: OPENED, %zu bytes: %.*s\n", path, n, (int)n, buffer);
}

static void probe_write(const char *path) {
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        printf("write %s: denied\n", path);
        return;
    }
    fputs("snooped\n", file);
    fclose(file);
    printf("write %s: CREATED\n", path);
}

static void probe_list(const char *path) {
    DIR *dir = opendir(path);
    if (dir == NULL) {
        printf("list %s: denied\n", path);
        return;
    }
    printf("list %s: OPENED:", path);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        printf(" %s", entry->d_name);
    }
    printf("\n");
    closedir(dir);
}

static void probe_env(const char *name) {
    const char *value = getenv(name);
    if (value == NULL) {
        printf("env %s: unset\n", name);
    } else {
        printf("env %s: SET to %s\n", name, value);
    }
}

int main(int argc, char **argv) {
    probe_read("/etc/passwd");
    probe_read("../../../../etc/passwd");
    probe_read("/checkpoint/../../../../etc/passwd");
    probe_read("/proc/self/environ");
    probe_write("/tmp/snoop");
    probe_write("/checkpoint/../snoop");
    probe_list("/");
    probe_list(".");
    probe_list("/checkpoint/..");
    probe_env("HOME");
    probe_env("PATH");
    probe_env("USER");
    size_t count = 0;
    for (char **variable = environ; variable != NULL && *variable != NULL; variable++) {
        count++;
    }
    printf("environment variables: %zu\n", count);
    printf("arguments: %d, argv[0] = %s\n", argc, argc > 0 ? argv[0] : "(none)");
    return 0;
}
