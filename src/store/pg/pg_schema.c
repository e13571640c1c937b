/*
 * pg_schema.c — the SQL of the PostgreSQL engine: the schema's migrations, the migration lock,
 * and the text of every statement the engine prepares (enum pg_stmt in pg_int.h). The tables
 * and the locking rules the statements follow are described in pg_int.h.
 */
#include "store/pg/pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "util/err.h"

/* Leases are measured on the database's clock, the one all replicas share. */
#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
#define LEASE_MS "3600000"
_Static_assert(STORE_PIN_LEASE_MS == 3600000, "LEASE_MS is STORE_PIN_LEASE_MS");

/* The rows (i, h) of a bytea parameter holding content ids or chunk hashes back to back (32
 * bytes each): one parameter carries any number of them. */
#define SPLIT32(P)                                                                                 \
    "(SELECT g AS i, substring(" P " FROM g * 32 + 1 FOR 32) AS h "                                \
    "FROM generate_series(0, length(" P ") / 32 - 1) AS g)"
#define IDS_1 "(SELECT h FROM " SPLIT32("$1::bytea") " AS ids)"

/* A GC candidate insert that locks an existing candidate row (pg_int.h: GC's batch, which locks
 * its candidates, then waits for this transaction instead of losing the candidate). */
#define CAND_UPSERT "ON CONFLICT (content_id) DO UPDATE SET content_id = excluded.content_id"

