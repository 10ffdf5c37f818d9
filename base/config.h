/* Configuration: /etc/pbxguard/pbxguard.conf, INI sections in the style Asterisk admins know.
 * config_load() fills a struct config with defaults first, then the file; every error names
 * file, line, section and key. Modules read only their own sub-struct. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "log.h"
#include "sec_event.h"

#define CFG_DEFAULT_PATH "/etc/pbxguard/pbxguard.conf"
#define CFG_NAME_MAX 32
#define CFG_HOST_MAX 256
#define CFG_PATH_MAX 512
#define CFG_SECRET_MAX 256
#define CFG_PORTS_MAX 16
/* secret_file = credential:NAME reads $CREDENTIALS_DIRECTORY/NAME (systemd's LoadCredential=). */
#define CFG_CREDENTIAL_PREFIX "credential:"

struct cfg_general {
    char database[CFG_PATH_MAX];       /* /var/lib/pbxguard/pbxguard.db */
    char control_socket[CFG_PATH_MAX]; /* /run/pbxguard/control.sock */
    char control_group[CFG_NAME_MAX];  /* "" = root only (0600); else 0660 with this group */
    unsigned group_min_prefix4;   /* 24: the widest IPv4 prefix control_group may ban or unban */
    unsigned group_min_prefix6;   /* 48: the same for IPv6 */
    char lock_file[CFG_PATH_MAX]; /* /run/pbxguard/pbxguardd.lock */
    enum log_level log_level;     /* info */
    enum log_target log_target;   /* stderr */
    int64_t retention_s;          /* 30d: failures and lifted bans older than this are pruned */
    unsigned database_mmap_mib;   /* 0: plain reads through a page cache sized from the raw
                                     window; N: SQLite also maps the first N MiB of the file
                                     (faster reads of a big history, counted in RSS) */
};

enum cfg_ami_auth { CFG_AMI_AUTH_MD5 = 0, CFG_AMI_AUTH_PLAIN };

struct cfg_ami {
    char name[CFG_NAME_MAX]; /* from [ami:NAME] */
    char host[CFG_HOST_MAX]; /* IPv4, IPv6 or hostname */
    uint16_t port;           /* 5038 */
    char username[CFG_NAME_MAX * 2];
    char secret[CFG_SECRET_MAX];   /* from secret= or the first line of secret_file= */
    char credential[CFG_NAME_MAX]; /* secret_file = credential:NAME; "" = none */
    enum cfg_ami_auth auth;        /* md5 */
    int64_t ping_interval_ms;      /* 20s: keepalive Ping period */
    int64_t ping_timeout_ms;       /* 10s: no reply within this = stalled peer */
    int64_t connect_timeout_ms;    /* 10s */
    int64_t backoff_min_ms;        /* 1s */
    int64_t backoff_max_ms;        /* 60s */
    bool learn_trust;        /* yes: ask Asterisk which addresses it talks to; never ban them */
    int64_t trust_refresh_s; /* 1h: ask again this often, besides at login and on reload
                                events; 0 = only then (at least 1m when set) */
};

/* [seclog:NAME]: Asterisk's security log (logger.conf "security => security"). */
enum cfg_seclog_mode {
    CFG_SECLOG_AUTO = 0, /* not set: backfill when AMI sessions exist, else primary */
    CFG_SECLOG_BACKFILL, /* read only for what no AMI session delivered */
    CFG_SECLOG_PRIMARY,  /* the event source itself, followed live */
};

struct cfg_seclog {
    char name[CFG_NAME_MAX];   /* from [seclog:NAME] */
    char path[CFG_PATH_MAX];   /* /var/log/asterisk/security */
    enum cfg_seclog_mode mode; /* resolved by config_load(): never AUTO afterwards */
    char ami[CFG_NAME_MAX];    /* backfill: the [ami:NAME] of the Asterisk writing this log;
                                  resolved by config_load() (this NAME, or the only one) */
};

struct cfg_service_override {
    char service[SEC_SERVICE_MAX];       /* "PJSIP" */
    unsigned maxretry;                   /* 0 = not overridden */
    double weight[SEC_EVENT_TYPE_COUNT]; /* < 0 = not overridden */
};

#define CFG_SERVICES_MAX 8

struct cfg_policy {
    unsigned maxretry;                   /* 5: weighted failures within findtime that earn a ban */
    int64_t findtime_s;                  /* 10m */
    int64_t bantime_s;                   /* 1h: first offence */
    double bantime_factor;               /* 2: each repeat offence multiplies the ban length */
    int64_t bantime_max_s;               /* 7d: escalation cap */
    unsigned permanent_after;            /* 0 = never; else the N-th offence is permanent */
    int64_t offence_window_s;            /* 30d: offences older than this do not escalate */
    unsigned ipv4_prefix;                /* 32 */
    unsigned ipv6_prefix;                /* 64 (32..128) */
    int64_t trust_window_s;              /* 1h: a SuccessfulAuth raises its key's threshold to
                                            trusted_maxretry for this long; 0 = off */
    unsigned trusted_maxretry;           /* 0 = 4 x the service's maxretry */
    double weight[SEC_EVENT_TYPE_COUNT]; /* [events] */
    struct cfg_service_override services[CFG_SERVICES_MAX]; /* [policy:SERVICE] */
    unsigned nservices;
};

