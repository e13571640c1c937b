/*
 * engine.h — what the store engines share (contract: store.h, changeset.h). Included by the
 * engines (src/store/<engine>/) only; callers of the store use store.h.
 *
 *   - path keys and subtree ranges: paths compare in memcmp order, which puts a directory
 *     before its contents, and the subtree strictly below P is the key range [P/, P0) ('0'
 *     follows '/');
 *   - the content chunker (store/chunker.c): splits a content's bytes into chunks of
 *     STORE_CHUNK_SIZE, hashes each and computes the content id of store.h's content model,
 *     handing every whole chunk to the engine as it fills; and the part of content batches
 *     that holds sealed writers until the engine records them, a full set on a thread of the
 *     batch (store/batch.c);
 *   - the commit driver (store/apply.c): applies a change set's changes in order through an
 *     engine's row primitives (struct apply_ops), with the parent rules, subtree deletes and
 *     the size and count accounting; runs of puts in bulk when the engine has bulk
 *     primitives;
 *   - helpers (engine.c, apply.c): the distinct contents a change set puts (the pins a commit
 *     drops), the quota rule, the depth cut of a tree walk, sandbox records copied out of rows,
 *     the owner check, the implicit root, the chunk holding an offset.
 *
 * Not thread-safe beyond what each function says: a chunker or an apply is used by one thread.
 */
#ifndef SQLFS_STORE_ENGINE_H
#define SQLFS_STORE_ENGINE_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define DIR_MODE_DEFAULT 0755 /* the root, and parents a change set creates */
/* Contents up to this size are stored whole with their content record instead of as a chunk
 * (one small write for a small file); their id is that of a one-chunk content. */
#define STORE_INLINE_MAX (16 * 1024)
/* Pins and writer leases: a content finished but never committed, or a writer that stopped
 * writing, is collectable after this long. */
#define STORE_PIN_LEASE_MS (60LL * 60 * 1000)

static inline bool id_is_zero(const uint8_t id[CONTENT_ID_LEN])
{
    for (int i = 0; i < CONTENT_ID_LEN; i++)
        if (id[i])
            return false;
    return true;
}

/* A sandbox path as the engines store it: absolute, no trailing slash except the root's. */
static inline bool path_ok(const char *path, size_t len)
{
    return len >= 1 && path[0] == '/' && (len == 1 || path[len - 1] != '/');
}

/* The key range [lo, hi) of the subtree strictly below a path P: [P/, P0), or every path for
 * the root. The bounds are not NUL-terminated. */
struct subtree {
    char *lo;     /* owned; locap bytes (a walk moves lo forward) */
    char *hi;     /* owned */
    size_t lolen; /* bytes of lo */
    size_t hilen; /* bytes of hi */
    size_t locap; /* bytes allocated at lo */
};

/* Sets r to the range below path[0..len) (a path_ok path). -ENOMEM; release with
 * subtree_release either way. */
__attribute__((warn_unused_result)) int subtree_init(struct subtree *r, const char *path,
                                                     size_t len);
void subtree_release(struct subtree *r);
/* Moves the range's lower bound to key[0..len) followed by `next` ('\0': just after the key
 * itself; '0': past the key's whole subtree). -ENOMEM. */
__attribute__((warn_unused_result)) int subtree_seek(struct subtree *r, const char *key, size_t len,
                                                     char next);

/* A tree walk below a prefix whose subtree starts at byte `base` of each path: the index just
 * past the max_depth-th segment of `path`, or 0 when the path is not deeper than max_depth
 * (max_depth <= 0: never). A walk that meets a deeper path skips that ancestor's subtree:
 * subtree_seek(range, path, cut, '0'). */
size_t walk_depth_cut(const char *path, size_t base, int max_depth);

/* True when the row's owner (row_tenant, row_sub) is (tenant, sub); a NULL half matches any. */
bool owner_matches(const char *tenant, const char *sub, const char *row_tenant,
                   const char *row_sub);
/* A copy of `view` (strings pointing into a row) with strings of its own; env_json NULL becomes
 * "{}", cwd NULL the sandbox home. -ENOMEM; *ret is set on success only. */
__attribute__((warn_unused_result)) int sandbox_rec_dup(const struct sandbox_rec *view,
                                                        struct sandbox_rec *ret);
