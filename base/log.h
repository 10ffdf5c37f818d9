/* Logging. Library code returns errors; the caller that decides logs once.
 * Attacker-controlled text goes through log_escape() (or the %s of log_* after escaping). */
#pragma once
#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_NOTICE, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_target { LOG_TARGET_STDERR = 0, LOG_TARGET_SYSLOG };

void log_setup(enum log_target target, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error|warning|notice|info|debug"; -1 if unknown. */
int log_level_from_name(const char *name);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LVL_DEBUG)                                                      \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/* Copies len bytes of untrusted text into out as printable ASCII: control bytes, backslash,
 * double quote and bytes >= 0x7f become \xNN (\\ and \" for those two); the result is cut
 * (ending in "...") to fit outlen. Always NUL-terminates. Returns out. */
const char *log_escape(const char *in, size_t len, char *out, size_t outlen);