/* Migration i brings the schema to version i + 1. Never edit a released entry: append. */
static const char *const migrations[] = {
    "CREATE TABLE sandboxes ("
    "  sid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  id text NOT NULL UNIQUE,"
    "  tenant text NOT NULL,"
    "  sub text NOT NULL,"
    "  name text,"
    "  env text NOT NULL,"
    "  python boolean NOT NULL,"
    "  javascript boolean NOT NULL,"
    "  network boolean NOT NULL,"
    "  cwd bytea NOT NULL,"
    "  created_ms bigint NOT NULL,"
    "  last_used_ms bigint NOT NULL,"
    "  version bigint NOT NULL,"
    "  size_bytes bigint NOT NULL,"
    "  file_count bigint NOT NULL);"
    "CREATE INDEX sandboxes_owner ON sandboxes (tenant, sub, created_ms DESC, sid DESC);"
    "CREATE INDEX sandboxes_created ON sandboxes (created_ms DESC, sid DESC);"
    "CREATE TABLE files ("
    "  sid bigint NOT NULL,"
    "  path bytea NOT NULL,"
    "  kind smallint NOT NULL,"
    "  mode integer NOT NULL,"
    "  size bigint NOT NULL,"
    "  mtime_ns bigint NOT NULL,"
    "  content bytea,"
    "  target bytea,"
    "  PRIMARY KEY (sid, path));"
    "CREATE INDEX files_content ON files (content) WHERE content IS NOT NULL;"
    "CREATE TABLE chunks ("
    "  hash bytea PRIMARY KEY,"
    "  size integer NOT NULL,"
    "  data bytea NOT NULL);"
    /* chunks hold compressed data as often as not: no compression attempt, stored out of line
     * so that reading a chunk's size never touches its bytes */
    "ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;"
    "CREATE TABLE contents ("
    "  id bytea PRIMARY KEY,"
    "  size bigint NOT NULL,"
    "  nchunks integer NOT NULL,"
    "  data bytea);"
    "CREATE TABLE content_chunks ("
    "  content_id bytea NOT NULL,"
    "  seq integer NOT NULL,"
    "  chunk bytea NOT NULL,"
    "  PRIMARY KEY (content_id, seq));"
    "CREATE INDEX content_chunks_chunk ON content_chunks (chunk);"
    "CREATE TABLE content_pins ("
    "  content_id bytea NOT NULL,"
    "  owner text NOT NULL,"
    "  refs integer NOT NULL,"
    "  pinned_ms bigint NOT NULL,"
    "  PRIMARY KEY (content_id, owner));"
    "CREATE INDEX content_pins_owner ON content_pins (owner);"
    "CREATE INDEX content_pins_time ON content_pins (pinned_ms);"
    "CREATE TABLE writers ("
    "  id bigint PRIMARY KEY,"
    "  owner text NOT NULL,"
    "  lease_ms bigint NOT NULL);"
    "CREATE INDEX writers_owner ON writers (owner);"
    "CREATE INDEX writers_lease ON writers (lease_ms);"
    "CREATE TABLE pending_chunks ("
    "  writer bigint NOT NULL,"
    "  chunk bytea NOT NULL,"
    "  PRIMARY KEY (writer, chunk));"
    "CREATE INDEX pending_chunks_chunk ON pending_chunks (chunk);"
    "CREATE TABLE gc_candidates (content_id bytea PRIMARY KEY);"
    "CREATE TABLE gc_chunk_candidates (chunk bytea PRIMARY KEY);"
    "CREATE TABLE commits ("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  sid bigint NOT NULL,"
    "  version bigint NOT NULL,"
    "  kind text,"
    "  info text,"
    "  created_ms bigint NOT NULL,"
    "  changes integer NOT NULL,"
    "  bytes_delta bigint NOT NULL);"
    "CREATE INDEX commits_sid ON commits (sid, version);"
    "CREATE TABLE commit_changes ("
    "  commit_id bigint NOT NULL,"
    "  seq integer NOT NULL,"
    "  op smallint NOT NULL,"
    "  path bytea NOT NULL,"
    "  PRIMARY KEY (commit_id, seq));",
    /* inline contents as chunks: no compression attempt (a small file's bytes are stored as
     * they are, like a chunk's; compressing them cost more than writing them) */
    "ALTER TABLE contents ALTER COLUMN data SET STORAGE EXTERNAL;",
    /* History (store.h): a files row knows the version that wrote it; a row a commit replaces
     * or deletes moves to file_history with the versions it was live for; commits record their
     * counts and the cwd after them; snapshots name versions kept from pruning. Older
     * versions of existing sandboxes have no history rows: their floor is their version. */
    "ALTER TABLE files ADD COLUMN since bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX files_since ON files (sid, since);"
    "CREATE TABLE file_history ("
    "  sid bigint NOT NULL,"
    "  path bytea NOT NULL,"
    "  vfrom bigint NOT NULL,"
    "  vto bigint NOT NULL,"
    "  kind smallint NOT NULL,"
    "  mode integer NOT NULL,"
    "  size bigint NOT NULL,"
    "  mtime_ns bigint NOT NULL,"
    "  content bytea,"
    "  target bytea,"
    "  PRIMARY KEY (sid, path, vto));"
    "CREATE INDEX file_history_vto ON file_history (sid, vto);"
    "CREATE INDEX file_history_vfrom ON file_history (sid, vfrom);"
    "CREATE INDEX file_history_content ON file_history (content) WHERE content IS NOT NULL;"
    "ALTER TABLE commits ADD COLUMN cwd bytea,"
    "  ADD COLUMN added bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN modified bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN deleted bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN bytes_added bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE sandboxes ADD COLUMN history_floor bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN history_bytes bigint NOT NULL DEFAULT 0;"
    "UPDATE sandboxes SET history_floor = version;"
    "CREATE TABLE snapshots ("
    "  sid bigint NOT NULL,"
    "  name text NOT NULL,"
    "  version bigint NOT NULL,"
    "  created_ms bigint NOT NULL,"
    "  PRIMARY KEY (sid, name));"
    "CREATE INDEX snapshots_version ON snapshots (sid, version);"
    /* Retirement: the rows an UPDATE or DELETE of files changed (every statement that changes
     * a row, whoever runs it) are kept as live for [since, version + 1), version being the
     * sandbox's before the commit, which moves it only after all its row changes. A row
     * written by the running commit (since = version + 1) spans no version: not kept. A
     * sandbox whose row is gone (sandbox_delete removes it first) keeps nothing. Statement
     * triggers with transition tables: one INSERT per statement, however many rows a subtree
     * delete or a bulk put changed. */
    "CREATE FUNCTION sqlfs_files_retire() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN "
    "  INSERT INTO file_history (sid, path, vfrom, vto, kind, mode, size, mtime_ns, content, "
    "    target) "
    "  SELECT o.sid, o.path, o.since, s.version + 1, o.kind, o.mode, o.size, o.mtime_ns, "
    "    o.content, o.target "
    "  FROM old_rows o JOIN sandboxes s ON s.sid = o.sid WHERE o.since <= s.version; "
    "  RETURN NULL; "
    "END $$;"
    "CREATE TRIGGER files_retire_update AFTER UPDATE ON files "
    "  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sqlfs_files_retire();"
    "CREATE TRIGGER files_retire_delete AFTER DELETE ON files "
    "  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sqlfs_files_retire();",
    /* The exec journal and idempotency keys (pg_journal.c). */
    "CREATE TABLE execs ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  sid bigint NOT NULL,"
    "  exec_id text NOT NULL,"
    "  kind text NOT NULL,"
    "  script text NOT NULL,"
    "  started_ms bigint NOT NULL,"
    "  duration_ms bigint NOT NULL,"
    "  exit_code bigint NOT NULL,"
    "  timed_out boolean NOT NULL,"
    "  version bigint NOT NULL,"
    "  stdout_bytes bigint NOT NULL,"
    "  stderr_bytes bigint NOT NULL,"
    "  stdout bytea,"
    "  stderr bytea,"
    "  stdout_truncated boolean NOT NULL,"
    "  stderr_truncated boolean NOT NULL,"
    "  UNIQUE (sid, exec_id));"
    "CREATE INDEX execs_sid ON execs (sid, seq);"
    "CREATE INDEX execs_age ON execs (sid, started_ms);"
    "CREATE TABLE idempotency ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  sid bigint NOT NULL,"
    "  key text NOT NULL,"
    "  hash bytea NOT NULL,"
    "  created_ms bigint NOT NULL,"
    "  state smallint NOT NULL,"
    "  status integer,"
    "  ctype text,"
    "  body bytea,"
    "  UNIQUE (sid, key));"
    "CREATE INDEX idempotency_sid ON idempotency (sid, seq);"
    "CREATE INDEX idempotency_age ON idempotency (sid, created_ms);",
    /* Idempotency: the claim of a pending key (pg_journal.c), and the expiry of any sandbox's
     * keys in created time order. */
    ("ALTER TABLE idempotency ADD COLUMN claim bytea;"
     "CREATE INDEX idempotency_expiry ON idempotency (created_ms);"),
    /* Network egress: a sandbox's own policy (NULL for the sandboxes there are: none), and the
     * egress log (pg_journal.c), read and pruned in (at_ms, seq) order. */
    ("ALTER TABLE sandboxes ADD COLUMN network_policy text;"
     "CREATE TABLE egress ("
     "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
     "  sid bigint NOT NULL,"
     "  at_ms bigint NOT NULL,"
     "  exec_id text,"
     "  host text NOT NULL,"
     "  port integer NOT NULL,"
     "  address text,"
     "  allowed boolean NOT NULL,"
     "  rule text NOT NULL,"
     "  error text,"
     "  bytes_up bigint NOT NULL,"
     "  bytes_down bigint NOT NULL,"
     "  duration_ms bigint NOT NULL);"
     "CREATE INDEX egress_order ON egress (sid, at_ms, seq);"),
};

