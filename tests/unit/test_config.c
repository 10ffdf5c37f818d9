#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build-config.h"
#include "config.h"

#define MAX_ERRORS 16

struct errors {
    char msg[MAX_ERRORS][1024];
    int n;
};

static void collect(void *data, const char *message)
{
    struct errors *e = data;
    if (e->n < MAX_ERRORS)
        snprintf(e->msg[e->n], sizeof(e->msg[0]), "%s", message);
    e->n++;
}

static char path[64];
static struct errors errs;
static struct config cfg;

/* Writes text to a fresh temporary file named by `path`, mode 0600. */
static void write_file(const char *name, const char *text, mode_t mode)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(name, mode), 0);
}

/* Loads text as a config file; returns config_load()'s result. */
static int load(const char *text)
{
    snprintf(path, sizeof(path), "/tmp/pbxguard-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, text, 0600);
    memset(&errs, 0, sizeof(errs));
    config_free(&cfg);
    int r = config_load(path, &cfg, collect, &errs);
    unlink(path);
    return r;
}

/* The one error message, with the temporary path replaced by "F". */
static const char *only_error(void)
{
    static char out[1024];
    assert_int_equal(errs.n, 1);
    const char *m = errs.msg[0];
    size_t plen = strlen(path);
    assert_memory_equal(m, path, plen);
    snprintf(out, sizeof(out), "F%s", m + plen);
    return out;
}

static void teardown_config(void)
{
    config_free(&cfg);
}

static void defaults_are_the_documented_ones(void **state)
{
    config_defaults(&cfg);
    assert_string_equal(cfg.general.database, "/var/lib/pbxguard/pbxguard.db");
    assert_string_equal(cfg.general.control_socket, "/run/pbxguard/control.sock");
    assert_int_equal(cfg.general.log_level, LOG_LVL_INFO);
    assert_int_equal(cfg.general.group_min_prefix4, 24);
    assert_int_equal(cfg.general.group_min_prefix6, 48);
    assert_int_equal(cfg.policy.maxretry, 5);
    assert_int_equal(cfg.policy.findtime_s, 600);
    assert_int_equal(cfg.policy.bantime_s, 3600);
    assert_int_equal(cfg.policy.bantime_max_s, 7 * 86400);
    assert_int_equal(cfg.policy.ipv6_prefix, 64);
    assert_string_equal(cfg.nftables.table, "pbxguard");
    assert_int_equal(cfg.nftables.priority, -10);
    assert_false(cfg.statsd.enabled);
    assert_int_equal(cfg.statsd.port, 8125);
    assert_int_equal(cfg.nami, 0);
}

static void default_weights_count_only_failures(void **state)
{
    config_defaults(&cfg);
    for (int t = 0; t < SEC_EVENT_TYPE_COUNT; t++) {
        bool failure = t == SEC_FAILED_ACL || t == SEC_INVALID_ACCOUNT_ID ||
                       t == SEC_INVALID_PASSWORD || t == SEC_CHALLENGE_RESPONSE_FAILED ||
                       t == SEC_REQUEST_NOT_ALLOWED || t == SEC_REQUEST_BAD_FORMAT;
        assert_true(cfg.policy.weight[t] == (failure ? 1.0 : 0.0));
    }
}

static void empty_file_gives_the_defaults(void **state)
{
    assert_int_equal(load("; nothing but a comment\n\n# and another\n"), 0);
    assert_int_equal(cfg.policy.maxretry, 5);
    assert_string_equal(cfg.path, path);
}

static void valid_file_sets_every_section(void **state)
{
    assert_int_equal(load("[general]\n"
                          "database = /tmp/x/pbx.db\n"
                          "log_level = debug\n"
                          "log_target = syslog\n"
                          "[ami:pbx1]\n"
                          "host = 192.0.2.10\n"
                          "port = 5039\n"
                          "username = pbxguard\n"
                          "secret = s3cr;et#\n"
                          "auth = plain\n"
                          "ping_interval = 15s\n"
                          "[ami:pbx2]\n"
                          "host = pbx2.example.net\n"
                          "username = u\n"
                          "secret = \" padded \"\n"
                          "[policy]\n"
                          "maxretry = 3\n"
                          "findtime = 1h30m\n"
                          "bantime_factor = 1.5\n"
                          "ipv6_prefix = 56\n"
                          "[events]\n"
                          "ChallengeSent = 0.25\n"
                          "[whitelist]\n"
                          "cidr = 10.0.0.0/8, 2001:db8::/32\n"
                          "cidr = 192.0.2.7\n"
                          "[statsd]\n"
                          "enabled = yes\n"
                          "type = meter\n"
                          "[nftables]\n"
                          "udp_ports = 5060, 5061\n"
                          "udp_ports = 4569\n"
                          "priority = -150\n"),
                     0);
    assert_string_equal(cfg.general.database, "/tmp/x/pbx.db");
    assert_int_equal(cfg.general.log_level, LOG_LVL_DEBUG);
    assert_int_equal(cfg.general.log_target, LOG_TARGET_SYSLOG);
    assert_int_equal(cfg.nami, 2);
    assert_string_equal(cfg.ami[0].name, "pbx1");
    assert_string_equal(cfg.ami[0].host, "192.0.2.10");
    assert_int_equal(cfg.ami[0].port, 5039);
    assert_string_equal(cfg.ami[0].secret, "s3cr;et#");
    assert_int_equal(cfg.ami[0].auth, CFG_AMI_AUTH_PLAIN);
    assert_int_equal(cfg.ami[0].ping_interval_ms, 15000);
    assert_int_equal(cfg.ami[1].port, 5038);
    assert_string_equal(cfg.ami[1].secret, " padded ");
    assert_int_equal(cfg.policy.maxretry, 3);
    assert_int_equal(cfg.policy.findtime_s, 5400);
    assert_true(cfg.policy.bantime_factor == 1.5);
    assert_int_equal(cfg.policy.ipv6_prefix, 56);
    assert_true(cfg.policy.weight[SEC_CHALLENGE_SENT] == 0.25);
    assert_int_equal(cfg.whitelist.n, 3);
    assert_true(cfg.statsd.enabled);
    assert_int_equal(cfg.statsd.type, CFG_STATSD_METER);
    assert_int_equal(cfg.nftables.nudp_ports, 3);
    assert_int_equal(cfg.nftables.udp_ports[2], 4569);
    assert_int_equal(cfg.nftables.priority, -150);
}

static void millisecond_durations_are_accepted(void **state)
{
    assert_int_equal(load("[statsd]\nflush_interval = 250ms\n"), 0);
    assert_int_equal(cfg.statsd.flush_interval_ms, 250);
    assert_int_equal(load("[statsd]\nflush_interval = 2s\n"), 0);
    assert_int_equal(cfg.statsd.flush_interval_ms, 2000);
}

static void service_section_overrides_maxretry_and_weights(void **state)
{
    assert_int_equal(load("[policy:PJSIP]\nmaxretry = 10\nChallengeSent = 0.1\n"), 0);
    assert_int_equal(cfg.policy.nservices, 1);
    assert_string_equal(cfg.policy.services[0].service, "PJSIP");
    assert_int_equal(cfg.policy.services[0].maxretry, 10);
    assert_true(cfg.policy.services[0].weight[SEC_CHALLENGE_SENT] == 0.1);
    assert_true(cfg.policy.services[0].weight[SEC_INVALID_PASSWORD] < 0);
}

#define AMI(name) "[ami:" name "]\nhost = 127.0.0.1\nusername = u\nsecret = s\n"

static void seclog_backfills_the_only_ami_session_by_default(void **state)
{
    assert_int_equal(load(AMI("pbx") "[seclog:log]\n"), 0);
    assert_int_equal(cfg.nseclog, 1);
    assert_string_equal(cfg.seclog[0].name, "log");
    assert_string_equal(cfg.seclog[0].path, "/var/log/asterisk/security");
    assert_int_equal(cfg.seclog[0].mode, CFG_SECLOG_BACKFILL);
    assert_string_equal(cfg.seclog[0].ami, "pbx");
}

static void seclog_without_ami_is_primary(void **state)
{
    assert_int_equal(load("[seclog:log]\npath = /srv/security\n"), 0);
    assert_int_equal(cfg.seclog[0].mode, CFG_SECLOG_PRIMARY);
    assert_string_equal(cfg.seclog[0].path, "/srv/security");
}

static void seclog_picks_the_ami_session_of_its_name(void **state)
{
    assert_int_equal(load(AMI("a") AMI("b") "[seclog:b]\n"), 0);
    assert_string_equal(cfg.seclog[0].ami, "b");
    assert_int_equal(load(AMI("a") AMI("b") "[seclog:x]\nami = a\n"), 0);
    assert_string_equal(cfg.seclog[0].ami, "a");
}

static void seclog_ami_must_be_known(void **state)
{
    assert_int_equal(load(AMI("a") AMI("b") "[seclog:x]\n"), 1);
    assert_non_null(strstr(only_error(), "[seclog:x] ami: missing: which [ami:NAME]"));
    assert_int_equal(load(AMI("a") "[seclog:x]\nami = c\n"), 1);
    assert_non_null(strstr(only_error(), "F:6: [seclog:x] ami: names no [ami:c] section"));
    assert_int_equal(load("[seclog:x]\nmode = backfill\n"), 1);
    assert_non_null(strstr(only_error(), "mode = backfill needs an [ami:NAME] section"));
    assert_int_equal(load(AMI("a") "[seclog:x]\nmode = primary\nami = a\n"), 1);
    assert_non_null(strstr(only_error(), "ami: is only for mode = backfill"));
    assert_int_equal(load("[seclog:x]\nmode = sometimes\n"), 1);
    assert_non_null(strstr(only_error(), "expected one of: backfill, primary"));
}

static void unknown_key_names_file_line_section_and_key(void **state)
{
    assert_int_equal(load("[policy]\nmaxretry = 3\nmaxrety = 4\n"), 1);
    const char *m = only_error();
    assert_non_null(strstr(m, "F:3: [policy] maxrety: unknown key in [policy] (expected "));
    assert_non_null(strstr(m, "maxretry"));
}

static void unknown_section_is_an_error(void **state)
{
    assert_int_equal(load("[polcy]\nmaxretry = 3\n"), 1);
    assert_non_null(strstr(only_error(), "F:1: unknown section [polcy]"));
}

static void key_outside_a_section_is_an_error(void **state)
{
    assert_int_equal(load("maxretry = 3\n"), 1);
    assert_non_null(strstr(only_error(), "F:1: \"maxretry\" is outside any section"));
}

static void line_without_equals_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\nmaxretry 3\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [policy] \"maxretry 3\" is not a setting"));
}

