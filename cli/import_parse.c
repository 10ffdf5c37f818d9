#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "import_parse.h"

/* Fields of one CSV line; our export has 8. */
#define CSV_FIELDS_MAX 64

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* s (len bytes) for a message: printable ASCII as it is, the rest \xNN, at most 40 bytes. */
static const char *quote(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t at = 0;
    for (size_t i = 0; i < len && i < 40 && at + 5 < buflen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            buf[at++] = (char)c;
        else
            at += (size_t)snprintf(buf + at, buflen - at, "\\x%02x", c);
    }
    if (len > 40 && at + 4 < buflen) {
        memcpy(buf + at, "...", 3);
        at += 3;
    }
    buf[at] = '\0';
    return buf;
}

/* The length of the UTF-8 sequence at s (at most n bytes), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t want;
    unsigned min;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        want = 2;
        min = 0x80;
        c &= 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        want = 3;
        min = 0x800;
        c &= 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        want = 4;
        min = 0x10000;
        c &= 0x07;
    } else {
        return 0;
    }
    if (n < want)
        return 0;
    for (size_t i = 1; i < want; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return want;
}

/* A note as the daemon takes it: one line of UTF-8, at most CTL_NOTE_MAX bytes. Control bytes
 * and invalid UTF-8 become '?', and a longer note is cut at a character boundary: a note is
 * worth less than the ban it comes with. A spreadsheet guard (a leading ' before = + - @, as
 * our CSV writes it) is dropped. */
static void set_note(struct import_entry *e, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len >= 2 && p[0] == '\'' && strchr("=+-@", p[1]) && p[1]) {
        p++;
        len--;
    }
    size_t at = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(p + i, len - i);
        if (n == 0 || (n == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
            if (at + 1 > CTL_NOTE_MAX)
                break;
            e->note[at++] = '?';
            i += n ? n : 1;
            continue;
        }
        if (at + n > CTL_NOTE_MAX)
            break;
        memcpy(e->note + at, p + i, n);
        at += n;
        i += n;
    }
    e->note[at] = '\0';
}

