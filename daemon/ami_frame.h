/* AMI framing: a pure, incremental parser. Bytes in, frames out; no I/O and no allocation per
 * frame. The parser owns one fixed buffer; a frame's headers point into it and stay valid until
 * the next call that feeds or pulls frames.
 *
 * The stream is: one banner line ("Asterisk Call Manager/9.0.0", no blank line after it), then
 * frames of "Name: value" lines, each frame ended by an empty line. CRLF or bare LF. Each line is
 * split at its first colon only, so values may be empty or hold ": " themselves. Lines are
 * bounded (AMI_LINE_MAX), and so are headers per frame (AMI_HEADERS_MAX) and bytes per frame
 * (AMI_FRAME_MAX): a frame breaking a bound, or holding a line without a colon, is discarded up
 * to its blank line and counted, and parsing resumes in sync with the next frame. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AMI_LINE_MAX 8192
/* Asterisk bounds what it reads to 128 lines, not what it writes: PJSIPShowEndpoint's
 * EndpointDetail lists every endpoint option, about 145 lines in Asterisk 20. */
#define AMI_HEADERS_MAX 256
#define AMI_FRAME_MAX (64 * 1024)

enum ami_frame_kind {
    AMI_FRAME_BANNER = 0, /* the first line; headers[0].value is the whole line */
    AMI_FRAME_EVENT,      /* first header is "Event" */
    AMI_FRAME_RESPONSE,   /* first header is "Response" */
    AMI_FRAME_OTHER,
};

struct ami_header {
    const char *name;  /* not NUL-terminated */
    const char *value; /* leading blanks skipped; not NUL-terminated; may be empty */
    uint32_t name_len;
    uint32_t value_len;
};

struct ami_frame {
    enum ami_frame_kind kind;
    unsigned nheaders;
    struct ami_header headers[AMI_HEADERS_MAX];
};

/* Why frames were thrown away; each counts one discarded frame. */
enum ami_discard {
    AMI_DISCARD_LINE_TOO_LONG = 0,
    AMI_DISCARD_TOO_MANY_HEADERS,
    AMI_DISCARD_FRAME_TOO_BIG,
    AMI_DISCARD_NO_COLON,
    AMI_DISCARD_COUNT
};

struct ami_parser_stats {
    uint64_t bytes;
    uint64_t frames;    /* frames returned, banner included */
    uint64_t discarded; /* sum of by_reason */
    uint64_t by_reason[AMI_DISCARD_COUNT];
};

/* The parser is a plain struct so it can be embedded (it is large: the buffer lives inside). */
struct ami_parser {
    size_t start; /* first byte of the frame being parsed */
    size_t scan;  /* where line scanning resumes */
    size_t end;   /* bytes held */
    bool want_banner;
    bool discarding;  /* skipping to the end of a bad frame */
    bool discard_bol; /* while discarding: at the beginning of a line */
    bool emitted;     /* frame holds the frame last returned */
    struct ami_parser_stats stats;
    struct ami_frame frame;
    char buf[AMI_FRAME_MAX];
};

/* Resets to the start of a new stream: the next line is expected to be the banner when
 * expect_banner (a new connection), otherwise frames start at once (a replayed capture body). */
void ami_parser_init(struct ami_parser *p, bool expect_banner);

/* Free room at the end of the buffer, to read into directly (never 0 after the frames held have
 * been pulled with ami_parser_next()). Returns a pointer, *ret_len its size. Invalidates the
 * last frame. Commit what was written with ami_parser_commit(). */
char *ami_parser_space(struct ami_parser *p, size_t *ret_len);
void ami_parser_commit(struct ami_parser *p, size_t n);

/* Copies up to len bytes in; returns how many were taken (fewer when the buffer is full: pull
 * frames and feed the rest). Invalidates the last frame. */
size_t ami_parser_feed(struct ami_parser *p, const void *data, size_t len);

/* Returns the next complete frame (valid until the next call on p), or NULL if more bytes are
 * needed. Empty frames (stray blank lines) are skipped; bad frames are counted and skipped.
 * The value of every ExpectedResponse header (the correct MD5 key of someone else's login) is
 * wiped in the buffer and reported as empty: nothing past the parser can leak it. So are the
 * credentials of AuthDetail events (Password, Md5Cred, PasswordDigest, OauthSecret,
 * RefreshToken), which Asterisk sends with the answers to the trust queries. */
const struct ami_frame *ami_parser_next(struct ami_parser *p);

/* Case-insensitive lookup of a header by name (like Asterisk's own); NULL if absent. */
const struct ami_header *ami_frame_get(const struct ami_frame *f, const char *name);

/* True for "Event:" frames whose Privilege lists the security class. A cheap test that avoids
 * normalizing the system events (FullyBooted, PeerStatus, ...) mixed into the stream. */
bool ami_frame_is_security(const struct ami_frame *f);
/* True for "Event:" frames whose Privilege lists the class cls ("system"). */
bool ami_frame_has_class(const struct ami_frame *f, const char *cls);

/* True if the header's value equals s exactly (case-sensitive). */
bool ami_header_value_is(const struct ami_header *h, const char *s);

const char *ami_discard_name(enum ami_discard reason);

/* ASCII case-insensitive comparison of len bytes against a name made of letters and digits
 * (header names, "IPV4", "UDP"); cheaper than strncasecmp() and locale-free. */
static inline bool ami_caseeq(const char *s, const char *name, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)s[i], b = (unsigned char)name[i];
        if (a != b && !(((b | 0x20) >= 'a' && (b | 0x20) <= 'z') && (a | 0x20) == (b | 0x20)))
            return false;
    }
    return true;
}