static void bad_number_says_what_is_expected(void **state)
{
    assert_int_equal(load("[ami:pbx1]\nhost = h\nusername = u\nsecret = s\nport = 50a8\n"), 1);
    assert_string_equal(only_error(),
                        "F:5: [ami:pbx1] port: \"50a8\" is not a port number (expected 1..65535)");
}

static void out_of_range_number_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\nipv6_prefix = 16\n"), 1);
    assert_string_equal(only_error(),
                        "F:2: [policy] ipv6_prefix: 16 is out of range (expected 32..128)");
}

static void bad_duration_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\nbantime = 1 hour\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [policy] bantime: \"1 hour\" is not a duration"));
}

static void inline_comment_is_not_silently_dropped(void **state)
{
    assert_int_equal(load("[policy]\nmaxretry = 3 ; three strikes\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [policy] maxretry: \"3 ; three strikes\""));
}

static void bad_boolean_and_enum_are_errors(void **state)
{
    assert_int_equal(load("[statsd]\nenabled = maybe\n[general]\nlog_level = loud\n"), 2);
    assert_non_null(strstr(errs.msg[0], ":2: [statsd] enabled: \"maybe\" is not a boolean"));
    assert_non_null(strstr(errs.msg[1], ":4: [general] log_level: \"loud\" is not valid "
                                        "(expected one of: error, warning, notice, info, debug)"));
}

static void key_set_twice_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\nmaxretry = 3\nmaxretry = 4\n"), 1);
    assert_string_equal(only_error(),
                        "F:3: [policy] maxretry: set twice (first on line 2; keep one)");
}

static void repeated_section_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\n[general]\n[policy]\n"), 1);
    assert_non_null(strstr(only_error(), "F:3: [policy] section repeated (first on line 1"));
}

static void relative_path_is_an_error(void **state)
{
    assert_int_equal(load("[general]\ndatabase = pbxguard.db\n"), 1);
    assert_non_null(strstr(only_error(), "database: \"pbxguard.db\" is not an absolute path"));
}