/* Column lists shared by several statements. */
#define SB_COLS                                                                                    \
    "id, tenant, sub, name, env, python, javascript, network, cwd, created_ms, last_used_ms, "     \
    "version, size_bytes, file_count, sid, network_policy"
#define FILE_COLS "path, kind, mode, size, mtime_ns, content, target"
/* An upsert, so that a replaced row goes through the UPDATE trigger (history) */
#define FILE_UPSERT                                                                                \
    "ON CONFLICT (sid, path) DO UPDATE SET kind = excluded.kind, mode = excluded.mode, "           \
    "size = excluded.size, mtime_ns = excluded.mtime_ns, content = excluded.content, "             \
    "target = excluded.target, since = excluded.since"
#define SID_OF_1 "(SELECT sid FROM sandboxes WHERE id = $1)"
#define PAGE "LIMIT 1024"
/* The rows of sandbox $1 live at version $2: the files rows written at or before it and the
 * retired rows whose interval holds it (a path is in one of the two at most). Each is followed
 * by the same condition on the path, the two joined by UNION ALL. */
#define LIVE_FILES_1_2 "SELECT " FILE_COLS " FROM files WHERE sid = $1 AND since <= $2::bigint"
#define LIVE_HISTORY_1_2                                                                           \
    "SELECT " FILE_COLS " FROM file_history WHERE sid = $1 AND vfrom <= $2::bigint "               \
    "AND vto > $2::bigint"
/* A snapshot names a version in the interval of retired row h. */
#define PROTECTED_H                                                                                \
    "EXISTS (SELECT 1 FROM snapshots n WHERE n.sid = h.sid AND n.version >= h.vfrom "              \
    "AND n.version < h.vto)"
/* A snapshot of sandbox s names the version of commit c. */
#define SNAPSHOT_OF_C                                                                              \
    "EXISTS (SELECT 1 FROM snapshots n WHERE n.sid = s.sid AND n.version = c.version)"
/* Columns of a commit_rec */
#define COMMIT_COLS                                                                                \
    "c.version, c.created_ms, c.kind, c.info, c.cwd, c.added, c.modified, c.deleted, "             \
    "c.bytes_added"
_Static_assert(PG_PAGE_ROWS == 1024, "PAGE is PG_PAGE_ROWS");

