/* Replays every file of the corpus directories given on the command line through the fuzz
 * harness linked with it, one TAP line per file, so corpora run as ordinary tests. A crash or a
 * sanitizer report fails the test; the harness itself asserts nothing else. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    struct stat st;
    if (fstat(fileno(f), &st) < 0) {
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf || fread(buf, 1, size, f) != size) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, size);
    free(buf);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int n = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            printf("not ok %d - cannot open corpus %s\n", ++n, argv[i]);
            failed++;
            continue;
        }
        char **names = NULL;
        size_t count = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            names = realloc(names, (count + 1) * sizeof(*names));
            names[count++] = strdup(de->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof(*names), by_name);
        for (size_t j = 0; j < count; j++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], names[j]);
            if (replay_file(path) < 0) {
                printf("not ok %d - %s unreadable\n", ++n, path);
                failed++;
            } else {
                printf("ok %d - %s\n", ++n, names[j]);
            }
            free(names[j]);
        }
        free(names);
    }
    printf("1..%d\n", n);
    return failed ? 1 : 0;
}
