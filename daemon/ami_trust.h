/* What Asterisk's answers to the trust queries say: which remote addresses it is configured to
 * talk to. Pure: frames and strings in, items out through callbacks; no I/O, no allocation,
 * no logging. The text comes from Asterisk (trusted, but parsed defensively like any input:
 * every field is bounded, anything that does not parse is skipped).
 *
 * The frames, as Asterisk 12-23 write them (res/res_pjsip/, channels/chan_sip.c,
 * channels/chan_iax2.c; examples in tests/fixtures/ami/trust-NAME.raw):
 *   EndpointList          ObjectName                  (PJSIPShowEndpoints: the endpoint names)
 *   IdentifyDetail        ObjectName, Match           (PJSIPShowEndpoint: "ADDR[:PORT]/MASK,...",
 *                                                      "!" before an excluded one)
 *   ContactStatusDetail   ID, URI, OutboundProxy      (PJSIPShowEndpoint: a static contact has
 *                                                      "@@" in its ID, a registered one ";@")
 *   OutboundRegistrationDetail  ObjectName, ServerUri, OutboundProxy
 *                                                     (PJSIPShowRegistrationsOutbound)
 *   PeerEntry             Channeltype, ObjectName, IPaddress, Dynamic
 *                                                     (SIPpeers, IAXpeerlist)
 * Every list event carries the action's ActionID right after its Event line, and the list ends
 * with "<Name>Complete" carrying "EventList: Complete". */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "ami_frame.h"

#define AMI_TRUST_NAME_MAX 64  /* the Asterisk object's name, cut to fit */
#define AMI_TRUST_HOST_MAX 254 /* a DNS name: 253 bytes and the NUL */

enum ami_trust_kind {
    AMI_TRUST_IDENTIFY = 0, /* a PJSIP identify's match */
    AMI_TRUST_REGISTRATION, /* a PJSIP outbound registration's server (or its proxy) */
    AMI_TRUST_CONTACT,      /* a static PJSIP AOR contact (or its proxy) */
    AMI_TRUST_SIP_PEER,     /* a chan_sip peer with a static host */
    AMI_TRUST_IAX_PEER,     /* a chan_iax2 peer with a static host */
    AMI_TRUST_KIND_COUNT
};

struct ami_trust_item {
    enum ami_trust_kind kind;
    char name[AMI_TRUST_NAME_MAX]; /* printable ASCII only (others become '?') */
    bool numeric;                  /* prefix holds it; otherwise host is a name to resolve */
    struct addr_prefix prefix;
    char host[AMI_TRUST_HOST_MAX]; /* letters, digits, '-', '.', '_' only */
};

struct ami_trust_fns {
    /* One address, prefix or host name to trust. */
    void (*item)(void *data, const struct ami_trust_item *item);
    /* One PJSIP endpoint name from an EndpointList (len bytes, not NUL-terminated, never holding
     * CR, LF or other control bytes), to ask PJSIPShowEndpoint about. */
    void (*endpoint)(void *data, const char *name, size_t len);
};

/* "pjsip:identify", "pjsip:registration", "pjsip:contact", "sip:peer", "iax2:peer". */
const char *ami_trust_kind_name(enum ami_trust_kind kind);

/* Hands what one list event says to fns (either callback may be NULL). Returns true if the
 * frame is an event of a kind listed above, or the event that completes a list (then
 * *ret_complete, if not NULL, is set). Other frames are left alone (false). */
bool ami_trust_from_frame(const struct ami_frame *f, const struct ami_trust_fns *fns, void *data,
                          bool *ret_complete);

/* Parses an identify's Match value (a comma-separated list of "ADDR[:PORT]/MASK" with MASK a
 * netmask or a length, IPv6 with a port in brackets) and calls fn per prefix; excluded
 * entries ("!ADDR/MASK") and entries that do not parse are skipped. Returns how many prefixes
 * were handed to fn. */
unsigned ami_trust_parse_match(const char *s, size_t len,
                               void (*fn)(void *data, const struct addr_prefix *p), void *data);

/* The host of a SIP URI ("sip:user@host:port;params", "sips:[2001:db8::1]:5061", "<sip:...>"):
 * either a numeric address (*ret_numeric true, *ret_addr set) or a host name copied into
 * ret_host. Returns 0, or -EINVAL for anything else (another scheme, an empty or malformed host,
 * a name with other bytes than letters, digits, '-', '.', '_', longer than 253 bytes). */
int ami_trust_uri_host(const char *s, size_t len, char *ret_host, size_t hostlen,
                       struct addr *ret_addr, bool *ret_numeric);

/* The prefix length of a netmask ("255.255.255.0", "ffff:ffff::") of the given family; a plain
 * number ("24") is accepted too. -EINVAL for a mask that is not contiguous or of another
 * family. */
int ami_trust_mask_len(const char *s, size_t len, int family, unsigned *ret_len);
