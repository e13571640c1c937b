/*
 * ingest_inflate — the inflater: decompression runs beside the worker so that it overlaps with
 * parsing, hashing and storing. It reads the body (libarchive's raw format behind the same
 * filters) and hands the tar stream to the worker through a second queue. Also the libarchive
 * filters and error text the worker shares with it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "archive/ingest_internal.h"
#include "util/err.h"

int archive_fail(struct archive *a, const char *what)
{
    const char *m = archive_error_string(a);
    char clean[200];
    size_t o = 0;
    for (const char *p = m ? m : "unknown error"; *p && o + 1 < sizeof(clean); p++)
        clean[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    clean[o] = '\0';
    if (archive_errno(a) == ECANCELED)
        return err_set(-ECANCELED, "ingest aborted");
    return err_set(-ERR_INVALID_INPUT, "%s: %s", what, clean);
}

/* An explicit list: no filter that would spawn an external program. */
void support_filters(struct archive *a)
{
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_lzma(a);
    archive_read_support_filter_zstd(a);
}

static int run_inflate(struct inflater *inf)
{
    struct archive *a = archive_read_new();
    if (!a)
        return -ENOMEM;
    support_filters(a);
    archive_read_support_format_raw(a);
    int r = 0;
    struct archive_entry *e;
    int ar = archive_read_open(a, inf->in, NULL, queue_read_cb, NULL);
    if (ar == ARCHIVE_OK)
        ar = archive_read_next_header(a, &e);
    while (ar == ARCHIVE_OK || ar == ARCHIVE_WARN) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        ar = archive_read_data_block(a, &buf, &size, &offset);
        if ((ar == ARCHIVE_OK || ar == ARCHIVE_WARN) && size > 0 && queue_put(&inf->out, buf, size))
            break; /* the worker is done: the rest is not needed */
    }
    if (ar < ARCHIVE_WARN)
        r = archive_fail(a, "corrupt or unsupported archive");
    archive_read_free(a);
    return r;
}

static void *inflate_main(void *arg)
{
    struct inflater *inf = arg;
    err_clear();
    int r = run_inflate(inf);
    saved_err_take(&inf->err, r);
    queue_close(&inf->out, r < 0, false);
    return NULL;
}

/* NULL when the inflater cannot run (the worker then decompresses itself). */
struct inflater *inflater_start(struct queue *in)
{
    struct inflater *inf = calloc(1, sizeof(*inf));
    if (!inf)
        return NULL;
    inf->in = in;
    if (queue_init(&inf->out) < 0) {
        free(inf);
        return NULL;
    }
    if (pthread_create(&inf->thread, NULL, inflate_main, inf) != 0) {
        queue_destroy(&inf->out);
        free(inf);
        return NULL;
    }
    return inf;
}

/* Stops and frees the inflater; returns the worker's result r, or the inflater's error when the
 * worker failed because the inflater did (a corrupt or truncated stream). */
int inflater_stop(struct inflater *inf, int r)
{
    queue_reader_done(&inf->out);
    pthread_join(inf->thread, NULL);
    if (r < 0 && inf->err.rc < 0 && inf->err.rc != -ECANCELED)
        r = saved_err_raise(&inf->err);
    saved_err_release(&inf->err);
    queue_destroy(&inf->out);
    free(inf);
    return r;
}
