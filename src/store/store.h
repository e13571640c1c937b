/*
 * store — the SQL source of truth: sandboxes, their path-keyed file rows, content-addressed
 * chunked content and the commit log. One interface (struct store_ops, below), engines behind
 * it: SQLite in store/sqlite/ (the embedded default), PostgreSQL in store/pg/ (one database
 * shared by several servers); store_open() picks one from the configuration. What the engines
 * share is in store/engine.h. Nothing above this header knows SQL.
 *
 * Content model: a file's bytes are split into chunks of at most STORE_CHUNK_SIZE bytes, each
 * stored once by its SHA-256. A content id is the SHA-256 of the file's ordered chunk hashes and
 * size, so equal files share one content row whatever sandbox holds them. Content is written
 * before the commit that references it (content writers stream chunk by chunk: memory stays at
 * one chunk), and is pinned while being written so that garbage collection never removes it.
 *
 * Versions: each sandbox has a `version` bumped by every commit. A commit may name the version it
 * was built from (`expect_version`); if the sandbox moved on, it fails with -ESTALE and changes
 * nothing (fencing of stale writers).
 *
 * History: every version a sandbox had stays readable (stat_at, list_at) until it is pruned.
 * A row a commit replaces or deletes is kept, with the versions it was live for, instead of
 * being forgotten; a version's tree is the rows live at it. Retention (commit_opts): the newest
 * history_max_commits versions, those younger than history_max_age_ms, and, within a quota, only
 * as much history as the quota leaves room for beside the live tree (the oldest goes first);
 * a version named by a snapshot is never pruned. The content a retained version uses stays
 * stored; the content only pruned versions used is collected like any other.
 *
 * Exec journal: a record of each finished exec of a sandbox (its id, kind, the start of its
 * script, timing, exit, the version its commit made, and the start of its output), newest
 * first; bounded like history (journal_opts), deleted with the sandbox.
 *
 * Network egress: a sandbox's own egress policy (sandbox_rec.network_policy, JSON text the
 * store keeps without reading it), and the egress log: one record per connection the sandbox's
 * egress proxy was asked for (host, port, the decision and the rule that made it, bytes each
 * way), newest first; bounded per sandbox in count and age (egress_opts), deleted with the
 * sandbox, not copied by a fork.
 *
 * Idempotency: the answer a request carrying an Idempotency-Key got, kept per (sandbox, key)
 * so that a retry gets it again instead of running twice (struct idem_rec); bounded in age,
 * count and bytes per sandbox (idem_opts, idem_finish), deleted with the sandbox.
 *
 * Ownership lookups take (tenant, sub): a sandbox owned by someone else is reported exactly like
 * a missing one (-ENOENT). Internal callers pass NULL owner to skip the check.
 *
 * Thread-safety, transactions, errors and ownership: the contract above struct store_ops, and
 * each member's comment there. In short: any function from any thread; reads see committed data
 * only; writes are serialised by the engine, and per-sandbox ordering (check, then commit) is the
 * caller's (sandbox/lock.h); errors are negative errno or -ERR_* (util/err.h), -ENOSPC when the
 * disk is full and -EIO for other storage failures.
 */
#ifndef SQLFS_STORE_STORE_H
#define SQLFS_STORE_STORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/changeset.h"
#include "util/rand.h"

#define STORE_CHUNK_SIZE (1024 * 1024)

struct store;
struct content_writer;
struct content_reader;
struct content_batch;

/* One sandbox row. Strings are malloc'd and owned by the record. */
struct sandbox_rec {
    char id[UUID_STR_LEN]; /* lowercase UUIDv4 */
    char *tenant;          /* owner tenant */
    char *sub;             /* owner subject */
    char *name;            /* may be NULL */
    char *env_json;        /* JSON object of string→string, never NULL after a read ("{}") */
    bool python;           /* runtime flags */
    bool javascript;
    bool network;
    char *network_policy; /* the sandbox's own egress policy when `network` is an object: its
                           * JSON text ({"allow":[...],"deny":[...]}); NULL otherwise (network
                           * false, or true = the server's EGRESS_ALLOW). Kept as given: the
                           * store does not parse it */
    char *cwd;            /* stored start directory of execs */
    int64_t created_ms;   /* epoch ms */
    int64_t last_used_ms; /* epoch ms; 0 = never used */
    int64_t version;      /* bumped by every commit */
    int64_t size_bytes;   /* sum of file sizes */
    int64_t file_count;   /* number of rows (files, dirs, symlinks) */
};

void sandbox_rec_release(struct sandbox_rec *r);

struct commit_opts {
    int64_t expect_version;      /* -1: do not check */
    int64_t quota_bytes;         /* 0: unlimited; the sandbox's size after the commit must fit,
                                    unless the commit does not grow it (an over-quota sandbox can
                                    always be cleaned up) */
    int64_t now_ms;              /* timestamp of the commit (also lastUsedAt) */
    int64_t max_owner_sandboxes; /* store_sandbox_create only: the sandboxes the owner may have,
                                  * this one included (0: no limit), counted in the same
                                  * transaction as the insert */
    int64_t history_max_commits; /* versions kept, the new one included (0: no limit) */
    int64_t history_max_age_ms;  /* versions older than this are pruned (0: no limit); the
                                  * current version is never pruned */
};

struct commit_result {
    int64_t version;    /* the sandbox's version after the commit */
    int64_t size_bytes; /* the sandbox's size after the commit */
    int64_t commit_id;  /* row id in the commit log */
    bool unreferenced;  /* the commit pruned history that held content: that content is a GC
                         * candidate now, which only a collection (gc) frees */
};

/* One commit of a sandbox's history. Strings malloc'd, owned by the record. */
struct commit_rec {
    int64_t version;     /* the version the commit made */
    int64_t created_ms;  /* epoch ms */
    char *kind;          /* the change set's kind ("exec", "put", "restore", "fork", ...) */
    char *info_json;     /* the change set's info_json, or NULL */
    char *cwd;           /* the sandbox's stored cwd after the commit */
    int64_t added;       /* paths that had no row at version - 1 */
    int64_t modified;    /* paths whose row the commit replaced (a directory whose mtime alone
                          * changed is not counted) */
    int64_t deleted;     /* paths whose row the commit removed */
    int64_t bytes_added; /* sum of the sizes of the files the commit wrote */
};

