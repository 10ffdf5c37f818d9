/* The configuration file: a small table-driven INI parser of our own.
 *
 * Why not libinih: we want every error to carry file, line, section and key, ALL errors reported
 * in one pass (an admin fixing a config should not play whack-a-mole), unknown keys refused
 * (a typo such as "maxrety" must not silently leave protection at its default), repeated keys
 * for lists, and scalar keys set twice flagged. With a parser this small, doing it ourselves is
 * less code than adapting a callback API to all of that.
 *
 * Syntax: "[section]" or "[section:NAME]" headers; "key = value" lines; whole-line comments
 * starting with ';' or '#'. A value may be wrapped in double quotes to keep leading or trailing
 * blanks. There are no inline comments: secrets may hold ';' and '#', and a stray comment after
 * a number is reported as a bad number rather than silently dropped.
 *
 * Adding a key is one line in the table of its section (and a default in config_defaults()). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"
#include "ctl_proto.h"
#include "duration.h"

#define LINE_MAX_LEN 4096
#define QUOTE_MAX 72 /* bytes of a value quoted back in an error message */
#define MSG_MAX 1024

enum key_kind {
    K_STRING,      /* printable text; empty allowed only with min = 0 */
    K_NAME,        /* [A-Za-z0-9_.-]: nftables objects, groups; empty allowed only with min = 0 */
    K_PATH,        /* absolute path */
    K_HOST,        /* IPv4, IPv6 or hostname: non-empty, no blanks */
    K_UINT,        /* unsigned */
    K_INT,         /* int */
    K_PORT,        /* uint16_t, 1-65535 */
    K_SECONDS,     /* duration into int64_t seconds */
    K_MILLIS,      /* duration into int64_t milliseconds; also "250ms" */
    K_BOOL,        /* bool */
    K_DOUBLE,      /* double */
    K_ENUM,        /* int-sized enum, names in enums */
    K_PORTS,       /* uint16_t array + unsigned count; comma lists, repeatable */
    K_CIDRS,       /* the whitelist: comma lists, repeatable */
    K_SECRET,      /* AMI secret, inline */
    K_SECRET_FILE, /* a secret: the first line of a root-only file, or credential:NAME (the
                      credential's name goes into char[CFG_NAME_MAX] at count_offset) */
    K_FLAGS,       /* unsigned bit set: a comma list of names from enums; "none" = 0 */
    K_NAMES,       /* char[size][CFG_NAME_MAX] + unsigned count; comma lists, repeatable */
    K_URL,         /* http:// or https:// URL */
};

struct enum_name {
    const char *name; /* the first name listed for a value is the one config_dump prints */
    int value;
};

struct key_def {
    const char *name;
    enum key_kind kind;
    size_t offset;       /* into the section's struct */
    size_t size;         /* of the field (strings: buffer size; arrays: capacity in elements) */
    size_t count_offset; /* K_PORTS: the unsigned count */
    double min, max;     /* numbers: bounds in the field's unit; strings: min = 1 forbids empty */
    const struct enum_name *enums;
};

enum section_kind {
    S_GENERAL,
    S_AMI,
    S_SECLOG,
    S_POLICY,
    S_SERVICE,
    S_EVENTS,
    S_WHITELIST,
    S_PROTECT,
    S_STATSD,
    S_PROMETHEUS,
    S_NFTABLES,
    S_CLUSTER,
    S_CROWDSEC,
    S_COUNT
};

struct section_def {
    const char *name;
    enum section_kind kind;
    bool named; /* [name:ARG] */
    const struct key_def *keys;
    size_t nkeys;
    bool event_weights; /* event type names are keys too */
};

#define FLD(type, field) offsetof(struct type, field), sizeof(((struct type *)0)->field)
#define ARR(type, field, cnt)                                                                      \
    offsetof(struct type, field),                                                                  \
        sizeof(((struct type *)0)->field) / sizeof(((struct type *)0)->field[0]),                  \
        offsetof(struct type, cnt)
#define NKEYS(t) (sizeof(t) / sizeof(t[0]))

#define DAY 86400.0
#define YEAR (365 * DAY)

static const struct enum_name level_names[] = {
    {"error", LOG_LVL_ERR}, {"warning", LOG_LVL_WARN}, {"notice", LOG_LVL_NOTICE},
    {"info", LOG_LVL_INFO}, {"debug", LOG_LVL_DEBUG},  {NULL, 0}};
static const struct enum_name target_names[] = {
    {"stderr", LOG_TARGET_STDERR}, {"syslog", LOG_TARGET_SYSLOG}, {NULL, 0}};
static const struct enum_name auth_names[] = {
    {"md5", CFG_AMI_AUTH_MD5}, {"plain", CFG_AMI_AUTH_PLAIN}, {NULL, 0}};
static const struct enum_name statsd_type_names[] = {{"counter", CFG_STATSD_COUNTER},
                                                     {"meter", CFG_STATSD_METER},
                                                     {"c", CFG_STATSD_COUNTER},
                                                     {"m", CFG_STATSD_METER},
                                                     {NULL, 0}};

static const struct enum_name backend_names[] = {
    {"none", CFG_CLUSTER_NONE}, {"postgresql", CFG_CLUSTER_POSTGRESQL}, {NULL, 0}};
static const struct enum_name publish_names[] = {
    {"threshold", CFG_PUBLISH_THRESHOLD}, {"manual", CFG_PUBLISH_MANUAL}, {NULL, 0}};

/* The control socket's path must fit sockaddr_un.sun_path with its NUL. */
#define SUN_PATH_MAX ((double)sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

static const struct key_def general_keys[] = {
    {"database", K_PATH, FLD(cfg_general, database), 0, 1, 0, NULL},
    {"control_socket", K_PATH, FLD(cfg_general, control_socket), 0, 1, SUN_PATH_MAX, NULL},
    {"control_group", K_NAME, FLD(cfg_general, control_group), 0, 0, 0, NULL},
    {"group_min_prefix4", K_UINT, FLD(cfg_general, group_min_prefix4), 0, 1, 32, NULL},
    {"group_min_prefix6", K_UINT, FLD(cfg_general, group_min_prefix6), 0, 1, 128, NULL},
    {"lock_file", K_PATH, FLD(cfg_general, lock_file), 0, 1, 0, NULL},
    {"log_level", K_ENUM, FLD(cfg_general, log_level), 0, 0, 0, level_names},
    {"log_target", K_ENUM, FLD(cfg_general, log_target), 0, 0, 0, target_names},
    {"retention", K_SECONDS, FLD(cfg_general, retention_s), 0, 3600, 10 * YEAR, NULL},
    {"database_mmap_mib", K_UINT, FLD(cfg_general, database_mmap_mib), 0, 0, 65536, NULL},
};

static const struct key_def ami_keys[] = {
    {"host", K_HOST, FLD(cfg_ami, host), 0, 1, 0, NULL},
    {"port", K_PORT, FLD(cfg_ami, port), 0, 1, 65535, NULL},
    {"username", K_STRING, FLD(cfg_ami, username), 0, 1, 0, NULL},
    {"secret", K_SECRET, FLD(cfg_ami, secret), 0, 1, 0, NULL},
    {"secret_file", K_SECRET_FILE, FLD(cfg_ami, secret), offsetof(struct cfg_ami, credential), 1, 0,
     NULL},
    {"auth", K_ENUM, FLD(cfg_ami, auth), 0, 0, 0, auth_names},
    {"ping_interval", K_MILLIS, FLD(cfg_ami, ping_interval_ms), 0, 1000, 3600e3, NULL},
    {"ping_timeout", K_MILLIS, FLD(cfg_ami, ping_timeout_ms), 0, 1000, 600e3, NULL},
    {"connect_timeout", K_MILLIS, FLD(cfg_ami, connect_timeout_ms), 0, 1000, 600e3, NULL},
    {"backoff_min", K_MILLIS, FLD(cfg_ami, backoff_min_ms), 0, 100, 600e3, NULL},
    {"backoff_max", K_MILLIS, FLD(cfg_ami, backoff_max_ms), 0, 1000, DAY * 1e3, NULL},
    {"learn_trust", K_BOOL, FLD(cfg_ami, learn_trust), 0, 0, 0, NULL},
    {"trust_refresh", K_SECONDS, FLD(cfg_ami, trust_refresh_s), 0, 0, 7 * DAY, NULL},
};

static const struct enum_name seclog_mode_names[] = {
    {"backfill", CFG_SECLOG_BACKFILL}, {"primary", CFG_SECLOG_PRIMARY}, {NULL, 0}};

static const struct key_def seclog_keys[] = {
    {"path", K_PATH, FLD(cfg_seclog, path), 0, 1, 0, NULL},
    {"mode", K_ENUM, FLD(cfg_seclog, mode), 0, 0, 0, seclog_mode_names},
    {"ami", K_NAME, FLD(cfg_seclog, ami), 0, 1, 0, NULL},
};

static const struct key_def policy_keys[] = {
    {"maxretry", K_UINT, FLD(cfg_policy, maxretry), 0, 1, 1e6, NULL},
    {"findtime", K_SECONDS, FLD(cfg_policy, findtime_s), 0, 1, 30 * DAY, NULL},
    {"bantime", K_SECONDS, FLD(cfg_policy, bantime_s), 0, 1, YEAR, NULL},
    {"bantime_factor", K_DOUBLE, FLD(cfg_policy, bantime_factor), 0, 1, 100, NULL},
    {"bantime_max", K_SECONDS, FLD(cfg_policy, bantime_max_s), 0, 1, 10 * YEAR, NULL},
    {"permanent_after", K_UINT, FLD(cfg_policy, permanent_after), 0, 0, 1000, NULL},
    {"offence_window", K_SECONDS, FLD(cfg_policy, offence_window_s), 0, 1, 10 * YEAR, NULL},
    {"ipv4_prefix", K_UINT, FLD(cfg_policy, ipv4_prefix), 0, 8, 32, NULL},
    {"ipv6_prefix", K_UINT, FLD(cfg_policy, ipv6_prefix), 0, 32, 128, NULL},
    {"trust_window", K_SECONDS, FLD(cfg_policy, trust_window_s), 0, 0, 30 * DAY, NULL},
    {"trusted_maxretry", K_UINT, FLD(cfg_policy, trusted_maxretry), 0, 0, 1e6, NULL},
};

