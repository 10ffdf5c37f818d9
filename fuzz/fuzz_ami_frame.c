/* Fuzzes the AMI frame parser with arbitrary server output, fed in chunks whose sizes come from
 * the input itself (so every split point gets exercised). Checks the parser's promises: every
 * header lies inside the buffer, lines respect the bounds, frames have headers, counters add up.
 * Aborts on a violation.
 * Input: byte 0 = chunk size (0 = everything at once), bit 7 of byte 1 = expect a banner;
 * the rest is the stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ami_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ami_parser parser;

static void check_frame(const struct ami_parser *p, const struct ami_frame *f)
{
    const char *lo = p->buf, *hi = p->buf + sizeof(p->buf);
    if (f->nheaders == 0 || f->nheaders > AMI_HEADERS_MAX)
        abort();
    for (unsigned i = 0; i < f->nheaders; i++) {
        const struct ami_header *h = &f->headers[i];
        if (h->name < lo || h->name + h->name_len > hi || h->value < lo ||
            h->value + h->value_len > hi)
            abort();
        if (h->name_len + h->value_len > AMI_LINE_MAX)
            abort();
        if (f->kind != AMI_FRAME_BANNER) {
            if (memchr(h->name, '\n', h->name_len) || memchr(h->value, '\n', h->value_len))
                abort();
            if (h->name_len == 16 && strncasecmp(h->name, "ExpectedResponse", 16) == 0 &&
                h->value_len != 0)
                abort();
        }
    }
    (void)ami_frame_is_security(f);
    (void)ami_frame_get(f, "Privilege");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    ami_parser_init(&parser, (data[1] & 0x80) != 0);
    data += 2;
    size -= 2;
    uint64_t frames = 0;
    size_t off = 0;
    /* Each turn either takes bytes or (buffer full) pulls frames that make room: bounded. */
    for (unsigned turns = 0; off < size && turns < 4 * size + 16; turns++) {
        size_t n = size - off < chunk ? size - off : chunk;
        off += ami_parser_feed(&parser, data + off, n);
        const struct ami_frame *f;
        while ((f = ami_parser_next(&parser))) {
            check_frame(&parser, f);
            frames++;
        }
    }
    if (off != size)
        abort(); /* the parser stopped taking bytes: it lost sync */
    const struct ami_parser_stats *st = &parser.stats;
    uint64_t sum = 0;
    for (int i = 0; i < AMI_DISCARD_COUNT; i++)
        sum += st->by_reason[i];
    if (st->frames != frames || st->discarded != sum || st->bytes != size)
        abort();
    return 0;
}
