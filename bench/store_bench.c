/*
 * store_bench — throughput and latency of the SQLite store engine.
 *
 * Build: make bench-engines (build/bench/store_bench).
 * Run: build/bench/store_bench [dir] [MiB] [sandboxes]
 *      (defaults: a temp dir under /tmp, 256, 10000)
 *
 * Prints: streaming write and read MB/s of one large file, small-file commit latency, and
 * sandbox create/get/list figures with the database bytes per idle sandbox.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/timeutil.h"

#define IO_BLOCK (256 * 1024)

static void die(const char *what, int r)
{
    fprintf(stderr, "store_bench: %s failed: %d (%s)\n", what, r, strerror(r < 0 ? -r : r));
    exit(1);
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time of the whole process (includes the store's checkpoint thread). */
static int64_t cpu_ns(void)
{
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

/* CPU time of the calling thread: what bounds the rate on an otherwise idle machine. */
static int64_t thread_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static int count_cb(const struct sandbox_rec *rec, void *ud)
{
    (void)rec;
    (*(int *)ud)++;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void make_sandbox(struct store *st, const char *id, const char *tenant, const char *sub,
                         int64_t now)
{
    struct sandbox_rec rec = {0};
    snprintf(rec.id, sizeof(rec.id), "%s", id);
    rec.tenant = (char *)tenant;
    rec.sub = (char *)sub;
    rec.created_ms = now;
    struct changeset cs;
    changeset_init(&cs, "create");
    cs.create_parents = true;
    struct file_meta home = {.path = "/home/user", .kind = FILE_KIND_DIR, .mode = 0755};
    int r = changeset_put(&cs, &home);
    if (r < 0)
        die("changeset_put", r);
    struct commit_opts o = {.expect_version = -1, .now_ms = now};
    r = store_sandbox_create(st, &rec, &cs, &o);
    if (r < 0)
        die("sandbox_create", r);
    changeset_release(&cs);
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/store_bench.XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    int64_t mib = argc > 2 ? atoll(argv[2]) : 256;
    int nsandboxes = argc > 3 ? atoi(argv[3]) : 10000;
    if (!dir)
        die("mkdtemp", -errno);
    char dbpath[4096];
    snprintf(dbpath, sizeof(dbpath), "%s/bench.db", dir);
    struct store *st;
    int r = store_open_sqlite(dbpath, &st);
    if (r < 0)
        die("open", r);

    struct content_writer *w;
    uint8_t id[CONTENT_ID_LEN];
    int64_t size;
    /* Commit latency: one small file per commit (content written first, as the API does). */
    int64_t now = time_now_ms();
    make_sandbox(st, "00000000-0000-4000-8000-000000000000", "bench", "user", now);
    enum { NCOMMITS = 2000 };
    int64_t *lat = malloc(sizeof(int64_t) * NCOMMITS);
    int64_t wsum = 0;
    for (int i = 0; i < NCOMMITS; i++) {
        char text[64], path[64];
        int n = snprintf(text, sizeof(text), "hello %d\n", i);
        snprintf(path, sizeof(path), "/home/user/f%d.txt", i % 100);
        int64_t a = time_mono_ns();
        if ((r = store_content_begin(st, &w)) < 0 ||
            (r = store_content_write(st, w, text, (size_t)n)) < 0 ||
            (r = store_content_finish(st, w, id, &size)) < 0)
            die("small content", r);
        int64_t b = time_mono_ns();
        struct changeset cs;
        changeset_init(&cs, "put");
        struct file_meta m = {.path = path,
                              .kind = FILE_KIND_FILE,
                              .mode = 0644,
                              .size = size,
                              .mtime_ns = now * 1000000,
                              .has_content = true};
        memcpy(m.content, id, CONTENT_ID_LEN);
        if ((r = changeset_put(&cs, &m)) < 0)
            die("changeset_put", r);
        struct commit_opts o = {.expect_version = -1, .quota_bytes = 1 << 30, .now_ms = now};
        struct commit_result res;
        if ((r = store_commit(st, "00000000-0000-4000-8000-000000000000", &cs, &o, &res)) < 0)
            die("commit", r);
        lat[i] = time_mono_ns() - b;
        wsum += b - a;
        changeset_release(&cs);
    }
    qsort(lat, NCOMMITS, sizeof(int64_t), cmp_i64);
    int64_t sum = 0;
    for (int i = 0; i < NCOMMITS; i++)
        sum += lat[i];
    printf("commit of one small file: mean %.1f us, p50 %.1f us, p99 %.1f us "
           "(content write+finish before it: mean %.1f us)\n",
           sum / 1e3 / NCOMMITS, lat[NCOMMITS / 2] / 1e3, lat[NCOMMITS * 99 / 100] / 1e3,
           wsum / 1e3 / NCOMMITS);

    /* Streaming write: unique 256 KiB blocks (a counter stamped in each), so no dedup. */
    uint8_t *block = malloc(IO_BLOCK);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < IO_BLOCK; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(block + i, &x, 8);
    }
    int64_t total = mib * 1024 * 1024;
    int64_t c0 = cpu_ns(), h0 = thread_ns();
    int64_t t0 = time_mono_ns();
    if ((r = store_content_begin(st, &w)) < 0)
        die("content_begin", r);
    for (int64_t off = 0; off < total; off += IO_BLOCK) {
        memcpy(block, &off, sizeof(off));
        if ((r = store_content_write(st, w, block, IO_BLOCK)) < 0)
            die("content_write", r);
    }
    if ((r = store_content_finish(st, w, id, &size)) < 0)
        die("content_finish", r);
    int64_t t1 = time_mono_ns();
    int64_t c1 = cpu_ns(), h1 = thread_ns();
    printf("write %" PRId64 " MiB: %.0f MB/s wall; %.0f MB per CPU-second of the writing thread, "
           "%.0f MB per CPU-second of all threads\n",
           mib, total / 1e6 / ((t1 - t0) / 1e9), total / 1e6 / ((h1 - h0) / 1e9),
           total / 1e6 / ((c1 - c0) / 1e9));

    struct content_reader *rd;
    uint8_t *rbuf = malloc(IO_BLOCK);
    c0 = cpu_ns();
    t0 = time_mono_ns();
    if ((r = store_content_open(st, id, &rd)) < 0)
        die("content_open", r);
    int64_t got_total = 0;
    for (;;) {
        size_t got;
        if ((r = store_content_read(st, rd, rbuf, IO_BLOCK, &got)) < 0)
            die("content_read", r);
        if (got == 0)
            break;
        if (memcmp(rbuf, &got_total, 8) != 0)
            die("verify", -EIO);
        got_total += (int64_t)got;
    }
    store_content_close(st, rd);
    t1 = time_mono_ns();
    if (got_total != total)
        die("read size", -EIO);
    c1 = cpu_ns();
    printf("read  %" PRId64 " MiB: %.0f MB/s (%.0f MB per CPU-second)\n", mib,
           total / 1e6 / ((t1 - t0) / 1e9), total / 1e6 / ((c1 - c0) / 1e9));

    /* Many sandboxes: create, then get and list by owner. */
    struct gc_stats gs;
    if ((r = store_gc(st, &gs)) < 0)
        die("gc", r);
    int64_t db_before = file_size(dbpath) + 0;
    t0 = time_mono_ns();
    char sid[UUID_STR_LEN];
    for (int i = 0; i < nsandboxes; i++) {
        snprintf(sid, sizeof(sid), "%08x-0000-4000-8000-%012x", i + 1, i);
        char sub[32];
        snprintf(sub, sizeof(sub), "user%d", i % 100);
        make_sandbox(st, sid, "tenant", sub, now + i);
    }
    t1 = time_mono_ns();
    printf("create %d sandboxes: %.1f us each\n", nsandboxes, (t1 - t0) / 1e3 / nsandboxes);
    t0 = time_mono_ns();
    for (int i = 0; i < nsandboxes; i++) {
        snprintf(sid, sizeof(sid), "%08x-0000-4000-8000-%012x", i + 1, i);
        char sub[32];
        snprintf(sub, sizeof(sub), "user%d", i % 100);
        struct sandbox_rec rec;
        if ((r = store_sandbox_get(st, sid, "tenant", sub, &rec)) < 0)
            die("sandbox_get", r);
        sandbox_rec_release(&rec);
    }
    t1 = time_mono_ns();
    printf("get: %.1f us each\n", (t1 - t0) / 1e3 / nsandboxes);
    t0 = time_mono_ns();
    int listed = 0;
    for (int i = 0; i < 100; i++)
        if ((r = store_sandbox_list(st, "tenant", "user7", count_cb, &listed)) < 0)
            die("sandbox_list", r);
    t1 = time_mono_ns();
    printf("list by owner (%d sandboxes): %.1f us each\n", listed / 100, (t1 - t0) / 1e3 / 100);
    store_close(st); /* checkpoints the WAL into the database file */
    int64_t db_after = file_size(dbpath);
    printf("database bytes per sandbox (row, index, home dir, first commit): %.0f\n",
           (double)(db_after - db_before) / nsandboxes);
    free(block);
    free(rbuf);
    free(lat);
    if (argc <= 1) {
        static const char *const suffixes[] = {"",        "-wal",        "-shm",
                                               ".chunks", ".chunks-wal", ".chunks-shm"};
        for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
            char p[4200];
            snprintf(p, sizeof(p), "%s%s", dbpath, suffixes[i]);
            unlink(p);
        }
        rmdir(dir);
    }
    return 0;
}