static const struct key_def service_keys[] = {
    {"maxretry", K_UINT, FLD(cfg_service_override, maxretry), 0, 1, 1e6, NULL},
};

static const struct key_def whitelist_keys[] = {
    {"cidr", K_CIDRS, 0, 0, 0, 0, 0, NULL},
};

static const struct key_def protect_keys[] = {
    {"own_addresses", K_BOOL, FLD(cfg_protect, own_addresses), 0, 0, 0, NULL},
    {"gateways", K_BOOL, FLD(cfg_protect, gateways), 0, 0, 0, NULL},
    {"resolvers", K_BOOL, FLD(cfg_protect, resolvers), 0, 0, 0, NULL},
    {"resolv_conf", K_PATH, FLD(cfg_protect, resolv_conf), 0, 1, 0, NULL},
    {"min_prefix4", K_UINT, FLD(cfg_protect, min_prefix4), 0, 1, 32, NULL},
    {"min_prefix6", K_UINT, FLD(cfg_protect, min_prefix6), 0, 1, 128, NULL},
};

static const struct key_def statsd_keys[] = {
    {"enabled", K_BOOL, FLD(cfg_statsd, enabled), 0, 0, 0, NULL},
    {"host", K_HOST, FLD(cfg_statsd, host), 0, 1, 0, NULL},
    {"port", K_PORT, FLD(cfg_statsd, port), 0, 1, 65535, NULL},
    {"prefix", K_NAME, FLD(cfg_statsd, prefix), 0, 0, 0, NULL},
    {"own_prefix", K_NAME, FLD(cfg_statsd, own_prefix), 0, 0, 0, NULL},
    {"type", K_ENUM, FLD(cfg_statsd, type), 0, 0, 0, statsd_type_names},
    {"per_address", K_BOOL, FLD(cfg_statsd, per_address), 0, 0, 0, NULL},
    {"per_address_limit", K_UINT, FLD(cfg_statsd, per_address_limit), 0, 0, 1e7, NULL},
    {"max_payload", K_UINT, FLD(cfg_statsd, max_payload), 0, 64, 65000, NULL},
    {"flush_interval", K_MILLIS, FLD(cfg_statsd, flush_interval_ms), 0, 10, 60e3, NULL},
};

static const struct key_def prometheus_keys[] = {
    {"textfile", K_PATH, FLD(cfg_prometheus, textfile), 0, 0, 0, NULL},
    {"interval", K_MILLIS, FLD(cfg_prometheus, interval_ms), 0, 1000, 3600e3, NULL},
};

static const struct key_def nftables_keys[] = {
    {"table", K_NAME, FLD(cfg_nftables, table), 0, 1, 0, NULL},
    {"set4", K_NAME, FLD(cfg_nftables, set4), 0, 1, 0, NULL},
    {"set6", K_NAME, FLD(cfg_nftables, set6), 0, 1, 0, NULL},
    {"chain", K_NAME, FLD(cfg_nftables, chain), 0, 1, 0, NULL},
    {"priority", K_INT, FLD(cfg_nftables, priority), 0, -1000, 1000, NULL},
    {"hook_forward", K_BOOL, FLD(cfg_nftables, hook_forward), 0, 0, 0, NULL},
    {"tcp_ports", K_PORTS, ARR(cfg_nftables, tcp_ports, ntcp_ports), 1, 65535, NULL},
    {"udp_ports", K_PORTS, ARR(cfg_nftables, udp_ports, nudp_ports), 1, 65535, NULL},
    {"set_size", K_UINT, FLD(cfg_nftables, set_size), 0, 0, 1e8, NULL},
    {"remove_on_stop", K_BOOL, FLD(cfg_nftables, remove_on_stop), 0, 0, 0, NULL},
    {"check_interval", K_MILLIS, FLD(cfg_nftables, check_interval_ms), 0, 1000, 3600e3, NULL},
};

static const struct key_def cluster_keys[] = {
    {"backend", K_ENUM, FLD(cfg_cluster, backend), 0, 0, 0, backend_names},
    {"conninfo", K_STRING, FLD(cfg_cluster, conninfo), 0, 0, 0, NULL},
    {"password_file", K_SECRET_FILE, FLD(cfg_cluster, password),
     offsetof(struct cfg_cluster, credential), 1, 0, NULL},
    {"node", K_NAME, FLD(cfg_cluster, node), 0, 1, 0, NULL},
    {"publish", K_FLAGS, FLD(cfg_cluster, publish), 0, 0, 0, publish_names},
    {"accept", K_BOOL, FLD(cfg_cluster, accept), 0, 0, 0, NULL},
    {"max_prefix4", K_UINT, FLD(cfg_cluster, max_prefix4), 0, 1, 32, NULL},
    {"max_prefix6", K_UINT, FLD(cfg_cluster, max_prefix6), 0, 1, 128, NULL},
    {"catchup_interval", K_MILLIS, FLD(cfg_cluster, catchup_interval_ms), 0, 1000, 3600e3, NULL},
    {"connect_timeout", K_MILLIS, FLD(cfg_cluster, connect_timeout_ms), 0, 500, 600e3, NULL},
    {"query_timeout", K_MILLIS, FLD(cfg_cluster, query_timeout_ms), 0, 500, 600e3, NULL},
};

static const struct key_def crowdsec_keys[] = {
    {"lapi_url", K_URL, FLD(cfg_crowdsec, lapi_url), 0, 1, 0, NULL},
    {"machine_id", K_NAME, FLD(cfg_crowdsec, machine_id), 0, 1, 0, NULL},
    {"password_file", K_SECRET_FILE, FLD(cfg_crowdsec, password),
     offsetof(struct cfg_crowdsec, password_credential), 1, 0, NULL},
    {"api_key_file", K_SECRET_FILE, FLD(cfg_crowdsec, api_key),
     offsetof(struct cfg_crowdsec, api_key_credential), 1, 0, NULL},
    {"publish", K_BOOL, FLD(cfg_crowdsec, publish), 0, 0, 0, NULL},
    {"enforce", K_BOOL, FLD(cfg_crowdsec, enforce), 0, 0, 0, NULL},
    {"scenario", K_STRING, FLD(cfg_crowdsec, scenario), 0, 1, 0, NULL},
    {"poll_interval", K_MILLIS, FLD(cfg_crowdsec, poll_interval_ms), 0, 100, 3600e3, NULL},
    {"origins", K_NAMES, ARR(cfg_crowdsec, origins, norigins), 0, 0, NULL},
    {"max_prefix4", K_UINT, FLD(cfg_crowdsec, max_prefix4), 0, 1, 32, NULL},
    {"max_prefix6", K_UINT, FLD(cfg_crowdsec, max_prefix6), 0, 1, 128, NULL},
    {"ca_file", K_PATH, FLD(cfg_crowdsec, ca_file), 0, 0, 0, NULL},
    {"cert_file", K_PATH, FLD(cfg_crowdsec, cert_file), 0, 0, 0, NULL},
    {"key_file", K_PATH, FLD(cfg_crowdsec, key_file), 0, 0, 0, NULL},
    {"timeout", K_MILLIS, FLD(cfg_crowdsec, timeout_ms), 0, 1000, 600e3, NULL},
    {"max_reply_mib", K_UINT, FLD(cfg_crowdsec, max_reply_mib), 0, 1, 1024, NULL},
};

static const struct section_def sections[] = {
    {"general", S_GENERAL, false, general_keys, NKEYS(general_keys), false},
    {"ami", S_AMI, true, ami_keys, NKEYS(ami_keys), false},
    {"seclog", S_SECLOG, true, seclog_keys, NKEYS(seclog_keys), false},
    {"policy", S_POLICY, false, policy_keys, NKEYS(policy_keys), false},
    {"policy", S_SERVICE, true, service_keys, NKEYS(service_keys), true},
    {"events", S_EVENTS, false, NULL, 0, true},
    {"whitelist", S_WHITELIST, false, whitelist_keys, NKEYS(whitelist_keys), false},
    {"protect", S_PROTECT, false, protect_keys, NKEYS(protect_keys), false},
    {"statsd", S_STATSD, false, statsd_keys, NKEYS(statsd_keys), false},
    {"prometheus", S_PROMETHEUS, false, prometheus_keys, NKEYS(prometheus_keys), false},
    {"nftables", S_NFTABLES, false, nftables_keys, NKEYS(nftables_keys), false},
    {"cluster", S_CLUSTER, false, cluster_keys, NKEYS(cluster_keys), false},
    {"crowdsec", S_CROWDSEC, false, crowdsec_keys, NKEYS(crowdsec_keys), false},
};

#define MAX_SECTION_KEYS 20
_Static_assert(NKEYS(general_keys) <= MAX_SECTION_KEYS && NKEYS(ami_keys) <= MAX_SECTION_KEYS &&
                   NKEYS(policy_keys) <= MAX_SECTION_KEYS &&
                   NKEYS(statsd_keys) <= MAX_SECTION_KEYS &&
                   NKEYS(protect_keys) <= MAX_SECTION_KEYS &&
                   NKEYS(nftables_keys) <= MAX_SECTION_KEYS &&
                   NKEYS(cluster_keys) <= MAX_SECTION_KEYS &&
                   NKEYS(crowdsec_keys) <= MAX_SECTION_KEYS,
               "key_line[] holds one line per key of a section");

struct parser {
    const char *path;
    unsigned line;
    struct config *cfg;
    config_error_fn on_error;
    void *data;
    int nerrors;

    const struct section_def *sec;      /* NULL outside a (valid) section */
    bool in_bad_section;                /* after a bad header: its keys are ignored, not reported */
    char secname[2 * CFG_NAME_MAX + 2]; /* "ami:NAME" as written, for messages */
    unsigned sec_line;
    void *base;                          /* the struct this section's keys write into */
    unsigned key_line[MAX_SECTION_KEYS]; /* where each key was set in this section; 0 = not */
    unsigned weight_line[SEC_EVENT_TYPE_COUNT];
    unsigned seen_line[S_COUNT]; /* first header line of each unnamed section */
    unsigned *service_lines;     /* header line of each [policy:SERVICE] */
    unsigned *seclog_lines;      /* each [seclog:NAME]'s ami line, else its header line */
    bool paths_only;             /* config_load_paths(): [general]'s two paths, nothing else */
    bool have_file;              /* read from a file: who may read it is known */
    struct stat file;            /* that file's owner and mode */
    bool exposed_reported;       /* an inline secret in a file others may read: said once */
    bool names_set;              /* a K_NAMES key was set: the defaults are replaced */
};