static void control_characters_are_escaped_in_messages(void **state)
{
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\x1b[31m\nsecret = s\n"), 1);
    assert_non_null(strstr(only_error(), "username: \"u\\x1b[31m\" holds control characters"));
}

static void cidr_with_host_bits_suggests_the_network(void **state)
{
    assert_int_equal(load("[whitelist]\ncidr = 192.0.2.1/24\n"), 1);
    assert_string_equal(
        only_error(),
        "F:2: [whitelist] cidr: \"192.0.2.1/24\" has host bits set (expected 192.0.2.0/24)");
}

static void bad_port_in_a_list_is_an_error(void **state)
{
    assert_int_equal(load("[nftables]\ntcp_ports = 5060, 0, 5061\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [nftables] tcp_ports: \"0\" is not a port number"));
    assert_int_equal(cfg.nftables.ntcp_ports, 2);
}

static void unknown_event_weight_is_an_error(void **state)
{
    assert_int_equal(load("[events]\nInvalidPasword = 1\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [events] InvalidPasword: unknown key"));
}

static void ami_without_host_username_or_secret_is_an_error(void **state)
{
    assert_int_equal(load("[ami:pbx1]\nport = 5038\n"), 3);
    assert_non_null(strstr(errs.msg[0], ":1: [ami:pbx1] host: missing"));
    assert_non_null(strstr(errs.msg[1], ":1: [ami:pbx1] username: missing"));
    assert_non_null(strstr(errs.msg[2], ":1: [ami:pbx1] secret: missing"));
}

static void ami_defined_twice_is_an_error(void **state)
{
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\nsecret = s\n"
                          "[ami:a]\nhost = h\nusername = u\nsecret = s\n"),
                     1);
    assert_non_null(strstr(only_error(), "F:5: [ami:a] server defined twice"));
}

static void secret_and_secret_file_together_is_an_error(void **state)
{
    write_file("/tmp/pbxguard-test-secret", "from-file\n", 0600);
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\nsecret = s\n"
                          "secret_file = /tmp/pbxguard-test-secret\n"),
                     1);
    unlink("/tmp/pbxguard-test-secret");
    assert_string_equal(
        only_error(), "F:5: [ami:a] secret and secret_file are both set (lines 4 and 5; keep one)");
}

static void secret_file_supplies_its_first_line(void **state)
{
    write_file("/tmp/pbxguard-test-secret", "from-file\nsecond line\n", 0600);
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\n"
                          "secret_file = /tmp/pbxguard-test-secret\n"),
                     0);
    unlink("/tmp/pbxguard-test-secret");
    assert_string_equal(cfg.ami[0].secret, "from-file");
}

static void secret_file_readable_by_others_is_refused(void **state)
{
    write_file("/tmp/pbxguard-test-secret", "from-file\n", 0644);
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\n"
                          "secret_file = /tmp/pbxguard-test-secret\n"),
                     1);
    unlink("/tmp/pbxguard-test-secret");
    const char *m = only_error();
    assert_non_null(strstr(m, "F:4: [ami:a] secret_file: \"/tmp/pbxguard-test-secret\" is "
                              "accessible by group or others (mode 0644)"));
    assert_non_null(strstr(m, "chmod 600 /tmp/pbxguard-test-secret"));
    assert_string_equal(cfg.ami[0].secret, "");
}

/* The daemon's own group is the group it runs as; nogroup stands in for it here. Returns the
 * gid, or -1 (the test is skipped) when that cannot be arranged. */
static int become_group_nogroup(void)
{
    struct group *gr = getgrnam("nogroup");
    if (geteuid() != 0 || !gr || (gr->gr_mem && gr->gr_mem[0]))
        return -1;
    return setegid(gr->gr_gid) == 0 ? (int)gr->gr_gid : -1;
}

static void secret_file_readable_by_the_daemons_own_group_is_accepted(void **state)
{
    int gid = become_group_nogroup();
    if (gid < 0)
        skip();
    write_file("/tmp/pbxguard-test-secret", "from-file\n", 0640);
    assert_int_equal(chown("/tmp/pbxguard-test-secret", 0, (gid_t)gid), 0);
    int r = load("[ami:a]\nhost = h\nusername = u\nsecret_file = /tmp/pbxguard-test-secret\n");
    assert_int_equal(setegid(0), 0);
    unlink("/tmp/pbxguard-test-secret");
    assert_int_equal(r, 0);
    assert_string_equal(cfg.ami[0].secret, "from-file");
}

static void secret_file_readable_by_another_group_is_refused(void **state)
{
    struct group *gr = getgrnam("nogroup");
    if (geteuid() != 0 || !gr)
        skip();
    write_file("/tmp/pbxguard-test-secret", "from-file\n", 0640);
    assert_int_equal(chown("/tmp/pbxguard-test-secret", 0, gr->gr_gid), 0);
    assert_int_equal(
        load("[ami:a]\nhost = h\nusername = u\nsecret_file = /tmp/pbxguard-test-secret\n"), 1);
    unlink("/tmp/pbxguard-test-secret");
    assert_non_null(strstr(only_error(), "is accessible by group or others (mode 0640)"));
    assert_string_equal(cfg.ami[0].secret, "");
}

static void secret_file_writable_by_the_daemons_own_group_is_refused(void **state)
{
    int gid = become_group_nogroup();
    if (gid < 0)
        skip();
    write_file("/tmp/pbxguard-test-secret", "from-file\n", 0660);
    assert_int_equal(chown("/tmp/pbxguard-test-secret", 0, (gid_t)gid), 0);
    int r = load("[ami:a]\nhost = h\nusername = u\nsecret_file = /tmp/pbxguard-test-secret\n");
    assert_int_equal(setegid(0), 0);
    unlink("/tmp/pbxguard-test-secret");
    assert_int_equal(r, 1);
    assert_non_null(strstr(only_error(), "(mode 0660)"));
}

static void credential_is_read_from_the_credentials_directory(void **state)
{
    char dir[] = "/tmp/pbxguard-test-creds-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[sizeof(dir) + 16];
    snprintf(file, sizeof(file), "%s/ami-local", dir);
    write_file(file, "from-systemd\n", 0400);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    int r = load("[ami:a]\nhost = h\nusername = u\nsecret_file = credential:ami-local\n");
    unsetenv("CREDENTIALS_DIRECTORY");
    unlink(file);
    rmdir(dir);
    assert_int_equal(r, 0);
    assert_string_equal(cfg.ami[0].secret, "from-systemd");
    assert_string_equal(cfg.ami[0].credential, "ami-local");
    assert_null(config_unresolved_credential(&cfg));
}