struct cfg_whitelist {
    struct addr_prefix
        *prefixes; /* configured CIDRs; loopback and AMI peers are added at run time */
    unsigned n;
};

/* [protect]: what is never banned besides the built-in ranges and the [whitelist]. */
struct cfg_protect {
    bool own_addresses;             /* yes: the host's own addresses, followed over rtnetlink */
    bool gateways;                  /* yes: its default gateways */
    bool resolvers;                 /* yes: the nameservers of resolv_conf, followed by inotify */
    char resolv_conf[CFG_PATH_MAX]; /* /etc/resolv.conf */
    unsigned min_prefix4;           /* 8: no ban may be wider, not even with --force */
    unsigned min_prefix6;           /* 16 */
};

enum cfg_statsd_type { CFG_STATSD_COUNTER = 0, CFG_STATSD_METER };

struct cfg_statsd {
    bool enabled;               /* no */
    char host[CFG_HOST_MAX];    /* 127.0.0.1 */
    uint16_t port;              /* 8125 */
    char prefix[48];            /* "" : prefix for the res_auth_stats names */
    char own_prefix[48];        /* "pbxguard" : the daemon's own meters */
    enum cfg_statsd_type type;  /* c */
    bool per_address;           /* yes */
    unsigned per_address_limit; /* 1000 distinct addresses per flush interval; 0 = unlimited */
    unsigned max_payload;       /* 1432 */
    int64_t flush_interval_ms;  /* 1s */
};

/* [prometheus]: the metrics written for node_exporter's textfile collector. */
struct cfg_prometheus {
    char textfile[CFG_PATH_MAX]; /* "" = off; a *.prom file in the collector's directory */
    int64_t interval_ms;         /* 15s */
};

struct cfg_nftables {
    char table[CFG_NAME_MAX];          /* pbxguard (family inet) */
    char set4[CFG_NAME_MAX];           /* banned4 */
    char set6[CFG_NAME_MAX];           /* banned6 */
    char chain[CFG_NAME_MAX];          /* input */
    int priority;                      /* -10: ahead of filter (0) */
    bool hook_forward;                 /* no */
    uint16_t tcp_ports[CFG_PORTS_MAX]; /* empty = all traffic from a banned source is dropped */
    unsigned ntcp_ports;
    uint16_t udp_ports[CFG_PORTS_MAX];
    unsigned nudp_ports;
    unsigned set_size;         /* 0 = kernel default */
    bool remove_on_stop;       /* no: bans stay in the kernel while the daemon is down */
    int64_t check_interval_ms; /* 30s: slow periodic check behind the netlink monitor */
};

/* [cluster]: fleet mode, bans shared through PostgreSQL (daemon/cluster.c). */
enum cfg_cluster_backend { CFG_CLUSTER_NONE = 0, CFG_CLUSTER_POSTGRESQL };
/* Which local bans are published (publish = threshold,manual): bits. */
enum cfg_cluster_publish { CFG_PUBLISH_THRESHOLD = 1 << 0, CFG_PUBLISH_MANUAL = 1 << 1 };
#define CFG_CONNINFO_MAX 1024
#define CFG_NODE_MAX 48 /* "cluster:NODE" fits a ban's origin */

struct cfg_cluster {
    enum cfg_cluster_backend backend; /* none: no fleet */
    char conninfo[CFG_CONNINFO_MAX];  /* a libpq connection string (key=value or URI) */
    char password[CFG_SECRET_MAX];    /* the first line of password_file; "" = none */
    char credential[CFG_NAME_MAX];    /* password_file = credential:NAME; "" = none */
    char node[CFG_NODE_MAX];          /* this node's name in the fleet; default: the host name */
    unsigned publish;                 /* enum cfg_cluster_publish bits; threshold,manual */
    bool accept;                      /* yes: others' bans are applied here (after the rules) */
    unsigned max_prefix4;             /* 24: the widest remote IPv4 ban accepted */
    unsigned max_prefix6;             /* 48 */
    int64_t catchup_interval_ms;      /* 30s: read the shared table this often besides NOTIFY */
    int64_t connect_timeout_ms;       /* 5s: per host tried */
    int64_t query_timeout_ms;         /* 10s: a query without an answer by then drops the link */
};

#define CFG_ORIGINS_MAX 8

/* [crowdsec]: pbxguard as a CrowdSec watcher (publish) and bouncer (enforce). Off while
 * lapi_url is empty (the section absent). */