static void report(struct parser *p, unsigned line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(struct parser *p, unsigned line, const char *key, const char *fmt, ...)
{
    char what[MSG_MAX - 128], msg[MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (line && p->secname[0] && key)
        snprintf(msg, sizeof(msg), "%s:%u: [%s] %s: %s", p->path, line, p->secname, key, what);
    else if (line && p->secname[0])
        snprintf(msg, sizeof(msg), "%s:%u: [%s] %s", p->path, line, p->secname, what);
    else if (line)
        snprintf(msg, sizeof(msg), "%s:%u: %s", p->path, line, what);
    else
        snprintf(msg, sizeof(msg), "%s: %s", p->path, what);
    p->nerrors++;
    if (p->on_error)
        p->on_error(p->data, msg);
}

/* A value quoted back to the admin: escaped (no control bytes reach a terminal) and bounded. */
static const char *quoted(const char *v, char buf[QUOTE_MAX])
{
    return log_escape(v, strlen(v), buf, QUOTE_MAX);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static char *trim(char *s)
{
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n && is_blank(s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static bool valid_name(const char *s)
{
    for (; *s; s++)
        if (!is_name_char(*s))
            return false;
    return true;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

/* --- defaults --- */

static const enum sec_event_type default_failures[] = {
    SEC_FAILED_ACL,          SEC_INVALID_ACCOUNT_ID,
    SEC_INVALID_PASSWORD,    SEC_CHALLENGE_RESPONSE_FAILED,
    SEC_REQUEST_NOT_ALLOWED, SEC_REQUEST_BAD_FORMAT,
};

void config_defaults(struct config *ret_cfg)
{
    struct config *c = ret_cfg;

    memset(c, 0, sizeof(*c));
    snprintf(c->path, sizeof(c->path), "%s", CFG_DEFAULT_PATH);

    snprintf(c->general.database, sizeof(c->general.database), "/var/lib/pbxguard/pbxguard.db");
    snprintf(c->general.control_socket, sizeof(c->general.control_socket), CTL_DEFAULT_SOCKET);
    snprintf(c->general.lock_file, sizeof(c->general.lock_file), "/run/pbxguard/pbxguardd.lock");
    c->general.log_level = LOG_LVL_INFO;
    c->general.log_target = LOG_TARGET_STDERR;
    c->general.retention_s = 30 * 86400;
    c->general.database_mmap_mib = 0;
    c->general.group_min_prefix4 = 24;
    c->general.group_min_prefix6 = 48;

    c->policy.maxretry = 5;
    c->policy.findtime_s = 600;
    c->policy.bantime_s = 3600;
    c->policy.bantime_factor = 2;
    c->policy.bantime_max_s = 7 * 86400;
    c->policy.permanent_after = 0;
    c->policy.offence_window_s = 30 * 86400;
    c->policy.ipv4_prefix = 32;
    c->policy.ipv6_prefix = 64;
    c->policy.trust_window_s = 3600;
    c->policy.trusted_maxretry = 0;
    for (size_t i = 0; i < NKEYS(default_failures); i++)
        c->policy.weight[default_failures[i]] = 1;

    c->protect.own_addresses = true;
    c->protect.gateways = true;
    c->protect.resolvers = true;
    snprintf(c->protect.resolv_conf, sizeof(c->protect.resolv_conf), "/etc/resolv.conf");
    c->protect.min_prefix4 = 8;
    c->protect.min_prefix6 = 16;

    snprintf(c->statsd.host, sizeof(c->statsd.host), "127.0.0.1");
    c->statsd.port = 8125;
    snprintf(c->statsd.own_prefix, sizeof(c->statsd.own_prefix), "pbxguard");
    c->statsd.type = CFG_STATSD_COUNTER;
    c->statsd.per_address = true;
    c->statsd.per_address_limit = 1000;
    c->statsd.max_payload = 1432;
    c->statsd.flush_interval_ms = 1000;

    c->prometheus.interval_ms = 15000;

    snprintf(c->nftables.table, sizeof(c->nftables.table), "pbxguard");
    snprintf(c->nftables.set4, sizeof(c->nftables.set4), "banned4");
    snprintf(c->nftables.set6, sizeof(c->nftables.set6), "banned6");
    snprintf(c->nftables.chain, sizeof(c->nftables.chain), "input");
    c->nftables.priority = -10;
    c->nftables.check_interval_ms = 30000;

    c->cluster.backend = CFG_CLUSTER_NONE;
    if (gethostname(c->cluster.node, sizeof(c->cluster.node)) < 0 || !c->cluster.node[0])
        snprintf(c->cluster.node, sizeof(c->cluster.node), "localhost");
    c->cluster.node[sizeof(c->cluster.node) - 1] = '\0';
    /* A host name with characters a node name may not hold: those become '-'. */
    for (char *n = c->cluster.node; *n; n++)
        if (!is_name_char(*n))
            *n = '-';
    c->cluster.publish = CFG_PUBLISH_THRESHOLD | CFG_PUBLISH_MANUAL;
    c->cluster.accept = true;
    c->cluster.max_prefix4 = 24;
    c->cluster.max_prefix6 = 48;
    c->cluster.catchup_interval_ms = 30000;
    c->cluster.connect_timeout_ms = 5000;
    c->cluster.query_timeout_ms = 10000;
    c->crowdsec.publish = true;
    c->crowdsec.enforce = true;
    snprintf(c->crowdsec.scenario, sizeof(c->crowdsec.scenario), "pbxguard/asterisk-bf");
    c->crowdsec.poll_interval_ms = 1000;
    static const char *const origins[] = {"crowdsec", "cscli", "cscli-import", "CAPI", "lists"};
    for (size_t i = 0; i < NKEYS(origins); i++)
        snprintf(c->crowdsec.origins[c->crowdsec.norigins++], CFG_NAME_MAX, "%s", origins[i]);
    c->crowdsec.max_prefix4 = 16;
    c->crowdsec.max_prefix6 = 32;
    c->crowdsec.timeout_ms = 10000;
    c->crowdsec.max_reply_mib = 64;
}

void config_seclog_defaults(struct cfg_seclog *l)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->path, sizeof(l->path), "/var/log/asterisk/security");
}

void config_ami_defaults(struct cfg_ami *a)
{
    memset(a, 0, sizeof(*a));
    a->port = 5038;
    a->auth = CFG_AMI_AUTH_MD5;
    a->ping_interval_ms = 20000;
    a->ping_timeout_ms = 10000;
    a->connect_timeout_ms = 10000;
    a->backoff_min_ms = 1000;
    a->backoff_max_ms = 60000;
    a->learn_trust = true;
    a->trust_refresh_s = 3600;
}

/* --- values --- */

static const char *range_text(const struct key_def *k, char *buf, size_t len)
{
    char a[32], b[32];
    switch (k->kind) {
    case K_SECONDS:
        snprintf(buf, len, "%s..%s", duration_format((int64_t)k->min, a, sizeof(a)),
                 duration_format((int64_t)k->max, b, sizeof(b)));
        break;
    case K_MILLIS:
        if ((int64_t)k->min % 1000)
            snprintf(a, sizeof(a), "%lldms", (long long)k->min);
        else
            duration_format((int64_t)k->min / 1000, a, sizeof(a));
        snprintf(buf, len, "%s..%s", a, duration_format((int64_t)k->max / 1000, b, sizeof(b)));
        break;
    default:
        snprintf(buf, len, "%g..%g", k->min, k->max);
        break;
    }
    return buf;
}

static bool parse_u64(const char *s, unsigned long long *ret)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *ret = v;
    return true;
}

static bool parse_millis(const char *s, int64_t *ret_ms)
{
    size_t n = strlen(s);
    int64_t sec;

    if (n > 2 && strcmp(s + n - 2, "ms") == 0) {
        char digits[24];
        unsigned long long v;
        if (n - 2 >= sizeof(digits))
            return false;
        memcpy(digits, s, n - 2);
        digits[n - 2] = '\0';
        if (!parse_u64(digits, &v) || v > INT64_MAX)
            return false;
        *ret_ms = (int64_t)v;
        return true;
    }
    if (duration_parse(s, &sec) < 0 || sec > INT64_MAX / 1000)
        return false;
    *ret_ms = sec * 1000;
    return true;
}

static void enum_list(const struct enum_name *e, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (; e->name && o < len; e++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", e->name);
}

static void set_cidrs(struct parser *p, const struct key_def *k, char *value)
{
    struct cfg_whitelist *w = &p->cfg->whitelist;
    char q[QUOTE_MAX];

    for (char *save = NULL, *tok = strtok_r(value, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        struct addr_prefix pfx;
        tok = trim(tok);
        if (!*tok)
            continue;
        if (addr_prefix_parse(tok, false, &pfx) < 0) {
            char fixed[ADDR_STRLEN];
            if (addr_prefix_parse(tok, true, &pfx) == 0)
                report(p, p->line, k->name, "\"%s\" has host bits set (expected %s)",
                       quoted(tok, q), addr_prefix_format(&pfx, fixed, sizeof(fixed)));
            else
                report(p, p->line, k->name,
                       "\"%s\" is not an address or CIDR (expected e.g. 192.0.2.0/24 or "
                       "2001:db8::/32)",
                       quoted(tok, q));
            continue;
        }
        struct addr_prefix *np = realloc(w->prefixes, (w->n + 1) * sizeof(*np));
        if (!np) {
            report(p, p->line, k->name, "out of memory");
            return;
        }
        w->prefixes = np;
        w->prefixes[w->n++] = pfx;
    }
}

static void set_ports(struct parser *p, const struct key_def *k, char *value)
{
    uint16_t *ports = (uint16_t *)((char *)p->base + k->offset);
    unsigned *count = (unsigned *)((char *)p->base + k->count_offset);
    char q[QUOTE_MAX];

    for (char *save = NULL, *tok = strtok_r(value, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned long long v;
        tok = trim(tok);
        if (!*tok)
            continue;
        if (!parse_u64(tok, &v) || v < 1 || v > 65535) {
            report(p, p->line, k->name, "\"%s\" is not a port number (expected 1-65535)",
                   quoted(tok, q));
            continue;
        }
        if (*count >= k->size) {
            report(p, p->line, k->name, "too many ports (at most %zu)", k->size);
            return;
        }
        ports[(*count)++] = (uint16_t)v;
    }
}

/* A comma list of names (repeatable): each one once. */
static void set_names(struct parser *p, const struct key_def *k, char *value)
{
    char(*names)[CFG_NAME_MAX] = (void *)((char *)p->base + k->offset);
    unsigned *count = (unsigned *)((char *)p->base + k->count_offset);
    char q[QUOTE_MAX];
    /* The first time the key is set in a file, it replaces the defaults. */
    if (!p->names_set) {
        *count = 0;
        p->names_set = true;
    }
    for (char *save = NULL, *tok = strtok_r(value, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!tok[0])
            continue;
        if (!valid_name(tok) || strlen(tok) >= CFG_NAME_MAX) {
            report(p, p->line, k->name,
                   "\"%s\" is not a valid name (expected letters, digits, '_', '-', '.')",
                   quoted(tok, q));
            continue;
        }
        bool dup = false;
        for (unsigned i = 0; i < *count; i++)
            dup |= strcmp(names[i], tok) == 0;
        if (dup)
            continue;
        if (*count >= k->size) {
            report(p, p->line, k->name, "too many names (at most %zu)", k->size);
            return;
        }
        snprintf(names[(*count)++], CFG_NAME_MAX, "%s", tok);
    }
}

/* Whether the group a file belongs to is the daemon's own: the group it runs as (when that is
 * not root's), or the service group the units and the package install (PBXGUARD_GROUP), as
 * seen by root checking the installed files. Such a group may read a secret only while nobody
 * else is a member of it: an admin who adds people to it to let them read the files has made
 * the secret theirs too. */
static bool own_group(gid_t gid, char ret_name[CFG_NAME_MAX], char *ret_members, size_t size)
{
    struct group *gr = NULL;
    if (gid == getegid() && gid != 0)
        gr = getgrgid(gid);
    else if (gid != 0 && (gr = getgrnam(PBXGUARD_GROUP)) && gr->gr_gid != gid)
        gr = NULL;
    if (!gr)
        return false;
    snprintf(ret_name, CFG_NAME_MAX, "%s", gr->gr_name);
    ret_members[0] = '\0';
    for (char **m = gr->gr_mem; m && *m; m++) {
        size_t n = strlen(ret_members);
        snprintf(ret_members + n, size - n, "%s%s", n ? ", " : "", *m);
    }
    return true;
}

/* The one rule for files that hold a secret (a secret_file, a systemd credential, a
 * configuration file with an inline secret): owned by root or by the user the daemon runs as,
 * and accessible to nobody else, except reading by the daemon's own group (own_group()), so
 * that a root-owned file the service user reads through its group (root:pbxguard 0640) is
 * accepted. Returns 0, or -EPERM with what is wrong and what to do about it in ret_why. */
static int secret_access_check(const char *path, const struct stat *st, char *ret_why, size_t size)
{
    char q[QUOTE_MAX], group[CFG_NAME_MAX], members[256];
    unsigned mode = (unsigned)(st->st_mode & 07777);

    quoted(path, q);
    if (st->st_uid != 0 && st->st_uid != geteuid()) {
        snprintf(ret_why, size,
                 "\"%s\" is owned by uid %u (expected root or the daemon's user: chown root %s)", q,
                 (unsigned)st->st_uid, q);
        return -EPERM;
    }
    if (!(st->st_mode & (S_IRWXG | S_IRWXO)))
        return 0;
    if ((st->st_mode & (S_IRWXG | S_IRWXO)) == S_IRGRP &&
        own_group(st->st_gid, group, members, sizeof(members))) {
        if (!members[0])
            return 0;
        snprintf(ret_why, size,
                 "\"%s\" is readable by group %s, whose members (%s) would read the secret too "
                 "(expected a group of the daemon's user alone, or mode 0600: chmod 600 %s)",
                 q, group, members, q);
        return -EPERM;
    }
    snprintf(ret_why, size,
             "\"%s\" is accessible by group or others (mode %04o); refusing to use a secret "
             "others can read (expected mode 0600: chmod 600 %s, or 0640 with the group of the "
             "daemon's user)",
             q, mode, q);
    return -EPERM;
}

/* Reads the first line of a file only the daemon may read (secret_access_check()) into
 * secret (a buffer of size bytes). */
static void read_secret_file(struct parser *p, const struct key_def *k, const char *path,
                             char *secret, size_t size)
{
    char q[QUOTE_MAX], buf[CFG_SECRET_MAX + 2], why[MSG_MAX / 2];
    struct stat st;
    /* O_NONBLOCK: a FIFO or a device named here must not hang the daemon (it is refused as
     * not a regular file right after). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        report(p, p->line, k->name, "cannot open \"%s\": %s", quoted(path, q), strerror(errno));
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        report(p, p->line, k->name, "\"%s\" is not a regular file", quoted(path, q));
        goto out;
    }
    if (secret_access_check(path, &st, why, sizeof(why)) < 0) {
        report(p, p->line, k->name, "%s", why);
        goto out;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0) {
        report(p, p->line, k->name, "cannot read \"%s\": %s", quoted(path, q), strerror(errno));
        goto out;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0]) {
        report(p, p->line, k->name, "\"%s\" is empty (expected the secret on its first line)",
               quoted(path, q));
    } else if (strlen(buf) >= size) {
        report(p, p->line, k->name, "the secret in \"%s\" is too long (at most %zu bytes)",
               quoted(path, q), size - 1);
    } else if (!printable(buf)) {
        report(p, p->line, k->name, "the secret in \"%s\" holds control characters",
               quoted(path, q));
    } else {
        memcpy(secret, buf, strlen(buf) + 1);
    }
    explicit_bzero(buf, sizeof(buf));
out:
    close(fd);
}

/* secret_file = credential:NAME names a systemd credential (LoadCredential=NAME:PATH in the
 * unit): a copy of the file that systemd, as root, hands to the service user in
 * $CREDENTIALS_DIRECTORY. Outside the unit (the CLI, pbxguardd -t run by hand) there is no
 * such directory: the name is kept and the secret left empty, and the daemon refuses to start
 * without it (config_unresolved_credential()). */
static void set_credential(struct parser *p, const struct key_def *k, const char *name,
                           char *secret, size_t size)
{
    /* [ami:NAME] secret_file, [cluster] password_file: the name's field is at count_offset. */
    char *credential = (char *)p->base + k->count_offset;
    char q[QUOTE_MAX], path[CFG_PATH_MAX + CFG_NAME_MAX + 2];
    const char *dir = getenv("CREDENTIALS_DIRECTORY");

    if (!name[0] || strlen(name) >= CFG_NAME_MAX || !valid_name(name) || !strcmp(name, ".") ||
        !strcmp(name, "..")) {
        report(p, p->line, k->name,
               "\"%s\" is not a credential name (expected credential:NAME, NAME of at most %d "
               "letters, digits, '_', '-', '.', as in LoadCredential=NAME:PATH)",
               quoted(name, q), CFG_NAME_MAX - 1);
        return;
    }
    memcpy(credential, name, strlen(name) + 1);
    if (!dir || !dir[0])
        return;
    if (dir[0] != '/' || strlen(dir) >= CFG_PATH_MAX) {
        report(p, p->line, k->name,
               "$CREDENTIALS_DIRECTORY \"%s\" is not an absolute path of at most %d bytes",
               quoted(dir, q), CFG_PATH_MAX - 1);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    read_secret_file(p, k, path, secret, size);
}

static void set_flags(struct parser *p, const struct key_def *k, char *value)
{
    unsigned bits = 0;
    char q[QUOTE_MAX], list[160];
    bool none = false, bad = false;

    for (char *save = NULL, *tok = strtok_r(value, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!*tok)
            continue;
        if (!strcmp(tok, "none")) {
            none = true;
            continue;
        }
        const struct enum_name *e = k->enums;
        while (e->name && strcmp(e->name, tok) != 0)
            e++;
        if (!e->name) {
            enum_list(k->enums, list, sizeof(list));
            report(p, p->line, k->name,
                   "\"%s\" is not valid (expected a comma list of: %s; or none)", quoted(tok, q),
                   list);
            bad = true;
            continue;
        }
        bits |= (unsigned)e->value;
    }
    if (none && bits) {
        report(p, p->line, k->name, "\"none\" cannot be listed with other values");
        return;
    }
    if (!bad)
        *(unsigned *)((char *)p->base + k->offset) = bits;
}

static void set_value(struct parser *p, const struct key_def *k, char *value)
{
    void *field = (char *)p->base + k->offset;
    char q[QUOTE_MAX], range[80];
    unsigned long long u;
    int64_t d;

    switch (k->kind) {
    case K_STRING:
    case K_NAME:
    case K_PATH:
    case K_HOST:
    case K_URL:
    case K_SECRET: {
        size_t n = strlen(value), cap = k->size - 1;
        if (k->max > 0 && (size_t)k->max < cap)
            cap = (size_t)k->max;
        if (!n && k->min > 0) {
            report(p, p->line, k->name, "empty value (expected %s)",
                   k->kind == K_PATH ? "an absolute path" : "a value");
        } else if (n > cap) {
            report(p, p->line, k->name, "value is too long (at most %zu bytes)", cap);
        } else if (!printable(value)) {
            if (k->kind == K_SECRET) /* never quoted back: it is the secret */
                report(p, p->line, k->name, "the secret holds control characters");
            else
                report(p, p->line, k->name, "\"%s\" holds control characters", quoted(value, q));
        } else if (k->kind == K_NAME && !valid_name(value)) {
            report(p, p->line, k->name,
                   "\"%s\" is not a valid name (expected letters, digits, '_', '-', '.')",
                   quoted(value, q));
        } else if (k->kind == K_PATH && value[0] && value[0] != '/') {
            report(p, p->line, k->name, "\"%s\" is not an absolute path (expected /...)",
                   quoted(value, q));
        } else if (k->kind == K_URL &&
                   ((strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) ||
                    strpbrk(value, " \t"))) {
            report(p, p->line, k->name,
                   "\"%s\" is not an HTTP URL (expected http://HOST:PORT or https://HOST:PORT)",
                   quoted(value, q));
        } else if (k->kind == K_HOST && strpbrk(value, " \t")) {
            report(p, p->line, k->name,
                   "\"%s\" is not a host (expected an IPv4/IPv6 address or a host name)",
                   quoted(value, q));
        } else {
            memcpy(field, value, n + 1);
        }
        break;
    }
    case K_SECRET_FILE:
        if (!strncmp(value, CFG_CREDENTIAL_PREFIX, strlen(CFG_CREDENTIAL_PREFIX)))
            set_credential(p, k, value + strlen(CFG_CREDENTIAL_PREFIX), field, k->size);
        else if (value[0] != '/')
            report(p, p->line, k->name,
                   "\"%s\" is not an absolute path (expected /... or " CFG_CREDENTIAL_PREFIX
                   "NAME)",
                   quoted(value, q));
        else
            read_secret_file(p, k, value, field, k->size);
        break;
    case K_UINT:
    case K_PORT:
        if (!parse_u64(value, &u)) {
            report(p, p->line, k->name, "\"%s\" is not a %s (expected %s)", quoted(value, q),
                   k->kind == K_PORT ? "port number" : "whole number",
                   range_text(k, range, sizeof(range)));
        } else if ((double)u < k->min || (double)u > k->max) {
            report(p, p->line, k->name, "%llu is out of range (expected %s)", u,
                   range_text(k, range, sizeof(range)));
        } else if (k->kind == K_PORT) {
            *(uint16_t *)field = (uint16_t)u;
        } else {
            *(unsigned *)field = (unsigned)u;
        }
        break;
    case K_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (!value[0] || *end || errno) {
            report(p, p->line, k->name, "\"%s\" is not a whole number (expected %s)",
                   quoted(value, q), range_text(k, range, sizeof(range)));
        } else if ((double)v < k->min || (double)v > k->max) {
            report(p, p->line, k->name, "%ld is out of range (expected %s)", v,
                   range_text(k, range, sizeof(range)));
        } else {
            *(int *)field = (int)v;
        }
        break;
    }
    case K_SECONDS:
    case K_MILLIS: {
        bool ok = k->kind == K_SECONDS ? duration_parse(value, &d) == 0 : parse_millis(value, &d);
        if (!ok)
            report(p, p->line, k->name,
                   "\"%s\" is not a duration (expected e.g. 30s, 10m, 1h, 7d or 1h30m)",
                   quoted(value, q));
        else if ((double)d < k->min || (double)d > k->max)
            report(p, p->line, k->name, "\"%s\" is out of range (expected %s)", quoted(value, q),
                   range_text(k, range, sizeof(range)));
        else
            *(int64_t *)field = d;
        break;
    }
    case K_BOOL:
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "on") ||
            !strcmp(value, "1"))
            *(bool *)field = true;
        else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "off") ||
                 !strcmp(value, "0"))
            *(bool *)field = false;
        else
            report(p, p->line, k->name, "\"%s\" is not a boolean (expected yes or no)",
                   quoted(value, q));
        break;
    case K_DOUBLE: {
        char *end;
        double v = strtod(value, &end);
        if (!value[0] || *end || !isfinite(v))
            report(p, p->line, k->name, "\"%s\" is not a number (expected %s)", quoted(value, q),
                   range_text(k, range, sizeof(range)));
        else if (v < k->min || v > k->max)
            report(p, p->line, k->name, "%g is out of range (expected %s)", v,
                   range_text(k, range, sizeof(range)));
        else
            *(double *)field = v;
        break;
    }
    case K_ENUM: {
        const struct enum_name *e = k->enums;
        while (e->name && strcmp(e->name, value) != 0)
            e++;
        if (e->name) {
            _Static_assert(sizeof(enum log_level) == sizeof(int), "enums are int-sized");
            *(int *)field = e->value;
        } else {
            char list[160];
            enum_list(k->enums, list, sizeof(list));
            report(p, p->line, k->name, "\"%s\" is not valid (expected one of: %s)",
                   quoted(value, q), list);
        }
        break;
    }
    case K_PORTS:
        set_ports(p, k, value);
        break;
    case K_NAMES:
        set_names(p, k, value);
        break;
    case K_CIDRS:
        set_cidrs(p, k, value);
        break;
    case K_FLAGS:
        set_flags(p, k, value);
        break;
    }
}

static void set_weight(struct parser *p, int type, const char *key, const char *value)
{
    double *w = p->sec->kind == S_EVENTS ? &p->cfg->policy.weight[type]
                                         : &((struct cfg_service_override *)p->base)->weight[type];
    char q[QUOTE_MAX], *end;
    double v = strtod(value, &end);

    if (!value[0] || *end || !isfinite(v) || v < 0 || v > 1000)
        report(p, p->line, key, "\"%s\" is not a weight (expected a number 0..1000; 0 = ignore)",
               quoted(value, q));
    else
        *w = v;
}

/* --- sections --- */

static const char *section_display(const struct section_def *s)
{
    if (s->kind == S_AMI)
        return "ami:NAME";
    if (s->kind == S_SECLOG)
        return "seclog:NAME";
    if (s->kind == S_SERVICE)
        return "policy:SERVICE";
    return s->name;
}

/* The line where the current section set key, or 0. */
static unsigned line_of(const struct parser *p, const char *key)
{
    for (size_t i = 0; i < p->sec->nkeys; i++)
        if (!strcmp(p->sec->keys[i].name, key))
            return p->key_line[i];
    return 0;
}

/* An inline secret is as safe as the file that holds it: the file must pass the rule a
 * secret_file passes (secret_access_check()). Said once per file, at the first [ami:NAME] whose
 * secret is inline. */
static void check_inline_secret(struct parser *p, unsigned line)
{
    char why[MSG_MAX / 2];
    if (!p->have_file || p->exposed_reported)
        return;
    if (secret_access_check(p->path, &p->file, why, sizeof(why)) < 0) {
        report(p, line, "secret",
               "this file holds the secret inline, and %s; or move the secret into a "
               "secret_file",
               why);
        p->exposed_reported = true;
    }
}

static void end_section(struct parser *p)
{
    if (p->sec && p->sec->kind == S_AMI) {
        struct cfg_ami *a = p->base;
        unsigned host = line_of(p, "host"), user = line_of(p, "username"),
                 secret = line_of(p, "secret"), secret_file = line_of(p, "secret_file"),
                 bmin = line_of(p, "backoff_min"), bmax = line_of(p, "backoff_max");
        if (!host)
            report(p, p->sec_line, "host",
                   "missing (expected host = ADDRESS or NAME of the "
                   "Asterisk server)");
        if (!user)
            report(p, p->sec_line, "username", "missing (expected the AMI user from manager.conf)");
        if (secret && secret_file)
            report(p, secret > secret_file ? secret : secret_file, NULL,
                   "secret and secret_file are both set (lines %u and %u; keep one)",
                   secret < secret_file ? secret : secret_file,
                   secret > secret_file ? secret : secret_file);
        else if (!secret && !secret_file)
            report(p, p->sec_line, "secret",
                   "missing (expected secret = ... or secret_file = /etc/pbxguard/NAME.secret)");
        if (secret && !secret_file)
            check_inline_secret(p, secret);
        if (a->backoff_min_ms > a->backoff_max_ms)
            report(p, bmax ? bmax : bmin, "backoff_max", "is below backoff_min");
    } else if (p->sec && p->sec->kind == S_CLUSTER) {
        const struct cfg_cluster *cl = p->base;
        unsigned backend = line_of(p, "backend"), conninfo = line_of(p, "conninfo");
        if (cl->backend == CFG_CLUSTER_POSTGRESQL && !PBXGUARD_HAVE_LIBPQ)
            report(p, backend, "backend",
                   "this pbxguardd was built without libpq: fleet mode (backend = postgresql) "
                   "needs a build with libpq (apt-get install libpq-dev, then build again)");
        if (cl->backend == CFG_CLUSTER_POSTGRESQL && !cl->conninfo[0])
            report(p, conninfo ? conninfo : p->sec_line, "conninfo",
                   "missing (expected a libpq connection string, e.g. conninfo = host=db1 "
                   "dbname=pbxguard user=pbxguard)");
        /* The configuration file may be readable by a control_group; a password belongs in
         * the root-only password_file. */
        if (strstr(cl->conninfo, "password") || strstr(cl->conninfo, "PASSWORD") ||
            (strstr(cl->conninfo, "://") && strchr(strstr(cl->conninfo, "://") + 3, ':') &&
             strchr(cl->conninfo, '@') &&
             strchr(strstr(cl->conninfo, "://") + 3, ':') < strchr(cl->conninfo, '@')))
            report(p, conninfo, "conninfo",
                   "holds a password; put it in password_file (a root-only file) instead");
    } else if (p->sec && p->sec->kind == S_CROWDSEC) {
        struct cfg_crowdsec *cs = p->base;
        unsigned url = line_of(p, "lapi_url"), pub = line_of(p, "publish"),
                 enf = line_of(p, "enforce"), cert = line_of(p, "cert_file"),
                 key = line_of(p, "key_file");
        if (url && !PBXGUARD_HAVE_LIBCURL)
            report(p, url, "lapi_url",
                   "this pbxguardd was built without libcurl: the CrowdSec roles need a build "
                   "with libcurl (apt-get install libcurl4-openssl-dev, then build again)");
        if (!url)
            report(p, p->sec_line, "lapi_url",
                   "missing (expected the Local API's URL, e.g. http://127.0.0.1:8080)");
        if (cs->publish && !cs->machine_id[0])
            report(p, pub ? pub : p->sec_line, "machine_id",
                   "missing: publish = yes needs the watcher's machine_id and password_file "
                   "(cscli machines add NAME), or set publish = no");
        /* A password_file that is set but could not be read was reported already. */
        else if (cs->publish && !cs->password[0] && !line_of(p, "password_file"))
            report(p, pub ? pub : p->sec_line, "password_file",
                   "missing: publish = yes needs the watcher's password_file, or set "
                   "publish = no");
        if (cs->enforce && !cs->api_key[0] && !line_of(p, "api_key_file"))
            report(p, enf ? enf : p->sec_line, "api_key_file",
                   "missing: enforce = yes needs the bouncer's api_key_file (cscli bouncers add "
                   "NAME), or set enforce = no");
        if (!cs->publish && !cs->enforce)
            report(p, pub > enf ? pub : enf, NULL,
                   "publish and enforce are both no: nothing to do (remove the section)");
        if (!cs->cert_file[0] != !cs->key_file[0])
            report(p, cert ? cert : key, cert ? "key_file" : "cert_file",
                   "missing: a client certificate needs both cert_file and key_file");
        if (cs->norigins == 0)
            report(p, line_of(p, "origins") ? line_of(p, "origins") : p->sec_line, "origins",
                   "empty: no decision would ever be accepted (expected e.g. crowdsec, cscli, "
                   "CAPI, lists)");
    } else if (p->sec && p->sec->kind == S_PROMETHEUS) {
        const struct cfg_prometheus *pr = p->base;
        size_t n = strlen(pr->textfile);
        /* node_exporter reads *.prom only: any other name would be written and never seen. */
        if (n &&
            (n < 6 || strcmp(pr->textfile + n - 5, ".prom") != 0 || pr->textfile[n - 6] == '/'))
            report(p, line_of(p, "textfile"), "textfile",
                   "must name a *.prom file (node_exporter's textfile collector reads no other), "
                   "e.g. /var/lib/prometheus/node-exporter/pbxguard.prom");
    } else if (p->sec && p->sec->kind == S_SECLOG) {
        /* Checked once every [ami:NAME] is known (check_whole): errors name the ami line. */
        unsigned ami = line_of(p, "ami");
        if (ami)
            p->seclog_lines[p->cfg->nseclog - 1] = ami;
    } else if (p->sec && p->sec->kind == S_POLICY) {
        struct cfg_policy *pol = p->base;
        unsigned line = line_of(p, "bantime_max");
        if (!line)
            line = line_of(p, "bantime");
        if (pol->bantime_max_s < pol->bantime_s)
            report(p, line ? line : p->sec_line, "bantime_max", "is below bantime");
    }
    p->sec = NULL;
    p->in_bad_section = false;
    p->secname[0] = '\0';
    p->base = NULL;
}

static void begin_section(struct parser *p, char *header)
{
    char q[QUOTE_MAX];
    char *colon = strchr(header, ':');
    char *name = header, *arg = NULL;
    const struct section_def *s = NULL;

    end_section(p);
    p->in_bad_section = true; /* until proven otherwise */
    memset(p->key_line, 0, sizeof(p->key_line));
    memset(p->weight_line, 0, sizeof(p->weight_line));
    p->sec_line = p->line;
    if (colon) {
        *colon = '\0';
        name = trim(header);
        arg = trim(colon + 1);
    } else {
        name = trim(header);
    }
    snprintf(p->secname, sizeof(p->secname), "%.*s%s%.*s", CFG_NAME_MAX, name, arg ? ":" : "",
             CFG_NAME_MAX, arg ? arg : "");
    if (!printable(p->secname) || !valid_name(name)) {
        char qa[QUOTE_MAX];
        p->secname[0] = '\0'; /* it holds the bad header as written: quoted escaped below */
        report(p, p->line, NULL, "bad section header \"[%s%s%s]\" (expected [name] or [name:ARG])",
               quoted(name, q), arg ? ":" : "", arg ? quoted(arg, qa) : "");
        return;
    }
    for (size_t i = 0; i < NKEYS(sections); i++)
        if (!strcmp(sections[i].name, name) && sections[i].named == (arg != NULL))
            s = &sections[i];
    if (!s) {
        p->secname[0] = '\0';
        report(p, p->line, NULL,
               "unknown section [%s] (expected one of: general, ami:NAME, seclog:NAME, policy, "
               "policy:SERVICE, events, whitelist, protect, statsd, prometheus, nftables, "
               "crowdsec)",
               quoted(header, q));
        return;
    }
    if (arg && (!arg[0] || !valid_name(arg) || strlen(arg) >= CFG_NAME_MAX)) {
        p->secname[0] = '\0'; /* it holds the bad name as written: quoted escaped below */
        report(p, p->line, NULL,
               "\"%s\" is not a valid %s name (expected 1-%d letters, digits, '_', '-', '.')",
               quoted(arg, q),
               s->kind == S_AMI      ? "server"
               : s->kind == S_SECLOG ? "log source"
                                     : "service",
               CFG_NAME_MAX - 1);
        return;
    }

    struct config *c = p->cfg;
    switch (s->kind) {
    case S_AMI: {
        for (unsigned i = 0; i < c->nami; i++)
            if (!strcmp(c->ami[i].name, arg)) {
                report(p, p->line, NULL, "server defined twice (each [ami:NAME] once)");
                return;
            }
        struct cfg_ami *na = realloc(c->ami, (c->nami + 1) * sizeof(*na));
        if (!na) {
            report(p, p->line, NULL, "out of memory");
            return;
        }
        c->ami = na;
        config_ami_defaults(&na[c->nami]);
        snprintf(na[c->nami].name, sizeof(na[c->nami].name), "%s", arg);
        p->base = &na[c->nami++];
        break;
    }
    case S_SECLOG: {
        for (unsigned i = 0; i < c->nseclog; i++)
            if (!strcmp(c->seclog[i].name, arg)) {
                report(p, p->line, NULL, "log source defined twice (each [seclog:NAME] once)");
                return;
            }
        struct cfg_seclog *nl = realloc(c->seclog, (c->nseclog + 1) * sizeof(*nl));
        if (!nl) {
            report(p, p->line, NULL, "out of memory");
            return;
        }
        c->seclog = nl;
        unsigned *ll = realloc(p->seclog_lines, (c->nseclog + 1) * sizeof(*ll));
        if (!ll) {
            report(p, p->line, NULL, "out of memory");
            return;
        }
        p->seclog_lines = ll;
        ll[c->nseclog] = p->line;
        config_seclog_defaults(&nl[c->nseclog]);
        snprintf(nl[c->nseclog].name, sizeof(nl[c->nseclog].name), "%s", arg);
        p->base = &nl[c->nseclog++];
        break;
    }
    case S_SERVICE: {
        if (strlen(arg) >= SEC_SERVICE_MAX) {
            report(p, p->line, NULL, "service name is too long (at most %d bytes)",
                   SEC_SERVICE_MAX - 1);
            return;
        }
        for (unsigned i = 0; i < c->policy.nservices; i++)
            if (!strcmp(c->policy.services[i].service, arg)) {
                report(p, p->line, NULL, "service defined twice (first on line %u)",
                       p->service_lines[i]);
                return;
            }
        if (c->policy.nservices >= CFG_SERVICES_MAX) {
            report(p, p->line, NULL, "too many [policy:SERVICE] sections (at most %d)",
                   CFG_SERVICES_MAX);
            return;
        }
        struct cfg_service_override *o = &c->policy.services[c->policy.nservices];
        unsigned *nl = realloc(p->service_lines, (c->policy.nservices + 1) * sizeof(*nl));
        if (!nl) {
            report(p, p->line, NULL, "out of memory");
            return;
        }
        p->service_lines = nl;
        nl[c->policy.nservices++] = p->line;
        memset(o, 0, sizeof(*o));
        snprintf(o->service, sizeof(o->service), "%s", arg);
        for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
            o->weight[t] = -1;
        p->base = o;
        break;
    }
    default:
        if (p->seen_line[s->kind]) {
            report(p, p->line, NULL, "section repeated (first on line %u; merge them)",
                   p->seen_line[s->kind]);
            return;
        }
        p->seen_line[s->kind] = p->line;
        p->base = s->kind == S_GENERAL      ? (void *)&c->general
                  : s->kind == S_POLICY     ? (void *)&c->policy
                  : s->kind == S_PROTECT    ? (void *)&c->protect
                  : s->kind == S_STATSD     ? (void *)&c->statsd
                  : s->kind == S_PROMETHEUS ? (void *)&c->prometheus
                  : s->kind == S_NFTABLES   ? (void *)&c->nftables
                  : s->kind == S_CLUSTER    ? (void *)&c->cluster
                  : s->kind == S_CROWDSEC   ? (void *)&c->crowdsec
                                            : (void *)c;
        break;
    }
    p->sec = s;
    p->in_bad_section = false;
}

static void key_list(const struct section_def *s, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->nkeys && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", s->keys[i].name);
    if (s->event_weights && o < len)
        snprintf(buf + o, len - o, "%san event type such as InvalidPassword = 1", o ? ", or " : "");
}

static void handle_key(struct parser *p, char *key, char *value)
{
    char q[QUOTE_MAX], list[400];
    const struct section_def *s = p->sec;

    if (p->in_bad_section)
        return; /* the header was reported; its keys would only repeat the news */
    if (!s) {
        report(p, p->line, NULL, "\"%s\" is outside any section (add a [section] header above it)",
               quoted(key, q));
        return;
    }
    for (size_t i = 0; i < s->nkeys; i++) {
        const struct key_def *k = &s->keys[i];
        if (strcmp(k->name, key) != 0)
            continue;
        if (k->kind != K_PORTS && k->kind != K_CIDRS && k->kind != K_NAMES) {
            if (p->key_line[i]) {
                report(p, p->line, key, "set twice (first on line %u; keep one)", p->key_line[i]);
                return;
            }
            p->key_line[i] = p->line;
        }
        set_value(p, k, value);
        return;
    }
    if (s->event_weights) {
        int t = sec_event_type_from_name(key, strlen(key));
        if (t >= 0) {
            if (p->weight_line[t]) {
                report(p, p->line, key, "set twice (first on line %u; keep one)",
                       p->weight_line[t]);
                return;
            }
            p->weight_line[t] = p->line;
            set_weight(p, t, key, value);
            return;
        }
    }
    key_list(s, list, sizeof(list));
    if (s->kind == S_AMI && !valid_name(key)) /* a mistyped line there may hold the secret */
        report(p, p->line, NULL, "unknown key in [%s], not shown (expected %s)", section_display(s),
               list);
    else
        report(p, p->line, NULL, "%s: unknown key in [%s] (expected %s)", quoted(key, q),
               section_display(s), list);
}

/* Strips one pair of surrounding double quotes, which keep leading/trailing blanks. */
static char *unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        return v + 1;
    }
    return v;
}

static void parse_line(struct parser *p, char *line)
{
    char *s = trim(line);
    char q[QUOTE_MAX];

    if (!*s || *s == ';' || *s == '#')
        return;
    if (*s == '[') {
        char *close = strchr(s, ']');
        char *after = close ? trim(close + 1) : NULL;
        if (!close || (*after && *after != ';' && *after != '#')) {
            bool in_ami = p->sec && p->sec->kind == S_AMI; /* it may be the secret, pasted */
            end_section(p);
            p->in_bad_section = true;
            if (in_ami)
                report(p, p->line, NULL,
                       "bad section header, not shown (expected [name] or [name:ARG])");
            else
                report(p, p->line, NULL,
                       "bad section header \"%s\" (expected [name] or [name:ARG])", quoted(s, q));
            return;
        }
        *close = '\0';
        begin_section(p, s + 1);
        return;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
        if (p->in_bad_section)
            return;
        if (p->sec && p->sec->kind == S_AMI) /* a line there may be the secret, pasted alone */
            report(p, p->line, NULL,
                   "a line that is not a setting, not shown (expected key = value)");
        else
            report(p, p->line, NULL, "\"%s\" is not a setting (expected key = value)",
                   quoted(s, q));
        return;
    }
    *eq = '\0';
    char *key = trim(s), *value = unquote(trim(eq + 1));
    if (!*key) {
        report(p, p->line, NULL, "missing key before '=' (expected key = value)");
        return;
    }
    handle_key(p, key, value);
}

/* config_load_paths()' line parser: tracks whether the line is in [general] and sets its
 * database and control_socket keys exactly as parse_line() would. Every other line is skipped
 * unread: no other section's values are checked, no secret_file is opened, and a section the
 * daemon would refuse is none of the CLI's business. */
static void parse_paths_line(struct parser *p, char *line)
{
    char *s = trim(line);

    if (!*s || *s == ';' || *s == '#')
        return;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (close)
            *close = '\0';
        bool general = close && !strcmp(trim(s + 1), "general") && !p->seen_line[S_GENERAL];
        if (general)
            p->seen_line[S_GENERAL] = p->line;
        p->sec = general ? &sections[0] : NULL;
        p->base = general ? &p->cfg->general : NULL;
        snprintf(p->secname, sizeof(p->secname), "%s", general ? "general" : "");
        return;
    }
    char *eq = strchr(s, '=');
    if (!p->base || !eq)
        return;
    *eq = '\0';
    char *key = trim(s), *value = unquote(trim(eq + 1));
    if (strcmp(key, "database") != 0 && strcmp(key, "control_socket") != 0)
        return;
    for (size_t i = 0; i < NKEYS(general_keys); i++) {
        if (strcmp(general_keys[i].name, key) != 0)
            continue;
        if (p->key_line[i]) {
            report(p, p->line, key, "set twice (first on line %u; keep one)", p->key_line[i]);
            return;
        }
        p->key_line[i] = p->line;
        set_value(p, &general_keys[i], value);
        return;
    }
}