void commit_rec_release(struct commit_rec *c);

/* How a path differs between two trees (commit_paths: version - 1 and version). */
enum path_change_kind {
    PATH_ADDED = 1,
    PATH_MODIFIED = 2,
    PATH_DELETED = 3,
};

/* A snapshot: a name pinning one version against pruning. */
struct snapshot_rec {
    char *name;
    int64_t version;
    int64_t created_ms;
};

void snapshot_rec_release(struct snapshot_rec *s);

/* One exec of a sandbox's journal. Strings and output malloc'd, owned by the record. */
struct exec_rec {
    char *exec_id;         /* the exec's id, unique within the sandbox */
    char *kind;            /* "sync", "stream" or "batch" */
    char *script;          /* the start of the script (valid UTF-8) */
    int64_t started_ms;    /* epoch ms */
    int64_t duration_ms;   /* wall time of the script(s) */
    int64_t exit_code;     /* bash's exit code (a batch: its last script's that ran; -1: none) */
    bool timed_out;        /* killed at its timeout */
    int64_t version;       /* the version its commit made; 0: it committed nothing */
    int64_t stdout_bytes;  /* bytes the exec wrote to stdout */
    int64_t stderr_bytes;  /* bytes the exec wrote to stderr */
    char *stdout_data;     /* the start of stdout kept (exec_get only; NULL in a list) */
    size_t stdout_len;     /* bytes at stdout_data */
    bool stdout_truncated; /* stdout_data is not all the exec wrote */
    char *stderr_data;     /* as stdout_data, for stderr */
    size_t stderr_len;
    bool stderr_truncated;
};

void exec_rec_release(struct exec_rec *e);

/* Retention of the exec journal, applied when a record is added. */
struct journal_opts {
    int64_t max_records; /* records kept per sandbox, the new one included (0: no limit) */
    int64_t max_age_ms;  /* records older than this are dropped (0: no limit) */
    int64_t now_ms;      /* the time now (epoch ms) */
};

/* One connection a sandbox's egress proxy was asked for. Strings malloc'd (in records given to
 * callbacks: valid during the call only), valid UTF-8. */
struct egress_rec {
    int64_t at_ms; /* when it was asked for (epoch ms) */
    char *exec_id; /* the exec that asked, or NULL */
    char *host;    /* the host name (or address literal) asked for */
    int port;
    char *address; /* the address connected to, or that decided a denial; NULL: none */
    bool allowed;
    char *rule;         /* what decided, e.g. "allow pypi.org", "deny: not in the allowlist" */
    char *error;        /* an allowed connection that failed: why (e.g. "connection refused");
                         * NULL */
    int64_t bytes_up;   /* bytes from the sandbox to the host */
    int64_t bytes_down; /* bytes from the host to the sandbox */
    int64_t duration_ms;
};

void egress_rec_release(struct egress_rec *r);

/* Retention of the egress log, applied when records are added. */
struct egress_opts {
    int64_t max_records; /* per sandbox, newest kept (0: no limit) */
    int64_t max_age_ms;  /* records asked for before now_ms - max_age_ms are dropped (0: no
                          * limit) */
    int64_t now_ms;      /* the time now (epoch ms) */
};

/* The state of an Idempotency-Key (store_idem_begin). */
enum idem_state {
    IDEM_NEW = 0,       /* first use: recorded as pending now, the caller runs the request */
    IDEM_PENDING = 1,   /* its first request is still running */
    IDEM_DONE = 2,      /* its first request completed: its answer is kept */
    IDEM_TOO_LARGE = 3, /* its first request completed with an answer too large to keep */
    IDEM_IN_DOUBT = 4,  /* its first request failed with its commit in doubt (it may or may not
                         * have been applied): no answer is kept */
};

/* The claim on a pending key: random bytes that only the request which recorded it holds.
 * Finishing, forgetting or renewing the record takes its claim, so that a request whose record
 * was taken as abandoned (and the key used afresh by a retry) cannot touch the retry's. */
#define IDEM_CLAIM_LEN 16

/* What a key holds. body and content_type malloc'd, owned by the record. */
struct idem_rec {
    enum idem_state state;
    uint8_t claim[IDEM_CLAIM_LEN]; /* IDEM_NEW: the caller's claim on the new pending record */
    uint8_t hash[32];              /* the request's hash (method, route, sandbox, body) */
    int64_t created_ms;            /* when its first request began, or its claim was last renewed
                                    * (epoch ms) */
    int status;                    /* IDEM_DONE, IDEM_TOO_LARGE, IDEM_IN_DOUBT: the answer's HTTP
                                    * status */
    char *content_type;            /* IDEM_DONE: its Content-Type, or NULL */
    char *body;                    /* IDEM_DONE: its body; IDEM_TOO_LARGE, IDEM_IN_DOUBT: the note
                                    * kept instead (the exec's id); NULL when empty */
    size_t body_len;
};

void idem_rec_release(struct idem_rec *r);

/* Bounds of the idempotency records, applied when a key is added. */
struct idem_opts {
    int64_t now_ms;         /* the time now (epoch ms) */
    int64_t ttl_ms;         /* records older than this are forgotten (> 0) */
    int64_t pending_ttl_ms; /* a pending record older than this is taken as abandoned (its
                             * server died): the key is used afresh (> 0) */
    int64_t max_keys;       /* records per sandbox, the new one included; the oldest go (> 0) */
    int64_t sweep_max;      /* at most this many records of any sandbox past ttl_ms are
                             * forgotten too, oldest first (0: none) */
};

struct gc_stats {
    int64_t contents_deleted; /* contents removed */
    int64_t chunks_deleted;   /* chunks removed */
    int64_t bytes_freed;      /* content bytes removed (chunks and inline contents) */
};

/* Called once per sandbox / file; a non-zero return stops the walk and is returned. The record
 * or file_meta (and its strings) is valid during the call only. The callback may call other
 * store functions. */
typedef int (*store_sandbox_cb)(const struct sandbox_rec *rec, void *userdata);
typedef int (*store_file_cb)(const struct file_meta *meta, void *userdata);
/* One entry of the commit log: the change of `path` (op: enum change_op) made by the commit that
 * took the sandbox to `version`. Valid during the call only. */