static void cluster_password_comes_from_a_file_or_a_credential(void **state)
{
    char dir[] = "/tmp/pbxguard-test-creds-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[sizeof(dir) + 16], text[256];
    snprintf(file, sizeof(file), "%s/pg", dir);
    write_file(file, "pg-secret\n", 0600);
    snprintf(text, sizeof(text), "[cluster]\npassword_file = %s\n", file);
    assert_int_equal(load(text), 0);
    assert_string_equal(cfg.cluster.password, "pg-secret");
    chmod(file, 0644);
    assert_int_equal(load(text), 1);
    assert_non_null(strstr(only_error(), "is accessible by group or others"));
    chmod(file, 0400);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    int r = load("[cluster]\npassword_file = credential:pg\n");
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(r, 0);
    assert_string_equal(cfg.cluster.password, "pg-secret");
    assert_string_equal(cfg.cluster.credential, "pg");
    unlink(file);
    rmdir(dir);
    /* Outside its unit the credential cannot be read: the daemon refuses to start with it. */
    assert_int_equal(load("[cluster]\nbackend = postgresql\nconninfo = host=db\n"
                          "password_file = credential:pg\n"),
                     PBXGUARD_HAVE_LIBPQ ? 0 : 1);
    assert_string_equal(config_unresolved_cluster_credential(&cfg), "pg");
}

static void missing_credential_names_the_file(void **state)
{
    setenv("CREDENTIALS_DIRECTORY", "/nonexistent-pbxguard-creds", 1);
    int r = load("[ami:a]\nhost = h\nusername = u\nsecret_file = credential:ami-local\n");
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(r, 1);
    assert_string_equal(only_error(), "F:4: [ami:a] secret_file: cannot open "
                                      "\"/nonexistent-pbxguard-creds/ami-local\": No such file "
                                      "or directory");
}

static void credential_outside_its_unit_is_left_for_the_daemon(void **state)
{
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\nsecret_file = credential:ami-local\n"),
                     0);
    assert_string_equal(cfg.ami[0].secret, "");
    const struct cfg_ami *a = config_unresolved_credential(&cfg);
    assert_non_null(a);
    assert_string_equal(a->name, "a");
    assert_string_equal(a->credential, "ami-local");

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_dump(&cfg, f);
    fclose(f);
    assert_non_null(strstr(out, "secret_file = credential:ami-local\n"));
    free(out);
}

static void bad_credential_name_is_an_error(void **state)
{
    static const char *const bad[] = {"", "..", "a/b", "a b", "x\x01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text),
                 "[ami:a]\nhost = h\nusername = u\nsecret_file = credential:%s\n", bad[i]);
        assert_int_equal(load(text), 1);
        assert_non_null(strstr(only_error(), "is not a credential name"));
    }
}

static void bantime_max_below_bantime_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\nbantime = 2d\nbantime_max = 1d\n"), 1);
    assert_string_equal(only_error(), "F:3: [policy] bantime_max: is below bantime");
}

static void three_mistakes_give_three_errors(void **state)
{
    assert_int_equal(load("[general]\n"
                          "log_level = verbose\n"
                          "[policy]\n"
                          "findtime = 10 minutes\n"
                          "[statsd]\n"
                          "hots = 127.0.0.1\n"),
                     3);
    assert_non_null(strstr(errs.msg[0], ":2: [general] log_level:"));
    assert_non_null(strstr(errs.msg[1], ":4: [policy] findtime:"));
    assert_non_null(strstr(errs.msg[2], ":6: [statsd] hots: unknown key"));
}

static void missing_file_returns_the_errno_and_says_so(void **state)
{
    memset(&errs, 0, sizeof(errs));
    config_free(&cfg);
    assert_int_equal(config_load("/nonexistent/pbxguard.conf", &cfg, collect, &errs), -ENOENT);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msg[0], "/nonexistent/pbxguard.conf: cannot read: "
                                     "No such file or directory");
}

/* The shipped file's text (its mode in a checkout is the umask's: tests load a 0600 copy). */
static char *shipped_text(void)
{
    FILE *f = fopen("../etc/pbxguard.conf", "r");
    assert_non_null(f);
    char *text = calloc(1, 65536);
    assert_non_null(text);
    size_t n = fread(text, 1, 65535, f);
    assert_true(n > 0 && n < 65535);
    fclose(f);
    return text;
}

static void shipped_config_is_valid(void **state)
{
    char *text = shipped_text();
    assert_int_equal(load(text), 0);
    free(text);
    assert_int_equal(errs.n, 0);
    assert_int_equal(cfg.nami, 1);
    assert_string_equal(cfg.ami[0].host, "127.0.0.1");
}

/* Every default written in the shipped file is the built-in default: the annotations don't lie. */
static void shipped_config_states_the_builtin_defaults(void **state)
{
    struct config def;
    char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;

    config_defaults(&def);
    char *text = shipped_text();
    assert_int_equal(load(text), 0);
    free(text);
    /* the sample's AMI section and path are what differ from a bare default */
    snprintf(def.path, sizeof(def.path), "%s", cfg.path);
    def.ami = cfg.ami;
    def.nami = cfg.nami;
    FILE *fa = open_memstream(&a, &alen), *fb = open_memstream(&b, &blen);
    config_dump(&def, fa);
    config_dump(&cfg, fb);
    fclose(fa);
    fclose(fb);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void dump_masks_the_secret(void **state)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\nsecret = hunter2\n"), 0);
    FILE *f = open_memstream(&out, &len);
    config_dump(&cfg, f);
    fclose(f);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "secret = ********\n"));
    assert_non_null(strstr(out, "[ami:a]\nhost = h\n"));
    free(out);
}