/* A log source's mode and Asterisk, once every [ami:NAME] is known: backfill needs the AMI
 * session of the Asterisk that writes the log (to know when it was not listening). */
static void resolve_seclog(struct parser *p, struct cfg_seclog *l, unsigned line)
{
    struct config *c = p->cfg;
    snprintf(p->secname, sizeof(p->secname), "seclog:%s", l->name);
    if (l->mode == CFG_SECLOG_AUTO)
        l->mode = c->nami ? CFG_SECLOG_BACKFILL : CFG_SECLOG_PRIMARY;
    if (l->mode == CFG_SECLOG_PRIMARY) {
        if (l->ami[0])
            report(p, line, "ami", "is only for mode = backfill (primary reads no AMI session)");
    } else if (l->ami[0]) {
        bool found = false;
        for (unsigned i = 0; i < c->nami; i++)
            found |= !strcmp(c->ami[i].name, l->ami);
        if (!found)
            report(p, line, "ami", "names no [ami:%s] section", l->ami);
    } else {
        for (unsigned i = 0; i < c->nami && !l->ami[0]; i++)
            if (!strcmp(c->ami[i].name, l->name))
                snprintf(l->ami, sizeof(l->ami), "%s", l->name);
        if (!l->ami[0] && c->nami == 1)
            snprintf(l->ami, sizeof(l->ami), "%s", c->ami[0].name);
        if (!l->ami[0])
            report(p, line, "ami",
                   c->nami ? "missing: which [ami:NAME] is the Asterisk that writes this log? "
                             "(expected ami = NAME)"
                           : "mode = backfill needs an [ami:NAME] section (or mode = primary)");
    }
    p->secname[0] = '\0';
}

