#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static enum log_target target = LOG_TARGET_STDERR;
static enum log_level max_level = LOG_LVL_INFO;

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};

void log_setup(enum log_target t, enum log_level level)
{
    if (target == LOG_TARGET_SYSLOG && t != LOG_TARGET_SYSLOG)
        closelog();
    target = t;
    max_level = level;
    if (t == LOG_TARGET_SYSLOG)
        openlog("pbxguardd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(enum log_level level)
{
    max_level = level;
}

enum log_level log_get_level(void)
{
    return max_level;
}

int log_level_from_name(const char *name)
{
    for (int i = 0; i <= LOG_LVL_DEBUG; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (strcmp(name, "warn") == 0)
        return LOG_LVL_WARN;
    if (strcmp(name, "err") == 0)
        return LOG_LVL_ERR;
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return (unsigned)level <= LOG_LVL_DEBUG ? level_names[level] : "?";
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    if (level > max_level)
        return;
    va_start(ap, fmt);
    if (target == LOG_TARGET_SYSLOG) {
        vsyslog(syslog_prio[level], fmt, ap);
    } else {
        /* "<N>" prefixes let journald pick the priority when running under systemd. */
        char msg[2048];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        fprintf(stderr, "<%d>pbxguardd: %s: %s\n", syslog_prio[level], level_names[level], msg);
    }
    va_end(ap);
}

/* Escaped form of one byte into tmp; returns its length (1, 2 or 4). */
static size_t escape_byte(unsigned char c, char tmp[4])
{
    static const char hex[] = "0123456789abcdef";
    if (c == '\\' || c == '"') {
        tmp[0] = '\\';
        tmp[1] = (char)c;
        return 2;
    }
    if (c < 0x20 || c >= 0x7f) {
        tmp[0] = '\\';
        tmp[1] = 'x';
        tmp[2] = hex[c >> 4];
        tmp[3] = hex[c & 15];
        return 4;
    }
    tmp[0] = (char)c;
    return 1;
}

const char *log_escape(const char *in, size_t len, char *out, size_t outlen)
{
    char tmp[4];
    size_t need = 0, o = 0, room;

    if (outlen == 0)
        return out;
    for (size_t i = 0; i < len; i++)
        need += escape_byte((unsigned char)in[i], tmp);
    /* If it all fits, copy it all; otherwise stop early enough to append "...". */
    room = need < outlen ? outlen - 1 : (outlen >= 4 ? outlen - 4 : 0);
    for (size_t i = 0; i < len; i++) {
        size_t n = escape_byte((unsigned char)in[i], tmp);
        if (o + n > room)
            break;
        memcpy(out + o, tmp, n);
        o += n;
    }
    if (need >= outlen && outlen >= 4) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}