typedef int (*store_change_cb)(int64_t version, int op, const char *path, void *userdata);
typedef int (*store_commit_cb)(const struct commit_rec *c, void *userdata);
typedef int (*store_snapshot_cb)(const struct snapshot_rec *s, void *userdata);
typedef int (*store_exec_cb)(const struct exec_rec *e, void *userdata);
typedef int (*store_egress_cb)(const struct egress_rec *r, void *userdata);
/* A path a commit changed (commit_paths): `meta` is its row after the commit (added, modified)
 * or before it (deleted). */
typedef int (*store_path_change_cb)(enum path_change_kind change, const struct file_meta *meta,
                                    void *userdata);

/* A cross-server lock held on a sandbox (store_ops.lock_acquire). */
struct store_lock;

/*
 * The engine interface. An engine fills one `struct store_ops` and gives out handles whose
 * first member is `struct store` pointing at it; callers use the store_*() wrappers below, never
 * the members. Contract for every member unless it says otherwise:
 *   - Thread-safety: any member may be called from any thread concurrently on the same store;
 *     a content writer, reader or batch is used by one thread at a time. The engine serialises
 *     its own writes; per-sandbox ordering (check, then commit) is the caller's (sandbox/lock.h).
 *   - Transactions: a member that changes rows does so in its own transactions and returns
 *     after they have committed (each all or nothing) or rolled back; no transaction stays open
 *     between calls. Reads see committed data only.
 *   - Errors: negative errno or -ERR_* (util/err.h); a message set with err_set() is for the
 *     client and names no SQL, host path or secret. Every member may fail with -ENOMEM, -ENOSPC
 *     (the server's storage is full) or -EIO (any other storage failure) beside those listed; one
 *     that commits may fail with -ERR_COMMIT_IN_DOUBT (its commit may or may not have been
 *     applied: the connection to the database was lost, and that cannot be told).
 *   - Out-parameters named ret* are written on success only (or hold nothing to release after a
 *     failure). Strings in records given to callbacks are valid during the call only.
 *   - Callbacks (store_sandbox_cb, store_file_cb) run without any engine lock held: they may
 *     call any member of the same store, writes included.
 */
#define STORE_OPS_VERSION 6

struct store_ops {
    /* The revision of this contract the engine implements: STORE_OPS_VERSION when it was
     * written. A change to any member's meaning or signature raises STORE_OPS_VERSION, so an
     * engine not updated with it is refused at open (store_ops_check). */
    int version;
    /* Short engine name for logs ("sqlite"). */
    const char *name;

    /* Frees the store and everything it holds. Every writer, reader and batch is closed first
     * and no other call is in progress or will follow. Never NULL. */
    void (*close)(struct store *st);
    /* 0 when the engine answers a trivial query (health checks). */
    int (*check)(struct store *st);
    /* Optional (NULL: -1). Bytes of memory the engine holds now (page caches, statements: what
     * the server's RSS grows by as the database grows, not per sandbox); -1 if it cannot tell. */
    int64_t (*memory_bytes)(struct store *st);

    /* ---- sandboxes ---- */

    /* Inserts the sandbox row and commits `initial` (NULL: none) as its first version, in one
     * transaction. rec: id, tenant and sub are required (-EINVAL); name may be NULL; env_json
     * NULL stores "{}"; cwd NULL stores the sandbox home; network_policy is stored as given
     * (NULL: none); created_ms 0 stores the time now;
     * version, size_bytes and file_count are ignored (a new sandbox starts at 0 and `initial`
     * moves them). opts may be NULL (no limits); its expect_version is ignored; quota_bytes
     * applies to `initial` as to any commit. The caller keeps ownership of rec and initial.
     * Errors: -EEXIST (the id is taken), -ERR_SANDBOX_LIMIT (the owner has
     * opts->max_owner_sandboxes already, counted in the same transaction as the insert, so two
     * concurrent creates cannot both pass), any error of commit for `initial` (nothing is then
     * created). */
    int (*sandbox_create)(struct store *st, const struct sandbox_rec *rec,
                          const struct changeset *initial, const struct commit_opts *opts);
    /* Reads sandbox `id` into *ret (strings malloc'd, owned by the caller: sandbox_rec_release;
     * env_json and cwd never NULL, network_policy NULL when it has none). tenant, sub: the owner
     * the row must have; NULL skips that half of the check. -ENOENT when missing or owned by
     * someone else (indistinguishable). */
    int (*sandbox_get)(struct store *st, const char *id, const char *tenant, const char *sub,
                       struct sandbox_rec *ret);
    /* Calls cb for each sandbox of the owner (tenant, sub; a NULL half matches any), newest
     * created first, creations within one millisecond in creation order. A non-zero return of
     * cb stops the walk and is returned; otherwise 0. Sandboxes created or deleted during the
     * walk may or may not be seen. */
    int (*sandbox_list)(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                        void *userdata);
    /* Optional (NULL: store_sandbox_count answers -EOPNOTSUPP). The number of sandboxes in the
     * store, every owner's (on a database that replicas share, all of theirs), into *ret: one
     * count query, no lock. For the operator's metrics. */
    int (*sandbox_count)(struct store *st, int64_t *ret);
    /* Deletes the sandbox, its files, its commit log, exec journal, egress log and idempotency
     * records in one transaction, then collects the content nothing references any longer (as
     * gc; a failure there is not reported: what was not collected stays for the next
     * collection). tenant, sub as for sandbox_get. -ENOENT when missing or not owned. */
    int (*sandbox_delete)(struct store *st, const char *id, const char *tenant, const char *sub);
    /* Sets lastUsedAt to now_ms (no version change, no owner check). -ENOENT when missing. */
    int (*sandbox_touch)(struct store *st, const char *id, int64_t now_ms);
    /* Sets the sandbox's `network` flag and its network_policy (policy_json NULL: none) in one
     * statement; the version, lastUsedAt and the commit log are left as they are. tenant, sub
     * as for sandbox_get. -ENOENT when missing or not owned. */
    int (*sandbox_set_network)(struct store *st, const char *id, const char *tenant,
                               const char *sub, bool network, const char *policy_json);

    /* ---- file reads ---- */

