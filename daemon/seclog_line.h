/* Asterisk's security log (res_security_log), read as hostile text: a pure parser. Bytes in,
 * normalized events out; no I/O, no allocation, no logging.
 *
 * Asterisk writes each security event as one line:
 *   [DATE] SECURITY[LWP][C-CALLID] res_security_log.c: SecurityEvent="NAME",Key="value",...
 * with the event's fields in a fixed order (required ones, then the optional ones it has), each
 * value between double quotes and NOT escaped (",%s=\"%s\"" in res_security_log.c). A client
 * chooses several values (AccountID, a SIP Call-ID as SessionID, digest nonces and responses,
 * AMI action names), so a value may hold `",RemoteAddress="...`: the text alone does not say
 * where a value ends.
 *
 * The parser therefore reads a line as its writer wrote it: it knows each event's field order
 * and which values the writer fills itself (times, addresses, severity, service, version: never
 * a quote) and which a client may fill (anything). It finds every reading of the line that fits
 * the event's field order, and accepts the line only if all of them name the same
 * RemoteAddress: the address is then proven, whatever the client wrote. A line with several
 * readings naming different addresses, or with none (a value left open, a line cut short, a
 * missing field), proves nothing and is malformed. A line a client stuffed with extra fields that
 * still proves its address is accepted and flagged (`injected`).
 *
 * Lines that cannot be one record Asterisk wrote are malformed too: a NUL byte (Asterisk writes C
 * strings); more than SECLOG_RECORD_MAX bytes, or a second `SecurityEvent="` past byte
 * SECLOG_MERGE_MIN: Asterisk's logger cuts a message at its buffer size (BUFSIZ, at least 1024
 * bytes on every libc, 8192 with glibc) and the next record then continues on the same line.
 *
 * Every ExpectedResponse value of a security line (on AMI digest failures, the correct MD5 key of
 * someone else's login) is overwritten with '*' in the caller's buffer, whether the line parses
 * or not: nothing past the parser can leak it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sec_event.h"

/* The longest line Asterisk's logger writes for one record (its buffer, BUFSIZ with glibc, less
 * the newline). Longer security lines are two records run together. */
#define SECLOG_RECORD_MAX 8190
/* The smallest BUFSIZ among C libraries, less one: a record cut by the logger is at least this
 * long, so a second `SecurityEvent="` before this byte is client text, not a second record. */
#define SECLOG_MERGE_MIN 1023
/* Candidate field boundaries (`",Key="` with a key of the event) examined in one line. A line
 * with more proves nothing (the work per line stays bounded: at most this squared). */
#define SECLOG_BOUNDS_MAX 48
/* The longest physical line the reader holds; the rest of a longer one is skipped. */
#define SECLOG_LINE_MAX (16 * 1024)

enum seclog_line_result {
    SECLOG_LINE_EVENT = 0, /* a security event: *ret_ev is filled */
    SECLOG_LINE_OTHER,     /* not a security event line (banner, other log channels): skip */
    SECLOG_LINE_MALFORMED, /* a security line that proves no address: see info.bad */
};

/* Why a security line proves nothing; each is counted by the log source. */
enum seclog_bad {
    SECLOG_BAD_NONE = 0,
    SECLOG_BAD_UNKNOWN_EVENT, /* SecurityEvent names no event type we know */
    SECLOG_BAD_STRUCTURE,     /* no reading fits the event's fields (a value left open, a cut
                                 line, a field missing) */
    SECLOG_BAD_AMBIGUOUS,     /* readings that fit name different RemoteAddresses */
    SECLOG_BAD_TOO_MANY,      /* more than SECLOG_BOUNDS_MAX candidate field boundaries */
    SECLOG_BAD_REMOTE,        /* the proven RemoteAddress does not parse */
    SECLOG_BAD_LOCAL,         /* LocalAddress does not parse */
    SECLOG_BAD_VERSION,       /* EventVersion is not a small number */
    SECLOG_BAD_TOO_LONG,      /* longer than one record Asterisk writes */
    SECLOG_BAD_TWO_RECORDS,   /* a second record starts inside the line */
    SECLOG_BAD_NUL,           /* holds a NUL byte, which Asterisk never writes */
    SECLOG_BAD_COUNT
};

/* The line's own date (the logger's prefix), as written: local time, maybe without a year
 * (Asterisk's default dateformat is "%b %e %T"). Used only when EventTV is missing. */
