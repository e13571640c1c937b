/*
 * pg_content_read.c — content readers of the PostgreSQL engine. A reader loads the content's
 * ordered chunk list (hashes and sizes), or its inline bytes, once; reads then fetch the chunk
 * holding the position (one statement on a pooled connection, given back at once) and keep it
 * until the position leaves it, so memory is one chunk per reader and no connection or
 * transaction is held between calls. Chunks are keyed by their hash: a chunk collected under a
 * reader reads as -EIO, never as other bytes.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/cleanup.h"
#include "util/err.h"

struct rchunk {
    struct chunk_span span; /* where it lies in the content */
    uint8_t hash[32];       /* its key */
};

struct content_reader {
    struct pg_store *s;
    struct rchunk *chunks; /* in order; none for an inline content */
    size_t n;
    int64_t size;      /* content size */
    int64_t pos;       /* read position */
    PGresult *cur;     /* the chunk (or the inline contents row) holding cur_off.. */
    int64_t cur_off;   /* offset of cur's first byte */
    int64_t cur_len;   /* bytes in cur */
    const char *bytes; /* cur's bytes */
};

static int reader_add(struct content_reader *rd, size_t *cap, const uint8_t *hash, int64_t len)
{
    int r = ARRAY_GROW(rd->chunks, rd->n + 1, *cap);
    if (r < 0)
        return r;
    struct rchunk *ch = &rd->chunks[rd->n++];
    memcpy(ch->hash, hash, 32);
    ch->span.len = len;
    ch->span.off = rd->size;
    rd->size += len;
    return 0;
}

/* Loads the chunk list of content `id`, or keeps its inline row as the current chunk. */
static int reader_load(struct pg_store *s, struct pg_conn *c, const uint8_t id[CONTENT_ID_LEN],
                       struct content_reader *rd)
{
    struct pg_params p = {0};
    pp_id(&p, id);
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec(s, c, PS_CONTENT_GET, &p, &res);
    if (r == 0)
        r = err_set(-ENOENT, "no such content");
    if (r < 0)
        return r;
    int64_t size = pg_i64(res, 0, 0), nchunks = pg_i64(res, 0, 1);
    if (nchunks == 0) {
        size_t len = 0;
        rd->bytes = pg_bytes(res, 0, 2, &len);
        rd->cur = TAKE_PTR(res);
        rd->cur_len = (int64_t)len;
        rd->size = size;
        return rd->bytes && rd->cur_len == size ? 0
                                                : err_set(-EIO, "content is no longer available");
    }
    _cleanup_pgresult_ PGresult *list = NULL;
    r = pg_exec(s, c, PS_CONTENT_CHUNKS, &p, &list);
    size_t cap = 0;
    for (int i = 0; i < r; i++) {
        size_t hlen = 0;
        const char *hash = pg_bytes(list, i, 0, &hlen);
        if (!hash || hlen != 32)
            return err_set(-EIO, "corrupt content row");
        int e = reader_add(rd, &cap, (const uint8_t *)hash, pg_i64(list, i, 1));
        if (e < 0)
            return e;
    }
    if (r >= 0 && (rd->n != (size_t)nchunks || rd->size != size))
        return err_set(-EIO, "content is no longer available");
    return r < 0 ? r : 0;
}

static void reader_free(struct content_reader *rd)
{
    PQclear(rd->cur);
    free(rd->chunks);
    free(rd);
}

int pg_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN], struct content_reader **ret)
{
    struct pg_store *s = to_pg(st);
    struct content_reader *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return -ENOMEM;
    rd->s = s;
    int r = 0;
    if (!id_is_zero(id)) {
        struct pg_conn *c;
        r = pg_pool_get(s, &c);
        if (r >= 0) {
            r = reader_load(s, c, id, rd);
            pg_pool_put(s, c);
        }
    }
    if (r < 0) {
        reader_free(rd);
        return r;
    }
    *ret = rd;
    return 0;
}

/* Makes the chunk holding pos current (fetching it). */
static int chunk_fetch(struct content_reader *rd)
{
    size_t i = chunk_span_find(rd->chunks, rd->n, sizeof(*rd->chunks), rd->pos);
    if (i >= rd->n)
        return err_set(-EIO, "content is no longer available");
    const struct rchunk *ch = &rd->chunks[i];
    PQclear(rd->cur);
    rd->cur = NULL;
    rd->bytes = NULL;
    struct pg_params p = {0};
    pp_bytes(&p, ch->hash, 32);
    PGresult *res = NULL;
    int r = pg_query(rd->s, PS_CHUNK_DATA, &p, &res);
    if (r <= 0)
        return r < 0 ? r : err_set(-EIO, "content is no longer available");
    size_t len = 0;
    const char *bytes = pg_bytes(res, 0, 0, &len);
    if (!bytes || (int64_t)len != ch->span.len) {
        PQclear(res);
        return err_set(-EIO, "content is no longer available");
    }
    rd->cur = res;
    rd->bytes = bytes;
    rd->cur_off = ch->span.off;
    rd->cur_len = ch->span.len;
    return 0;
}

int pg_content_read(struct content_reader *rd, void *buf, size_t cap, size_t *ret_got)
{
    size_t got = 0;
    while (got < cap && rd->pos < rd->size) {
        if (!rd->bytes || rd->pos < rd->cur_off || rd->pos >= rd->cur_off + rd->cur_len) {
            int r = chunk_fetch(rd);
            if (r < 0)
                return r;
        }
        size_t n = (size_t)(rd->cur_off + rd->cur_len - rd->pos);
        if (n > cap - got)
            n = cap - got;
        memcpy((uint8_t *)buf + got, rd->bytes + (rd->pos - rd->cur_off), n);
        got += n;
        rd->pos += (int64_t)n;
    }
    *ret_got = got;
    return 0;
}

int pg_content_seek(struct content_reader *rd, int64_t offset)
{
    if (offset < 0 || offset > rd->size)
        return err_set(-EINVAL, "seek outside the content");
    rd->pos = offset;
    return 0;
}

void pg_content_close(struct content_reader *rd)
{
    reader_free(rd);
}