    /* The row at `path` (a normalised absolute path; no symlink following) into *ret (strings
     * owned by the caller: file_meta_release). The root "/" has no row: it is reported as a
     * 0755 directory with the sandbox's creation time while the sandbox exists. -ENOENT when
     * there is no such row or no such sandbox. */
    int (*stat)(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret);
    /* Calls cb for each row strictly below `prefix` in path order (memcmp byte order: a
     * directory always comes before its contents), at most max_depth levels below it (<= 0:
     * unlimited). The root is implicit: listing "/" walks the whole tree. A prefix with no rows
     * below it (a file, a missing path) walks nothing and returns 0. A non-zero return of cb
     * stops the walk and is returned. -EINVAL when prefix is not an absolute path without a
     * trailing slash, -ENOENT when the sandbox does not exist. Rows committed during the walk
     * may or may not be seen. */
    int (*list)(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
                store_file_cb cb, void *userdata);
    /* 1 when some row lies below `path`, 0 when none; -EINVAL (path as for list), -ENOENT (no
     * such sandbox). */
    int (*has_children)(struct store *st, const char *sandbox_id, const char *path);

    /* ---- content writers ---- */

    /* A new content writer in *ret, for one content's bytes. Finish or abort it, on every
     * path. */
    int (*content_begin)(struct store *st, struct content_writer **ret);
    /* Appends len bytes. The bytes may be stored before finish (memory stays bounded by about
     * one chunk whatever the content's size), but no content exists until finish. After a
     * failed write the writer can only be aborted: a later write or finish fails -EINVAL. */
    int (*content_write)(struct content_writer *w, const void *data, size_t len);
    /* Ends the content and frees the writer, whatever it returns. On success ret_id gets the
     * content id (store.h's content model; all zero for an empty content, which is not stored)
     * and *ret_size its size (ret_size may be NULL). The content is then stored and pinned (one
     * pin per finish): gc keeps it until a commit that puts it or a discard of such a change
     * set drops the pin, an hour passes, or the store is closed (a pin left by a server that
     * died ends with its hour, or when that server's SQLite store is reopened). On failure
     * nothing is stored. */
    int (*content_finish)(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN],
                          int64_t *ret_size);
    /* Drops the writer and whatever it stored that nothing else uses (best effort: what cannot
     * be removed now is removed at the next open). Frees w. */
    void (*content_abort)(struct content_writer *w);

    /* ---- content batches: optional, all four or none (NULL: finishes are not batched) ---- */

    /* A new batch in *ret (see store_content_batch_new for its semantics). */
    int (*content_batch_new)(struct store *st, struct content_batch **ret);
    /* content_finish, except that the content is stored and pinned only by a later flush. The
     * writer is consumed whatever it returns. The failure of a flush b started by itself (its
     * code and message), then -EIO once a flush of b has failed. */
    int (*content_finish_in)(struct content_batch *b, struct content_writer *w,
                             uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size);
    /* Stores and pins every content finished into b since the last flush. On failure those
     * contents are gone and every later call on b fails -EIO. */
    int (*content_batch_flush)(struct content_batch *b);
    /* Frees b, dropping (as content_abort) the contents not flushed. */
    void (*content_batch_free)(struct content_batch *b);

    /* ---- content readers ---- */

    /* A reader of content `id` in *ret, positioned at 0; the all-zero id opens as an empty
     * content. The caller keeps the content referenced while reading (a file row under the
     * sandbox read lock, or its pin): content collected meanwhile reads as -EIO, never as other
     * bytes. No transaction or lock is held between calls. -ENOENT when no such content. */
    int (*content_open)(struct store *st, const uint8_t id[CONTENT_ID_LEN],
                        struct content_reader **ret);
    /* Reads up to cap bytes at the position into buf and advances; *ret_got == 0 only at the
     * end (or when cap is 0). -EIO when the content is no longer stored. */
    int (*content_read)(struct content_reader *r, void *buf, size_t cap, size_t *ret_got);
    /* Moves the position to offset, 0 <= offset <= size (-EINVAL otherwise). */
    int (*content_seek)(struct content_reader *r, int64_t offset);
    /* Frees the reader. */
    void (*content_close)(struct content_reader *r);

    /* ---- commits and collection ---- */

    /* Applies the change set (changeset.h: its changes in order) to sandbox `sandbox_id` in one
     * transaction: file rows, size and count accounting, cwd (cs->new_cwd), lastUsedAt, version
     * + 1, a commit log row (cs->kind, cs->info_json, the paths changed); then drops one pin of
     * each distinct content the change set puts. cs NULL: an empty change set; opts NULL:
     * expect_version -1, no quota, now. An empty change set still bumps the version and logs
     * the commit. *ret (may be NULL) gets the version, size and log id after the commit, and
     * whether it left contents to collect (the commit itself collects nothing). The
     * caller keeps ownership of cs. On any failure nothing changes (pins included): -ESTALE
     * (expect_version given and the sandbox moved on), -ERR_QUOTA (the sandbox would grow past
     * quota_bytes), -ENOENT (the sandbox is gone, or a parent is missing and create_parents is
     * off), -ENOTDIR (a parent is not a directory), -EISDIR (a non-directory put at "/", or onto
     * a directory with keep_dirs), -EINVAL (a path that is not absolute or ends in '/' (paths
     * are normalised by the caller), an unknown kind or op, a symlink without target, a file
     * whose size does not match its content), -EIO (a file's content is not stored). */
    int (*commit)(struct store *st, const char *sandbox_id, const struct changeset *cs,
                  const struct commit_opts *opts, struct commit_result *ret);
    /* Removes the contents no file references and no writer pins (pins past their hour first
     * expire), then the chunks no content uses; *ret (may be NULL) gets the counts. Collection
     * proceeds in small transactions so that commits are not held up. The store runs it on its
     * own only at open, after sandbox_delete and after discard: the caller collects after a
     * commit whose result says `unreferenced`. */
    int (*gc)(struct store *st, struct gc_stats *ret);
    /* Optional (NULL: does nothing). The change set will never be committed (its commit
     * failed): drops the pins its contents got when they were finished and removes at once
     * every content (and chunk) of it that nothing else references. */
    int (*discard)(struct store *st, const struct changeset *cs);

    /* ---- the commit log ---- */

    /* Calls cb, in commit order and within a commit in change order, for each change the
     * commits of sandbox `sandbox_id` with since_version < version <= to_version made. Fails
     * -ERANGE (nothing is called) when the log does not hold every one of those commits, or
     * when they made more than max_changes changes: the caller then reads the tree whole.
     * -ENOENT when the sandbox does not exist. A non-zero return of cb stops the walk and is
     * returned. The wrapper has checked 0 <= since_version <= to_version. */
    int (*changes_since)(struct store *st, const char *sandbox_id, int64_t since_version,
                         int64_t to_version, size_t max_changes, store_change_cb cb,
                         void *userdata);

    /* ---- history (see the top of this file) ----
     * A version is readable when it is the sandbox's current version, or a version made by a
     * commit (>= 1) that is not pruned: at or after the sandbox's history floor, or named by a
     * snapshot. Every member below fails -ERR_VERSION_NOT_FOUND (with a message) for a version
     * that is not readable and -ENOENT when the sandbox does not exist (no owner check: the
     * caller has opened the sandbox). A caller reading a version other than the current one
     * holds the sandbox's read lock (sandbox/lock.h), which keeps commits, and so pruning, out. */

    /* stat at `version` (see stat). */
    int (*stat_at)(struct store *st, const char *sandbox_id, int64_t version, const char *path,
                   struct file_meta *ret);
    /* list at `version` (see list). */
    int (*list_at)(struct store *st, const char *sandbox_id, int64_t version, const char *prefix,
                   int max_depth, store_file_cb cb, void *userdata);
    /* Calls cb for the retained commits of the sandbox with version < before (INT64_MAX: all),
     * newest first, at most limit (> 0) of them. A non-zero return of cb stops the walk and
     * is returned. */
    int (*commits_list)(struct store *st, const char *sandbox_id, int64_t before, int64_t limit,
                        store_commit_cb cb, void *userdata);
    /* The retained commit that made `version` into *ret (commit_rec_release). */
    int (*commit_get)(struct store *st, const char *sandbox_id, int64_t version,
                      struct commit_rec *ret);
    /* Calls cb, in path order, for each path whose row the commit that made `version` added,
     * replaced or removed (a path it put and removed again is not one, nor a directory whose
     * mtime alone changed). The rows the commit
     * removed are known only while version - 1 is retained: for a snapshot's version below the
     * history floor, deletions are not reported and replaced rows read as added. */
    int (*commit_paths)(struct store *st, const char *sandbox_id, int64_t version,
                        store_path_change_cb cb, void *userdata);

    /* Creates sandbox `rec` (as sandbox_create: id, owner, name, env, flags and network policy
     * from rec; the owner limit and quota of opts) whose first version (1, kind "fork",
     * info_json as given, cwd the source's at `version`) is the tree of sandbox `source_id` at
     * `version`, in one transaction. The rows are copied; content is shared, not copied; the
     * source's exec journal, egress log and snapshots are not. -ENOENT (no source),
     * -ERR_VERSION_NOT_FOUND, -EEXIST, -ERR_SANDBOX_LIMIT, -ERR_QUOTA. */
    int (*sandbox_fork)(struct store *st, const char *source_id, int64_t version,
                        const struct sandbox_rec *rec, const char *info_json,
                        const struct commit_opts *opts);

    /* Names `version` of the sandbox `name` (any string; the caller checks its form), created
     * at now_ms. -EEXIST (the sandbox has a snapshot of that name), -E2BIG (it has max (> 0)
     * snapshots already), -ERR_VERSION_NOT_FOUND. */
    int (*snapshot_create)(struct store *st, const char *sandbox_id, const char *name,
                           int64_t version, int64_t now_ms, int64_t max);
    /* The snapshot `name` into *ret (snapshot_rec_release). -ENOENT: no such snapshot (or
     * sandbox). */
    int (*snapshot_get)(struct store *st, const char *sandbox_id, const char *name,
                        struct snapshot_rec *ret);
    /* Calls cb for each snapshot of the sandbox, newest version first. */
    int (*snapshot_list)(struct store *st, const char *sandbox_id, store_snapshot_cb cb,
                         void *userdata);
    /* Deletes snapshot `name`; its version becomes prunable (it is pruned by a later commit).
     * -ENOENT: no such snapshot (or sandbox). */
    int (*snapshot_delete)(struct store *st, const char *sandbox_id, const char *name);

    /* ---- the exec journal (see the top of this file) ----
     * Every member fails -ENOENT when the sandbox does not exist (no owner check: the caller
     * has opened the sandbox). */

    /* Adds `rec` (exec_id, kind and script required: -EINVAL; the output as given, NULL data
     * with length 0 for none) to the journal of sandbox `sandbox_id`, then drops the records
     * opts's retention leaves out, in one transaction. -EEXIST: the sandbox has a record with
     * that exec_id. */
    int (*exec_add)(struct store *st, const char *sandbox_id, const struct exec_rec *rec,
                    const struct journal_opts *opts);
    /* Calls cb for the sandbox's records added before the record `before` (NULL: all), newest
     * first, at most limit (> 0) of them, without their output (stdout_data, stderr_data NULL).
     * -ERR_EXEC_NOT_FOUND: no record `before`. A non-zero return of cb stops the walk and is
     * returned. */
    int (*exec_list)(struct store *st, const char *sandbox_id, const char *before, int64_t limit,
                     store_exec_cb cb, void *userdata);
    /* The record `exec_id` with its output into *ret (exec_rec_release). -ERR_EXEC_NOT_FOUND. */
    int (*exec_get)(struct store *st, const char *sandbox_id, const char *exec_id,
                    struct exec_rec *ret);

    /* ---- the egress log (see the top of this file) ---- */

    /* Adds the n records v[0..n) (host and rule required: -EINVAL, nothing added) to the egress
     * log of sandbox `sandbox_id`, then drops the records o's retention leaves out of that
     * sandbox's log (o may be NULL: none), in one transaction. A sandbox that no longer exists
     * (deleted while its connections were logged): nothing is added, 0. n == 0: nothing is
     * done. */
    int (*egress_add)(struct store *st, const char *sandbox_id, const struct egress_rec *v,
                      size_t n, const struct egress_opts *o);
    /* Calls cb for the sandbox's records newest first (by at_ms, then in the order they were
     * added), at most limit (> 0) of them. -ENOENT when the sandbox does not exist (no owner
     * check). A non-zero return of cb stops the walk and is returned. */
    int (*egress_list)(struct store *st, const char *sandbox_id, int64_t limit, store_egress_cb cb,
                       void *userdata);

    /* ---- idempotency keys (see the top of this file) ---- */

    /* In one transaction: checks that sandbox `sandbox_id` exists and is owned by (tenant, sub)
     * (-ENOENT otherwise), forgets its records past opts's ttl (and up to sweep_max of any
     * other sandbox's), then looks `key` up. Absent (or
     * pending past pending_ttl_ms): records it as pending with `hash` and a new random claim,
     * dropping the sandbox's oldest records beyond max_keys, and *ret gets IDEM_NEW and the
     * claim. Present: *ret gets the record as it is (its hash may differ from `hash`: the
     * caller compares). */
    int (*idem_begin)(struct store *st, const char *sandbox_id, const char *tenant, const char *sub,
                      const char *key, const uint8_t hash[32], const struct idem_opts *opts,
                      struct idem_rec *ret);
    /* Ends the pending record `key` of `claim` as `state` (IDEM_DONE, IDEM_TOO_LARGE or
     * IDEM_IN_DOUBT) with its answer: status, content_type (may be NULL) and body[0..len)
     * (IDEM_TOO_LARGE, IDEM_IN_DOUBT: the answer not kept, body then a note kept in its place,
     * the exec's id). max_stored_bytes > 0: the bodies of the sandbox's other finished records
     * are kept within max_stored_bytes - len all together, the oldest dropped first.
     * -ENOENT: no pending record of this claim (it was dropped, or taken as abandoned and the
     * key claimed again, meanwhile: nothing is written). */
    int (*idem_finish)(struct store *st, const char *sandbox_id, const char *key,
                       const uint8_t claim[IDEM_CLAIM_LEN], enum idem_state state, int status,
                       const char *content_type, const void *body, size_t len,
                       int64_t max_stored_bytes);
    /* Forgets the pending record `key` of `claim` (its request failed in a way a retry may
     * not: the retry runs afresh). 0 also when there is none. */
    int (*idem_abort)(struct store *st, const char *sandbox_id, const char *key,
                      const uint8_t claim[IDEM_CLAIM_LEN]);
    /* Renews the claim: the pending record `key` of `claim` counts as begun at now_ms (its
     * pending_ttl_ms starts again). -ENOENT when the claim is lost (as for idem_finish). */
    int (*idem_renew)(struct store *st, const char *sandbox_id, const char *key,
                      const uint8_t claim[IDEM_CLAIM_LEN], int64_t now_ms);

    /* ---- cross-server locks: optional, both or none (NULL: the engine serves one server,
     * whose own locks (sandbox/lock.h) suffice) ---- */

    /* Takes the lock of sandbox `sandbox_id` shared by every server on the database, exclusive
     * or shared, waiting at most timeout_ms (>= 0). A lock is held by one server's session with
     * the database and ends with it: when the server dies or loses the database, its locks are
     * released within the bound the engine documents. -ERR_LOCK_TIMEOUT when the wait timed
     * out; -ERR_BUSY when every lock connection of this server stayed in use;
     * -ERR_STORE_UNAVAILABLE. */
    int (*lock_acquire)(struct store *st, const char *sandbox_id, bool exclusive,
                        int64_t timeout_ms, struct store_lock **ret);
    /* Releases a lock of lock_acquire and frees it. Never fails: a lock that cannot be
     * released otherwise is released by ending its session. */
    void (*lock_release)(struct store *st, struct store_lock *l);
};

