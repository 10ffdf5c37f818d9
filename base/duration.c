#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"

static const struct {
    char unit;
    int64_t seconds;
} units[] = {{'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};

#define NUNITS (sizeof(units) / sizeof(units[0]))

int duration_parse(const char *s, int64_t *ret_seconds)
{
    int64_t total = 0;
    size_t next_unit = 0; /* units must come in decreasing order, each at most once */
    bool any = false;

    if (!s || !*s)
        return -EINVAL;
    while (*s) {
        int64_t v = 0;
        if (*s < '0' || *s > '9')
            return -EINVAL;
        while (*s >= '0' && *s <= '9') {
            if (v > (INT64_MAX - 9) / 10)
                return -ERANGE;
            v = v * 10 + (*s++ - '0');
        }
        int64_t mult;
        if (*s == '\0') {
            if (any) /* "1h30" is ambiguous */
                return -EINVAL;
            mult = 1;
        } else {
            size_t u = next_unit;
            while (u < NUNITS && units[u].unit != *s)
                u++;
            if (u == NUNITS)
                return -EINVAL;
            mult = units[u].seconds;
            next_unit = u + 1;
            s++;
        }
        if (v > INT64_MAX / mult || total > INT64_MAX - v * mult)
            return -ERANGE;
        total += v * mult;
        any = true;
    }
    *ret_seconds = total;
    return 0;
}

const char *duration_format(int64_t seconds, char *buf, size_t buflen)
{
    size_t o = 0;
    if (buflen == 0)
        return buf;
    buf[0] = '\0';
    if (seconds <= 0) {
        snprintf(buf, buflen, "%s0s", seconds < 0 ? "-" : "");
        return buf;
    }
    for (size_t i = 0; i < NUNITS && seconds > 0; i++) {
        int64_t n = seconds / units[i].seconds;
        if (!n)
            continue;
        seconds -= n * units[i].seconds;
        int w = snprintf(buf + o, buflen - o, "%lld%c", (long long)n, units[i].unit);
        if (w < 0 || (size_t)w >= buflen - o)
            break;
        o += (size_t)w;
    }
    return buf;
}
