/* The events a live source delivered lately, remembered by identity so that the security log,
 * reading the same events after the fact, counts each one once. Pure: no I/O.
 *
 * An event's identity is what both sources report alike: its type, EventTV, RemoteAddress
 * (address, port, transport) and SessionID. Asterisk stamps EventTV to the millisecond when it
 * raises the event and writes the same stamp to AMI and to the log, so two reports of one event
 * agree on all four; two different events agree on all four only if one client raised two
 * events of the same type in the same millisecond from the same port within one SIP call or
 * AMI session (then one of them is counted once, not twice: a miss, never an extra count).
 *
 * Memory is bounded: two generations of a fixed hash table, each holding up to SEEN_CAP
 * identities (a 64-bit hash each); when the newer one is full, the older one is dropped. The set
 * is complete for everything added since seen_complete_since(). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "sec_event.h"

#define SEEN_CAP 32768

struct seen;

struct seen *seen_new(int64_t now_ms); /* NULL + errno */
void seen_free(struct seen *s);        /* accepts NULL */
/* Remembers ev (added at now_ms). An event without EventTV has no identity: ignored. */
void seen_add(struct seen *s, const struct sec_event *ev, int64_t now_ms);
/* Whether an event with ev's identity was added (and not yet forgotten). */
bool seen_has(const struct seen *s, const struct sec_event *ev);
/* Every event added at or after this time is still remembered. */
int64_t seen_complete_since(const struct seen *s);