static void check_whole(struct parser *p)
{
    const struct cfg_nftables *n = &p->cfg->nftables;

    for (unsigned i = 0; i < p->cfg->nseclog; i++)
        resolve_seclog(p, &p->cfg->seclog[i], p->seclog_lines ? p->seclog_lines[i] : 1);

    p->secname[0] = '\0';
    if (!strcmp(n->set4, n->set6)) {
        snprintf(p->secname, sizeof(p->secname), "nftables");
        report(p, p->seen_line[S_NFTABLES] ? p->seen_line[S_NFTABLES] : 1, "set6",
               "must differ from set4");
        p->secname[0] = '\0';
    }
    /* A threshold ban bans a counting key: one wider than the widest ban allowed would be
     * refused every time. */
    const struct cfg_protect *pr = &p->cfg->protect;
    const struct cfg_policy *pol = &p->cfg->policy;
    unsigned line = p->seen_line[S_PROTECT] ? p->seen_line[S_PROTECT] : p->seen_line[S_POLICY];
    snprintf(p->secname, sizeof(p->secname), "%s", p->seen_line[S_PROTECT] ? "protect" : "policy");
    if (pr->min_prefix4 > pol->ipv4_prefix)
        report(p, line ? line : 1, "min_prefix4",
               "/%u is narrower than [policy] ipv4_prefix /%u, so no threshold ban could be "
               "placed (expected at most %u)",
               pr->min_prefix4, pol->ipv4_prefix, pol->ipv4_prefix);
    if (pr->min_prefix6 > pol->ipv6_prefix)
        report(p, line ? line : 1, "min_prefix6",
               "/%u is narrower than [policy] ipv6_prefix /%u, so no threshold ban could be "
               "placed (expected at most %u)",
               pr->min_prefix6, pol->ipv6_prefix, pol->ipv6_prefix);
    p->secname[0] = '\0';
}

