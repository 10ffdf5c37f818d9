#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "resolver.h"

struct lookup {
    struct gaicb cb;
    char name[RESOLVER_NAME_MAX];
};

/* One reference for the owner and one per lookup whose notification may still run. The
 * notification runs on glibc's thread: it touches nothing but refs and the eventfd. */
struct resolver {
    atomic_int refs;
    int efd;
    struct loop *loop;
    struct loop_io io;
    bool finished;
    void (*done)(void *data);
    void *data;
    struct addrinfo hints;
    char service[32];
    unsigned n;
    struct lookup lookups[];
};

static void unref(struct resolver *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    for (unsigned i = 0; i < r->n; i++)
        if (r->lookups[i].cb.ar_result)
            freeaddrinfo(r->lookups[i].cb.ar_result);
    close(r->efd);
    free(r);
}

static void notify(union sigval sv)
{
    struct resolver *r = sv.sival_ptr;
    uint64_t one = 1;
    ssize_t w = write(r->efd, &one, sizeof(one));
    (void)w; /* an eventfd write of 1 cannot fail short of overflow */
    unref(r);
}

static void on_event(struct loop *l, int fd, uint32_t events, void *data)
{
    struct resolver *r = data;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    for (unsigned i = 0; i < r->n; i++)
        if (gai_error(&r->lookups[i].cb) == EAI_INPROGRESS)
            return;
    r->finished = true;
    loop_io_del(l, &r->io);
    r->done(r->data); /* may free r: nothing after this */
}

struct resolver *resolver_start(struct loop *l, const char *const *names, unsigned n,
                                const char *service, const struct addrinfo *hints,
                                void (*done)(void *data), void *data)
{
    if (n == 0 || n > RESOLVER_NAMES_MAX || !done ||
        (service && strlen(service) >= sizeof(((struct resolver *)0)->service))) {
        errno = EINVAL;
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!names[i][0] || strlen(names[i]) >= RESOLVER_NAME_MAX) {
            errno = EINVAL;
            return NULL;
        }
    }
    struct resolver *r = calloc(1, sizeof(*r) + n * sizeof(r->lookups[0]));
    if (!r)
        return NULL;
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->efd < 0) {
        int e = errno;
        free(r);
        errno = e;
        return NULL;
    }
    r->loop = l;
    r->done = done;
    r->data = data;
    r->n = n;
    r->hints.ai_family = hints ? hints->ai_family : AF_UNSPEC;
    r->hints.ai_socktype = hints ? hints->ai_socktype : 0;
    r->hints.ai_protocol = hints ? hints->ai_protocol : 0;
    r->hints.ai_flags = hints ? hints->ai_flags : 0;
    if (service)
        snprintf(r->service, sizeof(r->service), "%s", service);
    atomic_init(&r->refs, 1);
    loop_io_init(&r->io);
    int err = loop_io_add(l, &r->io, r->efd, EPOLLIN, on_event, r);
    if (err < 0) {
        close(r->efd);
        free(r);
        errno = -err;
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct lookup *k = &r->lookups[i];
        snprintf(k->name, sizeof(k->name), "%s", names[i]);
        k->cb.ar_name = k->name;
        k->cb.ar_service = service ? r->service : NULL;
        k->cb.ar_request = &r->hints;
        struct sigevent sev;
        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_THREAD;
        sev.sigev_notify_function = notify;
        sev.sigev_value.sival_ptr = r;
        struct gaicb *list[1] = {&k->cb};
        atomic_fetch_add(&r->refs, 1);
        if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
            atomic_fetch_sub(&r->refs, 1);
            r->n = i; /* the lookups started so far are cancelled by resolver_free() */
            resolver_free(r);
            errno = EAGAIN;
            return NULL;
        }
    }
    return r;
}

bool resolver_finished(const struct resolver *r)
{
    return r->finished;
}

int resolver_result(const struct resolver *r, unsigned i, const struct addrinfo **ret_ai)
{
    if (i >= r->n)
        return EAI_NONAME;
    struct gaicb *cb = (struct gaicb *)&r->lookups[i].cb;
    int err = gai_error(cb);
    if (err == 0)
        *ret_ai = cb->ar_result;
    return err;
}

void resolver_free(struct resolver *r)
{
    if (!r)
        return;
    loop_io_del(r->loop, &r->io);
    /* A lookup cancelled before it ran is never notified: drop its reference here. */
    for (unsigned i = 0; i < r->n; i++)
        if (gai_cancel(&r->lookups[i].cb) == EAI_CANCELED)
            unref(r);
    unref(r);
}
