/* Throughput and memory of archive ingest and export against a real store.
 *   archive_bench ingest FILE      ingest FILE (any supported archive) in 64 KiB pieces, commit,
 *                                  then export the result as tar.gz and as tar
 *   archive_bench small N          ingest a tar of N small files (built in memory) and commit
 * Store: SQLite in a fresh temporary directory, or, when built with -DBENCH_MEMSTORE, the
 * in-memory test engine (tests/unit/memstore.h), or, with -DBENCH_NULLSTORE, none (the archive
 * side and SHA-256 alone). Prints MB/s of uncompressed file bytes and the peak RSS.
 * Build: make bench-engines (build/bench/archive_bench; the other stores by adding the define
 * to that command line). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "archive/export.h"
#include "archive/ingest.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/timeutil.h"

#ifdef BENCH_MEMSTORE
#include "memstore.h"
#endif

#ifdef BENCH_NULLSTORE
/* Hashes and drops content: the cost of the archive side alone (plus SHA-256). */
#include <openssl/evp.h>
struct content_writer {
    EVP_MD_CTX *md;
};
static int ns_begin(struct store *st, struct content_writer **ret)
{
    struct content_writer *w = calloc(1, sizeof(*w));
    w->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(w->md, EVP_sha256(), NULL);
    *ret = w;
    return 0;
}
static int ns_write(struct content_writer *w, const void *d, size_t n)
{
    EVP_DigestUpdate(w->md, d, n);
    return 0;
}
static void ns_abort(struct content_writer *w)
{
    EVP_MD_CTX_free(w->md);
    free(w);
}
static int ns_finish(struct content_writer *w, uint8_t id[CONTENT_ID_LEN], int64_t *ret_size)
{
    unsigned int len = 0;
    EVP_DigestFinal_ex(w->md, id, &len);
    *ret_size = 1;
    ns_abort(w);
    return 0;
}
static int ns_commit(struct store *st, const char *sid, const struct changeset *cs,
                     const struct commit_opts *opts, struct commit_result *ret)
{
    return 0;
}
static void ns_close(struct store *st) {}
static const struct store_ops ns_ops = {.close = ns_close,
                                        .content_begin = ns_begin,
                                        .content_write = ns_write,
                                        .content_finish = ns_finish,
                                        .content_abort = ns_abort,
                                        .commit = ns_commit};
static struct store ns_store = {&ns_ops};
#endif

static const char *SB = "00000000-0000-4000-8000-000000000001";

#if !defined(BENCH_MEMSTORE) && !defined(BENCH_NULLSTORE)
static char tmpdir[64];