/* Indexed by enum pg_stmt (pg_int.h). */
const char *const pg_stmt_sql[PS_COUNT] = {
    [PS_CHECK] = "SELECT count(*) FROM schema_migrations",
    [PS_SB_INSERT] = "INSERT INTO sandboxes (id, tenant, sub, name, env, python, javascript, "
                     "network, cwd, created_ms, last_used_ms, version, size_bytes, file_count, "
                     "network_policy) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, 0, 0, $12) "
                     "ON CONFLICT (id) DO NOTHING RETURNING sid",
    [PS_SB_GET] = "SELECT " SB_COLS " FROM sandboxes WHERE id = $1",
    [PS_SB_LIST_OWNER] = "SELECT " SB_COLS " FROM sandboxes WHERE tenant = $1 AND sub = $2 "
                         "AND (created_ms, sid) < ($3, $4) "
                         "ORDER BY created_ms DESC, sid DESC " PAGE,
    [PS_SB_LIST_ANY] = "SELECT " SB_COLS " FROM sandboxes "
                       "WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR sub = $2) "
                       "AND (created_ms, sid) < ($3, $4) "
                       "ORDER BY created_ms DESC, sid DESC " PAGE,
    [PS_SB_STATE_LOCK] = "SELECT sid, version, size_bytes, file_count, tenant, sub, history_floor "
                         "FROM sandboxes WHERE id = $1 FOR UPDATE",
    [PS_SB_TOUCH] = "UPDATE sandboxes SET last_used_ms = $2 WHERE id = $1",
    /* the owner check of sandbox_get: a NULL half matches any */
    [PS_SB_SET_NETWORK] =
        "UPDATE sandboxes SET network = $2, network_policy = $3 WHERE id = $1 "
        "AND ($4::text IS NULL OR tenant = $4) AND ($5::text IS NULL OR sub = $5)",
    [PS_SB_DELETE] = "DELETE FROM sandboxes WHERE sid = $1",
    [PS_SB_CREATED] = "SELECT created_ms FROM sandboxes WHERE id = $1",
    [PS_SB_EXISTS] = "SELECT 1 FROM sandboxes WHERE id = $1",
    [PS_OWNER_LOCK] = "SELECT pg_advisory_xact_lock($1::integer, hashtext($2 || chr(10) || $3))",
    [PS_SB_COUNT_OWNER] = "SELECT count(*) FROM (SELECT 1 FROM sandboxes "
                          "WHERE tenant = $1 AND sub = $2 LIMIT $3) AS t",
    [PS_SB_COUNT] = "SELECT count(*) FROM sandboxes",
    [PS_F_GET] = "SELECT kind, size, content, since FROM files WHERE sid = $1 AND path = $2",
    /* the rows at the paths of a bytea array, each with its index (1-based) in the array; one
     * index lookup per path (the LIMIT keeps the planner from joining with a scan of the whole
     * table, which it prefers for many paths while its statistics are those of a small table) */
    [PS_F_GET_MANY] = "SELECT k.i, f.kind, f.size, f.content, f.since "
                      "FROM unnest($2::bytea[]) WITH ORDINALITY AS k(path, i) "
                      "CROSS JOIN LATERAL (SELECT kind, size, content, since FROM files "
                      "WHERE sid = $1 AND path = k.path LIMIT 1) AS f",
    /* $9: the version the commit makes */
    [PS_F_PUT] = "INSERT INTO files (sid, " FILE_COLS
                 ", since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) " FILE_UPSERT,
    /* the same for rows given as arrays, one per column (distinct paths) */
    [PS_F_PUT_MANY] = "INSERT INTO files (sid, " FILE_COLS ", since) SELECT $1::bigint, u.*, "
                      "$9::bigint FROM unnest($2::bytea[], $3::bigint[], $4::bigint[], "
                      "$5::bigint[], $6::bigint[], $7::bytea[], $8::bytea[]) AS u " FILE_UPSERT,
    [PS_F_SETDIR] = "UPDATE files SET mode = $3, mtime_ns = $4, since = $5 "
                    "WHERE sid = $1 AND path = $2",
    [PS_F_DEL] = "DELETE FROM files WHERE sid = $1 AND path = $2",
    /* candidates: the contents of the rows the history does not keep (pg_int.h), written by
     * the running commit ($4: its version) */
    [PS_F_RANGE_DEL] =
        "WITH d AS (DELETE FROM files WHERE sid = $1 AND path >= $2 AND path < $3 "
        "RETURNING kind, size, content, since), "
        "c AS (INSERT INTO gc_candidates (content_id) SELECT DISTINCT content "
        "FROM d WHERE content IS NOT NULL AND since >= $4::bigint " CAND_UPSERT " RETURNING 1) "
        "SELECT count(*), coalesce(sum(size) FILTER (WHERE kind = 1), 0)::bigint, "
        "(SELECT count(*) FROM c) FROM d",
    [PS_F_DEL_ALL] = "WITH d AS (DELETE FROM files WHERE sid = $1 RETURNING content) "
                     "INSERT INTO gc_candidates (content_id) SELECT DISTINCT content FROM d "
                     "WHERE content IS NOT NULL " CAND_UPSERT,
    [PS_F_STAT] = "SELECT " FILE_COLS " FROM files WHERE sid = " SID_OF_1 " AND path = $2",
    [PS_F_LIST] = "SELECT " FILE_COLS " FROM files WHERE sid = " SID_OF_1
                  " AND path >= $2 AND path < $3 ORDER BY path " PAGE,
    [PS_F_HAS_CHILD] =
        "SELECT 1 FROM files WHERE sid = " SID_OF_1 " AND path >= $2 AND path < $3 LIMIT 1",
    [PS_CAND_ADD] = "INSERT INTO gc_candidates (content_id) VALUES ($1) " CAND_UPSERT,
    [PS_CANDS_ADD] =
        "INSERT INTO gc_candidates (content_id) SELECT h FROM " IDS_1 " AS t(h) " CAND_UPSERT,
    [PS_CONTENT_SIZES_LOCK] =
        "SELECT id, size FROM contents WHERE id IN " IDS_1 " ORDER BY id FOR KEY SHARE",
    [PS_CONTENT_SIZES] = "SELECT id, size FROM contents WHERE id IN " IDS_1 " ORDER BY id",
    [PS_CONTENT_GET] = "SELECT size, nchunks, data FROM contents WHERE id = $1",
    [PS_CONTENT_CHUNKS] = "SELECT cc.chunk, ch.size FROM content_chunks cc "
                          "JOIN chunks ch ON ch.hash = cc.chunk "
                          "WHERE cc.content_id = $1 ORDER BY cc.seq",
    [PS_CHUNK_DATA] = "SELECT data FROM chunks WHERE hash = $1",
    [PS_CONTENT_INSERT] = "INSERT INTO contents (id, size, nchunks, data) "
                          "VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    /* content batches: rows as arrays, one per column, distinct keys in key order */
    [PS_CONTENTS_INSERT] = "INSERT INTO contents (id, size, nchunks, data) SELECT * FROM "
                           "unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bytea[]) "
                           "ON CONFLICT (id) DO NOTHING RETURNING id",
    [PS_CONTENT_LOCK] = "SELECT 1 FROM contents WHERE id = $1 FOR KEY SHARE",
    [PS_CONTENTS_LOCK] = "SELECT id FROM contents WHERE id IN " IDS_1 " ORDER BY id FOR KEY SHARE",
    [PS_CC_INSERT] = "INSERT INTO content_chunks (content_id, seq, chunk) "
                     "SELECT $1::bytea, s.i, s.h FROM " SPLIT32("$2::bytea") " AS s",
    [PS_CCS_INSERT] = "INSERT INTO content_chunks (content_id, seq, chunk) SELECT * FROM "
                      "unnest($1::bytea[], $2::bigint[], $3::bytea[])",
    [PS_CHUNKS_LOCK] =
        "SELECT hash FROM chunks WHERE hash IN " IDS_1 " ORDER BY hash FOR KEY SHARE",
    [PS_PIN_ADD] = "INSERT INTO content_pins (content_id, owner, refs, pinned_ms) "
                   "VALUES ($1, $2, 1, " NOW_MS ") ON CONFLICT (content_id, owner) "
                   "DO UPDATE SET refs = content_pins.refs + 1, pinned_ms = excluded.pinned_ms",
    /* one pin reference per id of $1 (ids repeat: one reference each), in id order */
    [PS_PINS_ADD] = "INSERT INTO content_pins (content_id, owner, refs, pinned_ms) "
                    "SELECT t.h, $2, count(*), " NOW_MS " FROM " IDS_1 " AS t(h) "
                    "GROUP BY t.h ORDER BY t.h ON CONFLICT (content_id, owner) DO UPDATE "
                    "SET refs = content_pins.refs + excluded.refs, pinned_ms = excluded.pinned_ms",
    /* one reference of this store's pin on each content: the last one deletes the row; the
     * update skips the rows the delete takes, so no row is changed twice */
    [PS_PINS_DROP] =
        "WITH d AS (DELETE FROM content_pins WHERE owner = $2 AND content_id IN " IDS_1
        " AND refs <= 1 RETURNING content_id) "
        "UPDATE content_pins SET refs = refs - 1 WHERE owner = $2 AND content_id IN " IDS_1
        " AND content_id NOT IN (SELECT content_id FROM d)",
    [PS_CHUNK_LOCK] = "SELECT 1 FROM chunks WHERE hash = $1 FOR KEY SHARE",
    [PS_CHUNK_INSERT] = "INSERT INTO chunks (hash, size, data) VALUES ($1, $2, $3) "
                        "ON CONFLICT (hash) DO NOTHING",
    [PS_CHUNKS_INSERT] = "INSERT INTO chunks (hash, size, data) SELECT * FROM "
                         "unnest($1::bytea[], $2::bigint[], $3::bytea[]) "
                         "ON CONFLICT (hash) DO NOTHING RETURNING hash",
    [PS_PENDING_ADD] = "WITH w AS (INSERT INTO writers (id, owner, lease_ms) "
                       "VALUES ($1, $2, " NOW_MS " + " LEASE_MS ") "
                       "ON CONFLICT (id) DO UPDATE SET lease_ms = excluded.lease_ms) "
                       "INSERT INTO pending_chunks (writer, chunk) VALUES ($1, $3) "
                       "ON CONFLICT DO NOTHING",
    [PS_WRITER_END] = "WITH p AS (DELETE FROM pending_chunks WHERE writer = $1) "
                      "DELETE FROM writers WHERE id = $1",
    [PS_WRITERS_END] = "WITH p AS (DELETE FROM pending_chunks WHERE writer = ANY($1::bigint[])) "
                       "DELETE FROM writers WHERE id = ANY($1::bigint[])",
    /* the end of a commit in one statement: the sandbox row's new state, the commit's log row
     * and its first change rows (arrays: seq, op, path) */
    /* and the commit's counts: n, the rows it wrote (still live); o, the rows it retired (a
     * path in both was modified, unless it is a directory whose mtime alone changed); the
     * bytes of retired files join the sandbox's history */
    [PS_COMMIT_FINISH] =
        "WITH n AS (SELECT path, kind, mode, size FROM files WHERE sid = $1 AND since = $2), "
        "o AS (SELECT path, kind, mode, size FROM file_history WHERE sid = $1 AND vto = $2), "
        "st AS (SELECT (SELECT count(*) FROM n) AS n_new, (SELECT count(*) FROM o) AS n_old, "
        "(SELECT count(*) FROM n JOIN o USING (path)) AS n_both, "
        "(SELECT count(*) FROM n JOIN o USING (path) "
        " WHERE NOT (n.kind = 2 AND o.kind = 2 AND n.mode = o.mode)) AS n_mod, "
        "(SELECT coalesce(sum(size), 0) FROM n WHERE kind = 1) AS put_bytes, "
        "(SELECT coalesce(sum(size), 0) FROM o WHERE kind = 1) AS retired_bytes), "
        "u AS (UPDATE sandboxes SET version = $2, size_bytes = $3, file_count = $4, "
        "last_used_ms = $5, cwd = coalesce($6::bytea, cwd), "
        "history_bytes = history_bytes + (SELECT retired_bytes FROM st) WHERE sid = $1 "
        "RETURNING cwd), "
        "c AS (INSERT INTO commits (sid, version, kind, info, created_ms, changes, bytes_delta, "
        "cwd, added, modified, deleted, bytes_added) "
        "SELECT $1, $2, $7, $8, $5, $9, $10, u.cwd, st.n_new - st.n_both, st.n_mod, "
        "st.n_old - st.n_both, st.put_bytes FROM st, u RETURNING id), "
        "ch AS (INSERT INTO commit_changes (commit_id, seq, op, path) "
        "SELECT c.id, v.seq, v.op, v.path FROM c, "
        "unnest($11::bigint[], $12::bigint[], $13::bytea[]) AS v(seq, op, path)) "
        "SELECT id FROM c",
    [PS_LOG_ADD] = "INSERT INTO commit_changes (commit_id, seq, op, path) SELECT $1::bigint, * "
                   "FROM unnest($2::bigint[], $3::bigint[], $4::bytea[])",
    [PS_CHUNKS_COLLECT_LOCK] =
        "SELECT hash FROM chunks WHERE hash IN " IDS_1 " ORDER BY hash FOR UPDATE",
    [PS_CHUNKS_COLLECT] = "DELETE FROM chunks c WHERE c.hash IN " IDS_1
                          " AND NOT EXISTS (SELECT 1 FROM content_chunks cc "
                          "WHERE cc.chunk = c.hash) "
                          "AND NOT EXISTS (SELECT 1 FROM pending_chunks p "
                          "JOIN writers w ON w.id = p.writer "
                          "WHERE p.chunk = c.hash AND w.lease_ms >= " NOW_MS ") "
                          "RETURNING c.size",
    [PS_COMMIT_EXISTS] = "SELECT 1 FROM commits WHERE id = $1",
    [PS_COMMITS_DEL_CHANGES] = "DELETE FROM commit_changes WHERE commit_id IN "
                               "(SELECT id FROM commits WHERE sid = $1)",
    [PS_COMMITS_DEL] = "DELETE FROM commits WHERE sid = $1",
    [PS_BACKEND_ALIVE] = "SELECT 1 FROM pg_stat_activity WHERE pid = $1",
    [PS_OWNER_PINS_RELEASE] = "WITH d AS (DELETE FROM content_pins WHERE owner = $1 "
                              "RETURNING content_id) "
                              "INSERT INTO gc_candidates (content_id) "
                              "SELECT DISTINCT content_id FROM d " CAND_UPSERT,
    [PS_OWNER_WRITERS_RELEASE] = "WITH w AS (DELETE FROM writers WHERE owner = $1 RETURNING id), "
                                 "p AS (DELETE FROM pending_chunks "
                                 "WHERE writer IN (SELECT id FROM w) RETURNING chunk) "
                                 "INSERT INTO gc_chunk_candidates (chunk) "
                                 "SELECT DISTINCT chunk FROM p ON CONFLICT DO NOTHING",
    [PS_GC_TRYLOCK] = "SELECT pg_try_advisory_xact_lock($1::integer, $2::integer)",
    [PS_GC_EXPIRE_PINS] = "WITH d AS (DELETE FROM content_pins "
                          "WHERE pinned_ms < " NOW_MS " - " LEASE_MS " RETURNING content_id) "
                          "INSERT INTO gc_candidates (content_id) "
                          "SELECT DISTINCT content_id FROM d " CAND_UPSERT,
    [PS_GC_EXPIRE_WRITERS] =
        "WITH w AS (DELETE FROM writers WHERE lease_ms < " NOW_MS " RETURNING id), "
        "p AS (DELETE FROM pending_chunks "
        "WHERE writer IN (SELECT id FROM w) RETURNING chunk) "
        "INSERT INTO gc_chunk_candidates (chunk) "
        "SELECT DISTINCT chunk FROM p ON CONFLICT DO NOTHING",
    [PS_GC_BATCH] = "SELECT content_id FROM gc_candidates ORDER BY content_id LIMIT $1 "
                    "FOR UPDATE SKIP LOCKED",
    [PS_GC_CAND_DEL] =
        "DELETE FROM gc_candidates g WHERE g.content_id IN " IDS_1
        " AND (g.content_id IN (SELECT h FROM " SPLIT32(
            "$2::bytea") " AS l) "
                         "OR NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = g.content_id))",
    [PS_GC_CONTENTS_LOCK] =
        "SELECT id FROM contents WHERE id IN " IDS_1 " ORDER BY id FOR UPDATE SKIP LOCKED",
    [PS_GC_CONTENTS_DEL] = "DELETE FROM contents c WHERE c.id IN " IDS_1
                           " AND NOT EXISTS (SELECT 1 FROM files f WHERE f.content = c.id) "
                           "AND NOT EXISTS (SELECT 1 FROM file_history h "
                           "WHERE h.content = c.id) "
                           "AND NOT EXISTS (SELECT 1 FROM content_pins p "
                           "WHERE p.content_id = c.id) RETURNING c.id, c.size, c.nchunks",
    [PS_GC_CC_DEL] = "WITH d AS (DELETE FROM content_chunks WHERE content_id IN " IDS_1
                     " RETURNING chunk) INSERT INTO gc_chunk_candidates (chunk) "
                     "SELECT DISTINCT chunk FROM d ON CONFLICT DO NOTHING",
    [PS_GC_CHUNK_BATCH] = "SELECT chunk FROM gc_chunk_candidates ORDER BY chunk LIMIT $1 "
                          "FOR UPDATE SKIP LOCKED",
    [PS_GC_CHUNK_CAND_DEL] = "DELETE FROM gc_chunk_candidates WHERE chunk IN " IDS_1,
    /* Row 0: the commits of versions ($2, $3] and their changes counted; then up to $4 of
     * those changes in order. */
    [PS_LOG_CHANGES] =
        "WITH c AS (SELECT id, version, changes FROM commits WHERE sid = "
        "(SELECT sid FROM sandboxes WHERE id = $1) AND version > $2 AND version <= $3) "
        "(SELECT 0 AS k, count(*)::bigint, coalesce(sum(changes), 0)::bigint, NULL::integer, "
        "NULL::bytea, 0::bigint FROM c) "
        "UNION ALL (SELECT 1, c.version, 0, cc.op, cc.path, cc.seq FROM c "
        "JOIN commit_changes cc ON cc.commit_id = c.id ORDER BY c.version, cc.seq LIMIT $4) "
        "ORDER BY 1, 2, 6",
    /* Sandbox locks across servers (pg_lock.c): the wait bounded by $3 (lock_timeout), set
     * before the lock is asked for. */
    [PS_LOCK_SANDBOX] = "WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', $3, false)) "
                        "SELECT pg_advisory_lock($1::integer, hashtext($2)) FROM t",
    [PS_LOCK_SANDBOX_SHARED] =
        "WITH t AS MATERIALIZED (SELECT set_config('lock_timeout', $3, false)) "
        "SELECT pg_advisory_lock_shared($1::integer, hashtext($2)) FROM t",
    [PS_UNLOCK_SANDBOX] = "SELECT pg_advisory_unlock($1::integer, hashtext($2))",
    [PS_UNLOCK_SANDBOX_SHARED] = "SELECT pg_advisory_unlock_shared($1::integer, hashtext($2))",

    /* ---- history: reads (pg_tree.c), pruning (pg_commit.c), fork and snapshots
     * (pg_sandbox.c) ---- */

    /* Sandbox $1 and whether version $2 is readable: the current one, or one a retained commit
     * made (at or above the floor, or named by a snapshot). Columns: sid, created_ms, the
     * sandbox's cwd, the cwd after commit $2 (NULL: unknown), readable, version. */
    [PS_VER_READABLE] = "SELECT s.sid, s.created_ms, s.cwd, c.cwd, $2::bigint = s.version OR "
                        "(c.version IS NOT NULL AND (c.version >= s.history_floor OR " SNAPSHOT_OF_C
                        ")), s.version "
                        "FROM sandboxes s LEFT JOIN commits c "
                        "ON c.sid = s.sid AND c.version = $2::bigint WHERE s.id = $1 LIMIT 1",
    [PS_TREE_STAT] = "SELECT * FROM (" LIVE_FILES_1_2 " AND path = $3 UNION ALL " LIVE_HISTORY_1_2
                     " AND path = $3) AS t LIMIT 1",
    [PS_TREE_LIST] =
        "SELECT * FROM (" LIVE_FILES_1_2 " AND path >= $3 AND path < $4 UNION ALL " LIVE_HISTORY_1_2
        " AND path >= $3 AND path < $4) AS t ORDER BY path " PAGE,
    /* The new history floor of sandbox $1 after the commit that made version $2 (its rows,
     * counts and history_bytes written): the old floor and the new one. $3 history_max_commits,
     * $4 history_max_age_ms, $5 now_ms, $6 quota_bytes (0: no limit each). The age floor is
     * looked for only when the oldest retained commit is past the age. The byte floor is
     * the lowest R whose unprotected retired files (vto <= R) hold the bytes over quota: the
     * running sum of their sizes in vto order reaches the excess at R. */
    [PS_HIST_FLOOR] =
        "WITH s AS (SELECT history_floor AS f, size_bytes + history_bytes - $6::bigint AS excess "
        "FROM sandboxes WHERE sid = $1) "
        "SELECT s.f, least($2::bigint, greatest(s.f, "
        "CASE WHEN $3::bigint > 0 THEN $2::bigint + 1 - $3::bigint ELSE 0 END, "
        "CASE WHEN $4::bigint > 0 AND (SELECT created_ms FROM commits WHERE sid = $1 "
        "AND version >= s.f ORDER BY version LIMIT 1) < $5::bigint - $4::bigint "
        "THEN coalesce((SELECT min(version) FROM commits "
        "WHERE sid = $1 AND created_ms >= $5::bigint - $4::bigint), $2::bigint) ELSE 0 END, "
        "CASE WHEN $6::bigint > 0 AND s.excess > 0 THEN coalesce((SELECT min(t.vto) FROM "
        "(SELECT h.vto, sum(h.size) OVER (ORDER BY h.vto) AS held FROM file_history h "
        "WHERE h.sid = $1 AND h.kind = 1 AND NOT " PROTECTED_H ") AS t "
        "WHERE t.held >= s.excess), $2::bigint) ELSE 0 END)) FROM s",
    /* Raises the floor of sandbox $1 to $2: the retired rows no retained version uses go (their
     * contents become candidates, their bytes leave history_bytes), so do the change logs of
     * the versions below the floor, and their commits unless a snapshot names them. Returns
     * how many pruned rows held content. */
    [PS_HIST_PRUNE] =
        "WITH p AS (DELETE FROM file_history h WHERE h.sid = $1 AND h.vto <= $2::bigint "
        "AND NOT " PROTECTED_H " RETURNING h.kind, h.size, h.content), "
        "g AS (INSERT INTO gc_candidates (content_id) SELECT DISTINCT content FROM p "
        "WHERE content IS NOT NULL " CAND_UPSERT "), "
        "l AS (DELETE FROM commit_changes WHERE commit_id IN "
        "(SELECT id FROM commits WHERE sid = $1 AND version < $2::bigint)), "
        "c AS (DELETE FROM commits c WHERE c.sid = $1 AND c.version < $2::bigint "
        "AND NOT EXISTS (SELECT 1 FROM snapshots n WHERE n.sid = $1 AND n.version = c.version)), "
        "u AS (UPDATE sandboxes SET history_floor = $2::bigint, history_bytes = history_bytes - "
        "(SELECT coalesce(sum(size), 0) FROM p WHERE kind = 1) WHERE sid = $1) "
        "SELECT count(*) FROM p WHERE content IS NOT NULL",
    /* Sandbox $1's retained commits below version $2, newest first, at most $3. */
    [PS_COMMITS_PAGE] = "SELECT " COMMIT_COLS " FROM sandboxes s JOIN commits c ON c.sid = s.sid "
                        "WHERE s.id = $1 AND c.version < $2::bigint "
                        "AND (c.version >= s.history_floor OR " SNAPSHOT_OF_C ") "
                        "ORDER BY c.version DESC LIMIT $3",
    /* The paths commit $2 of sandbox $1 changed: the rows it wrote (live now, or retired by a
     * later commit) against the rows it retired; kind 1 added, 2 modified, 3 deleted, then the
     * row after the commit (the one before it when deleted). A directory whose mtime alone
     * changed is not a change. A cursor (pg_commit_paths reads it a page at a time). */
    [PS_COMMIT_PATHS] =
        "DECLARE commit_paths NO SCROLL CURSOR FOR "
        "WITH n AS (SELECT " FILE_COLS " FROM files WHERE sid = $1 AND since = $2::bigint "
        "UNION ALL SELECT " FILE_COLS " FROM file_history WHERE sid = $1 AND vfrom = $2::bigint), "
        "o AS (SELECT " FILE_COLS " FROM file_history WHERE sid = $1 AND vto = $2::bigint) "
        "SELECT CASE WHEN o.path IS NULL THEN 1 WHEN n.path IS NULL THEN 3 ELSE 2 END, "
        "CASE WHEN n.path IS NULL THEN o.path ELSE n.path END AS path, "
        "CASE WHEN n.path IS NULL THEN o.kind ELSE n.kind END, "
        "CASE WHEN n.path IS NULL THEN o.mode ELSE n.mode END, "
        "CASE WHEN n.path IS NULL THEN o.size ELSE n.size END, "
        "CASE WHEN n.path IS NULL THEN o.mtime_ns ELSE n.mtime_ns END, "
        "CASE WHEN n.path IS NULL THEN o.content ELSE n.content END, "
        "CASE WHEN n.path IS NULL THEN o.target ELSE n.target END "
        "FROM n FULL JOIN o ON n.path = o.path "
        "WHERE n.path IS NULL OR o.path IS NULL "
        "OR NOT (n.kind = 2 AND o.kind = 2 AND n.mode = o.mode) ORDER BY 2",
    [PS_SB_LOCK_SHARE] = "SELECT sid FROM sandboxes WHERE id = $1 FOR SHARE",
    /* Copies the tree of sandbox $1 at version $2 into the new sandbox $3 as its version 1:
     * the rows copied and their file bytes. */
    [PS_FORK_COPY] = "WITH t AS (INSERT INTO files (sid, " FILE_COLS ", since) "
                     "SELECT $3::bigint, " FILE_COLS ", 1 FROM (" LIVE_FILES_1_2
                     " UNION ALL " LIVE_HISTORY_1_2 ") AS l RETURNING kind, size) "
                     "SELECT count(*), coalesce(sum(size) FILTER (WHERE kind = 1), 0)::bigint "
                     "FROM t",
    /* The fork's first version: $2 bytes in $3 rows, cwd $4, at $5, info $6. The commit has no
     * change rows but counts $3 changes: the log does not hold it (changes_since reads the
     * tree whole instead), unless the tree is empty. */
    [PS_FORK_FINISH] =
        "WITH u AS (UPDATE sandboxes SET version = 1, size_bytes = $2, file_count = $3, cwd = $4, "
        "last_used_ms = $5 WHERE sid = $1) "
        "INSERT INTO commits (sid, version, kind, info, created_ms, changes, bytes_delta, cwd, "
        "added, bytes_added) VALUES ($1, 1, 'fork', $6, $5, $3, $2, $4, $3, $2) RETURNING id",
    [PS_SNAP_COUNT] = "SELECT count(*) FROM snapshots WHERE sid = $1",
    [PS_SNAP_INSERT] = "INSERT INTO snapshots (sid, name, version, created_ms) "
                       "VALUES ($1, $2, $3, $4) ON CONFLICT (sid, name) DO NOTHING",
    [PS_SNAP_GET] = "SELECT name, version, created_ms FROM snapshots "
                    "WHERE sid = " SID_OF_1 " AND name = $2",
    [PS_SNAP_LIST] = "SELECT name, version, created_ms FROM snapshots WHERE sid = " SID_OF_1
                     " ORDER BY version DESC, name COLLATE \"C\"",
    [PS_SNAP_DEL] = "DELETE FROM snapshots WHERE sid = " SID_OF_1 " AND name = $2",
    [PS_SNAP_DEL_ALL] = "DELETE FROM snapshots WHERE sid = $1",
    [PS_H_DEL_ALL] = "WITH d AS (DELETE FROM file_history WHERE sid = $1 RETURNING content) "
                     "INSERT INTO gc_candidates (content_id) SELECT DISTINCT content FROM d "
                     "WHERE content IS NOT NULL " CAND_UPSERT,
};

