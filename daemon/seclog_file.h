/* Following one log file by its path, across the ways files move, with inotify (no polling):
 *
 *  - rename and create (logrotate's default, Asterisk's `logger rotate`): the file being read is
 *    drained to its end under its new name (security.1, security.0, security.<time>), for as
 *    long as the writer may still append to it (until the new file at the path gets its first
 *    byte), and then the new file is read from its start;
 *  - copytruncate: the file shrinks under us; the copy is found beside it (same bytes just
 *    before our offset) and read from our offset to its end, then the file from its start.
 *    (Lines written between logrotate's copy and its truncation are in neither file: a known
 *    limit of copytruncate.)
 *  - a restart: started from a cursor (file identity, offset, the bytes before it), the file is
 *    found again by identity among its rotated siblings if it has moved, and the files rotated
 *    after it are read in order before the current one.
 *
 * A missing or unreadable file (or directory) is logged once, with what to do, and retried:
 * on inotify events of the directory, and every SECLOG_FILE_RETRY_MS. Compressed rotations
 * (.gz and the like) are not read.
 *
 * The file decides about its own state, so it logs changes of it: one line each. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "seclog_line.h"
#include "store.h"

#define SECLOG_FILE_RETRY_MS 30000

struct seclog_file;

/* Called (from the loop) when there may be more to read: bytes appended, a rotation, the file
 * came (back). */
typedef void (*seclog_file_fn)(void *data);

enum seclog_file_state {
    SECLOG_FILE_WAITING = 0, /* not opened yet, or missing: waiting for it */
    SECLOG_FILE_UNREADABLE,  /* exists, but open() or read() failed (permissions) */
    SECLOG_FILE_OPEN,
};

struct seclog_file_status {
    enum seclog_file_state state;
    int err;              /* errno of the last failure, 0 if none */
    const char *reading;  /* the name of the file being read (a rotated one while draining) */
    uint64_t offset;      /* bytes of it consumed (lines pulled) */
    uint64_t size;        /* its size when last looked at */
    uint64_t rotations;   /* files left behind by a rotation and finished */
    uint64_t truncations; /* copytruncate (or a file rewritten in place) */
    uint64_t cut_lines;   /* unfinished lines a file ended with when it was left */
    uint64_t lost_bytes;  /* bytes known lost: a rotated file gone before it was read */
};

/* name: "seclog:NAME", for log lines. NULL + errno (ENOMEM, EMFILE for inotify). */
struct seclog_file *seclog_file_new(struct loop *l, const char *name, const char *path,
                                    seclog_file_fn wake, void *data);
void seclog_file_free(struct seclog_file *f); /* accepts NULL */

/* Starts following: where the cursor says (NULL: the start of the file at the path). */
void seclog_file_start(struct seclog_file *f, const struct store_seclog_cursor *cursor);

/* The next complete line, reading more as needed (at most SECLOG_READER_BUF per read); false
 * when nothing more is there now (the file is at its end, or waited for: `wake` comes). A file
 * left behind by a rotation with an unfinished last line gives it with cut set. The chunk's
 * data stays valid until the next call. */
bool seclog_file_next(struct seclog_file *f, struct seclog_chunk *ret, bool *ret_cut);
/* Gives back the line just pulled (not a cut one): seclog_reader_unread(). */
void seclog_file_unread(struct seclog_file *f, const struct seclog_chunk *c);

/* Where reading stands (the end of the last line pulled): false while no file is open. */
bool seclog_file_cursor(const struct seclog_file *f, struct store_seclog_cursor *ret);
/* The place of the last line pulled, for good (> 0): the file's identity (its inode's low 23
 * bits) and the line's end offset (below 1 TiB). 0 while no file is open. */
int64_t seclog_file_place(const struct seclog_file *f);
void seclog_file_get_status(const struct seclog_file *f, struct seclog_file_status *ret);