/* Every engine's handle starts with this. */
struct store {
    const struct store_ops *ops;
};

/* 0 when `ops` states STORE_OPS_VERSION and fills every member that is not optional (the
 * content batch members: all four or none); -EINVAL otherwise, with a message naming the
 * engine. Every engine's open calls it before handing out a store. */
__attribute__((warn_unused_result)) int store_ops_check(const struct store_ops *ops);

/* Opens (creating if needed) the SQLite store at `path` (and `path`.chunks, both mode 0600),
 * applying schema migrations and releasing the pins and pending chunks a previous run left. */
__attribute__((warn_unused_result)) int store_open_sqlite(const char *path, struct store **ret);

/* Connection pools of a PostgreSQL store: at most pool_size connections (>= 1) for statements
 * and lock_connections for locks; a call that finds them all in use waits up to pool_wait_ms,
 * then fails -ERR_BUSY. */
struct store_pg_opts {
    int pool_size;
    int64_t pool_wait_ms;
    /* Sessions that hold sandbox locks (lock_acquire), at most: one per sandbox this server
     * holds a lock of, or waits for (<= 0: 1). */
    int lock_connections;
};

/* 0 when url is a postgres:// or postgresql:// URI libpq can parse; -EINVAL with a message
 * that does not repeat the URL (it may hold a password) otherwise. */