/* What config_dump prints reads back as the same configuration. */
static void dump_reads_back_as_the_same_configuration(void **state)
{
    char *first = NULL, *second = NULL;
    size_t len = 0;
    assert_int_equal(load("[policy]\nfindtime = 1h30m\n[policy:SIP]\nmaxretry = 2\n"
                          "InvalidPassword = 3\n[whitelist]\ncidr = 10.0.0.0/8\n"
                          "[nftables]\nudp_ports = 5060\n[statsd]\nflush_interval = 250ms\n"),
                     0);
    FILE *f = open_memstream(&first, &len);
    config_dump(&cfg, f);
    fclose(f);
    /* drop the "# effective configuration from PATH" line, which names the temp file */
    assert_int_equal(load(strchr(first, '\n') + 1), 0);
    f = open_memstream(&second, &len);
    config_dump(&cfg, f);
    fclose(f);
    assert_string_equal(strchr(first, '\n'), strchr(second, '\n'));
    free(first);
    free(second);
}

/* A text in memory is parsed exactly as the same text in a file. */
static void buffer_loads_like_a_file(void **state)
{
    static const char text[] = "[policy]\nfindtime = 1h30m\n[ami:a]\r\nhost = h\nusername = u\n"
                               "secret = s\n[whitelist]\ncidr = 10.0.0.0/8\nmaxrety = 5";
    char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    struct config buf;
    struct errors berrs = {0};

    assert_int_equal(load(text), 1);
    assert_int_equal(config_load_buffer(path, text, strlen(text), &buf, collect, &berrs), 1);
    assert_string_equal(berrs.msg[0], errs.msg[0]);
    assert_non_null(strstr(berrs.msg[0], ":9: [whitelist] maxrety: unknown key"));
    FILE *fa = open_memstream(&a, &alen), *fb = open_memstream(&b, &blen);
    config_dump(&cfg, fa);
    config_dump(&buf, fb);
    fclose(fa);
    fclose(fb);
    assert_string_equal(a, b);
    free(a);
    free(b);
    config_free(&buf);
}

static void buffer_reports_a_nul_byte_and_takes_a_last_line_without_newline(void **state)
{
    static const char text[] = "[general]\nlog_level = debug\x00x\nretention = 2d";
    struct config buf;
    struct errors berrs = {0};

    assert_int_equal(config_load_buffer("T", text, sizeof(text) - 1, &buf, collect, &berrs), 1);
    assert_string_equal(berrs.msg[0], "T:2: [general] line holds a NUL byte");
    assert_int_equal(buf.general.retention_s, 2 * 86400);
    assert_string_equal(buf.path, "T");
    config_free(&buf);
}