struct seclog_line_date {
    bool valid;
    bool has_year;
    int year, mon, day; /* mon 1..12 */
    int hour, min, sec, ms;
};

struct seclog_line_info {
    enum seclog_bad bad;
    bool injected; /* extra field boundaries inside values, yet the address is proven */
    struct seclog_line_date date;
};

/* Parses one physical line (without its newline). Non-const: ExpectedResponse values are
 * overwritten in place. On SECLOG_LINE_EVENT fills *ret_ev (received_ms left 0 for the caller
 * to stamp; source copied in, truncated to fit); otherwise *ret_ev is undefined. *ret_info is
 * always filled. len may exceed SECLOG_RECORD_MAX (the line is then malformed). */
enum seclog_line_result seclog_line_parse(char *line, size_t len, const char *source,
                                          struct sec_event *ret_ev,
                                          struct seclog_line_info *ret_info);

/* Overwrites every ExpectedResponse value in buf[0..len) with '*' (up to its closing quote, or
 * to the end). seclog_line_parse() does it first thing; exposed for lines never parsed. */
void seclog_line_wipe(char *buf, size_t len);

const char *seclog_bad_name(enum seclog_bad bad);

/* --- splitting a file's bytes into lines --- */

#define SECLOG_READER_BUF (64 * 1024)
/* Bytes kept before the read position (the end of the last line pulled): they identify the
 * file when it is found again (a copytruncate copy, a file rewritten in place). */
#define SECLOG_TAIL_MAX 64

/* One line out of the reader. data points into the reader's buffer and stays valid until the
 * next call that feeds or pulls lines. */
struct seclog_chunk {
    char *data;
    size_t len;       /* without the newline */
    uint64_t end_off; /* file offset just past the line's newline */
    bool oversized;   /* longer than SECLOG_LINE_MAX: data holds its first SECLOG_LINE_MAX
                         bytes, the rest is skipped (and wiped) as it arrives */
};

/* A plain struct, to embed (it holds its buffer). Bytes go in through space/commit (read(2)
 * straight into it); complete lines come out, parsed in place. Consumed bytes are zeroed when
 * the buffer is compacted (all but the SECLOG_TAIL_MAX before the position), and the skipped
 * part of an oversized line as it is skipped (the parser has already wiped the keys of the
 * lines it saw). */
struct seclog_reader {
    uint64_t off;       /* file offset of buf[start] */
    uint64_t skip_from; /* while skipping: where the oversized line began */
    size_t start;       /* first byte of the line in progress */
    size_t scan;        /* where the newline search resumes */
    size_t end;         /* bytes held */
    size_t tail_from;   /* buf[tail_from, start) are the bytes before off that are known */
    bool skipping;      /* dropping the rest of an oversized line */
    uint64_t lines;     /* lines returned */
    uint64_t skipped;   /* bytes dropped from oversized lines */
    char buf[SECLOG_READER_BUF];
};

/* Starts at file offset off (what the next committed byte is), with the tail_len bytes of the
 * file just before it, if known (tail may be NULL). */
void seclog_reader_init(struct seclog_reader *r, uint64_t off, const void *tail, size_t tail_len);
/* Room to read into; never 0 once the lines held have been pulled. */
char *seclog_reader_space(struct seclog_reader *r, size_t *ret_len);
void seclog_reader_commit(struct seclog_reader *r, size_t n);
/* The next complete line, or false if more bytes are needed. */
bool seclog_reader_next(struct seclog_reader *r, struct seclog_chunk *ret);
/* Gives back the line just pulled (c, not oversized), to be pulled again later: for a caller
 * that cannot decide about it yet. Only before any other call on the reader. */
void seclog_reader_unread(struct seclog_reader *r, const struct seclog_chunk *c);
/* File offset up to which every line has been pulled: where reading resumes after a restart. */
uint64_t seclog_reader_offset(const struct seclog_reader *r);
/* The known bytes just before seclog_reader_offset() (at most SECLOG_TAIL_MAX); *ret_len may
 * be 0. */
const char *seclog_reader_tail(const struct seclog_reader *r, size_t *ret_len);
/* Bytes of an unfinished line held (a line still being written, or cut by a crash). */
size_t seclog_reader_pending(const struct seclog_reader *r);
/* The unfinished line itself (for a caller that gives up on it: a file rotated away mid-line). */
const char *seclog_reader_pending_data(const struct seclog_reader *r);