/* The schema's version: 0 before the first migration. */
static int schema_version(struct pg_store *s, struct pg_conn *c, int64_t *ret)
{
    _cleanup_pgresult_ PGresult *res = NULL;
    int r = pg_exec_sql(s, c, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL,
                        NULL, NULL, &res);
    if (r < 0)
        return r;
    *ret = r > 0 ? pg_i64(res, 0, 0) : 0;
    return 0;
}

/* Applies migration v (1-based) and records it, in one transaction. */
static int migrate_one(struct pg_store *s, struct pg_conn *c, int64_t v)
{
    int r = pg_cmd(s, c, "BEGIN");
    if (r < 0)
        return r;
    r = pg_cmd(s, c, migrations[v - 1]);
    if (r >= 0) {
        char num[24];
        snprintf(num, sizeof(num), "%" PRId64, v);
        const char *vals[] = {num};
        r = pg_exec_sql(s, c,
                        "INSERT INTO schema_migrations (version, applied_ms) "
                        "VALUES ($1::bigint, " NOW_MS ")",
                        1, vals, NULL, NULL, NULL);
    }
    if (r >= 0)
        r = pg_cmd(s, c, "COMMIT");
    if (r < 0 && !c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
        pg_cmd(s, c, "ROLLBACK") < 0)
        c->broken = true;
    return r;
}

