/* Live view (pbxguard watch): what the core judged, as one JSON object per record, for the
 * control server to fan out to its watchers. Pure formatting, no I/O: the core builds a record
 * for each event (and each verdict decided outside the event path) only while someone watches,
 * and the control layer writes the line to every watcher's bounded buffer.
 *
 * Attacker text (service, account) is carried as it came when it is valid UTF-8 and escaped as
 * the log escapes it (\xNN) when it is not; JSON escapes the control characters. The CLI
 * escapes again for a terminal, as it does for every reply. */
#pragma once
#include <jansson.h>
#include <stdint.h>

#include "judge.h"
#include "policy.h"
#include "sec_event.h"

/* What became of an event, as the watcher reads it ("verdict"). */
enum watch_outcome {
    WATCH_BAN = 0,        /* its key reached the threshold: banned */
    WATCH_BELOW,          /* counted; the window is below the threshold */
    WATCH_ALREADY_BANNED, /* counted; its key (or a wider prefix) is banned already */
    WATCH_ALLOWLISTED,    /* recorded, never counted: [whitelist] or the runtime allowlist */
    WATCH_PROTECTED,      /* recorded, never counted: the host, an AMI peer, a trunk, ... */
    WATCH_IGNORED,        /* never a real source (link-local, multicast, ...): dropped */
    WATCH_NOT_COUNTED,    /* weighs nothing (SuccessfulAuth, ChallengeSent, ...) */
    WATCH_OUTCOME_COUNT
};
/* "ban", "below-threshold", "already-banned", "allowlisted", "protected", "ignored",
 * "not-counted". */
const char *watch_outcome_name(enum watch_outcome o);

/* The outcome of an event from its verdict; protection (may be NULL) is the protected entry
 * holding its source, asked only for a whitelisted one. */
enum watch_outcome watch_outcome_of(const struct verdict *v,
                                    const struct policy_wl_entry *protection);

/* One event and its verdict: {"type":"event", "time", "source", "addr", "key", "service",
 * "event", "account", "weight", "window", "threshold", "verdict", "why"?, "trusted"?, "ban"?}:
 * key (may be NULL: then absent) is the prefix its failures count under. time is
 * Unix seconds with milliseconds; "why" names the protection or the ignored range; "ban" is
 * {"prefix", "duration" (seconds, null: permanent), "offence"}. NULL when out of memory. */
json_t *watch_event_json(const struct sec_event *ev, const struct addr_prefix *key,
                         const struct verdict *v, double weight,
                         const struct policy_wl_entry *protection, int64_t now_ms);

/* A verdict decided outside the event path (a manual ban or unban, an allow's lifts, a remote
 * ban, a ban lifted for protection): {"type":"verdict", "time", "action" ("ban", "unban"),
 * "reason" ("manual", "remote", "protected", ...), "prefix", "duration"?}. */
json_t *watch_verdict_json(const struct verdict *v, int64_t now_ms);
