#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prom_file.h"

struct prom_file {
    char path[4096];
    char tmp[4096 + 8];
    char *buf; /* METRICS_RENDER_MAX bytes */
    const char *failed_step;
};

struct prom_file *prom_file_new(const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(((struct prom_file *)0)->path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    struct prom_file *pf = calloc(1, sizeof(*pf));
    if (!pf)
        return NULL;
    pf->buf = malloc(METRICS_RENDER_MAX);
    if (!pf->buf) {
        free(pf);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(pf->path, path, n + 1);
    snprintf(pf->tmp, sizeof(pf->tmp), "%s.tmp", path);
    pf->failed_step = "";
    return pf;
}

void prom_file_free(struct prom_file *pf)
{
    if (!pf)
        return;
    free(pf->buf);
    free(pf);
}

const char *prom_file_path(const struct prom_file *pf)
{
    return pf->path;
}

const char *prom_file_failed_step(const struct prom_file *pf)
{
    return pf->failed_step;
}

static int fail(struct prom_file *pf, const char *step, int err)
{
    pf->failed_step = step;
    return -err;
}

int prom_file_write(struct prom_file *pf, const struct metrics *m)
{
    int len = metrics_render(m, pf->buf, METRICS_RENDER_MAX);
    if (len < 0)
        return fail(pf, "render", -len);
    /* O_NOFOLLOW: the directory is writable by the collector's group on some hosts; a link
     * planted at the temporary name must not redirect a root daemon's write. */
    int fd = open(pf->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return fail(pf, "create", errno);
    /* Readable by node_exporter's user whatever the daemon's umask. */
    (void)fchmod(fd, 0644);
    size_t off = 0;
    while (off < (size_t)len) {
        ssize_t w = write(fd, pf->buf + off, (size_t)len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            unlink(pf->tmp);
            return fail(pf, "write", e);
        }
        off += (size_t)w;
    }
    if (close(fd) < 0) {
        int e = errno;
        unlink(pf->tmp);
        return fail(pf, "write", e);
    }
    if (rename(pf->tmp, pf->path) < 0) {
        int e = errno;
        unlink(pf->tmp);
        return fail(pf, "rename", e);
    }
    pf->failed_step = "";
    return 0;
}

int prom_file_remove(struct prom_file *pf)
{
    if (unlink(pf->path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}
