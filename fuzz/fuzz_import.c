/* Fuzzes pbxguard import's reader (cli/import_parse.h) in every format: whatever the file holds,
 * each entry it yields is a canonical prefix that parses back to itself, with a note of at most
 * CTL_NOTE_MAX bytes of valid UTF-8 and no control byte, and positions within the input; the
 * reader never reports more entries plus errors than the cap allows. Aborts on a violation.
 * Input: the file's bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "import_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    unsigned long entries, errors, lines;
};

static void check_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7f)))
            abort();
        for (unsigned i = 1; i < n; i++)
            if ((s[i] & 0xc0) != 0x80)
                abort();
        s += n;
    }
}

static int on_entry(void *data, const struct import_pos *pos, const struct import_entry *e)
{
    struct seen *s = data;
    s->entries++;
    if (pos->index < 0 && pos->line > s->lines)
        abort();
    struct addr_prefix p;
    char back[ADDR_STRLEN];
    if (addr_prefix_parse(e->prefix, false, &p) < 0 ||
        strcmp(addr_prefix_format(&p, back, sizeof(back)), e->prefix) != 0)
        abort();
    if (strlen(e->note) > CTL_NOTE_MAX)
        abort();
    check_utf8((const unsigned char *)e->note);
    if (e->permanent && !e->timed)
        abort();
    return 0;
}

static void on_error(void *data, const struct import_pos *pos, const char *what)
{
    struct seen *s = data;
    s->errors++;
    (void)pos;
    for (const unsigned char *p = (const unsigned char *)what; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum import_format formats[] = {IMPORT_AUTO, IMPORT_LIST, IMPORT_CSV, IMPORT_JSON};
    unsigned long lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        /* A copy of exactly size bytes, so ASan sees any read past the end. */
        char *buf = malloc(size ? size : 1);
        if (!buf)
            return 0;
        memcpy(buf, data, size);
        FILE *in = fmemopen(buf, size ? size : 1, "r");
        if (!in) {
            free(buf);
            return 0;
        }
        if (!size)
            fgetc(in); /* fmemopen cannot open zero bytes: read the one past */
        struct seen s = {.lines = lines};
        struct import_fns fns = {.entry = on_entry, .error = on_error};
        import_read(in, formats[f], &fns, &s, NULL);
        fclose(in);
        free(buf);
        if (s.entries + s.errors > IMPORT_ENTRIES_MAX + 2)
            abort();
    }
    return 0;
}
