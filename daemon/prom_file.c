#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prom_file.h"

struct prom_file {
    char path[4096];
    char tmp[4096 + 8];
    const char *failed_step;
    /* buf: what the caller renders into (under mu when the thread runs); wbuf: what the thread
     * is writing, swapped with buf when it takes the next snapshot. */
    char *buf, *wbuf;
    size_t len;

    bool started, stop, pending;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    unsigned long finished; /* writes the thread finished */
    int last_err;
    const char *last_step;
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
    pf->wbuf = malloc(METRICS_RENDER_MAX);
    if (!pf->buf || !pf->wbuf) {
        free(pf->buf);
        free(pf->wbuf);
        free(pf);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(pf->path, path, n + 1);
    snprintf(pf->tmp, sizeof(pf->tmp), "%s.tmp", path);
    pf->failed_step = "";
    pf->last_step = "";
    return pf;
}

static void stop_thread(struct prom_file *pf)
{
    if (!pf->started)
        return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = true;
    pthread_cond_signal(&pf->wake);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->thread, NULL);
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->wake);
    pf->started = false;
}

void prom_file_free(struct prom_file *pf)
{
    if (!pf)
        return;
    stop_thread(pf);
    free(pf->buf);
    free(pf->wbuf);
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

/* Replaces the file with len bytes of text. */
static int write_text(struct prom_file *pf, const char *text, size_t len)
{
    /* O_NOFOLLOW: the directory is writable by the collector's group on some hosts; a link
     * planted at the temporary name must not redirect a root daemon's write. */
    int fd = open(pf->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return fail(pf, "create", errno);
    /* Readable by node_exporter's user whatever the daemon's umask. */
    (void)fchmod(fd, 0644);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
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

int prom_file_write(struct prom_file *pf, const struct metrics *m)
{
    int len = metrics_render(m, pf->buf, METRICS_RENDER_MAX);
    if (len < 0)
        return fail(pf, "render", -len);
    return write_text(pf, pf->buf, (size_t)len);
}

static void *writer(void *arg)
{
    struct prom_file *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (!pf->pending && !pf->stop)
            pthread_cond_wait(&pf->wake, &pf->mu);
        if (pf->stop)
            break;
        char *text = pf->buf;
        pf->buf = pf->wbuf;
        pf->wbuf = text;
        size_t len = pf->len;
        pf->pending = false;
        pthread_mutex_unlock(&pf->mu);
        int r = write_text(pf, text, len);
        pthread_mutex_lock(&pf->mu);
        pf->last_err = r;
        pf->last_step = pf->failed_step;
        pf->finished++;
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

int prom_file_start(struct prom_file *pf)
{
    if (pf->started)
        return 0;
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->wake, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&pf->thread, NULL, writer, pf);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        pthread_mutex_destroy(&pf->mu);
        pthread_cond_destroy(&pf->wake);
        return -e;
    }
    pf->started = true;
    pf->stop = false;
    return 0;
}

int prom_file_submit(struct prom_file *pf, const struct metrics *m)
{
    if (!pf->started)
        return -EINVAL;
    pthread_mutex_lock(&pf->mu);
    int len = metrics_render(m, pf->buf, METRICS_RENDER_MAX);
    if (len >= 0) {
        pf->len = (size_t)len;
        pf->pending = true;
        pthread_cond_signal(&pf->wake);
    }
    pthread_mutex_unlock(&pf->mu);
    return len < 0 ? len : 0;
}

unsigned long prom_file_last(struct prom_file *pf, int *ret_err, const char **ret_step)
{
    if (!pf->started) {
        *ret_err = 0;
        *ret_step = "";
        return 0;
    }
    pthread_mutex_lock(&pf->mu);
    unsigned long n = pf->finished;
    *ret_err = pf->last_err;
    *ret_step = pf->last_step;
    pthread_mutex_unlock(&pf->mu);
    return n;
}

int prom_file_remove(struct prom_file *pf)
{
    stop_thread(pf);
    if (unlink(pf->path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}
