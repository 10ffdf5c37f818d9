/* What pbxguardd's control socket and the pbxguard CLI agree on, besides the JSON itself
 * (docs/control-protocol.md): where the socket is, how big a request and a reply may be, the
 * bounds of the arguments both sides check, and the reply codes, which are also the CLI's exit
 * codes. Both sides include this one header; neither repeats its numbers. */
#pragma once

#define CTL_DEFAULT_SOCKET "/run/pbxguard/control.sock"

/* One request line, newline included. */
#define CTL_REQUEST_MAX (64 * 1024)
/* One reply line; the daemon replaces a larger one by an error. */
#define CTL_REPLY_MAX (4 * 1024 * 1024)

/* The most bans one `list` reply holds; the CLI follows the reply's "cursor" for more. A page
 * costs the daemon about 5 ms of CPU (500 bans, 100 KB of JSON), which is how long it may keep
 * another client waiting. */
#define CTL_LIST_PAGE_MAX 500

/* A manual ban's note (--reason), in bytes. */
#define CTL_NOTE_MAX 200
/* The longest manual ban: the kernel refuses element timeouts of about 584 years or more, and
 * anything this long is better said as permanent. */
#define CTL_MANUAL_BAN_MAX_S (100LL * 365 * 86400)

/* The most entries the runtime allowlist (pbxguard allow) holds: a full list refuses more. The
 * event path looks the list up through an index (policy.c), so its size costs a command's
 * walk, never an event's; the bound keeps the whole list within one `allowlist` reply. */
#define CTL_ALLOW_MAX 2048

/* Reply codes ("code" of an error reply), the same numbers the CLI exits with. */
enum ctl_code {
    CTL_CODE_OK = 0,
    CTL_CODE_FAILED = 1,      /* the operation failed (also: permission denied, refused) */
    CTL_CODE_USAGE = 2,       /* malformed request, unknown command, invalid argument */
    CTL_CODE_NOT_RUNNING = 3, /* the CLI's own: nobody answers on the socket */
};