__attribute__((warn_unused_result)) int store_pg_url_check(const char *url);
/* Opens the PostgreSQL store at `url` (a libpq URI): connects, applies schema migrations (under
 * a lock: servers starting together migrate once) and runs a first collection. Fails
 * -ERR_STORE_UNAVAILABLE, with libpq's reason, when the database cannot be reached. Several
 * stores (servers) may share one database. */
__attribute__((warn_unused_result)) int
store_open_pg(const char *url, const struct store_pg_opts *opts, struct store **ret);
/* Applies the schema migrations to the PostgreSQL database at `url`, and nothing else. */
__attribute__((warn_unused_result)) int store_migrate_pg(const char *url);

/* Which engine and where, from the server's configuration (SQLFS_DATABASE and friends). */
struct store_config {
    const char *database; /* NULL, "" or "sqlite:": SQLite in data_dir; postgres:// or
                           * postgresql://: PostgreSQL at that libpq URI */
    const char *data_dir; /* SQLite: the database is data_dir/sqlfs.db */
    struct store_pg_opts pg;
};

/* 0 when `database` names an engine (see struct store_config) and, for PostgreSQL, is a URI
 * libpq parses; -EINVAL with a message (never repeating the URL) otherwise. */
__attribute__((warn_unused_result)) int store_database_check(const char *database);
/* The engine's name for `database` ("sqlite", "postgres"); NULL when it names none. */
const char *store_database_engine(const char *database);
/* Opens the store cfg names (store_open_sqlite, store_open_pg). */
__attribute__((warn_unused_result)) int store_open(const struct store_config *cfg,
                                                   struct store **ret);
