#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jail/netns.h"

#define SB_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define SB_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
#define SB_C "cccccccc-cccc-4ccc-8ccc-cccccccccccc"

/* The namespace's identity (what /proc/self/ns/net names as net:[inode]). */
static ino_t ns_ino(int fd)
{
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    return st.st_ino;
}

static ino_t own_ns_ino(void)
{
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ino_t i = ns_ino(fd);
    close(fd);
    return i;
}

struct probe {
    int fd;        /* namespace to enter */
    bool lo_up;    /* lo is up there */
    int n_ifaces;  /* interfaces there */
    ino_t entered; /* the namespace the thread was in after setns */
};

/* In a thread of its own (setns changes only that thread): what the namespace holds. */
static void *probe_main(void *arg)
{
    struct probe *p = arg;
    if (setns(p->fd, CLONE_NEWNET) < 0)
        return NULL;
    p->entered = own_ns_ino();
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0)
        p->lo_up = (ifr.ifr_flags & IFF_UP) != 0;
    if (s >= 0)
        close(s);
    struct if_nameindex *ifs = if_nameindex();
    for (struct if_nameindex *i = ifs; i && i->if_index; i++)
        p->n_ifaces++;
    if_freenameindex(ifs);
    return NULL;
}

static struct probe probe_ns(int fd)
{
    struct probe p = {.fd = fd};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, probe_main, &p), 0);
    pthread_join(t, NULL);
    return p;
}

static void test_kept_per_sandbox(void **state)
{
    (void)state;
    ino_t host = own_ns_ino();
    struct netns_cache *c;
    assert_int_equal(netns_cache_new(4, &c), 0);
    int a1 = netns_take(c, SB_A);
    assert_true(a1 > 2);
    netns_give_back(c, SB_A);
    int a2 = netns_take(c, SB_A);
    int b = netns_take(c, SB_B);
    assert_true(a2 > 2 && b > 2 && a2 != a1);
    assert_int_equal(ns_ino(a1), ns_ino(a2)); /* the same sandbox: the same namespace */
    assert_true(ns_ino(a1) != ns_ino(b));     /* another sandbox: its own */
    assert_true(ns_ino(a1) != host && ns_ino(b) != host);
    assert_int_equal(netns_count(c), 2);
    /* only lo, and it is up; making it left the calling thread where it was */
    struct probe p = probe_ns(a1);
    assert_int_equal(p.entered, ns_ino(a1));
    assert_true(p.lo_up);
    assert_int_equal(p.n_ifaces, 1);
    assert_int_equal(own_ns_ino(), host);
    /* a deleted sandbox's namespace is forgotten: the next one is new */
    ino_t old = ns_ino(a1);
    netns_give_back(c, SB_A);
    netns_drop(c, SB_A);
    assert_int_equal(netns_count(c), 1);
    int a3 = netns_take(c, SB_A);
    assert_true(ns_ino(a3) != old);
    /* descriptors handed out stay valid whatever the cache does */
    assert_int_equal(ns_ino(a1), old);
    netns_cache_free(c);
    assert_true(ns_ino(b) != host); /* still B's namespace after the cache went */
    close(a1);
    close(a2);
    close(a3);
    close(b);
}

/* One exec at a time: while one runs in the sandbox's namespace, a concurrent exec of the same
 * sandbox is told to make its own (0), and gets the kept one again once it is given back. */
static void test_one_exec_at_a_time(void **state)
{
    (void)state;
    struct netns_cache *c;
    assert_int_equal(netns_cache_new(4, &c), 0);
    int a = netns_take(c, SB_A);
    assert_true(a > 2);
    assert_int_equal(netns_take(c, SB_A), 0);
    assert_int_equal(netns_take(c, SB_A), 0);
    netns_give_back(c, SB_A);
    int again = netns_take(c, SB_A);
    assert_true(again > 2);
    assert_int_equal(ns_ino(again), ns_ino(a));
    assert_int_equal(netns_count(c), 1);
    close(a);
    close(again);
    netns_cache_free(c);
}

static void test_least_recently_used_goes(void **state)
{
    (void)state;
    struct netns_cache *c;
    assert_int_equal(netns_cache_new(2, &c), 0);
    int a = netns_take(c, SB_A);
    netns_give_back(c, SB_A);
    int b = netns_take(c, SB_B);
    netns_give_back(c, SB_B);
    int again = netns_take(c, SB_A); /* A is now the more recent */
    netns_give_back(c, SB_A);
    int cc = netns_take(c, SB_C); /* full: B goes */
    netns_give_back(c, SB_C);
    assert_int_equal(netns_count(c), 2);
    int a2 = netns_take(c, SB_A);
    assert_int_equal(ns_ino(a2), ns_ino(a));
    /* full and both kept ones in use (A taken, C taken below): B gets none kept */
    int c2 = netns_take(c, SB_C);
    assert_true(c2 > 2);
    assert_int_equal(netns_take(c, SB_B), 0);
    assert_int_equal(netns_count(c), 2);
    netns_give_back(c, SB_C);
    int b2 = netns_take(c, SB_B); /* now C, the least recent not in use, goes */
    assert_true(b2 > 2 && ns_ino(b2) != ns_ino(b));
    int c3 = netns_take(c, SB_C);
    assert_int_equal(c3, 0); /* C was evicted; no room: every kept one is in use */
    int fds[] = {a, b, again, cc, a2, c2, b2};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        close(fds[i]);
    netns_cache_free(c);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_netns: needs root (network namespaces); skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_per_sandbox),
        cmocka_unit_test(test_one_exec_at_a_time),
        cmocka_unit_test(test_least_recently_used_goes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