/* Removes the temporary store directory. */
static void cleanup(void)
{
    if (tmpdir[0] && rm_rf_at(AT_FDCWD, tmpdir, NULL) < 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}
#endif

static long max_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static struct store *open_store(void)
{
#if defined(BENCH_MEMSTORE)
    return &memstore_new()->base;
#elif defined(BENCH_NULLSTORE)
    return &ns_store;
#else
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sqlfs-bench-XXXXXX");
    if (!mkdtemp(tmpdir))
        exit(1);
    atexit(cleanup);
    char path[128];
    snprintf(path, sizeof(path), "%s/store.db", tmpdir);
    struct store *st = NULL;
    if (store_open_sqlite(path, &st) < 0) {
        fprintf(stderr, "store: %s\n", err_message());
        exit(1);
    }
    struct sandbox_rec rec = {0};
    snprintf(rec.id, sizeof(rec.id), "%s", SB);
    rec.tenant = "t";
    rec.sub = "s";
    rec.env_json = "{}";
    rec.cwd = "/home/user";
    struct commit_opts o = {.expect_version = -1, .now_ms = time_now_ms()};
    if (store_sandbox_create(st, &rec, NULL, &o) < 0) {
        fprintf(stderr, "sandbox: %s\n", err_message());
        exit(1);
    }
    return st;
#endif
}

static int64_t ingest_commit(struct store *st, int fd, const void *mem, size_t memlen)
{
    struct ingest_limits lim = {0}; /* no limits */
    struct ingest *ing = NULL;
    int64_t t0 = time_mono_ns();
    if (ingest_new(st, "/home/user/project", &lim, &ing) < 0)
        exit(1);
    static char piece[65536];
    if (fd >= 0) {
        ssize_t n;
        while ((n = read(fd, piece, sizeof(piece))) > 0)
            if (ingest_feed(ing, piece, (size_t)n) < 0)
                break;
    } else {
        for (size_t o = 0; o < memlen; o += sizeof(piece)) {
            size_t k = memlen - o < sizeof(piece) ? memlen - o : sizeof(piece);
            if (ingest_feed(ing, (const char *)mem + o, k) < 0)
                break;
        }
    }
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    int r = ingest_finish(ing, &cs, &res);
    if (r < 0) {
        fprintf(stderr, "ingest: %d %s\n", r, err_message());
        exit(1);
    }
    int64_t t1 = time_mono_ns();
    struct commit_opts o = {.expect_version = -1, .now_ms = time_now_ms()};
    struct commit_result cr;
    r = store_commit(st, SB, &cs, &o, &cr);
    if (r < 0) {
        fprintf(stderr, "commit: %d %s\n", r, err_message());
        exit(1);
    }
    int64_t t2 = time_mono_ns();
    printf("ingest: %lld files, %.1f MB in %.2f s (+ commit %.2f s of %zu rows): %.1f MB/s "
           "overall; peak RSS %ld MB\n",
           (long long)res.file_count, res.bytes / 1e6, (t1 - t0) / 1e9, (t2 - t1) / 1e9, cs.n,
           res.bytes / 1e6 / ((t2 - t0) / 1e9), max_rss_mb());
    int64_t bytes = res.bytes;
    ingest_result_release(&res);
    changeset_release(&cs);
    return bytes;
}

static void export_bench(struct store *st, enum export_format f, int64_t bytes)
{
    struct export *exp = NULL;
    int64_t t0 = time_mono_ns();
    if (export_open(st, SB, "/home/user/project", f, &exp) < 0) {
        fprintf(stderr, "export: %s\n", err_message());
        exit(1);
    }
    static char buf[65536];
    size_t got, total = 0;
    const char *save = getenv(f == EXPORT_TAR_GZ ? "BENCH_SAVE_TGZ" : "BENCH_SAVE_TAR");
    FILE *out = save ? fopen(save, "we") : NULL;
    do {
        if (export_read(exp, buf, sizeof(buf), &got) < 0) {
            fprintf(stderr, "export: %s\n", err_message());
            exit(1);
        }
        if (out && fwrite(buf, 1, got, out) != got)
            exit(1);
        total += got;
    } while (got);
    if (out)
        fclose(out);
    size_t n = export_entry_count(exp);
    export_close(exp);
    double s = (time_mono_ns() - t0) / 1e9;
    printf("export %s: %zu entries, %.1f MB of files -> %.1f MB in %.2f s: %.1f MB/s; peak RSS "
           "%ld MB\n",
           f == EXPORT_TAR_GZ ? "tar.gz" : "tar", n, bytes / 1e6, total / 1e6, s, bytes / 1e6 / s,
           max_rss_mb());
}

static la_ssize_t wcb(struct archive *a, void *ud, const void *d, size_t n)
{
    return buf_add(ud, d, n) < 0 ? -1 : (la_ssize_t)n;
}

static void small_bench(int n)
{
    struct buf tar = BUF_INIT(0);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_open2(a, &tar, NULL, wcb, NULL, NULL);
    struct archive_entry *e = archive_entry_new();
    char name[64], data[200];
    for (int i = 0; i < n; i++) {
        archive_entry_clear(e);
        snprintf(name, sizeof(name), "d%02d/file-%05d.txt", i % 50, i);
        int len = snprintf(data, sizeof(data), "file %d\n%0*d\n", i, 20 + i % 100, i);
        archive_entry_copy_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, len);
        archive_entry_set_mtime(e, 1700000000, 0);
        archive_write_header(a, e);
        archive_write_data(a, data, (size_t)len);
    }
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    struct store *st = open_store();
    int64_t t0 = time_mono_ns();
    ingest_commit(st, -1, tar.data, tar.len);
    printf("small: %d files (%.1f MB tar) ingested and committed in %.2f s\n", n, tar.len / 1e6,
           (time_mono_ns() - t0) / 1e9);
    buf_release(&tar);
    store_close(st);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "ingest") == 0) {
        int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        struct store *st = open_store();
        int64_t bytes = ingest_commit(st, fd, NULL, 0);
        close(fd);
#ifdef BENCH_NULLSTORE
        return 0;
#endif
        export_bench(st, EXPORT_TAR_GZ, bytes);
        export_bench(st, EXPORT_TAR, bytes);
        store_close(st);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "small") == 0) {
        small_bench(atoi(argv[2]));
        return 0;
    }
    fprintf(stderr, "usage: archive_bench ingest FILE | small N\n");
    return 2;
}
