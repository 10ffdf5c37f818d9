/* Live view records. */
#include <string.h>

#include "log.h"
#include "watch.h"

static const char *const outcome_names[WATCH_OUTCOME_COUNT] = {
    [WATCH_BAN] = "ban",
    [WATCH_BELOW] = "below-threshold",
    [WATCH_ALREADY_BANNED] = "already-banned",
    [WATCH_ALLOWLISTED] = "allowlisted",
    [WATCH_PROTECTED] = "protected",
    [WATCH_IGNORED] = "ignored",
    [WATCH_NOT_COUNTED] = "not-counted",
};

const char *watch_outcome_name(enum watch_outcome o)
{
    return (unsigned)o < WATCH_OUTCOME_COUNT ? outcome_names[o] : "?";
}

enum watch_outcome watch_outcome_of(const struct verdict *v,
                                    const struct policy_wl_entry *protection)
{
    if (v->ignored)
        return WATCH_IGNORED;
    if (v->action == VERDICT_BAN)
        return WATCH_BAN;
    if (v->whitelisted)
        return protection && (protection->source == POLICY_SRC_CONFIG ||
                              protection->source == POLICY_SRC_ALLOW)
                   ? WATCH_ALLOWLISTED
                   : WATCH_PROTECTED;
    if (!v->counted)
        return WATCH_NOT_COUNTED;
    if (v->already_banned)
        return WATCH_ALREADY_BANNED;
    return WATCH_BELOW;
}

/* Attacker text: as it is when valid UTF-8, else escaped as the log escapes it. len bounds
 * the read (the fields are fixed arrays). */
static json_t *text(const char *s, size_t max)
{
    size_t len = strnlen(s, max);
    json_t *j = json_stringn(s, len);
    if (!j) {
        char esc[4 * SEC_ACCOUNT_MAX + 4];
        j = json_string(log_escape(s, len, esc, sizeof(esc)));
    }
    return j;
}

static json_t *seconds(int64_t ms)
{
    return json_real((double)ms / 1000.0);
}

json_t *watch_event_json(const struct sec_event *ev, const struct addr_prefix *key,
                         const struct verdict *v, double weight,
                         const struct policy_wl_entry *protection, int64_t now_ms)
{
    char a[ADDR_STRLEN], p[ADDR_STRLEN];
    const char *type = sec_event_type_name(ev->type);
    enum watch_outcome o = watch_outcome_of(v, protection);
    json_t *r = json_object();
    if (!r)
        return NULL;
    json_object_set_new(r, "type", json_string("event"));
    json_object_set_new(r, "time", seconds(now_ms));
    json_object_set_new(r, "source", text(ev->source, sizeof(ev->source)));
    json_object_set_new(r, "addr", json_string(addr_format(&ev->remote.addr, a, sizeof(a))));
    if (key)
        json_object_set_new(r, "key", json_string(addr_prefix_format(key, p, sizeof(p))));
    json_object_set_new(r, "service", text(ev->service, sizeof(ev->service)));
    json_object_set_new(r, "event", json_string(type ? type : "?"));
    json_object_set_new(r, "account", text(ev->account, sizeof(ev->account)));
    json_object_set_new(r, "weight", json_real(weight));
    if (v->threshold) {
        json_object_set_new(r, "window", json_real(v->window));
        json_object_set_new(r, "threshold", json_integer(v->threshold));
    } else {
        json_object_set_new(r, "window", json_null());
        json_object_set_new(r, "threshold", json_null());
    }
    json_object_set_new(r, "verdict", json_string(watch_outcome_name(o)));
    if (o == WATCH_IGNORED)
        json_object_set_new(r, "why", json_string(v->ignored));
    else if ((o == WATCH_ALLOWLISTED || o == WATCH_PROTECTED) && protection)
        json_object_set_new(r, "why",
                            json_pack("{s:s, s:s, s:s}", "prefix",
                                      addr_prefix_format(&protection->prefix, p, sizeof(p)),
                                      "label", protection->label, "source",
                                      policy_source_name(protection->source)));
    if (v->authenticated)
        json_object_set_new(r, "trusted", json_true());
    if (o == WATCH_BAN)
        json_object_set_new(
            r, "ban",
            json_pack("{s:s, s:o, s:i}", "prefix", addr_prefix_format(&v->prefix, p, sizeof(p)),
                      "duration", v->timeout_ms ? json_integer(v->timeout_ms / 1000) : json_null(),
                      "offence", (int)v->offence));
    return r;
}

static const char *reason_name(enum verdict_reason r)
{
    switch (r) {
    case VERDICT_THRESHOLD:
        return "threshold";
    case VERDICT_MANUAL:
        return "manual";
    case VERDICT_RESTORE:
        return "restore";
    case VERDICT_PROTECTED:
        return "protected";
    case VERDICT_REMOTE:
        return "remote";
    }
    return "?";
}

json_t *watch_verdict_json(const struct verdict *v, int64_t now_ms)
{
    char p[ADDR_STRLEN];
    json_t *r =
        json_pack("{s:s, s:o, s:s, s:s, s:s}", "type", "verdict", "time", seconds(now_ms), "action",
                  v->action == VERDICT_BAN ? "ban" : "unban", "reason", reason_name(v->reason),
                  "prefix", addr_prefix_format(&v->prefix, p, sizeof(p)));
    if (r && v->action == VERDICT_BAN)
        json_object_set_new(r, "duration",
                            v->timeout_ms ? json_integer(v->timeout_ms / 1000) : json_null());
    return r;
}