/* One line without its newline (n bytes, NUL-terminated at n); parsed in place by
 * parse_line() or, for config_load_paths(), parse_paths_line(). */
static void take_line(struct parser *p, char *line, size_t n)
{
    p->line++;
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    bool bad = strlen(line) != n || n > LINE_MAX_LEN;
    if (bad && p->paths_only && !p->base)
        return; /* a section config_load_paths() does not read */
    if (strlen(line) != n) {
        report(p, p->line, NULL, "line holds a NUL byte");
        return;
    }
    if (n > LINE_MAX_LEN) {
        report(p, p->line, NULL, "line is too long (at most %d bytes)", LINE_MAX_LEN);
        return;
    }
    if (p->paths_only)
        parse_paths_line(p, line);
    else
        parse_line(p, line);
}

/* Reads path line by line into take_line(). Returns 0, or -errno if the file cannot be read
 * (reported). The line buffer is wiped: it held secrets. */
static int read_file(struct parser *p, const char *path)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;

    FILE *f = fopen(path, "re");
    if (!f) {
        int err = errno;
        report(p, 0, NULL, "cannot read: %s", strerror(err));
        return -err;
    }
    p->have_file = fstat(fileno(f), &p->file) == 0;
    while ((n = getline(&buf, &cap, f)) >= 0) {
        if (n > 0 && buf[n - 1] == '\n')
            buf[--n] = '\0';
        take_line(p, buf, (size_t)n);
    }
    int err = ferror(f) ? errno : 0;
    if (buf)
        explicit_bzero(buf, cap);
    free(buf);
    fclose(f);
    if (err) {
        report(p, 0, NULL, "read error: %s", strerror(err));
        return -err;
    }
    return 0;
}