/* Brings the schema of the store cfg names to this server's version, and closes it. */
__attribute__((warn_unused_result)) int store_migrate(const struct store_config *cfg);

/* The wrappers: each calls the member of the same name (see struct store_ops); they add only
 * what their comments say. */

/* NULL-safe. */
static inline void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

static inline int store_check(struct store *st)
{
    return st->ops->check(st);
}

static inline int64_t store_memory_bytes(struct store *st)
{
    return st->ops->memory_bytes ? st->ops->memory_bytes(st) : -1;
}

__attribute__((warn_unused_result)) static inline int store_sandbox_count(struct store *st,
                                                                          int64_t *ret)
{
    return st->ops->sandbox_count ? st->ops->sandbox_count(st, ret) : -EOPNOTSUPP;
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                     const struct changeset *initial, const struct commit_opts *opts)
{
    return st->ops->sandbox_create(st, rec, initial, opts);
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                  struct sandbox_rec *ret)
{
    return st->ops->sandbox_get(st, id, tenant, sub, ret);
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_list(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                   void *userdata)
{
    return st->ops->sandbox_list(st, tenant, sub, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub)
{
    return st->ops->sandbox_delete(st, id, tenant, sub);
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_touch(struct store *st, const char *id, int64_t now_ms)
{
    return st->ops->sandbox_touch(st, id, now_ms);
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_set_network(struct store *st, const char *id, const char *tenant, const char *sub,
                          bool network, const char *policy_json)
{
    return st->ops->sandbox_set_network(st, id, tenant, sub, network, policy_json);
}

__attribute__((warn_unused_result)) static inline int
store_stat(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret)
{
    return st->ops->stat(st, sandbox_id, path, ret);
}

__attribute__((warn_unused_result)) static inline int store_list(struct store *st,
                                                                 const char *sandbox_id,
                                                                 const char *prefix, int max_depth,
                                                                 store_file_cb cb, void *userdata)
{
    return st->ops->list(st, sandbox_id, prefix, max_depth, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_has_children(struct store *st, const char *sandbox_id, const char *path)
{
    return st->ops->has_children(st, sandbox_id, path);
}

/* Content writers: begin, write any number of times, then finish or abort (abort is
 * NULL-safe). */
__attribute__((warn_unused_result)) static inline int
store_content_begin(struct store *st, struct content_writer **ret)
{
    return st->ops->content_begin(st, ret);
}
__attribute__((warn_unused_result)) static inline int
store_content_write(struct store *st, struct content_writer *w, const void *data, size_t len)
{
    return st->ops->content_write(w, data, len);
}
__attribute__((warn_unused_result)) static inline int
store_content_finish(struct store *st, struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN],
                     int64_t *ret_size)
{
    return st->ops->content_finish(w, ret_id, ret_size);
}
static inline void store_content_abort(struct store *st, struct content_writer *w)
{
    if (w)
        st->ops->content_abort(w);
}

/* Content batches, for many small contents in a row (archive ingest): store_content_finish_in()
 * is store_content_finish() except that the content is stored and pinned only by a later flush
 * (the batch flushes itself when it holds a few MiB, on a thread of its own while the caller goes
 * on; a failure there is returned by the next call), with a few transactions for many contents.
 * Until store_content_batch_flush() has returned 0, a content finished into the batch may not be
 * committed; store_content_batch_free() discards what was not flushed. After a failed flush the
 * batch's unflushed contents are gone and every later call fails. Memory: the batch holds at most
 * a few MiB. A batch is used by one thread at a time. Engines without batches give a NULL batch,
 * with which finish_in is a plain finish and flush does nothing; free is NULL-safe. */
__attribute__((warn_unused_result)) static inline int
store_content_batch_new(struct store *st, struct content_batch **ret)
{
    *ret = NULL;
    return st->ops->content_batch_new ? st->ops->content_batch_new(st, ret) : 0;
}
__attribute__((warn_unused_result)) static inline int
store_content_finish_in(struct store *st, struct content_batch *b, struct content_writer *w,
                        uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    return b ? st->ops->content_finish_in(b, w, ret_id, ret_size)
             : st->ops->content_finish(w, ret_id, ret_size);
}
__attribute__((warn_unused_result)) static inline int
store_content_batch_flush(struct store *st, struct content_batch *b)
{
    return b ? st->ops->content_batch_flush(b) : 0;
}
static inline void store_content_batch_free(struct store *st, struct content_batch *b)
{
    if (b)
        st->ops->content_batch_free(b);
}

/* Content readers: open, read or seek, close (NULL-safe). */
__attribute__((warn_unused_result)) static inline int
store_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN], struct content_reader **ret)
{
    return st->ops->content_open(st, id, ret);
}
__attribute__((warn_unused_result)) static inline int store_content_read(struct store *st,
                                                                         struct content_reader *r,
                                                                         void *buf, size_t cap,
                                                                         size_t *ret_got)
{
    return st->ops->content_read(r, buf, cap, ret_got);
}
__attribute__((warn_unused_result)) static inline int
store_content_seek(struct store *st, struct content_reader *r, int64_t offset)
{
    return st->ops->content_seek(r, offset);
}
static inline void store_content_close(struct store *st, struct content_reader *r)
{
    if (r)
        st->ops->content_close(r);
}

__attribute__((warn_unused_result)) static inline int
store_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
             const struct commit_opts *opts, struct commit_result *ret)
{
    return st->ops->commit(st, sandbox_id, cs, opts, ret);
}

__attribute__((warn_unused_result)) static inline int store_gc(struct store *st,
                                                               struct gc_stats *ret)
{
    return st->ops->gc(st, ret);
}

__attribute__((warn_unused_result)) static inline int store_discard(struct store *st,
                                                                    const struct changeset *cs)
{
    return st->ops->discard ? st->ops->discard(st, cs) : 0;
}

__attribute__((warn_unused_result)) static inline int
store_changes_since(struct store *st, const char *sandbox_id, int64_t since_version,
                    int64_t to_version, size_t max_changes, store_change_cb cb, void *userdata)
{
    if (since_version < 0 || to_version < since_version)
        return -EINVAL;
    return st->ops->changes_since(st, sandbox_id, since_version, to_version, max_changes, cb,
                                  userdata);
}

__attribute__((warn_unused_result)) static inline int
store_stat_at(struct store *st, const char *sandbox_id, int64_t version, const char *path,
              struct file_meta *ret)
{
    return st->ops->stat_at(st, sandbox_id, version, path, ret);
}

__attribute__((warn_unused_result)) static inline int
store_list_at(struct store *st, const char *sandbox_id, int64_t version, const char *prefix,
              int max_depth, store_file_cb cb, void *userdata)
{
    return st->ops->list_at(st, sandbox_id, version, prefix, max_depth, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_commits_list(struct store *st, const char *sandbox_id, int64_t before, int64_t limit,
                   store_commit_cb cb, void *userdata)
{
    if (limit <= 0)
        return -EINVAL;
    return st->ops->commits_list(st, sandbox_id, before, limit, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_commit_get(struct store *st, const char *sandbox_id, int64_t version, struct commit_rec *ret)
{
    return st->ops->commit_get(st, sandbox_id, version, ret);
}

__attribute__((warn_unused_result)) static inline int
store_commit_paths(struct store *st, const char *sandbox_id, int64_t version,
                   store_path_change_cb cb, void *userdata)
{
    return st->ops->commit_paths(st, sandbox_id, version, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_sandbox_fork(struct store *st, const char *source_id, int64_t version,
                   const struct sandbox_rec *rec, const char *info_json,
                   const struct commit_opts *opts)
{
    return st->ops->sandbox_fork(st, source_id, version, rec, info_json, opts);
}

__attribute__((warn_unused_result)) static inline int
store_snapshot_create(struct store *st, const char *sandbox_id, const char *name, int64_t version,
                      int64_t now_ms, int64_t max)
{
    return st->ops->snapshot_create(st, sandbox_id, name, version, now_ms, max);
}

__attribute__((warn_unused_result)) static inline int store_snapshot_get(struct store *st,
                                                                         const char *sandbox_id,
                                                                         const char *name,
                                                                         struct snapshot_rec *ret)
{
    return st->ops->snapshot_get(st, sandbox_id, name, ret);
}

__attribute__((warn_unused_result)) static inline int
store_snapshot_list(struct store *st, const char *sandbox_id, store_snapshot_cb cb, void *userdata)
{
    return st->ops->snapshot_list(st, sandbox_id, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_snapshot_delete(struct store *st, const char *sandbox_id, const char *name)
{
    return st->ops->snapshot_delete(st, sandbox_id, name);
}

/* The exec journal. */
__attribute__((warn_unused_result)) static inline int
store_exec_add(struct store *st, const char *sandbox_id, const struct exec_rec *rec,
               const struct journal_opts *opts)
{
    return st->ops->exec_add(st, sandbox_id, rec, opts);
}

__attribute__((warn_unused_result)) static inline int
store_exec_list(struct store *st, const char *sandbox_id, const char *before, int64_t limit,
                store_exec_cb cb, void *userdata)
{
    if (limit <= 0)
        return -EINVAL;
    return st->ops->exec_list(st, sandbox_id, before, limit, cb, userdata);
}

__attribute__((warn_unused_result)) static inline int
store_exec_get(struct store *st, const char *sandbox_id, const char *exec_id, struct exec_rec *ret)
{
    return st->ops->exec_get(st, sandbox_id, exec_id, ret);
}

/* The egress log. */
__attribute__((warn_unused_result)) static inline int
store_egress_add(struct store *st, const char *sandbox_id, const struct egress_rec *v, size_t n,
                 const struct egress_opts *o)
{
    return st->ops->egress_add(st, sandbox_id, v, n, o);
}

__attribute__((warn_unused_result)) static inline int
store_egress_list(struct store *st, const char *sandbox_id, int64_t limit, store_egress_cb cb,
                  void *userdata)
{
    if (limit <= 0)
        return -EINVAL;
    return st->ops->egress_list(st, sandbox_id, limit, cb, userdata);
}

/* Idempotency keys. */
__attribute__((warn_unused_result)) static inline int
store_idem_begin(struct store *st, const char *sandbox_id, const char *tenant, const char *sub,
                 const char *key, const uint8_t hash[32], const struct idem_opts *opts,
                 struct idem_rec *ret)
{
    return st->ops->idem_begin(st, sandbox_id, tenant, sub, key, hash, opts, ret);
}

__attribute__((warn_unused_result)) static inline int
store_idem_finish(struct store *st, const char *sandbox_id, const char *key,
                  const uint8_t claim[IDEM_CLAIM_LEN], enum idem_state state, int status,
                  const char *content_type, const void *body, size_t len, int64_t max_stored_bytes)
{
    return st->ops->idem_finish(st, sandbox_id, key, claim, state, status, content_type, body, len,
                                max_stored_bytes);
}

__attribute__((warn_unused_result)) static inline int
store_idem_abort(struct store *st, const char *sandbox_id, const char *key,
                 const uint8_t claim[IDEM_CLAIM_LEN])
{
    return st->ops->idem_abort(st, sandbox_id, key, claim);
}

__attribute__((warn_unused_result)) static inline int
store_idem_renew(struct store *st, const char *sandbox_id, const char *key,
                 const uint8_t claim[IDEM_CLAIM_LEN], int64_t now_ms)
{
    return st->ops->idem_renew(st, sandbox_id, key, claim, now_ms);
}

/* True when the engine has cross-server locks (store_lock_acquire does something). */
static inline bool store_has_locks(const struct store *st)
{
    return st->ops->lock_acquire != NULL;
}

/* *ret NULL (and 0) when the engine has no cross-server locks. */
__attribute__((warn_unused_result)) static inline int
store_lock_acquire(struct store *st, const char *sandbox_id, bool exclusive, int64_t timeout_ms,
                   struct store_lock **ret)
{
    if (!st->ops->lock_acquire) {
        *ret = NULL;
        return 0;
    }
    return st->ops->lock_acquire(st, sandbox_id, exclusive, timeout_ms, ret);
}

/* NULL-safe. */
static inline void store_lock_release(struct store *st, struct store_lock *l)
{
    if (l)
        st->ops->lock_release(st, l);
}

#endif