struct cfg_crowdsec {
    char lapi_url[CFG_PATH_MAX];            /* "" = off; http://127.0.0.1:8080 */
    char machine_id[CFG_NAME_MAX * 2];      /* the watcher's name (cscli machines add NAME) */
    char password[CFG_SECRET_MAX];          /* first line of password_file */
    char api_key[CFG_SECRET_MAX];           /* first line of api_key_file (cscli bouncers add) */
    char password_credential[CFG_NAME_MAX]; /* password_file = credential:NAME; "" = none */
    char api_key_credential[CFG_NAME_MAX];  /* api_key_file = credential:NAME; "" = none */
    bool publish;                           /* yes: our bans become alerts with decisions */
    bool enforce;                           /* yes: LAPI's decisions go into our sets */
    char scenario[128];                     /* pbxguard/asterisk-bf */
    int64_t poll_interval_ms;               /* 1s */
    char origins[CFG_ORIGINS_MAX][CFG_NAME_MAX]; /* crowdsec, cscli, cscli-import, CAPI, lists */
    unsigned norigins;
    unsigned max_prefix4;         /* 16: the widest decision accepted */
    unsigned max_prefix6;         /* 32 */
    char ca_file[CFG_PATH_MAX];   /* "": the system's CAs */
    char cert_file[CFG_PATH_MAX]; /* client certificate, "" = none */
    char key_file[CFG_PATH_MAX];
    int64_t timeout_ms;     /* 10s: one request, connect included */
    unsigned max_reply_mib; /* 64: a decision stream larger than this is refused */
};

struct config {
    char path[CFG_PATH_MAX];
    struct cfg_general general;
    struct cfg_ami *ami;
    unsigned nami;
    struct cfg_seclog *seclog;
    unsigned nseclog;
    struct cfg_policy policy;
    struct cfg_whitelist whitelist;
    struct cfg_protect protect;
    struct cfg_statsd statsd;
    struct cfg_prometheus prometheus;
    struct cfg_nftables nftables;
    struct cfg_cluster cluster;
    struct cfg_crowdsec crowdsec;
};

/* Called once per error with a complete message, e.g.
 * "pbxguard.conf:14: [ami:pbx1] port: \"50a8\" is not a port number (1-65535)". */
typedef void (*config_error_fn)(void *data, const char *message);

/* Fills ret_cfg with the defaults. */
void config_defaults(struct config *ret_cfg);
/* Fills one [ami:NAME] section with its defaults (port 5038, md5, keepalive and backoff). */
void config_ami_defaults(struct cfg_ami *ret_ami);
/* Fills one [seclog:NAME] section with its defaults (/var/log/asterisk/security, mode unset). */
void config_seclog_defaults(struct cfg_seclog *ret_seclog);
/* Loads path over the defaults. Reports every error it finds (not only the first) through
 * on_error and returns the number of errors (0 = ret_cfg is valid), or -errno if the file
 * cannot be read (also reported). ret_cfg must be config_free()d in every case. */
int config_load(const char *path, struct config *ret_cfg, config_error_fn on_error, void *data);
/* Loads len bytes of text as config_load() loads a file; name stands for the file in messages
 * and in ret_cfg->path. The text may hold anything (NUL bytes, no final newline). Same returns,
 * except that there is no file to read. */
int config_load_buffer(const char *name, const char *text, size_t len, struct config *ret_cfg,
                       config_error_fn on_error, void *data);
void config_free(struct config *cfg); /* accepts NULL-filled structs */

/* What the CLI takes from the configuration, and nothing else. */
struct cfg_paths {
    char database[CFG_PATH_MAX];
    char control_socket[CFG_PATH_MAX];
};
/* Reads [general] database and control_socket from path, checked as config_load() checks them
 * (errors reported the same way); keys not set keep their defaults. Every other line is skipped
 * unread: no secret_file is opened and no other section is checked, so a group member who may
 * read the file but not the daemon's secrets gets the two paths. Returns the number of errors
 * (0 = ret_paths is valid), or -errno if the file cannot be read (also reported). */
int config_load_paths(const char *path, struct cfg_paths *ret_paths, config_error_fn on_error,
                      void *data);
/* The same over text in memory (len bytes), named name in messages; -ENOMEM aside, never < 0. */
int config_load_paths_buffer(const char *name, const char *text, size_t len,
                             struct cfg_paths *ret_paths, config_error_fn on_error, void *data);
/* The first [ami:NAME] whose secret is a systemd credential that could not be read because
 * $CREDENTIALS_DIRECTORY is not set (the configuration was loaded outside the unit that
 * provides it), or NULL. Such a configuration is valid for the CLI and for pbxguardd -t, but
 * the daemon cannot log in with it. */
const struct cfg_ami *config_unresolved_credential(const struct config *cfg);
/* The same for [cluster] password_file = credential:NAME (in fleet mode): the credential's
 * name, or NULL. */
const char *config_unresolved_cluster_credential(const struct config *cfg);
/* Prints the effective configuration (secrets masked), as `pbxguardd -t` shows it. */
void config_dump(const struct config *cfg, FILE *out);
