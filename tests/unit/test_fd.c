#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"

/* Interruptions: a SIGUSR1 handler installed without SA_RESTART, so a blocked read or write
 * returns EINTR (nothing transferred) or a short count (part transferred). */
static atomic_int signals_seen;

static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&signals_seen, 1);
}

static void install_usr1(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART */
    assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
}

static unsigned char pattern_byte(size_t i)
{
    return (unsigned char)(i * 131 + (i >> 12));
}

#define BIG (4u << 20)

/* The peer of a transfer: reads (or writes) the pipe in small pieces, slowly, and signals the
 * main thread between pieces. */
struct peer {
    int fd;
    pthread_t target;
    unsigned char *data;
    size_t len, done;
};

static void *slow_reader(void *arg)
{
    struct peer *p = arg;
    size_t piece = 0;
    for (;;) {
        if (piece++ % 4 == 0)
            pthread_kill(p->target, SIGUSR1);
        ssize_t n =
            read(p->fd, p->data + p->done, p->len - p->done < 3000 ? p->len - p->done : 3000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p->done += (size_t)n;
        if (piece % 64 == 0)
            usleep(200);
    }
    return NULL;
}

static void test_write_all_short_and_eintr(void **state)
{
    (void)state;
    install_usr1();
    atomic_store(&signals_seen, 0);
    unsigned char *src = malloc(BIG), *dst = malloc(BIG);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < BIG; i++)
        src[i] = pattern_byte(i);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    struct peer peer = {.fd = p[0], .target = pthread_self(), .data = dst, .len = BIG};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_reader, &peer), 0);
    assert_int_equal(write_all(p[1], src, BIG), 0);
    assert_int_equal(close(p[1]), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(atomic_load(&signals_seen) > 0); /* the writes were interrupted */
    assert_int_equal(peer.done, BIG);
    assert_memory_equal(src, dst, BIG);
    close(p[0]);
    free(src);
    free(dst);
}

/* Signals the target while it is blocked on a full pipe, then drains the pipe. */
static void *signal_then_drain(void *arg)
{
    struct peer *p = arg;
    usleep(50 * 1000);
    pthread_kill(p->target, SIGUSR1);
    usleep(50 * 1000);
    char chunk[65536];
    for (;;) {
        ssize_t n = read(p->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p->done += (size_t)n;
    }
    return NULL;
}

/* A write that starts on a full pipe is interrupted before it transfers anything (EINTR). */
static void test_write_all_eintr_on_full_pipe(void **state)
{
    (void)state;
    install_usr1();
    atomic_store(&signals_seen, 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    size_t filled = 0;
    char block[4096] = {0};
    for (;;) {
        ssize_t n = write(p[1], block, sizeof(block));
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        filled += (size_t)n;
    }
    assert_int_equal(fcntl(p[0], F_SETFL, 0), 0); /* blocking from now on */
    assert_int_equal(fcntl(p[1], F_SETFL, 0), 0);
    struct peer peer = {.fd = p[0], .target = pthread_self()};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, signal_then_drain, &peer), 0);
    assert_int_equal(write_all(p[1], block, 1000), 0);
    close(p[1]);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&signals_seen), 1);
    assert_int_equal(peer.done, filled + 1000);
    close(p[0]);
}

static void *slow_writer(void *arg)
{
    struct peer *p = arg;
    size_t piece = 0;
    while (p->done < p->len) {
        if (piece++ % 4 == 0)
            pthread_kill(p->target, SIGUSR1);
        size_t n = p->len - p->done < 1000 ? p->len - p->done : 1000;
        ssize_t w = write(p->fd, p->data + p->done, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break;
        p->done += (size_t)w;
        if (piece % 16 == 0)
            usleep(200);
    }
    close(p->fd);
    return NULL;
}

static void test_read_all_short_eintr_and_eof(void **state)
{
    (void)state;
    install_usr1();
    atomic_store(&signals_seen, 0);
    size_t len = 1u << 20;
    unsigned char *src = malloc(len), *dst = malloc(len + 100);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < len; i++)
        src[i] = pattern_byte(i);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    struct peer peer = {.fd = p[1], .target = pthread_self(), .data = src, .len = len};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_writer, &peer), 0);
    /* exactly what was asked for, across many short reads */
    assert_int_equal(read_all(p[0], dst, 4096), 4096);
    /* then more than there is: the rest, up to the end of the file */
    assert_int_equal(read_all(p[0], dst + 4096, len + 100 - 4096), (ssize_t)(len - 4096));
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(atomic_load(&signals_seen) > 0);
    assert_memory_equal(src, dst, len);
    assert_int_equal(read_all(p[0], dst, 10), 0); /* at the end */
    assert_int_equal(read_all(-1, dst, 10), -EBADF);
    close(p[0]);
    free(src);
    free(dst);
}

static void test_write_all_errors(void **state)
{
    (void)state;
    assert_int_equal(write_all(-1, "x", 1), -EBADF);
    assert_int_equal(write_all(-1, NULL, 0), 0); /* nothing to write */
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    size_t len = 1u << 20; /* more than a pipe holds */
    char *buf = calloc(1, len);
    assert_non_null(buf);
    assert_int_equal(write_all(p[1], buf, len), -EAGAIN);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(write_all(p[1], buf, 1), -EPIPE);
    close(p[1]);
    free(buf);
}

static void test_safe_close(void **state)
{
    (void)state;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    errno = ENOSPC;
    fd = safe_close(fd);
    assert_int_equal(fd, -1);
    assert_int_equal(errno, ENOSPC); /* kept across the close */
    errno = EROFS;
    assert_int_equal(safe_close(-1), -1);
    assert_int_equal(errno, EROFS);
    /* a descriptor that is not open: close fails with EBADF, errno still kept */
    assert_int_equal(safe_close(1000), -1);
    assert_int_equal(errno, EROFS);

    int g = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(g >= 0);
    closep(&g);
    assert_int_equal(g, -1);
    closep(&g); /* idempotent */
    assert_int_equal(g, -1);
}

static void test_memfd_from_bytes(void **state)
{
    (void)state;
    const char text[] = "hello\0world";
    int fd = memfd_from_bytes("test", text, sizeof(text), 0);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    char back[32];
    assert_int_equal(read_all(fd, back, sizeof(back)), (ssize_t)sizeof(text)); /* rewound */
    assert_memory_equal(back, text, sizeof(text));
    assert_int_equal(write(fd, "x", 1), 1); /* not sealed */
    close(fd);

    fd = memfd_from_bytes("empty", NULL, 0, 0);
    assert_true(fd >= 0);
    assert_int_equal(read_all(fd, back, sizeof(back)), 0);
    close(fd);

    fd = memfd_from_bytes("sealed", text, 5, MEMFD_SEALED | MEMFD_EXECUTABLE);
    assert_true(fd >= 0);
    int seals = fcntl(fd, F_GET_SEALS);
    assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL),
                     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    assert_int_equal(write(fd, "x", 1), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(ftruncate(fd, 0), -1);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0555);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
    close(fd);

    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(memfd_from_bytes(longname, "x", 1, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_all_short_and_eintr),
        cmocka_unit_test(test_write_all_eintr_on_full_pipe),
        cmocka_unit_test(test_read_all_short_eintr_and_eof),
        cmocka_unit_test(test_write_all_errors),
        cmocka_unit_test(test_safe_close),
        cmocka_unit_test(test_memfd_from_bytes),
    };
    return cmocka_run_group_tests_name("fd", tests, NULL, NULL);
}
