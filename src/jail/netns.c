#include "jail/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

struct kept {
    char *sandbox_id;
    int fd;        /* the namespace (/proc/thread-self/ns/net of the thread that made it) */
    uint64_t used; /* netns_cache.tick at the last netns_take */
    bool in_use;   /* an exec runs in it (between netns_take and netns_give_back) */
};

struct netns_cache {
    pthread_mutex_t mu;
    struct kept *v;
    size_t n, max;
    uint64_t tick;
};

int netns_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
    int r = ioctl(s, SIOCSIFFLAGS, &ifr) < 0 ? -errno : 0;
    close(s);
    return r;
}

/* ---- making one: in a thread of its own, which leaves the host's namespace for good ---- */

struct making {
    int fd; /* result, or -errno */
};

static void *make_main(void *arg)
{
    struct making *m = arg;
    if (unshare(CLONE_NEWNET) < 0) {
        m->fd = -errno;
        return NULL;
    }
    int r = netns_loopback_up();
    int fd = r < 0 ? -1 : open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    m->fd = r < 0 ? r : fd < 0 ? -errno : fd;
    return NULL; /* the thread's reference goes with it; the descriptor keeps the namespace */
}

int netns_new(void)
{
    struct making m = {.fd = -EIO};
    pthread_t t;
    int e = pthread_create(&t, NULL, make_main, &m);
    if (e != 0)
        return err_set(-e, "cannot create the sandbox's network namespace");
    pthread_join(t, NULL);
    if (m.fd < 0)
        return err_set(m.fd, "cannot create the sandbox's network namespace");
    return m.fd;
}

/* ---- the cache ---- */

int netns_cache_new(size_t max, struct netns_cache **ret)
{
    struct netns_cache *c = calloc(1, sizeof(*c));
    if (!c || !(c->v = calloc(max ? max : 1, sizeof(*c->v)))) {
        free(c);
        return -ENOMEM;
    }
    c->max = max ? max : 1;
    pthread_mutex_init(&c->mu, NULL);
    *ret = c;
    return 0;
}

static void kept_release(struct kept *k)
{
    if (k->fd >= 0)
        close(k->fd);
    free(k->sandbox_id);
}

void netns_cache_free(struct netns_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        kept_release(&c->v[i]);
    free(c->v);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static struct kept *find_locked(struct netns_cache *c, const char *sandbox_id)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].sandbox_id, sandbox_id) == 0)
            return &c->v[i];
    return NULL;
}

static void remove_locked(struct netns_cache *c, struct kept *k)
{
    kept_release(k);
    *k = c->v[--c->n];
}

/* For the exec taking it: a dup of the kept descriptor, marked used now (mu held). */
static int take_locked(struct netns_cache *c, struct kept *k)
{
    int fd = fcntl(k->fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return err_set(-errno, "cannot use the sandbox's network namespace");
    k->used = ++c->tick;
    k->in_use = true;
    return fd;
}

/* The least recently used namespace no exec runs in, or NULL (mu held). */
static struct kept *evictable_locked(struct netns_cache *c)
{
    struct kept *oldest = NULL;
    for (size_t i = 0; i < c->n; i++)
        if (!c->v[i].in_use && (!oldest || c->v[i].used < oldest->used))
            oldest = &c->v[i];
    return oldest;
}

int netns_take(struct netns_cache *c, const char *sandbox_id)
{
    pthread_mutex_lock(&c->mu);
    struct kept *k = find_locked(c, sandbox_id);
    int r = k && !k->in_use ? take_locked(c, k) : 0;
    pthread_mutex_unlock(&c->mu);
    if (k)
        return r;
    /* made outside the lock: other sandboxes' execs need not wait for it */
    int fd = netns_new();
    if (fd < 0)
        return fd;
    char *id = strdup(sandbox_id);
    if (!id) {
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&c->mu);
    k = find_locked(c, sandbox_id);
    struct kept *room = k || c->n < c->max ? NULL : evictable_locked(c);
    if (k || (c->n == c->max && !room)) {
        /* another exec of this sandbox made one meanwhile, or every kept one is in use: this
         * exec makes its own, as if none were kept */
        close(fd);
        free(id);
        r = k && !k->in_use ? take_locked(c, k) : 0;
    } else {
        if (room)
            remove_locked(c, room);
        k = &c->v[c->n++];
        *k = (struct kept){.sandbox_id = id, .fd = fd};
        r = take_locked(c, k);
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

void netns_give_back(struct netns_cache *c, const char *sandbox_id)
{
    pthread_mutex_lock(&c->mu);
    struct kept *k = find_locked(c, sandbox_id);
    if (k)
        k->in_use = false;
    pthread_mutex_unlock(&c->mu);
}

void netns_drop(struct netns_cache *c, const char *sandbox_id)
{
    pthread_mutex_lock(&c->mu);
    struct kept *k = find_locked(c, sandbox_id);
    if (k)
        remove_locked(c, k);
    pthread_mutex_unlock(&c->mu);
}

size_t netns_count(struct netns_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- a listener inside a namespace ---- */

static int host_net_fd = -1;
static pthread_once_t host_net_once = PTHREAD_ONCE_INIT;

static void host_net_open(void)
{
    host_net_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
}

/* A socket made inside the namespace netns_fd (a socket belongs to the namespace it was made
 * in): this thread enters it for the socket() call alone and comes back at once. */
static int socket_in(int netns_fd, int domain, int type)
{
    pthread_once(&host_net_once, host_net_open);
    if (host_net_fd < 0)
        return err_set(-EIO, "cannot open the server's network namespace");
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        return err_set(-errno, "cannot enter the sandbox's network namespace");
    int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int socket_errno = errno;
    if (setns(host_net_fd, CLONE_NEWNET) < 0) {
        /* A server thread left in a sandbox's namespace cannot be trusted with any later
         * connection: stop rather than go on. */
        log_msg("error", "exec: cannot return to the server's network namespace: %s",
                strerror(errno));
        abort();
    }
    if (fd < 0)
        return err_set(-socket_errno, "cannot create a socket in the sandbox's namespace");
    return fd;
}

int netns_listen(int netns_fd, uint16_t port)
{
    int fd = socket_in(netns_fd, AF_INET, SOCK_STREAM);
    if (fd < 0)
        return fd;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "cannot listen on the sandbox's proxy port");
    }
    return fd;
}

int netns_listen_abstract(int netns_fd, const char *name)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    if (len + 1 > sizeof(a.sun_path))
        return err_set(-ENAMETOOLONG, "socket name too long");
    int fd = socket_in(netns_fd, AF_UNIX, SOCK_SEQPACKET);
    if (fd < 0)
        return fd;
    memcpy(a.sun_path + 1, name, len);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
    if (bind(fd, (struct sockaddr *)&a, alen) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return err_set(-e, "cannot listen on the sandbox's %s socket", name);
    }
    return fd;
}
