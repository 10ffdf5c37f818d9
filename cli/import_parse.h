/* `pbxguard import`'s reader: our JSON or CSV export, or a plain list of addresses and
 * prefixes, turned into ban requests one entry at a time. Pure parsing: the bytes come from a
 * FILE the caller opened (a file, stdin, or memory for the tests and the fuzzer), nothing is
 * sent anywhere. The input is untrusted: every line is bounded (IMPORT_LINE_MAX; a longer one
 * is skipped to its end without being held), the entries are counted (IMPORT_ENTRIES_MAX), and
 * a JSON document is read whole only up to IMPORT_JSON_MAX. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "ctl_proto.h"

/* The longest line of a list or CSV file, newline excluded. */
#define IMPORT_LINE_MAX 4096
/* The most entries (bans, whatever becomes of them) one import reads; the rest is refused. */
#define IMPORT_ENTRIES_MAX 1000000
/* The largest JSON document read (our export of a million bans is about 200 MB; of 100,000,
 * 20 MB). */
#define IMPORT_JSON_MAX (64 * 1024 * 1024)

enum import_format {
    IMPORT_AUTO, /* JSON if the first byte that is not a space is { or [, CSV if the first
                    line is our header, a list otherwise */
    IMPORT_LIST,
    IMPORT_CSV,
    IMPORT_JSON,
};

/* One ban to ask for. */
struct import_entry {
    char prefix[ADDR_STRLEN];    /* canonical, as the daemon writes it */
    bool timed;                  /* the entry says how long: expires or permanent */
    bool permanent;              /* with timed: no end */
    int64_t expires;             /* with timed and not permanent: Unix seconds */
    char note[CTL_NOTE_MAX + 1]; /* "" if none */
};

/* Where an entry or an error comes from: a line of a list or CSV file (1-based), or with JSON
 * the index in its "bans" array (line is then jansson's line of the document for a document
 * that does not parse, else 0). */
struct import_pos {
    unsigned long line;
    long index; /* -1 outside a JSON array */
};

struct import_fns {
    /* An entry; a non-zero return stops the reading and is returned by import_read(). */
    int (*entry)(void *data, const struct import_pos *pos, const struct import_entry *e);
    /* A malformed entry or line (the reading goes on), or why the whole input is refused
     * (then import_read() returns -EINVAL). what is one line of ASCII, input quoted escaped. */
    void (*error)(void *data, const struct import_pos *pos, const char *what);
};

/* Reads in to its end in fmt. Returns 0; a callback's non-zero return; -EINVAL when the input
 * as a whole is refused (JSON that does not parse or is too large, a CSV header without a
 * prefix column, more than IMPORT_ENTRIES_MAX entries: fns->error said why); -ENOMEM; or -EIO
 * from the FILE. Malformed entries are reported through fns->error and skipped. ret_format
 * (may be NULL) gets the format read. */
int import_read(FILE *in, enum import_format fmt, const struct import_fns *fns, void *data,
                enum import_format *ret_format);

/* The pure parts, for the tests. Each returns 1 with ret_entry filled, 0 for a line that holds
 * nothing (blank, comment), or -EINVAL with the reason in err. */

/* A list line: ADDR or ADDR/LEN, surrounding spaces, a # comment after it or alone. */
int import_parse_line(const char *line, size_t len, struct import_entry *ret_entry, char *err,
                      size_t errlen);

/* A CSV header: which columns hold what (a column that is absent is -1). */
struct import_csv {
    int ncols;
    int prefix, expires, note;
};
/* The header line: it must have a "prefix" column; "expires" (Unix seconds, empty for a
 * permanent ban) and "note" are used when present, the others ignored. 0 or -EINVAL. */
int import_csv_header(const char *line, size_t len, struct import_csv *ret_csv, char *err,
                      size_t errlen);
/* A record under that header: exactly as many fields as the header has. */
int import_csv_record(const struct import_csv *csv, const char *line, size_t len,
                      struct import_entry *ret_entry, char *err, size_t errlen);

/* One object of a JSON export's "bans": "prefix" (required), "expires" (Unix seconds, null for
 * a permanent ban; absent: the default length), "note". 1 or -EINVAL. */
int import_json_ban(const json_t *ban, struct import_entry *ret_entry, char *err, size_t errlen);
