/* Host names resolved without blocking the loop. glibc's getaddrinfo_a() answers each name on a
 * thread of its own, which does nothing but write to an eventfd the loop watches; the answers
 * are read on the loop's thread. A request outlives its owner if the owner frees it while a
 * lookup is running (the lookup's thread holds a reference), so freeing never waits.
 *
 * Used for the AMI server's own name and for the host names of the trunks Asterisk talks to. */
#pragma once
#include <netdb.h>

#include "loop.h"

#define RESOLVER_NAMES_MAX 256
#define RESOLVER_NAME_MAX 256

struct resolver;

/* Starts resolving n names (1..RESOLVER_NAMES_MAX, each shorter than RESOLVER_NAME_MAX) with
 * the same service (may be NULL) and hints (family, socktype, flags are used). done(data) runs
 * on the loop once every name is answered, unless the request is freed first. Returns NULL
 * with errno set (EINVAL, ENOMEM, EAGAIN). */
struct resolver *resolver_start(struct loop *l, const char *const *names, unsigned n,
                                const char *service, const struct addrinfo *hints,
                                void (*done)(void *data), void *data);

/* True once every name is answered (done() has run or is about to). */
bool resolver_finished(const struct resolver *r);

/* The answer for names[i]: 0 with *ret_ai set (valid until resolver_free()), EAI_INPROGRESS
 * while it runs, or another EAI_* error. */
int resolver_result(const struct resolver *r, unsigned i, const struct addrinfo **ret_ai);

/* Cancels what still runs and releases the request; done() is never called after this.
 * Accepts NULL. */
void resolver_free(struct resolver *r);