/* The root "/" of a sandbox created at created_ms, which has no row: a 0755 directory. -ENOMEM;
 * release with file_meta_release. */
__attribute__((warn_unused_result)) int root_meta(int64_t created_ms, struct file_meta *ret);

/* Where one chunk of a content lies. A reader's chunk records start with it. */
struct chunk_span {
    int64_t off; /* offset of its first byte in the content */
    int64_t len; /* its size */
};
/* The index of the chunk holding byte pos among n chunk records in content order, stride bytes
 * apart, each starting with a struct chunk_span; n when pos is at or past the end. */
size_t chunk_span_find(const void *chunks, size_t n, size_t stride, int64_t pos);

/* ---- the content chunker (chunker.c) --------------------------------------------------- */

/* Receives one whole chunk (hashed) while a content is written. 0 or negative. */
typedef int (*chunk_fn)(void *ctx, const uint8_t hash[32], const void *data, size_t len);

/*
 * The bytes of one content on their way into a store: chunker_write buffers them and hands each
 * whole chunk to the engine (without a copy when the caller's buffer holds one); chunker_seal
 * ends the stream. Memory: at most one chunk, grown geometrically so that small contents never
 * pay for a whole one. After seal:
 *   - size is the content's size, id its content id (all zero for an empty content);
 *   - the last len bytes at buf are the tail not yet handed out; when is_inline they are the
 *     whole content (size <= inline_max and no chunk handed out), else, when len > 0, a last
 *     chunk whose hash is tail_hash, for the engine to store.
 */
struct chunker {
    uint8_t *buf;          /* the partial chunk (up to STORE_CHUNK_SIZE) */
    size_t len;            /* bytes in buf */
    size_t bufcap;         /* bytes allocated at buf */
    int64_t size;          /* bytes handed out as chunks so far; after seal: the content's size */
    void *idctx;           /* EVP_MD_CTX over the chunk hashes: the content id */
    bool failed;           /* a write failed: seal refuses */
    bool sealed;           /* chunker_seal succeeded */
    bool is_inline;        /* after seal: the tail is the whole content */
    uint8_t tail_hash[32]; /* after seal: hash of the tail (len > 0) */
    uint8_t id[CONTENT_ID_LEN]; /* after seal: the content id */
};

/* -ENOMEM (or -EIO when hashing cannot start); release either way. */
__attribute__((warn_unused_result)) int chunker_init(struct chunker *ck);
/* Frees the buffer and the hashing state; the sealed results (size, len, id, tail_hash,
 * is_inline) stay readable, the tail bytes do not. Idempotent. */
void chunker_release(struct chunker *ck);
/* Appends len bytes, calling fn for each chunk that fills. A failure (fn's, or -ENOMEM) is
 * returned and leaves the chunker failed: later writes fail -EINVAL, as seal does. */
__attribute__((warn_unused_result)) int chunker_write(struct chunker *ck, const void *data,
                                                      size_t len, chunk_fn fn, void *ctx);
/* Ends the stream (see struct chunker). -EINVAL after a failed write. */
__attribute__((warn_unused_result)) int chunker_seal(struct chunker *ck, size_t inline_max);

/* The first member of every engine's struct content_writer: the byte stream and, once sealed,
 * where its ck.len tail bytes are (ck.buf, or a copy in a batch's arena). */
struct writer_head {
    struct chunker ck;
    const uint8_t *tail;
};

static inline struct writer_head *writer_head(struct content_writer *w)
{
    return (struct writer_head *)w;
}

/* Ends a writer's byte stream (chunker_seal, small contents inline) with its tail in ck.buf. */
static inline int writer_seal(struct writer_head *h)
{
    int r = chunker_seal(&h->ck, STORE_INLINE_MAX);
    h->tail = h->ck.buf;
    return r;
}

/* After sealing: the tail is a last chunk to store (not inline, not empty). */
static inline bool writer_has_tail_chunk(const struct writer_head *h)
{
    return h->ck.len > 0 && !h->ck.is_inline;
}

/* ---- content batches (batch.c) --------------------------------------------------------- */