static int migrate_locked(struct pg_store *s, struct pg_conn *c)
{
    int r = pg_exec_sql(s, c,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        "version bigint PRIMARY KEY, applied_ms bigint NOT NULL)",
                        0, NULL, NULL, NULL, NULL);
    int64_t current = 0;
    if (r >= 0)
        r = schema_version(s, c, &current);
    if (r < 0)
        return r;
    int64_t latest = (int64_t)(sizeof(migrations) / sizeof(migrations[0]));
    if (current > latest)
        return err_set(
            -EIO, "the database schema (version %" PRId64 ") is newer than this server understands",
            current);
    for (int64_t v = current + 1; v <= latest && r >= 0; v++)
        r = migrate_one(s, c, v);
    return r;
}

int pg_migrate(struct pg_store *s, struct pg_conn *c)
{
    char cls[24], key[24];
    snprintf(cls, sizeof(cls), "%d", PG_LOCK_CLASS);
    snprintf(key, sizeof(key), "%d", PG_LOCK_MIGRATE);
    const char *vals[] = {cls, key};
    int r = pg_exec_sql(s, c, "SELECT pg_advisory_lock($1::integer, $2::integer)", 2, vals, NULL,
                        NULL, NULL);
    if (r < 0)
        return r;
    r = migrate_locked(s, c);
    int u = pg_exec_sql(s, c, "SELECT pg_advisory_unlock($1::integer, $2::integer)", 2, vals, NULL,
                        NULL, NULL);
    return r < 0 ? r : u < 0 ? u : 0;
}