/* Reads text line by line into take_line(): 0, or -ENOMEM (reported). */
static int read_buffer(struct parser *p, const char *text, size_t len)
{
    /* Lines are parsed in place: a copy, split at each newline. */
    char *copy = malloc(len + 1);
    if (!copy) {
        report(p, 0, NULL, "out of memory");
        return -ENOMEM;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (size_t off = 0; off < len;) {
        char *nl = memchr(copy + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (copy + off)) : len - off;
        copy[off + n] = '\0';
        take_line(p, copy + off, n);
        off += n + 1;
    }
    explicit_bzero(copy, len + 1); /* it held secrets */
    free(copy);
    return 0;
}

/* Starts a parse named name (a path, or what stands for one in messages). */
static int start(struct parser *p, const char *name, struct config *ret_cfg)
{
    config_defaults(ret_cfg);
    if (strlen(name) >= sizeof(ret_cfg->path)) {
        report(p, 0, NULL, "path too long");
        return -ENAMETOOLONG;
    }
    snprintf(ret_cfg->path, sizeof(ret_cfg->path), "%s", name);
    return 0;
}

/* The checks that need the whole text, once every line is read. */
static int finish(struct parser *p)
{
    end_section(p);
    check_whole(p);
    free(p->service_lines);
    free(p->seclog_lines);
    return p->nerrors;
}

int config_load(const char *path, struct config *ret_cfg, config_error_fn on_error, void *data)
{
    struct parser p = {.path = path, .cfg = ret_cfg, .on_error = on_error, .data = data};

    int r = start(&p, path, ret_cfg);
    if (r < 0)
        return r;
    r = read_file(&p, path);
    if (r < 0) {
        free(p.service_lines);
        free(p.seclog_lines);
        return r;
    }
    return finish(&p);
}

int config_load_buffer(const char *name, const char *text, size_t len, struct config *ret_cfg,
                       config_error_fn on_error, void *data)
{
    struct parser p = {.path = name, .cfg = ret_cfg, .on_error = on_error, .data = data};

    int r = start(&p, name, ret_cfg);
    if (r < 0)
        return r;
    r = read_buffer(&p, text, len);
    if (r < 0) {
        free(p.service_lines);
        return r;
    }
    return finish(&p);
}

/* config_load_paths() (from_file: read the file name) and its buffer twin. */
static int load_paths(const char *name, bool from_file, const char *text, size_t len,
                      struct cfg_paths *ret_paths, config_error_fn on_error, void *data)
{
    struct config cfg;
    struct parser p = {
        .path = name, .cfg = &cfg, .on_error = on_error, .data = data, .paths_only = true};

    config_defaults(&cfg);
    int r = from_file ? read_file(&p, name) : read_buffer(&p, text ? text : "", len);
    if (r < 0)
        return r;
    snprintf(ret_paths->database, sizeof(ret_paths->database), "%s", cfg.general.database);
    snprintf(ret_paths->control_socket, sizeof(ret_paths->control_socket), "%s",
             cfg.general.control_socket);
    return p.nerrors;
}

int config_load_paths(const char *path, struct cfg_paths *ret_paths, config_error_fn on_error,
                      void *data)
{
    return load_paths(path, true, NULL, 0, ret_paths, on_error, data);
}

int config_load_paths_buffer(const char *name, const char *text, size_t len,
                             struct cfg_paths *ret_paths, config_error_fn on_error, void *data)
{
    return load_paths(name, false, text, len, ret_paths, on_error, data);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    if (cfg->ami)
        explicit_bzero(cfg->ami, cfg->nami * sizeof(*cfg->ami));
    free(cfg->ami);
    cfg->ami = NULL;
    cfg->nami = 0;
    explicit_bzero(cfg->cluster.password, sizeof(cfg->cluster.password));
    free(cfg->seclog);
    cfg->seclog = NULL;
    cfg->nseclog = 0;
    free(cfg->whitelist.prefixes);
    cfg->whitelist.prefixes = NULL;
    cfg->whitelist.n = 0;
}

/* --- dump --- */

static void dump_key(FILE *out, const struct key_def *k, const void *base)
{
    const void *field = (const char *)base + k->offset;
    char buf[64];

    switch (k->kind) {
    case K_STRING:
    case K_NAME:
    case K_PATH:
    case K_URL:
    case K_HOST: {
        const char *s = field;
        /* Quote values whose blanks would otherwise be trimmed away on reading back, and
         * values in quotes of their own, which would otherwise lose them. */
        size_t n = strlen(s);
        bool quote = n && (is_blank(s[0]) || is_blank(s[n - 1]) ||
                           (n >= 2 && s[0] == '"' && s[n - 1] == '"'));
        fprintf(out, "%s = %s%s%s\n", k->name, quote ? "\"" : "", s, quote ? "\"" : "");
        break;
    }
    case K_SECRET:
        fprintf(out, "%s = %s\n", k->name, ((const char *)field)[0] ? "********" : "");
        break;
    case K_SECRET_FILE: {
        /* Its content is shown (masked) as secret; a credential's name is worth seeing. */
        if (((const char *)base + k->count_offset)[0])
            fprintf(out, "%s = " CFG_CREDENTIAL_PREFIX "%s\n", k->name,
                    (const char *)base + k->count_offset);
        break;
    }
    case K_UINT:
        fprintf(out, "%s = %u\n", k->name, *(const unsigned *)field);
        break;
    case K_INT:
        fprintf(out, "%s = %d\n", k->name, *(const int *)field);
        break;
    case K_PORT:
        fprintf(out, "%s = %u\n", k->name, *(const uint16_t *)field);
        break;
    case K_SECONDS:
        fprintf(out, "%s = %s\n", k->name, duration_format(*(const int64_t *)field, buf, 64));
        break;
    case K_MILLIS: {
        int64_t ms = *(const int64_t *)field;
        if (ms % 1000)
            fprintf(out, "%s = %lldms\n", k->name, (long long)ms);
        else
            fprintf(out, "%s = %s\n", k->name, duration_format(ms / 1000, buf, 64));
        break;
    }
    case K_BOOL:
        fprintf(out, "%s = %s\n", k->name, *(const bool *)field ? "yes" : "no");
        break;
    case K_DOUBLE:
        fprintf(out, "%s = %g\n", k->name, *(const double *)field);
        break;
    case K_ENUM: {
        int v = *(const int *)field;
        const struct enum_name *e = k->enums;
        while (e->name && e->value != v)
            e++;
        fprintf(out, "%s = %s\n", k->name, e->name ? e->name : "?");
        break;
    }
    case K_PORTS: {
        const uint16_t *ports = field;
        unsigned n = *(const unsigned *)((const char *)base + k->count_offset);
        fprintf(out, "%s =", k->name);
        for (unsigned i = 0; i < n; i++)
            fprintf(out, "%s%u", i ? ", " : " ", ports[i]);
        fputc('\n', out);
        break;
    }
    case K_CIDRS:
        break; /* dumped by config_dump from the whitelist */
    case K_FLAGS: {
        unsigned bits = *(const unsigned *)field;
        fprintf(out, "%s = ", k->name);
        bool any = false;
        for (const struct enum_name *e = k->enums; e->name; e++) {
            if (bits & (unsigned)e->value) {
                fprintf(out, "%s%s", any ? "," : "", e->name);
                any = true;
            }
        }
        fprintf(out, "%s\n", any ? "" : "none");
        break;
    }
    case K_NAMES: {
        const char(*names)[CFG_NAME_MAX] = field;
        unsigned n = *(const unsigned *)((const char *)base + k->count_offset);
        fprintf(out, "%s =", k->name);
        for (unsigned i = 0; i < n; i++)
            fprintf(out, "%s%s", i ? ", " : " ", names[i]);
        fputc('\n', out);
        break;
    }
    }
}

static void dump_keys(FILE *out, const struct key_def *keys, size_t n, const void *base)
{
    for (size_t i = 0; i < n; i++)
        dump_key(out, &keys[i], base);
}

void config_dump(const struct config *cfg, FILE *out)
{
    char buf[ADDR_STRLEN];

    fprintf(out, "# effective configuration from %s\n", cfg->path);
    fprintf(out, "[general]\n");
    dump_keys(out, general_keys, NKEYS(general_keys), &cfg->general);
    for (unsigned i = 0; i < cfg->nami; i++) {
        fprintf(out, "\n[ami:%s]\n", cfg->ami[i].name);
        dump_keys(out, ami_keys, NKEYS(ami_keys), &cfg->ami[i]);
    }
    for (unsigned i = 0; i < cfg->nseclog; i++) {
        const struct cfg_seclog *l = &cfg->seclog[i];
        fprintf(out, "\n[seclog:%s]\n", l->name);
        fprintf(out, "path = %s\n", l->path);
        fprintf(out, "mode = %s\n", l->mode == CFG_SECLOG_PRIMARY ? "primary" : "backfill");
        if (l->mode != CFG_SECLOG_PRIMARY)
            fprintf(out, "ami = %s\n", l->ami);
    }
    fprintf(out, "\n[policy]\n");
    dump_keys(out, policy_keys, NKEYS(policy_keys), &cfg->policy);
    fprintf(out, "\n[events]\n");
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
        fprintf(out, "%s = %g\n", sec_event_type_name(t), cfg->policy.weight[t]);
    for (unsigned i = 0; i < cfg->policy.nservices; i++) {
        const struct cfg_service_override *o = &cfg->policy.services[i];
        fprintf(out, "\n[policy:%s]\n", o->service);
        if (o->maxretry)
            fprintf(out, "maxretry = %u\n", o->maxretry);
        for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++)
            if (o->weight[t] >= 0)
                fprintf(out, "%s = %g\n", sec_event_type_name(t), o->weight[t]);
    }
    fprintf(out, "\n[whitelist]\n");
    for (unsigned i = 0; i < cfg->whitelist.n; i++)
        fprintf(out, "cidr = %s\n",
                addr_prefix_format(&cfg->whitelist.prefixes[i], buf, sizeof(buf)));
    fprintf(out, "\n[protect]\n");
    dump_keys(out, protect_keys, NKEYS(protect_keys), &cfg->protect);
    fprintf(out, "\n[statsd]\n");
    dump_keys(out, statsd_keys, NKEYS(statsd_keys), &cfg->statsd);
    fprintf(out, "\n[prometheus]\n");
    dump_keys(out, prometheus_keys, NKEYS(prometheus_keys), &cfg->prometheus);
    fprintf(out, "\n[nftables]\n");
    dump_keys(out, nftables_keys, NKEYS(nftables_keys), &cfg->nftables);
    fprintf(out, "\n[cluster]\n");
    dump_keys(out, cluster_keys, NKEYS(cluster_keys), &cfg->cluster);
    if (cfg->crowdsec.lapi_url[0]) {
        const struct cfg_crowdsec *cs = &cfg->crowdsec;
        fprintf(out, "\n[crowdsec]\n");
        dump_keys(out, crowdsec_keys, NKEYS(crowdsec_keys), cs);
        fprintf(out, "; password_file: %s, api_key_file: %s\n", cs->password[0] ? "read" : "none",
                cs->api_key[0] ? "read" : "none");
    }
}

const char *config_unresolved_cluster_credential(const struct config *cfg)
{
    const struct cfg_cluster *c = &cfg->cluster;
    return c->backend != CFG_CLUSTER_NONE && c->credential[0] && !c->password[0] ? c->credential
                                                                                 : NULL;
}

const struct cfg_ami *config_unresolved_credential(const struct config *cfg)
{
    for (unsigned i = 0; i < cfg->nami; i++)
        if (cfg->ami[i].credential[0] && !cfg->ami[i].secret[0])
            return &cfg->ami[i];
    return NULL;
}