/*
 * The engine-independent part of a content batch (store.h: store_content_finish_in), the first
 * member of every engine's struct content_batch: sealed writers whose tails are copied into an
 * arena (so each writer's chunk buffer is freed at once), which the engine records (struct
 * batch_engine). The batch has two sets of writers, each with half the arena: while one fills,
 * the other, full, is recorded on a thread of the batch, so that the caller's parsing and
 * hashing overlap with the engine's writing. A set is full at BATCH_MAX_WRITERS writers or when
 * the next tail would not fit its half of BATCH_ARENA_BYTES. An explicit flush waits for the
 * set being recorded, then records the other on the caller's thread. A failure of the
 * background recording is reported by the next call, with its code and message.
 */
#define BATCH_ARENA_BYTES ((size_t)4 << 20) /* >= 2 STORE_CHUNK_SIZE: a tail fits a half */
#define BATCH_MAX_WRITERS 1024              /* per set */

struct batch_engine;

/* One set of sealed writers and their tails. */
struct batch_set {
    struct content_writer **v; /* sealed, not yet recorded */
    size_t n, cap;
    uint8_t *arena; /* BATCH_ARENA_BYTES / 2: the tails of v */
    size_t used;
};

struct batch_core {
    const struct batch_engine *e; /* the engine that records it */
    struct batch_set sets[2];
    struct batch_set *cur;    /* the set finishes go into */
    struct batch_set *flying; /* the set `thread` records, or NULL */
    pthread_t thread;
    int flying_r;         /* the result of recording `flying`, once joined */
    char flying_msg[512]; /* its message ("" when none) */
    bool failed;          /* a recording failed: its contents are gone, the batch only frees */
};

/* What a batch needs from its engine. Called on the batch's thread or the caller's, one call
 * at a time for a batch. */
struct batch_engine {
    /* Stores and pins the n writers v of batch b, in the engine's transactions: 0, or a
     * negative code with nothing of them stored. The writers stay the batch's. */
    int (*record)(struct content_batch *b, struct content_writer *const *v, size_t n);
    /* content_abort and the freeing of a recorded writer. */
    void (*abort)(struct content_writer *w);
    void (*free_writer)(struct content_writer *w);
};

static inline struct batch_core *batch_core(struct content_batch *b)
{
    return (struct batch_core *)b;
}

/* Sets up the core of a batch the engine allocated (size bytes, zeroed, the core first) and
 * hands it out in *ret: the store_ops batch members below then serve it. -ENOMEM (b freed). */
__attribute__((warn_unused_result)) int batch_new(void *b, const struct batch_engine *e,
                                                  struct content_batch **ret);
/* The store_ops members content_finish_in (seals w, small contents inline; when the set is
 * full, hands it to the batch's thread first; keeps w with its tail), content_batch_flush
 * (waits for the batch's thread, records the other set with e->record and frees its writers;
 * on failure drops every unrecorded writer and fails every later call -EIO) and
 * content_batch_free (waits for the batch's thread, drops what was not flushed, frees the
 * batch). */
int batch_finish_in(struct content_batch *b, struct content_writer *w,
                    uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size);
int batch_flush(struct content_batch *b);
void batch_free(struct content_batch *b);

/* ---- the commit driver (apply.c) ------------------------------------------------------- */

/* A file row as a commit sees it. kind 0: no row. */
struct store_row {
    int kind;
    int64_t size;
    bool has_content;
    uint8_t content[CONTENT_ID_LEN];
    bool kept; /* written before this commit: the history keeps it when it goes (store.h), so its
                * content is no GC candidate then */
};

/* A path whose row apply_ops.rows_get reads, and that row. */
struct row_read {
    const char *path;     /* not NUL-terminated */
    size_t len;           /* bytes of path */
    struct store_row row; /* out: the row (kind 0 when none) */
};

/* A row apply_ops.rows_put writes: row_put's arguments. */
struct row_write {
    const char *path; /* not NUL-terminated */
    size_t len;
    int kind;
    uint32_t mode;
    int64_t size;
    int64_t mtime_ns;
    const uint8_t *content; /* NULL or the content id */
    const char *target;     /* NULL or the symlink target */
};