/* s (len bytes) as a prefix into e->prefix. */
static int set_prefix(struct import_entry *e, const char *s, size_t len, char *err, size_t errlen)
{
    char q[200];
    if (len == 0)
        return fail(err, errlen, "no address");
    if (memchr(s, '\0', len))
        return fail(err, errlen, "\"%s\" holds a NUL byte", quote(s, len, q, sizeof(q)));
    if (len >= ADDR_STRLEN)
        return fail(err, errlen, "\"%s\" is too long to be an address or prefix",
                    quote(s, len, q, sizeof(q)));
    char buf[ADDR_STRLEN];
    memcpy(buf, s, len);
    buf[len] = '\0';
    char why[256];
    if (cli_parse_prefix(buf, e->prefix, sizeof(e->prefix), why, sizeof(why)) < 0) {
        /* why quotes buf, which may hold any byte: say it again, escaped. */
        if (strspn(buf, "0123456789abcdefABCDEF.:/") != len)
            return fail(err, errlen, "\"%s\" is not an IP address or prefix",
                        quote(s, len, q, sizeof(q)));
        return fail(err, errlen, "%s", why);
    }
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int import_parse_line(const char *line, size_t len, struct import_entry *ret_entry, char *err,
                      size_t errlen)
{
    const char *hash = memchr(line, '#', len);
    if (hash)
        len = (size_t)(hash - line);
    while (len && is_space(line[0])) {
        line++;
        len--;
    }
    while (len && is_space(line[len - 1]))
        len--;
    if (len == 0)
        return 0;
    struct import_entry e = {0};
    int r = set_prefix(&e, line, len, err, errlen);
    if (r < 0)
        return r;
    *ret_entry = e;
    return 1;
}

/* Splits a CSV line (RFC 4180 within one line) into fields, NUL-terminated in scratch (at
 * least len + 1 bytes + one per field). Returns the number of fields or -EINVAL. */
static int csv_split(const char *line, size_t len, char *scratch, const char **fields, size_t *lens,
                     char *err, size_t errlen)
{
    if (len && line[len - 1] == '\r')
        len--;
    int n = 0;
    size_t i = 0, at = 0;
    for (;;) {
        if (n == CSV_FIELDS_MAX)
            return fail(err, errlen, "more than %d fields", CSV_FIELDS_MAX);
        fields[n] = scratch + at;
        size_t start = at;
        if (i < len && line[i] == '"') {
            for (i++;; i++) {
                if (i >= len)
                    return fail(err, errlen, "field %d: a quote is not closed", n + 1);
                if (line[i] == '"') {
                    if (i + 1 < len && line[i + 1] == '"') {
                        scratch[at++] = '"';
                        i++;
                        continue;
                    }
                    i++;
                    break;
                }
                scratch[at++] = line[i];
            }
            if (i < len && line[i] != ',')
                return fail(err, errlen, "field %d: text after its closing quote", n + 1);
        } else {
            while (i < len && line[i] != ',') {
                if (line[i] == '"')
                    return fail(err, errlen, "field %d: a quote inside an unquoted field", n + 1);
                scratch[at++] = line[i++];
            }
        }
        lens[n] = at - start;
        scratch[at++] = '\0';
        n++;
        if (i >= len)
            return n;
        i++; /* the comma */
    }
}

int import_csv_header(const char *line, size_t len, struct import_csv *ret_csv, char *err,
                      size_t errlen)
{
    char *scratch = malloc(len + CSV_FIELDS_MAX + 1);
    if (!scratch)
        return -ENOMEM;
    const char *f[CSV_FIELDS_MAX];
    size_t l[CSV_FIELDS_MAX];
    int n = csv_split(line, len, scratch, f, l, err, errlen);
    struct import_csv c = {.ncols = n, .prefix = -1, .expires = -1, .note = -1};
    for (int i = 0; i < n; i++) {
        int *col = strcmp(f[i], "prefix") == 0    ? &c.prefix
                   : strcmp(f[i], "expires") == 0 ? &c.expires
                   : strcmp(f[i], "note") == 0    ? &c.note
                                                  : NULL;
        if (col && *col >= 0) {
            /* Said before the fields' storage goes. */
            fail(err, errlen, "the header names column \"%s\" twice", f[i]);
            free(scratch);
            return -EINVAL;
        }
        if (col)
            *col = i;
    }
    free(scratch);
    if (n < 0)
        return n;
    if (c.prefix < 0)
        return fail(err, errlen, "the header has no \"prefix\" column");
    *ret_csv = c;
    return 0;
}

int import_csv_record(const struct import_csv *csv, const char *line, size_t len,
                      struct import_entry *ret_entry, char *err, size_t errlen)
{
    size_t blank = 0;
    while (blank < len && is_space(line[blank]))
        blank++;
    if (blank == len)
        return 0;
    char *scratch = malloc(len + CSV_FIELDS_MAX + 1);
    if (!scratch)
        return -ENOMEM;
    const char *f[CSV_FIELDS_MAX];
    size_t l[CSV_FIELDS_MAX];
    struct import_entry e = {0};
    int n = csv_split(line, len, scratch, f, l, err, errlen);
    int r = n < 0 ? n : 0;
    if (r == 0 && n != csv->ncols)
        r = fail(err, errlen, "%d field%s where the header has %d", n, n == 1 ? "" : "s",
                 csv->ncols);
    if (r == 0)
        r = set_prefix(&e, f[csv->prefix], l[csv->prefix], err, errlen);
    if (r == 0 && csv->expires >= 0) {
        const char *x = f[csv->expires];
        e.timed = true;
        if (l[csv->expires] == 0) {
            e.permanent = true;
        } else {
            char *end;
            errno = 0;
            long long v = strtoll(x, &end, 10);
            if (*end || errno || v < 0 || x[0] < '0' || x[0] > '9' ||
                (size_t)(end - x) != l[csv->expires]) {
                char q[200];
                r = fail(err, errlen,
                         "expires \"%s\" is not a time in Unix seconds (empty: permanent)",
                         quote(x, l[csv->expires], q, sizeof(q)));
            }
            e.expires = v;
        }
    }
    if (r == 0 && csv->note >= 0)
        set_note(&e, f[csv->note], l[csv->note]);
    free(scratch);
    if (r < 0)
        return r;
    *ret_entry = e;
    return 1;
}

int import_json_ban(const json_t *ban, struct import_entry *ret_entry, char *err, size_t errlen)
{
    struct import_entry e = {0};
    if (!json_is_object(ban))
        return fail(err, errlen, "not an object");
    const json_t *p = json_object_get(ban, "prefix");
    if (!json_is_string(p))
        return fail(err, errlen, "no \"prefix\" string");
    int r = set_prefix(&e, json_string_value(p), json_string_length(p), err, errlen);
    if (r < 0)
        return r;
    const json_t *x = json_object_get(ban, "expires");
    if (json_is_null(x)) {
        e.timed = e.permanent = true;
    } else if (json_is_integer(x) && json_integer_value(x) >= 0) {
        e.timed = true;
        e.expires = (int64_t)json_integer_value(x);
    } else if (x) {
        return fail(err, errlen, "\"expires\" is not a time in Unix seconds (null: permanent)");
    }
    const json_t *note = json_object_get(ban, "note");
    if (json_is_string(note))
        set_note(&e, json_string_value(note), json_string_length(note));
    else if (note && !json_is_null(note))
        return fail(err, errlen, "\"note\" is not a string");
    *ret_entry = e;
    return 1;
}

/* The reading, shared by the line formats. */
struct reader {
    FILE *in;
    const struct import_fns *fns;
    void *data;
    char line[IMPORT_LINE_MAX + 1];
    size_t len;
    unsigned long lineno;
    unsigned long entries;
};

/* Reads the next line into r->line (without its newline). Returns 1, 0 at the end, -EIO, or 2
 * for a line longer than IMPORT_LINE_MAX (skipped to its end, never held whole). */
static int next_line(struct reader *r)
{
    int c;
    bool over = false;
    r->len = 0;
    while ((c = getc(r->in)) != EOF) {
        if (c == '\n')
            break;
        if (r->len < IMPORT_LINE_MAX)
            r->line[r->len++] = (char)c;
        else
            over = true;
    }
    if (c == EOF) {
        if (ferror(r->in))
            return -EIO;
        if (r->len == 0 && !over)
            return 0;
    }
    r->line[r->len] = '\0';
    r->lineno++;
    return over ? 2 : 1;
}

static void error_at(struct reader *r, const char *what)
{
    struct import_pos pos = {.line = r->lineno, .index = -1};
    r->fns->error(r->data, &pos, what);
}

/* Counts one more entry; false (with the error said) past the cap. */
static bool count_entry(struct reader *r)
{
    if (++r->entries <= IMPORT_ENTRIES_MAX)
        return true;
    char what[128];
    snprintf(what, sizeof(what), "more than %d entries: the rest is not read", IMPORT_ENTRIES_MAX);
    error_at(r, what);
    return false;
}

static int read_lines(struct reader *r, bool csv_wanted, enum import_format *ret_format)
{
    struct import_csv csv;
    bool header = true;
    bool is_csv = false;
    char err[512];
    int got;
    while ((got = next_line(r)) > 0) {
        if (got == 2) {
            if (!count_entry(r))
                return -EINVAL;
            char what[128];
            snprintf(what, sizeof(what), "line longer than %d bytes", IMPORT_LINE_MAX);
            error_at(r, what);
            continue;
        }
        if (header) {
            /* The first line that holds anything says whether this is our CSV. */
            size_t skip = 0;
            if (r->len >= 3 && memcmp(r->line, "\xef\xbb\xbf", 3) == 0)
                skip = 3;
            const char *l = r->line + skip;
            size_t n = r->len - skip;
            size_t k = 0;
            while (k < n && is_space(l[k]))
                k++;
            if (k == n)
                continue;
            header = false;
            if (csv_wanted || (n >= 7 && memcmp(l, "prefix,", 7) == 0) ||
                (n >= 6 && memcmp(l, "prefix", 6) == 0 && (n == 6 || l[6] == '\r'))) {
                is_csv = true;
                if (ret_format)
                    *ret_format = IMPORT_CSV;
                int e = import_csv_header(l, n, &csv, err, sizeof(err));
                if (e == -ENOMEM)
                    return e;
                if (e < 0) {
                    error_at(r, err);
                    return -EINVAL;
                }
                continue;
            }
            if (ret_format)
                *ret_format = IMPORT_LIST;
            memmove(r->line, l, n);
            r->len = n;
        }
        struct import_entry e;
        int p = is_csv ? import_csv_record(&csv, r->line, r->len, &e, err, sizeof(err))
                       : import_parse_line(r->line, r->len, &e, err, sizeof(err));
        if (p == 0)
            continue;
        if (p == -ENOMEM)
            return p;
        if (!count_entry(r))
            return -EINVAL;
        if (p < 0) {
            error_at(r, err);
            continue;
        }
        struct import_pos pos = {.line = r->lineno, .index = -1};
        int x = r->fns->entry(r->data, &pos, &e);
        if (x)
            return x;
    }
    return got;
}

static int read_json(struct reader *r, int first)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    buf[len++] = (char)first;
    int c;
    while ((c = getc(r->in)) != EOF) {
        if (len == IMPORT_JSON_MAX) {
            free(buf);
            error_at(r, "a JSON document larger than 64 MiB: export in CSV for more bans");
            return -EINVAL;
        }
        if (len == cap) {
            char *n = realloc(buf, cap * 2);
            if (!n) {
                free(buf);
                return -ENOMEM;
            }
            buf = n;
            cap *= 2;
        }
        buf[len++] = (char)c;
    }
    if (ferror(r->in)) {
        free(buf);
        return -EIO;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    char what[512];
    if (!doc) {
        char q[200];
        snprintf(what, sizeof(what), "not valid JSON (line %d, column %d): %s",
                 jerr.line + (int)r->lineno, jerr.column,
                 quote(jerr.text, strlen(jerr.text), q, sizeof(q)));
        struct import_pos pos = {.line = (unsigned long)(jerr.line > 0 ? jerr.line : 0) + r->lineno,
                                 .index = -1};
        r->fns->error(r->data, &pos, what);
        return -EINVAL;
    }
    const json_t *bans = json_is_array(doc) ? doc : json_object_get(doc, "bans");
    if (!json_is_array(bans)) {
        json_decref(doc);
        struct import_pos pos = {.line = 0, .index = -1};
        r->fns->error(r->data, &pos,
                      "a JSON document without a \"bans\" array (pbxguard export --format json)");
        return -EINVAL;
    }
    int ret = 0;
    size_t i;
    const json_t *b;
    json_array_foreach(bans, i, b)
    {
        struct import_pos pos = {.line = 0, .index = (long)i};
        if (i >= IMPORT_ENTRIES_MAX) {
            snprintf(what, sizeof(what), "more than %d entries: the rest is not read",
                     IMPORT_ENTRIES_MAX);
            r->fns->error(r->data, &pos, what);
            ret = -EINVAL;
            break;
        }
        struct import_entry e;
        if (import_json_ban(b, &e, what, sizeof(what)) < 0) {
            r->fns->error(r->data, &pos, what);
            continue;
        }
        ret = r->fns->entry(r->data, &pos, &e);
        if (ret)
            break;
    }
    json_decref(doc);
    return ret;
}

int import_read(FILE *in, enum import_format fmt, const struct import_fns *fns, void *data,
                enum import_format *ret_format)
{
    struct reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->in = in;
    r->fns = fns;
    r->data = data;
    int ret;
    if (fmt == IMPORT_JSON || fmt == IMPORT_AUTO) {
        /* Spaces (and a byte-order mark) before the first byte that says what this is. */
        int c;
        unsigned bom = 0;
        while ((c = getc(in)) != EOF) {
            if (c == '\n')
                r->lineno++;
            else if (bom < 3 && c == "\xef\xbb\xbf"[bom] && r->lineno == 0)
                bom++;
            else if (!is_space((char)c))
                break;
        }
        if (c == EOF && ferror(in)) {
            free(r);
            return -EIO;
        }
        if (c == '{' || c == '[' || (fmt == IMPORT_JSON && c != EOF)) {
            if (ret_format)
                *ret_format = IMPORT_JSON;
            ret = read_json(r, c);
            free(r);
            return ret;
        }
        if (fmt == IMPORT_JSON) {
            struct import_pos pos = {.line = 0, .index = -1};
            fns->error(data, &pos, "empty: no JSON document");
            free(r);
            return -EINVAL;
        }
        if (c != EOF)
            ungetc(c, in);
        if (ret_format)
            *ret_format = IMPORT_LIST;
    }
    ret = read_lines(r, fmt == IMPORT_CSV, ret_format);
    free(r);
    return ret;
}