static void section_names_are_escaped_in_messages(void **state)
{
    assert_int_equal(load("[ami:\x9b[2J]\nhost = h\n[ami\xc2\x9b:x]\n"), 2);
    assert_non_null(strstr(errs.msg[0], ":1: \"\\x9b[2J\" is not a valid server name"));
    assert_non_null(strstr(errs.msg[1], ":3: bad section header \"[ami\\xc2\\x9b:x]\""));
    for (int i = 0; i < errs.n; i++)
        for (const char *c = errs.msg[i]; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
}

/* Loads text from a file of this mode and owner (uid -1: root's, as written). */
static int load_as(const char *text, mode_t mode, uid_t uid)
{
    snprintf(path, sizeof(path), "/tmp/pbxguard-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, text, mode);
    if (uid != (uid_t)-1)
        assert_int_equal(chown(path, uid, (gid_t)-1), 0);
    memset(&errs, 0, sizeof(errs));
    config_free(&cfg);
    int r = config_load(path, &cfg, collect, &errs);
    unlink(path);
    return r;
}

static const char inline_secret[] = "[ami:a]\nhost = h\nusername = u\nsecret = s3cret\n"
                                    "[ami:b]\nhost = h\nusername = u\nsecret = other\n";

static void inline_secret_in_a_file_others_can_read_is_refused(void **state)
{
    assert_int_equal(load_as(inline_secret, 0644, (uid_t)-1), 1);
    const char *m = only_error();
    assert_non_null(strstr(m, "F:4: [ami:a] secret: "));
    assert_non_null(
        strstr(m, "this file holds the secret inline, and \"/tmp/pbxguard-test-config-"));
    assert_non_null(strstr(m, "is accessible by group or others (mode 0644)"));
    assert_non_null(strstr(m, "chmod 600 /tmp/pbxguard-test-config-"));
    assert_null(strstr(m, "s3cret"));
    assert_int_equal(load_as(inline_secret, 0640, (uid_t)-1), 1);
    assert_int_equal(load_as(inline_secret, 0600, (uid_t)-1), 0);
    assert_int_equal(load_as(inline_secret, 0400, (uid_t)-1), 0);
}

static void inline_secret_in_a_file_of_another_user_is_refused(void **state)
{
    if (geteuid() != 0)
        skip(); /* only root can give a file away */
    assert_int_equal(load_as(inline_secret, 0600, 4242), 1);
    assert_non_null(
        strstr(only_error(), "holds the secret inline, and \"/tmp/pbxguard-test-config-"));
    assert_non_null(strstr(only_error(), "is owned by uid 4242 (expected root"));
}

static void a_secret_file_needs_no_closed_configuration(void **state)
{
    write_file("/tmp/pbxguard-test-secret", "from-file\n", 0600);
    assert_int_equal(load_as("[ami:a]\nhost = h\nusername = u\n"
                             "secret_file = /tmp/pbxguard-test-secret\n",
                             0644, (uid_t)-1),
                     0);
    unlink("/tmp/pbxguard-test-secret");
    assert_string_equal(cfg.ami[0].secret, "from-file");
}

/* No error message quotes the secret, whatever is wrong with it or around it. */
static void messages_never_quote_the_secret(void **state)
{
    assert_int_equal(load("[ami:a]\nhost = h\nusername = u\nsecret = MARKER\x01x\n"
                          "MARKER2 pasted alone\n"
                          "MARKER3\x01 = y\n"
                          "sercet = MARKER4\n"
                          "[MARKER5\n"),
                     5);
    for (int i = 0; i < errs.n; i++)
        assert_null(strstr(errs.msg[i], "MARKER"));
    assert_non_null(strstr(errs.msg[0], ":4: [ami:a] secret: the secret holds control characters"));
    assert_non_null(strstr(errs.msg[1], ":5: [ami:a] a line that is not a setting, not shown"));
    assert_non_null(strstr(errs.msg[2], ":6: [ami:a] unknown key in [ami:NAME], not shown"));
    /* a mistyped key that is a name is shown (its value is not) */
    assert_non_null(strstr(errs.msg[3], ":7: [ami:a] sercet: unknown key in [ami:NAME]"));
    assert_non_null(strstr(errs.msg[4], ":8: bad section header, not shown"));
}

static void free_accepts_null_and_zeroed_structs(void **state)
{
    struct config z;
    memset(&z, 0, sizeof(z));
    config_free(NULL);
    config_free(&z);
    config_free(&z);
}

/* Loads text as a config file through config_load_paths(). */
static int load_paths(const char *text, struct cfg_paths *ret)
{
    snprintf(path, sizeof(path), "/tmp/pbxguard-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, text, 0600);
    memset(&errs, 0, sizeof(errs));
    int r = config_load_paths(path, ret, collect, &errs);
    unlink(path);
    return r;
}

static void paths_come_from_general_alone(void **state)
{
    struct cfg_paths p;
    /* Everything the daemon would refuse, or that a group member may not open, outside
     * [general]: none of it is the CLI's business. */
    assert_int_equal(load_paths("[ami:pbx1]\nhost = 127.0.0.1\nusername = u\n"
                                "secret_file = /nonexistent/pbxguard.secret\n"
                                "[general]\nlog_level = chatty\n"
                                "control_socket = /run/x/control.sock\n"
                                "database = \"/var/x/p.db\"\n"
                                "[frobnicate]\nmaxrety = 5\n"
                                "[policy]\nmaxretry = lots\n",
                                &p),
                     0);
    assert_int_equal(errs.n, 0);
    assert_string_equal(p.control_socket, "/run/x/control.sock");
    assert_string_equal(p.database, "/var/x/p.db");
}

static void paths_default_when_not_set(void **state)
{
    struct cfg_paths p;
    assert_int_equal(load_paths("[general]\nlog_level = debug\n", &p), 0);
    assert_string_equal(p.control_socket, "/run/pbxguard/control.sock");
    assert_string_equal(p.database, "/var/lib/pbxguard/pbxguard.db");
}

static void paths_are_checked_as_the_daemon_checks_them(void **state)
{
    struct cfg_paths p;
    assert_int_equal(load_paths("[general]\ncontrol_socket = run/control.sock\n", &p), 1);
    assert_string_equal(only_error(), "F:2: [general] control_socket: \"run/control.sock\" is not "
                                      "an absolute path (expected /...)");
    assert_int_equal(load_paths("[general]\ndatabase = /a.db\ndatabase = /b.db\n", &p), 1);
    assert_string_equal(only_error(),
                        "F:3: [general] database: set twice (first on line 2; keep one)");
}

static void paths_of_an_unreadable_file_return_the_errno(void **state)
{
    struct cfg_paths p;
    memset(&errs, 0, sizeof(errs));
    assert_int_equal(config_load_paths("/nonexistent/pbxguard.conf", &p, collect, &errs), -ENOENT);
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msg[0], "cannot read"));
}

static void protect_defaults_protect_everything(void **state)
{
    assert_int_equal(load("[general]\n"), 0);
    assert_true(cfg.protect.own_addresses && cfg.protect.gateways && cfg.protect.resolvers);
    assert_string_equal(cfg.protect.resolv_conf, "/etc/resolv.conf");
    assert_int_equal(cfg.protect.min_prefix4, 8);
    assert_int_equal(cfg.protect.min_prefix6, 16);
}

static void protect_section_turns_each_source_off(void **state)
{
    assert_int_equal(load("[protect]\nown_addresses = no\ngateways = no\nresolvers = no\n"
                          "resolv_conf = /run/test/resolv.conf\nmin_prefix4 = 16\n"
                          "min_prefix6 = 32\n"),
                     0);
    assert_false(cfg.protect.own_addresses || cfg.protect.gateways || cfg.protect.resolvers);
    assert_string_equal(cfg.protect.resolv_conf, "/run/test/resolv.conf");
    assert_int_equal(cfg.protect.min_prefix4, 16);
    assert_int_equal(cfg.protect.min_prefix6, 32);
}

static void cluster_defaults_to_no_fleet_named_after_the_host(void **state)
{
    char host[256] = "";
    assert_int_equal(load("[general]\n"), 0);
    assert_int_equal(cfg.cluster.backend, CFG_CLUSTER_NONE);
    assert_int_equal(cfg.cluster.publish, CFG_PUBLISH_THRESHOLD | CFG_PUBLISH_MANUAL);
    assert_true(cfg.cluster.accept);
    assert_int_equal(cfg.cluster.max_prefix4, 24);
    assert_int_equal(cfg.cluster.max_prefix6, 48);
    gethostname(host, sizeof(host) - 1);
    if (host[0] && strlen(host) < CFG_NODE_MAX && !strchr(host, ' '))
        assert_string_equal(cfg.cluster.node, host);
}

static void cluster_section_is_read_and_checked(void **state)
{
    assert_int_equal(load("[cluster]\nbackend = postgresql\nconninfo = host=db1,db2 "
                          "dbname=pbxguard target_session_attrs=read-write\nnode = pbx-7\n"
                          "publish = manual\naccept = no\nmax_prefix4 = 16\n"
                          "catchup_interval = 5s\n"),
                     PBXGUARD_HAVE_LIBPQ ? 0 : 1);
    assert_int_equal(cfg.cluster.publish, CFG_PUBLISH_MANUAL);
    assert_false(cfg.cluster.accept);
    assert_string_equal(cfg.cluster.node, "pbx-7");
    assert_int_equal(cfg.cluster.max_prefix4, 16);
    assert_int_equal(cfg.cluster.catchup_interval_ms, 5000);
    assert_int_equal(load("[cluster]\npublish = none\n"), 0);
    assert_int_equal(cfg.cluster.publish, 0);
    assert_int_equal(load("[cluster]\npublish = threshold, bogus\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [cluster] publish: \"bogus\" is not valid"));
    assert_int_equal(load("[cluster]\nnode = has space\n"), 1);
    assert_int_equal(load("[cluster]\nbackend = postgresql\n"), PBXGUARD_HAVE_LIBPQ ? 1 : 2);
    assert_non_null(strstr(errs.msg[errs.n - 1], "[cluster] conninfo: missing"));
}

static void cluster_conninfo_with_a_password_is_refused(void **state)
{
    assert_int_equal(load("[cluster]\nconninfo = host=db1 password=hunter2\n"), 1);
    assert_non_null(strstr(only_error(), "holds a password; put it in password_file"));
    assert_int_equal(load("[cluster]\nconninfo = postgresql://pbx:hunter2@db1/pbxguard\n"), 1);
    assert_non_null(strstr(only_error(), "holds a password"));
    assert_int_equal(load("[cluster]\nconninfo = postgresql://pbx@db1:5432/pbxguard\n"), 0);
}

static void min_prefix_narrower_than_the_counting_key_is_an_error(void **state)
{
    assert_int_equal(load("[policy]\nipv4_prefix = 24\n[protect]\nmin_prefix4 = 25\n"), 1);
    assert_string_equal(only_error(),
                        "F:3: [protect] min_prefix4: /25 is narrower than [policy] ipv4_prefix "
                        "/24, so no threshold ban could be placed (expected at most 24)");
    assert_int_equal(load("[protect]\nmin_prefix6 = 0\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [protect] min_prefix6: 0 is out of range"));
    assert_int_equal(load("[protect]\nmin_prefix6 = 65\n"), 1);
    assert_non_null(strstr(only_error(), "min_prefix6: /65 is narrower than [policy] ipv6_prefix"));
    assert_int_equal(load("[protect]\nresolv_conf = resolv.conf\n"), 1);
    assert_non_null(strstr(only_error(), "F:2: [protect] resolv_conf: \"resolv.conf\" is not an "
                                         "absolute path"));
}

/* --- [prometheus] --- */

static void prometheus_is_off_without_a_textfile(void **state)
{
    assert_int_equal(load("[general]\n"), 0);
    assert_string_equal(cfg.prometheus.textfile, "");
    assert_int_equal(cfg.prometheus.interval_ms, 15000);
    assert_int_equal(load("[prometheus]\ntextfile = /var/lib/prometheus/node-exporter/"
                          "pbxguard.prom\ninterval = 30s\n"),
                     0);
    assert_string_equal(cfg.prometheus.textfile, "/var/lib/prometheus/node-exporter/pbxguard.prom");
    assert_int_equal(cfg.prometheus.interval_ms, 30000);
}

static void prometheus_textfile_must_be_a_prom_file(void **state)
{
    /* node_exporter reads *.prom only: another name would be written and never read. */
    assert_int_equal(load("[prometheus]\ntextfile = /var/lib/node-exporter/pbxguard.txt\n"), 1);
    assert_non_null(strstr(only_error(), ":2: [prometheus] textfile: must name a *.prom file"));
    assert_int_equal(load("[prometheus]\ntextfile = /var/lib/node-exporter/.prom\n"), 1);
    assert_int_equal(load("[prometheus]\ntextfile = pbxguard.prom\n"), 1);
    assert_non_null(strstr(only_error(), "is not an absolute path"));
    assert_int_equal(load("[prometheus]\ninterval = 100ms\n"), 1);
}

/* --- [crowdsec] --- */

static void crowdsec_is_off_without_its_section(void **state)
{
    assert_int_equal(load("[general]\n"), 0);
    assert_string_equal(cfg.crowdsec.lapi_url, "");
    assert_true(cfg.crowdsec.publish && cfg.crowdsec.enforce);
    assert_string_equal(cfg.crowdsec.scenario, "pbxguard/asterisk-bf");
    assert_int_equal(cfg.crowdsec.poll_interval_ms, 1000);
    assert_int_equal(cfg.crowdsec.norigins, 5);
    assert_string_equal(cfg.crowdsec.origins[3], "CAPI");
}

static void crowdsec_reads_both_roles_and_their_secret_files(void **state)
{
    write_file("/tmp/pbxguard-test-cs-pw", "watcher-pw\n", 0600);
    write_file("/tmp/pbxguard-test-cs-key", "bouncer-key\n", 0600);
    assert_int_equal(load("[crowdsec]\nlapi_url = http://127.0.0.1:8080\n"
                          "machine_id = pbx1\npassword_file = /tmp/pbxguard-test-cs-pw\n"
                          "api_key_file = /tmp/pbxguard-test-cs-key\npoll_interval = 250ms\n"
                          "origins = cscli, crowdsec\norigins = lists, cscli\n"),
                     0);
    assert_string_equal(cfg.crowdsec.password, "watcher-pw");
    assert_string_equal(cfg.crowdsec.api_key, "bouncer-key");
    assert_int_equal(cfg.crowdsec.poll_interval_ms, 250);
    assert_int_equal(cfg.crowdsec.norigins, 3);
    assert_string_equal(cfg.crowdsec.origins[2], "lists");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_dump(&cfg, f);
    fclose(f);
    assert_null(strstr(out, "watcher-pw"));
    assert_null(strstr(out, "bouncer-key"));
    assert_non_null(strstr(out, "[crowdsec]\nlapi_url = http://127.0.0.1:8080\n"));
    assert_non_null(strstr(out, "origins = cscli, crowdsec, lists\n"));
    free(out);
    /* A key readable by others is refused like an AMI secret_file. */
    chmod("/tmp/pbxguard-test-cs-key", 0640);
    assert_int_equal(load("[crowdsec]\nlapi_url = http://127.0.0.1:8080\npublish = no\n"
                          "api_key_file = /tmp/pbxguard-test-cs-key\n"),
                     1);
    assert_non_null(strstr(only_error(), "F:4: [crowdsec] api_key_file: "
                                         "\"/tmp/pbxguard-test-cs-key\" is accessible by group"));
    unlink("/tmp/pbxguard-test-cs-pw");
    unlink("/tmp/pbxguard-test-cs-key");
}

static void crowdsec_secrets_can_be_systemd_credentials(void **state)
{
    mkdir("/tmp/pbxguard-test-creds", 0700);
    write_file("/tmp/pbxguard-test-creds/cs-key", "key-from-credential\n", 0600);
    setenv("CREDENTIALS_DIRECTORY", "/tmp/pbxguard-test-creds", 1);
    assert_int_equal(load("[crowdsec]\nlapi_url = http://127.0.0.1:8080\npublish = no\n"
                          "api_key_file = credential:cs-key\n"),
                     0);
    unsetenv("CREDENTIALS_DIRECTORY");
    unlink("/tmp/pbxguard-test-creds/cs-key");
    rmdir("/tmp/pbxguard-test-creds");
    assert_string_equal(cfg.crowdsec.api_key, "key-from-credential");
    assert_string_equal(cfg.crowdsec.api_key_credential, "cs-key");
    assert_string_equal(cfg.crowdsec.password_credential, "");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    config_dump(&cfg, f);
    fclose(f);
    assert_null(strstr(out, "key-from-credential"));
    assert_non_null(strstr(out, "api_key_file = credential:cs-key\n"));
    free(out);
}

static void crowdsec_says_what_each_role_lacks(void **state)
{
    assert_int_equal(load("[crowdsec]\nlapi_url = http://127.0.0.1:8080\nenforce = no\n"), 1);
    assert_non_null(strstr(only_error(), "F:1: [crowdsec] machine_id: missing: publish = yes "
                                         "needs the watcher's machine_id and password_file"));
    assert_int_equal(load("[crowdsec]\nlapi_url = http://127.0.0.1:8080\npublish = no\n"), 1);
    assert_non_null(strstr(only_error(), "F:1: [crowdsec] api_key_file: missing: enforce = yes "
                                         "needs the bouncer's api_key_file"));
    assert_int_equal(load("[crowdsec]\nlapi_url = ftp://x\npublish = no\nenforce = no\n"), 2);
    assert_non_null(strstr(errs.msg[0], "is not an HTTP URL"));
    assert_non_null(strstr(errs.msg[1], "publish and enforce are both no"));
    /* No URL, nothing to do, a bad name, and so no origin at all. */
    assert_int_equal(load("[crowdsec]\npublish = no\nenforce = no\norigins = a b\n"), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_the_documented_ones),
        cmocka_unit_test(default_weights_count_only_failures),
        cmocka_unit_test(empty_file_gives_the_defaults),
        cmocka_unit_test(valid_file_sets_every_section),
        cmocka_unit_test(millisecond_durations_are_accepted),
        cmocka_unit_test(service_section_overrides_maxretry_and_weights),
        cmocka_unit_test(unknown_key_names_file_line_section_and_key),
        cmocka_unit_test(unknown_section_is_an_error),
        cmocka_unit_test(key_outside_a_section_is_an_error),
        cmocka_unit_test(line_without_equals_is_an_error),
        cmocka_unit_test(bad_number_says_what_is_expected),
        cmocka_unit_test(out_of_range_number_is_an_error),
        cmocka_unit_test(bad_duration_is_an_error),
        cmocka_unit_test(inline_comment_is_not_silently_dropped),
        cmocka_unit_test(bad_boolean_and_enum_are_errors),
        cmocka_unit_test(key_set_twice_is_an_error),
        cmocka_unit_test(repeated_section_is_an_error),
        cmocka_unit_test(relative_path_is_an_error),
        cmocka_unit_test(control_characters_are_escaped_in_messages),
        cmocka_unit_test(cidr_with_host_bits_suggests_the_network),
        cmocka_unit_test(bad_port_in_a_list_is_an_error),
        cmocka_unit_test(unknown_event_weight_is_an_error),
        cmocka_unit_test(ami_without_host_username_or_secret_is_an_error),
        cmocka_unit_test(ami_defined_twice_is_an_error),
        cmocka_unit_test(secret_and_secret_file_together_is_an_error),
        cmocka_unit_test(secret_file_supplies_its_first_line),
        cmocka_unit_test(secret_file_readable_by_others_is_refused),
        cmocka_unit_test(secret_file_readable_by_the_daemons_own_group_is_accepted),
        cmocka_unit_test(secret_file_readable_by_another_group_is_refused),
        cmocka_unit_test(secret_file_writable_by_the_daemons_own_group_is_refused),
        cmocka_unit_test(credential_is_read_from_the_credentials_directory),
        cmocka_unit_test(missing_credential_names_the_file),
        cmocka_unit_test(credential_outside_its_unit_is_left_for_the_daemon),
        cmocka_unit_test(bad_credential_name_is_an_error),
        cmocka_unit_test(bantime_max_below_bantime_is_an_error),
        cmocka_unit_test(three_mistakes_give_three_errors),
        cmocka_unit_test(missing_file_returns_the_errno_and_says_so),
        cmocka_unit_test(seclog_backfills_the_only_ami_session_by_default),
        cmocka_unit_test(seclog_without_ami_is_primary),
        cmocka_unit_test(seclog_picks_the_ami_session_of_its_name),
        cmocka_unit_test(seclog_ami_must_be_known),
        cmocka_unit_test(shipped_config_is_valid),
        cmocka_unit_test(shipped_config_states_the_builtin_defaults),
        cmocka_unit_test(dump_masks_the_secret),
        cmocka_unit_test(buffer_loads_like_a_file),
        cmocka_unit_test(buffer_reports_a_nul_byte_and_takes_a_last_line_without_newline),
        cmocka_unit_test(section_names_are_escaped_in_messages),
        cmocka_unit_test(inline_secret_in_a_file_others_can_read_is_refused),
        cmocka_unit_test(inline_secret_in_a_file_of_another_user_is_refused),
        cmocka_unit_test(a_secret_file_needs_no_closed_configuration),
        cmocka_unit_test(messages_never_quote_the_secret),
        cmocka_unit_test(dump_reads_back_as_the_same_configuration),
        cmocka_unit_test(free_accepts_null_and_zeroed_structs),
        cmocka_unit_test(paths_come_from_general_alone),
        cmocka_unit_test(paths_default_when_not_set),
        cmocka_unit_test(paths_are_checked_as_the_daemon_checks_them),
        cmocka_unit_test(paths_of_an_unreadable_file_return_the_errno),
        cmocka_unit_test(protect_defaults_protect_everything),
        cmocka_unit_test(protect_section_turns_each_source_off),
        cmocka_unit_test(min_prefix_narrower_than_the_counting_key_is_an_error),
        cmocka_unit_test(cluster_defaults_to_no_fleet_named_after_the_host),
        cmocka_unit_test(cluster_section_is_read_and_checked),
        cmocka_unit_test(cluster_conninfo_with_a_password_is_refused),
        cmocka_unit_test(cluster_password_comes_from_a_file_or_a_credential),
        cmocka_unit_test(prometheus_is_off_without_a_textfile),
        cmocka_unit_test(prometheus_textfile_must_be_a_prom_file),
        cmocka_unit_test(crowdsec_is_off_without_its_section),
        cmocka_unit_test(crowdsec_reads_both_roles_and_their_secret_files),
        cmocka_unit_test(crowdsec_secrets_can_be_systemd_credentials),
        cmocka_unit_test(crowdsec_says_what_each_role_lacks),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    teardown_config();
    return r;
}
