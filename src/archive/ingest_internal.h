/*
 * ingest_internal — what the parts of archive ingest share; not for other modules.
 *
 *   ingest.c          struct ingest, the worker (libarchive reading entries into the entries,
 *                     contents into the store), the lifecycle (ingest_new/feed/finish/abort);
 *   ingest_entries.c  the entries: metadata in arrival order with a path index, the last entry
 *                     of a path winning; names of entries in messages;
 *   ingest_queue.c    bounded queues between two threads, and errors carried across them;
 *   ingest_inflate.c  the inflater (decompression on a thread of its own), libarchive's filters
 *                     and error text;
 *   ingest_files.c    ingest_files_build (base64 files from JSON, no thread).
 *
 * Threads (ingest.h): the caller's feeds the body queue; the worker reads it (or the inflater
 * does, and feeds the worker a second queue). Everything else of an ingest belongs to the
 * worker until it has finished.
 */
#ifndef SQLFS_ARCHIVE_INGEST_INTERNAL_H
#define SQLFS_ARCHIVE_INGEST_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <archive.h>

#include "archive/ingest.h"

/* ---- entries (ingest_entries.c) ---- */

/* One node the archive will create; `dead` when a later entry with the same path replaced it. */
struct item {
    struct file_meta meta;
    bool dead;
};

/* Open-addressing hash table from path to item index (+1; 0 marks a free slot). Items are only
 * ever appended, and a replaced path points at its newest item, so no deletion is needed. */
struct entries {
    struct item *v;
    size_t n, cap;
    size_t *slots;
    size_t nslots; /* power of two, at least twice n */
    int64_t file_count;
    int64_t file_bytes;
};

/* The live item at path[0..len), or NULL. */
struct item *entries_find(struct entries *es, const char *path, size_t len);
/* Appends meta, taking its strings (also on failure); the last entry of a path wins. */
__attribute__((warn_unused_result)) int entries_add(struct entries *es, struct file_meta *meta);
void entries_release(struct entries *es);
/* The live symlink that path (below base) goes through, or NULL. */
const struct item *entries_symlink_ancestor(struct entries *es, const char *base, const char *path);
/* Moves the live items into cs; es can then only be released. */
__attribute__((warn_unused_result)) int entries_to_changeset(struct entries *es,
                                                             struct changeset *cs);
/* base joined with the entry name rel (path_join_strict), in a string of its own length. */
__attribute__((warn_unused_result)) int join_compact(const char *base, const char *rel, char **ret);
/* A client-supplied name made printable and short for a message, in out. */
const char *clean_name(const char *name, char out[200]);
/* err_detail() naming the entry. */
void detail_entry(const char *name);

/* ---- queues and errors between threads (ingest_queue.c) ---- */

/* One writing thread, one reading thread (libarchive's read callback), INGEST_QUEUE_BYTES. */
struct queue {
    pthread_mutex_t mu;
    pthread_cond_t can_read;  /* data, eof or abort for the reader */
    pthread_cond_t can_write; /* room, or the reader done, for the writer */
    uint8_t *ring;
    uint64_t wr; /* bytes ever written into the ring */
    uint64_t rd; /* bytes ever released by the reader */
    size_t held; /* bytes lent to libarchive by the last read callback */
    bool eof;    /* the writer has no more data */
    bool failed; /* ... because it failed: reads fail */
    bool abort;  /* the reader must stop now */
    bool done;   /* the reader has finished: writes are dropped */
};

__attribute__((warn_unused_result)) int queue_init(struct queue *q);
void queue_destroy(struct queue *q);
/* The reader: the next piece of data (its length), 0 at the end, -ECANCELED. */
ssize_t queue_take(struct queue *q, const void **ret_buf);
/* The reader: up to `want` first bytes, not consumed. */
__attribute__((warn_unused_result)) int queue_peek(struct queue *q, uint8_t *out, size_t want,
                                                   size_t *ret_n);
/* The writer: copies data in, waiting for room; true when the reader has finished. */
bool queue_put(struct queue *q, const void *data, size_t len);
/* The writer's end (failed: because of an error; abort: the reader must stop now). */
void queue_close(struct queue *q, bool failed, bool abort);
/* The reader's end. */
void queue_reader_done(struct queue *q);
/* libarchive's read callback over a struct queue (userdata). */
la_ssize_t queue_read_cb(struct archive *a, void *userdata, const void **ret_buf);

/* An error of one thread (rc, message, details), to raise on another. */
struct saved_err {
    int rc;
    char *msg;      /* err_message(), malloc'd, or NULL */
    char **details; /* its details */
    int n_details;
};

void saved_err_take(struct saved_err *se, int rc);
int saved_err_raise(const struct saved_err *se);
void saved_err_release(struct saved_err *se);

/* ---- the inflater and libarchive (ingest_inflate.c) ---- */

struct inflater {
    struct queue *in; /* the body */
    struct queue out; /* the decompressed stream, read by the worker */
    pthread_t thread;
    struct saved_err err; /* final after join */
};

/* Starts decompressing `in` into inf->out; NULL when it cannot run. */
struct inflater *inflater_start(struct queue *in);
/* Stops and frees it; the worker's result r, or the inflater's error behind it. */
int inflater_stop(struct inflater *inf, int r);
/* The decompression filters ingest accepts. */
void support_filters(struct archive *a);
/* err_set() from libarchive's error: "<what>: <its message>" (-ECANCELED when aborted). */
int archive_fail(struct archive *a, const char *what);

#endif
