/*
 * sqlite_content_read.c — content readers of the SQLite engine. A reader loads the content's
 * ordered chunk list (or its inline row) once, then streams bytes by opening the chunk blobs it
 * needs on a pooled connection for the duration of each read.
 *
 * Readers do not hold a transaction between calls (a long read transaction would stop WAL
 * checkpoints during a slow download). The caller keeps the content referenced while reading it
 * (the sandbox read lock); chunk ids and inline content row ids are AUTOINCREMENT, never reused,
 * so data collected under a reader yields -EIO, never another content's bytes.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <stdlib.h>

#include "util/array.h"
#include "util/err.h"

struct rchunk {
    struct chunk_span span; /* where it lies in the content */
    int64_t id;             /* chunks rowid */
};

struct content_reader {
    struct sqlite_store *s;
    struct rchunk *chunks; /* in order */
    size_t n;
    size_t cur;       /* chunk holding pos (n at the end) */
    int64_t size;     /* content size */
    int64_t pos;      /* read position */
    bool inline_data; /* the one "chunk" is the contents row's data (rid) */
};

static int reader_add(struct content_reader *rd, size_t *cap, int64_t id, int64_t len)
{
    int r = ARRAY_GROW(rd->chunks, rd->n + 1, *cap);
    if (r < 0)
        return r;
    struct rchunk *ch = &rd->chunks[rd->n++];
    ch->id = id;
    ch->span.len = len;
    ch->span.off = rd->size;
    rd->size += len;
    return 0;
}

/* Loads the ordered chunk list (or the inline row) of content `id`. */
static int reader_load(struct conn *c, const uint8_t id[CONTENT_ID_LEN], struct content_reader *rd)
{
    int64_t size, nchunks, rid;
    size_t cap = 0;
    {
        _cleanup_reset_ sqlite3_stmt *q = NULL;
        int r = sq_query_content(c, ST_CONTENT_SIZE, id, &q);
        if (r == 0)
            return err_set(-ENOENT, "no such content");
        if (r < 0)
            return r;
        size = sqlite3_column_int64(q, 0);
        nchunks = sqlite3_column_int64(q, 1);
        rid = sqlite3_column_int64(q, 2);
    }
    if (nchunks == 0) {
        rd->inline_data = true;
        return reader_add(rd, &cap, rid, size);
    }
    _cleanup_reset_ sqlite3_stmt *q = NULL;
    int r = sq_query_content(c, ST_CONTENT_CHUNKS, id, &q);
    while (r > 0) {
        r = reader_add(rd, &cap, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1));
        if (r >= 0)
            r = sq_stmt_step(c, q);
    }
    if (r == 0 && (rd->n != (size_t)nchunks || rd->size != size))
        r = err_set(-EIO, "content is no longer available");
    return r;
}

int sq_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN], struct content_reader **ret)
{
    struct sqlite_store *s = to_sq(st);
    struct content_reader *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return -ENOMEM;
    rd->s = s;
    int r = 0;
    if (!id_is_zero(id)) {
        struct conn *c;
        r = sq_pool_get(s, &c);
        if (r >= 0) {
            r = reader_load(c, id, rd);
            sq_pool_put(s, c);
        }
    }
    if (r < 0) {
        free(rd->chunks);
        free(rd);
        return r;
    }
    *ret = rd;
    return 0;
}

/* Reads from pos up to cap bytes, across chunks, opening each chunk's blob on one pooled
 * connection for the duration of the call only. */
int sq_content_read(struct content_reader *rd, void *buf, size_t cap, size_t *ret_got)
{
    size_t got = 0;
    if (rd->pos >= rd->size || cap == 0) {
        *ret_got = 0;
        return 0;
    }
    struct conn *c;
    int r = sq_pool_get(rd->s, &c);
    if (r < 0)
        return r;
    sqlite3_blob *blob = NULL;
    while (got < cap && rd->pos < rd->size) {
        while (rd->cur < rd->n &&
               rd->pos >= rd->chunks[rd->cur].span.off + rd->chunks[rd->cur].span.len)
            rd->cur++;
        if (rd->cur >= rd->n)
            break;
        const struct rchunk *ch = &rd->chunks[rd->cur];
        int rc = blob ? sqlite3_blob_reopen(blob, ch->id)
                 : rd->inline_data
                     ? sqlite3_blob_open(c->db, "main", "contents", "data", ch->id, 0, &blob)
                     : sqlite3_blob_open(c->db, "blobs", "chunks", "data", ch->id, 0, &blob);
        if (rc == SQLITE_OK && sqlite3_blob_bytes(blob) != ch->span.len)
            rc = SQLITE_CORRUPT;
        int64_t in_chunk = rd->pos - ch->span.off;
        size_t n = (size_t)(ch->span.len - in_chunk);
        if (n > cap - got)
            n = cap - got;
        if (rc == SQLITE_OK)
            rc = sqlite3_blob_read(blob, (uint8_t *)buf + got, (int)n, (int)in_chunk);
        if (rc != SQLITE_OK) {
            r = rc == SQLITE_NOMEM ? -ENOMEM : err_set(-EIO, "content is no longer available");
            break;
        }
        got += n;
        rd->pos += (int64_t)n;
    }
    sqlite3_blob_close(blob);
    sq_pool_put(rd->s, c);
    if (r < 0)
        return r;
    *ret_got = got;
    return 0;
}

int sq_content_seek(struct content_reader *rd, int64_t offset)
{
    if (offset < 0 || offset > rd->size)
        return err_set(-EINVAL, "seek outside the content");
    rd->cur = chunk_span_find(rd->chunks, rd->n, sizeof(*rd->chunks), offset);
    rd->pos = offset;
    return 0;
}

void sq_content_close(struct content_reader *rd)
{
    free(rd->chunks);
    free(rd);
}
