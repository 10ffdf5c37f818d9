/* Fuzzes AMI event normalization: the input is parsed as frames (no banner) and every frame is
 * normalized; the whole input is also parsed as an address field and as an EventTV. Checks that
 * results stay within their bounds (NUL-terminated strings, valid enums and families). Aborts
 * on a violation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ami_event.h"
#include "ami_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ami_parser parser;

static void check_endpoint(const struct sec_endpoint *ep)
{
    if (ep->addr.family != AF_INET && ep->addr.family != AF_INET6)
        abort();
    if (ep->addr.family == AF_INET)
        for (int i = 4; i < 16; i++)
            if (ep->addr.bytes[i])
                abort();
    if ((unsigned)ep->transport > SEC_TRANSPORT_WSS)
        abort();
    if (!memchr(ep->scope, '\0', sizeof(ep->scope)))
        abort();
}

static void check_event(const struct sec_event *ev)
{
    if ((unsigned)ev->type >= SEC_EVENT_TYPE_COUNT)
        abort();
    if (!memchr(ev->service, '\0', sizeof(ev->service)) ||
        !memchr(ev->account, '\0', sizeof(ev->account)) ||
        !memchr(ev->session, '\0', sizeof(ev->session)) ||
        !memchr(ev->source, '\0', sizeof(ev->source)))
        abort();
    check_endpoint(&ev->remote);
    if (ev->has_local)
        check_endpoint(&ev->local);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sec_endpoint ep;
    int64_t ms;
    if (ami_event_parse_address((const char *)data, size, &ep) == 0)
        check_endpoint(&ep);
    (void)ami_event_parse_time((const char *)data, size, &ms);

    ami_parser_init(&parser, false);
    size_t off = 0;
    for (unsigned turns = 0; off < size && turns < 64; turns++) {
        off += ami_parser_feed(&parser, data + off, size - off);
        const struct ami_frame *f;
        while ((f = ami_parser_next(&parser))) {
            struct sec_event ev;
            enum ami_event_bad bad = AMI_BAD_NONE;
            enum ami_event_result r = ami_event_from_frame(f, "ami:fuzz", &ev, &bad);
            if (r == AMI_EVENT_OK)
                check_event(&ev);
            else if (r == AMI_EVENT_MALFORMED && (bad == AMI_BAD_NONE || bad >= AMI_BAD_COUNT))
                abort();
        }
    }
    return 0;
}