/* An engine's row primitives, run inside the engine's open write transaction on the sandbox
 * being committed (ctx: the engine's state). Each returns 0 or a negative code; a failure stops
 * the commit, and the engine rolls its transaction back.
 *
 * The bulk members (rows_get, rows_put, candidates_add) are optional, all three or none. An
 * engine for which each primitive costs a round trip gives them: the driver then applies a run
 * of puts with one rows_get for the rows the run reads and one rows_put per run (see apply.c),
 * the result being exactly that of the per-row primitives in order. */
struct apply_ops {
    /* The row at path[0..len) into *ret (kind 0 when none; `kept` as struct store_row says). */
    int (*row_get)(void *ctx, const char *path, size_t len, struct store_row *ret);
    /* Inserts the row, replacing one at the same path (its accounting is the driver's).
     * content: NULL or the content id; target: NULL or the symlink target. */
    int (*row_put)(void *ctx, const char *path, size_t len, int kind, uint32_t mode, int64_t size,
                   int64_t mtime_ns, const uint8_t *content, const char *target);
    /* Sets mode and mtime of the existing directory row. */
    int (*dir_update)(void *ctx, const char *path, size_t len, uint32_t mode, int64_t mtime_ns);
    /* Deletes the row (it exists). */
    int (*row_delete)(void *ctx, const char *path, size_t len);
    /* Deletes every row in the range, recording the contents of those the history does not
     * keep (written by this commit, or of a sandbox being deleted) as GC candidates; the rows
     * removed and their file bytes into *ret_rows, *ret_bytes, and into *ret_candidates
     * whether it recorded a candidate. */
    int (*range_delete)(void *ctx, const struct subtree *range, int64_t *ret_rows,
                        int64_t *ret_bytes, bool *ret_candidates);
    /* The size of stored content `id` into *ret_size; -ENOENT when it is not stored. */
    int (*content_size)(void *ctx, const uint8_t id[CONTENT_ID_LEN], int64_t *ret_size);
    /* Records content `id` as a GC candidate (a row holding it went away). */
    int (*candidate_add)(void *ctx, const uint8_t id[CONTENT_ID_LEN]);
    /* Optional: row_get for each of the n paths (distinct) at once, into v[i].row. */
    int (*rows_get)(void *ctx, struct row_read *v, size_t n);
    /* Optional: row_put for each of the n rows (distinct paths) at once. */
    int (*rows_put)(void *ctx, const struct row_write *v, size_t n);
    /* Optional: candidate_add for each of the n ids (CONTENT_ID_LEN bytes each, maybe
     * repeated) at once. */
    int (*candidates_add)(void *ctx, const uint8_t *ids, size_t n);
};

/* One commit being applied. The engine fills ops, ctx and the sandbox's size and count before,
 * and reads size and count after. */
struct apply {
    const struct apply_ops *ops;
    void *ctx;
    int64_t size;        /* running size_bytes */
    int64_t count;       /* running file_count */
    int64_t now_ns;      /* mtime of created parents */
    bool create_parents; /* from the change set */
    bool keep_dirs;      /* from the change set */
    bool unreferenced;   /* a row holding content went away (its content is a GC candidate) */
};

/* Applies cs's changes in order (changeset.h), with the errors store.h lists for commit except
 * -ESTALE, -ENOENT for a missing sandbox and -ERR_QUOTA, which are the engine's. Sets
 * create_parents and keep_dirs from cs. */
__attribute__((warn_unused_result)) int apply_changes(struct apply *a, const struct changeset *cs);
/* Deletes every row of the sandbox (the subtree of "/"), with the accounting. */
__attribute__((warn_unused_result)) int apply_delete_all(struct apply *a);
/* The quota rule of commit_opts: -ERR_QUOTA (with a message) when the sandbox would grow from
 * old_size to new_size past a non-zero quota, else 0. */
__attribute__((warn_unused_result)) int apply_quota_check(const struct commit_opts *opts,
                                                          int64_t old_size, int64_t new_size);

/* The distinct content ids (sorted, CONTENT_ID_LEN bytes each) of the files cs puts with a
 * content, in *ret_ids (malloc'd, NULL when none; the caller frees) and their number in *ret_n:
 * the pins a commit of cs drops. -ENOMEM. */
__attribute__((warn_unused_result)) int changeset_contents(const struct changeset *cs,
                                                           uint8_t **ret_ids, size_t *ret_n);

#endif
