/*
 * sqlite_schema.c — the SQL of the SQLite engine: the schema's migrations and the text of every
 * statement the engine prepares (enum stmt_id in sqlite_int.h). The tables are described in
 * sqlite_int.h.
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <inttypes.h>

#include "util/err.h"
#include "util/timeutil.h"

/* Migration i brings the schema to version i + 1. Never edit a released entry: append. */
static const char *const migrations[] = {
    "CREATE TABLE sandboxes ("
    "  sid INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  tenant TEXT NOT NULL,"
    "  sub TEXT NOT NULL,"
    "  name TEXT,"
    "  env TEXT NOT NULL,"
    "  python INTEGER NOT NULL,"
    "  javascript INTEGER NOT NULL,"
    "  network INTEGER NOT NULL,"
    "  cwd TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  last_used_ms INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  size_bytes INTEGER NOT NULL,"
    "  file_count INTEGER NOT NULL);"
    "CREATE INDEX sandboxes_owner ON sandboxes(tenant, sub, created_ms DESC, id);"
    "CREATE TABLE files ("
    "  sid INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  mode INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  content BLOB,"
    "  target TEXT,"
    "  PRIMARY KEY (sid, path)) WITHOUT ROWID;"
    "CREATE INDEX files_content ON files(content) WHERE content IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS blobs.chunks ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  hash BLOB NOT NULL UNIQUE,"
    "  size INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "CREATE TABLE contents ("
    "  rid INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id BLOB NOT NULL UNIQUE,"
    "  size INTEGER NOT NULL,"
    "  nchunks INTEGER NOT NULL,"
    "  data BLOB);"
    "CREATE TABLE content_chunks ("
    "  content_id BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  chunk_id INTEGER NOT NULL,"
    "  PRIMARY KEY (content_id, seq)) WITHOUT ROWID;"
    "CREATE INDEX content_chunks_chunk ON content_chunks(chunk_id);"
    "CREATE TABLE content_pins ("
    "  content_id BLOB PRIMARY KEY,"
    "  refs INTEGER NOT NULL,"
    "  pinned_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE pending_chunks ("
    "  writer INTEGER NOT NULL,"
    "  chunk_id INTEGER NOT NULL,"
    "  PRIMARY KEY (writer, chunk_id)) WITHOUT ROWID;"
    "CREATE INDEX pending_chunks_chunk ON pending_chunks(chunk_id);"
    "CREATE TABLE gc_candidates (content_id BLOB PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE commits ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  sid INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  kind TEXT,"
    "  info TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  changes INTEGER NOT NULL,"
    "  bytes_delta INTEGER NOT NULL);"
    "CREATE INDEX commits_sid ON commits(sid, version);"
    "CREATE TABLE commit_changes ("
    "  commit_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  op INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  PRIMARY KEY (commit_id, seq)) WITHOUT ROWID;",
    /* history: every row a commit replaces or deletes is kept with the versions it was live
     * for (sqlite_int.h); commits record their cwd and counts; snapshots pin versions */
    "ALTER TABLE files ADD COLUMN since INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX files_since ON files(sid, since);"
    "CREATE TABLE file_history ("
    "  sid INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  vfrom INTEGER NOT NULL,"
    "  vto INTEGER NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  mode INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  content BLOB,"
    "  target TEXT,"
    "  PRIMARY KEY (sid, path, vto)) WITHOUT ROWID;"
    "CREATE INDEX file_history_vto ON file_history(sid, vto);"
    "CREATE INDEX file_history_vfrom ON file_history(sid, vfrom);"
    "CREATE INDEX file_history_content ON file_history(content) WHERE content IS NOT NULL;"
    "ALTER TABLE commits ADD COLUMN cwd TEXT;"
    "ALTER TABLE commits ADD COLUMN added INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE commits ADD COLUMN modified INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE commits ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE commits ADD COLUMN bytes_added INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sandboxes ADD COLUMN history_floor INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sandboxes ADD COLUMN history_bytes INTEGER NOT NULL DEFAULT 0;"
    "UPDATE sandboxes SET history_floor = version;"
    "CREATE TABLE snapshots ("
    "  sid INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (sid, name)) WITHOUT ROWID;"
    "CREATE INDEX snapshots_version ON snapshots(sid, version);"
    /* A row written before the commit in progress (since <= the sandbox's version, which the
     * commit raises only after its row changes) is kept when it is replaced or removed. The
     * sandbox's row is deleted before its files, so deleting a sandbox keeps nothing. */
    "CREATE TRIGGER files_keep_replaced AFTER UPDATE ON files "
    "WHEN OLD.since <= (SELECT version FROM sandboxes WHERE sid = OLD.sid) BEGIN "
    "INSERT INTO file_history (sid, path, vfrom, vto, kind, mode, size, mtime_ns, content, target) "
    "SELECT OLD.sid, OLD.path, OLD.since, version + 1, OLD.kind, OLD.mode, OLD.size, "
    "OLD.mtime_ns, OLD.content, OLD.target FROM sandboxes WHERE sid = OLD.sid; END;"
    "CREATE TRIGGER files_keep_deleted AFTER DELETE ON files "
    "WHEN OLD.since <= (SELECT version FROM sandboxes WHERE sid = OLD.sid) BEGIN "
    "INSERT INTO file_history (sid, path, vfrom, vto, kind, mode, size, mtime_ns, content, target) "
    "SELECT OLD.sid, OLD.path, OLD.since, version + 1, OLD.kind, OLD.mode, OLD.size, "
    "OLD.mtime_ns, OLD.content, OLD.target FROM sandboxes WHERE sid = OLD.sid; END;",
    /* The exec journal and idempotency keys (sqlite_journal.c). */
    "CREATE TABLE execs ("
    "  seq INTEGER PRIMARY KEY,"
    "  sid INTEGER NOT NULL,"
    "  exec_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  script TEXT NOT NULL,"
    "  started_ms INTEGER NOT NULL,"
    "  duration_ms INTEGER NOT NULL,"
    "  exit_code INTEGER NOT NULL,"
    "  timed_out INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  stdout_bytes INTEGER NOT NULL,"
    "  stderr_bytes INTEGER NOT NULL,"
    "  stdout BLOB,"
    "  stderr BLOB,"
    "  stdout_truncated INTEGER NOT NULL,"
    "  stderr_truncated INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX execs_id ON execs(sid, exec_id);"
    "CREATE INDEX execs_sid ON execs(sid, seq);"
    "CREATE INDEX execs_age ON execs(sid, started_ms);"
    "CREATE TABLE idempotency ("
    "  seq INTEGER PRIMARY KEY,"
    "  sid INTEGER NOT NULL,"
    "  key TEXT NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  status INTEGER,"
    "  ctype TEXT,"
    "  body BLOB);"
    "CREATE UNIQUE INDEX idempotency_key ON idempotency(sid, key);"
    "CREATE INDEX idempotency_sid ON idempotency(sid, seq);"
    "CREATE INDEX idempotency_age ON idempotency(sid, created_ms);",
    /* Idempotency: the claim of a pending key (sqlite_journal.c), and the expiry of any
     * sandbox's keys in created time order. */
    ("ALTER TABLE idempotency ADD COLUMN claim BLOB;"
     "CREATE INDEX idempotency_expiry ON idempotency(created_ms);"),
    /* Network egress: a sandbox's own policy (NULL for the sandboxes there are: none), and the
     * egress log (sqlite_journal.c), read and pruned in (at_ms, seq) order. */
    ("ALTER TABLE sandboxes ADD COLUMN network_policy TEXT;"
     "CREATE TABLE egress ("
     "  seq INTEGER PRIMARY KEY,"
     "  sid INTEGER NOT NULL,"
     "  at_ms INTEGER NOT NULL,"
     "  exec_id TEXT,"
     "  host TEXT NOT NULL,"
     "  port INTEGER NOT NULL,"
     "  address TEXT,"
     "  allowed INTEGER NOT NULL,"
     "  rule TEXT NOT NULL,"
     "  error TEXT,"
     "  bytes_up INTEGER NOT NULL,"
     "  bytes_down INTEGER NOT NULL,"
     "  duration_ms INTEGER NOT NULL);"
     "CREATE INDEX egress_order ON egress(sid, at_ms, seq);"),
};

/* Column lists shared by several statements. */
#define SB_COLS                                                                                    \
    "id, tenant, sub, name, env, python, javascript, network, cwd, created_ms, last_used_ms, "     \
    "version, size_bytes, file_count, network_policy"
#define FILE_COLS "path, kind, mode, size, mtime_ns, content, target"
#define SID_OF_1 "(SELECT sid FROM sandboxes WHERE id = ?1)"
#define EXEC_COLS                                                                                  \
    "exec_id, kind, script, started_ms, duration_ms, exit_code, timed_out, version, "              \
    "stdout_bytes, stderr_bytes, stdout_truncated, stderr_truncated"
#define EGRESS_COLS                                                                                \
    "at_ms, exec_id, host, port, address, allowed, rule, error, bytes_up, bytes_down, duration_ms"
#define COMMIT_COLS "version, created_ms, kind, info, cwd, added, modified, deleted, bytes_added"
/* a history row no snapshot of its sandbox needs */
#define H_UNPINNED                                                                                 \
    "NOT EXISTS (SELECT 1 FROM snapshots p WHERE p.sid = file_history.sid "                        \
    "AND p.version >= file_history.vfrom AND p.version < file_history.vto)"

/* Indexed by enum stmt_id (sqlite_int.h). */
const char *const sq_stmt_sql[ST_COUNT] = {
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_CHECK] = "SELECT count(*) FROM schema_migrations",
    [ST_SB_INSERT] = "INSERT INTO sandboxes (" SB_COLS ") "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, 0, 0, ?12)",
    [ST_SB_GET] = "SELECT " SB_COLS " FROM sandboxes WHERE id = ?1",
    [ST_SB_LIST_OWNER] = "SELECT " SB_COLS " FROM sandboxes WHERE tenant = ?1 AND sub = ?2 "
                         "ORDER BY created_ms DESC, sid DESC",
    [ST_SB_LIST_ANY] = "SELECT " SB_COLS " FROM sandboxes "
                       "WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR sub = ?2) "
                       "ORDER BY created_ms DESC, sid DESC",
    [ST_SB_STATE] = "SELECT sid, version, size_bytes, file_count, tenant, sub, cwd, "
                    "history_floor, history_bytes FROM sandboxes WHERE id = ?1",
    [ST_SB_UPDATE] = "UPDATE sandboxes SET version = ?2, size_bytes = ?3, file_count = ?4, "
                     "last_used_ms = ?5, cwd = coalesce(?6, cwd), history_floor = ?7, "
                     "history_bytes = ?8 WHERE sid = ?1",
    [ST_SB_TOUCH] = "UPDATE sandboxes SET last_used_ms = ?2 WHERE id = ?1",
    /* the owner check of sandbox_get: a NULL half matches any */
    [ST_SB_SET_NETWORK] = "UPDATE sandboxes SET network = ?2, network_policy = ?3 WHERE id = ?1 "
                          "AND (?4 IS NULL OR tenant = ?4) AND (?5 IS NULL OR sub = ?5)",
    [ST_SB_DELETE] = "DELETE FROM sandboxes WHERE sid = ?1",
    [ST_SB_CREATED] = "SELECT created_ms FROM sandboxes WHERE id = ?1",
    [ST_SB_COUNT_OWNER] = "SELECT count(*) FROM (SELECT 1 FROM sandboxes "
                          "WHERE tenant = ?1 AND sub = ?2 LIMIT ?3)",
    [ST_SB_COUNT] = "SELECT count(*) FROM sandboxes",
    [ST_F_GET] = "SELECT kind, size, content, since FROM files WHERE sid = ?1 AND path = ?2",
    /* an upsert, not INSERT OR REPLACE: a replaced row must fire the update trigger */
    [ST_F_PUT] = "INSERT INTO files (sid, " FILE_COLS ", since) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (sid, path) DO UPDATE "
                 "SET kind = excluded.kind, mode = excluded.mode, size = excluded.size, "
                 "mtime_ns = excluded.mtime_ns, content = excluded.content, "
                 "target = excluded.target, since = excluded.since",
    [ST_F_SETDIR] = "UPDATE files SET mode = ?3, mtime_ns = ?4, since = ?5 "
                    "WHERE sid = ?1 AND path = ?2",
    [ST_F_DEL] = "DELETE FROM files WHERE sid = ?1 AND path = ?2",
    [ST_F_RANGE_STATS] = "SELECT count(*), coalesce(sum(CASE WHEN kind = 1 THEN size END), 0) "
                         "FROM files WHERE sid = ?1 AND path >= ?2 AND path < ?3",
    /* the rows the history does not keep (sqlite_int.h): written by the running commit, or of
     * a sandbox whose row is gone */
    [ST_F_RANGE_CAND] =
        "INSERT OR IGNORE INTO gc_candidates SELECT content FROM files "
        "WHERE sid = ?1 AND path >= ?2 AND path < ?3 AND content IS NOT NULL "
        "AND NOT coalesce(since <= (SELECT version FROM sandboxes WHERE sid = ?1), 0)",
    [ST_F_RANGE_DEL] = "DELETE FROM files WHERE sid = ?1 AND path >= ?2 AND path < ?3",
    [ST_F_STAT] = "SELECT " FILE_COLS " FROM files WHERE sid = " SID_OF_1 " AND path = ?2",
    [ST_F_LIST] = "SELECT " FILE_COLS " FROM files WHERE sid = " SID_OF_1
                  " AND path >= ?2 AND path < ?3 ORDER BY path",
    [ST_F_HAS_CHILD] =
        "SELECT 1 FROM files WHERE sid = " SID_OF_1 " AND path >= ?2 AND path < ?3 LIMIT 1",
    [ST_CAND_ADD] = "INSERT OR IGNORE INTO gc_candidates (content_id) VALUES (?1)",
    [ST_CONTENT_SIZE] = "SELECT size, nchunks, rid FROM contents WHERE id = ?1",
    [ST_CONTENT_INSERT] = "INSERT OR IGNORE INTO contents (id, size, nchunks, data) "
                          "VALUES (?1, ?2, ?3, ?4)",
    [ST_CC_INSERT] = "INSERT INTO content_chunks (content_id, seq, chunk_id) VALUES (?1, ?2, ?3)",
    [ST_CONTENT_CHUNKS] = "SELECT cc.chunk_id, ch.size FROM content_chunks cc "
                          "JOIN blobs.chunks ch ON ch.id = cc.chunk_id "
                          "WHERE cc.content_id = ?1 ORDER BY cc.seq",
    [ST_PIN_ADD] = "INSERT INTO content_pins (content_id, refs, pinned_ms) VALUES (?1, 1, ?2) "
                   "ON CONFLICT (content_id) DO UPDATE SET refs = refs + 1, "
                   "pinned_ms = excluded.pinned_ms",
    [ST_PIN_DROP] = "UPDATE content_pins SET refs = refs - 1 WHERE content_id = ?1",
    [ST_PIN_DEL_ZERO] = "DELETE FROM content_pins WHERE content_id = ?1 AND refs <= 0",
    [ST_COMMIT_INSERT] = "INSERT INTO commits (sid, version, kind, info, created_ms, changes, "
                         "bytes_delta, cwd, added, modified, deleted, bytes_added) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_CHANGE_INSERT] = "INSERT INTO commit_changes (commit_id, seq, op, path) "
                         "VALUES (?1, ?2, ?3, ?4)",
    [ST_COMMITS_DEL_CHANGES] = "DELETE FROM commit_changes WHERE commit_id IN "
                               "(SELECT id FROM commits WHERE sid = ?1)",
    [ST_COMMITS_DEL] = "DELETE FROM commits WHERE sid = ?1",
    [ST_LOG_COUNT] = "SELECT count(*), coalesce(sum(changes), 0) FROM commits "
                     "WHERE sid = " SID_OF_1 " AND version > ?2 AND version <= ?3",
    [ST_LOG_CHANGES] = "SELECT c.version, cc.op, cc.path FROM commits c "
                       "JOIN commit_changes cc ON cc.commit_id = c.id "
                       "WHERE c.sid = " SID_OF_1 " AND c.version > ?2 AND c.version <= ?3 "
                       "ORDER BY c.version, cc.seq",
    [ST_CHUNK_FIND] = "SELECT id FROM blobs.chunks WHERE hash = ?1",
    [ST_CHUNK_INSERT] = "INSERT INTO blobs.chunks (hash, size, data) VALUES (?1, ?2, ?3)",
    [ST_CHUNK_DEL_IF_FREE] =
        "DELETE FROM blobs.chunks WHERE id = ?1 "
        "AND NOT EXISTS (SELECT 1 FROM content_chunks WHERE chunk_id = ?1) "
        "AND NOT EXISTS (SELECT 1 FROM pending_chunks WHERE chunk_id = ?1) RETURNING size",
    [ST_PENDING_ADD] = "INSERT OR IGNORE INTO pending_chunks (writer, chunk_id) VALUES (?1, ?2)",
    [ST_PENDING_DEL] = "DELETE FROM pending_chunks WHERE writer = ?1",
    [ST_GC_EXPIRED_CAND] = "INSERT OR IGNORE INTO gc_candidates "
                           "SELECT content_id FROM content_pins WHERE pinned_ms < ?1",
    [ST_GC_EXPIRED_DEL] = "DELETE FROM content_pins WHERE pinned_ms < ?1",
    [ST_GC_BATCH] = "SELECT content_id FROM gc_candidates LIMIT ?1",
    [ST_GC_CAND_DEL] = "DELETE FROM gc_candidates WHERE content_id = ?1",
    [ST_GC_IS_GARBAGE] = "SELECT NOT EXISTS (SELECT 1 FROM files WHERE content = ?1) "
                         "AND NOT EXISTS (SELECT 1 FROM file_history WHERE content = ?1) "
                         "AND NOT EXISTS (SELECT 1 FROM content_pins WHERE content_id = ?1)",
    [ST_GC_CHUNKS_OF] = "SELECT chunk_id FROM content_chunks WHERE content_id = ?1",
    [ST_GC_CC_DEL] = "DELETE FROM content_chunks WHERE content_id = ?1",
    [ST_GC_CONTENT_DEL] = "DELETE FROM contents WHERE id = ?1",

    /* ---- history (sqlite_history.c) ---- */
    /* what commit ?2 did, right after its changes: rows it wrote, rows it retired, paths in
     * both, those of them that changed (not a directory whose mtime alone did), bytes of files
     * it wrote, bytes of files it retired */
    [ST_H_COMMIT_STATS] =
        "SELECT (SELECT count(*) FROM files WHERE sid = ?1 AND since = ?2), "
        "(SELECT count(*) FROM file_history WHERE sid = ?1 AND vto = ?2), "
        "(SELECT count(*) FROM file_history h JOIN files f ON f.sid = h.sid AND f.path = h.path "
        " WHERE h.sid = ?1 AND h.vto = ?2 AND f.since = ?2), "
        "(SELECT count(*) FROM file_history h JOIN files f ON f.sid = h.sid AND f.path = h.path "
        " WHERE h.sid = ?1 AND h.vto = ?2 AND f.since = ?2 "
        " AND NOT (h.kind = 2 AND f.kind = 2 AND h.mode = f.mode)), "
        "(SELECT coalesce(sum(size), 0) FROM files WHERE sid = ?1 AND since = ?2 AND kind = 1), "
        "(SELECT coalesce(sum(size), 0) FROM file_history "
        " WHERE sid = ?1 AND vto = ?2 AND kind = 1)",
    [ST_H_OLDEST_AT] = "SELECT created_ms FROM commits WHERE sid = ?1 AND version >= ?2 "
                       "ORDER BY version LIMIT 1",
    [ST_H_AGE_FLOOR] = "SELECT min(version) FROM commits WHERE sid = ?1 AND created_ms >= ?2",
    [ST_H_BYTES_BY_VTO] = "SELECT vto, sum(size) FROM file_history WHERE sid = ?1 AND kind = 1 "
                          "AND " H_UNPINNED " GROUP BY vto ORDER BY vto",
    [ST_H_PRUNE_CAND] = "INSERT OR IGNORE INTO gc_candidates SELECT content FROM file_history "
                        "WHERE sid = ?1 AND vto <= ?2 AND content IS NOT NULL AND " H_UNPINNED,
    [ST_H_PRUNE_BYTES] = "SELECT coalesce(sum(size), 0) FROM file_history "
                         "WHERE sid = ?1 AND vto <= ?2 AND kind = 1 AND " H_UNPINNED,
    [ST_H_PRUNE_ROWS] = "DELETE FROM file_history WHERE sid = ?1 AND vto <= ?2 AND " H_UNPINNED,
    [ST_H_PRUNE_CHANGES] = "DELETE FROM commit_changes WHERE commit_id IN "
                           "(SELECT id FROM commits WHERE sid = ?1 AND version < ?2)",
    [ST_H_PRUNE_COMMITS] = "DELETE FROM commits WHERE sid = ?1 AND version < ?2 "
                           "AND version NOT IN (SELECT version FROM snapshots WHERE sid = ?1)",
    [ST_H_BYTES_SUB] = "UPDATE sandboxes SET history_bytes = history_bytes - ?2 WHERE sid = ?1",
    [ST_H_DROP_CAND] = "INSERT OR IGNORE INTO gc_candidates SELECT content FROM file_history "
                       "WHERE sid = ?1 AND content IS NOT NULL",
    [ST_H_DROP_ROWS] = "DELETE FROM file_history WHERE sid = ?1",
    [ST_H_DROP_SNAPSHOTS] = "DELETE FROM snapshots WHERE sid = ?1",
    /* whether version ?2 of sandbox ?1 is readable (sqlite_history.c) */
    [ST_H_VERSION] = "SELECT s.sid, s.version, s.history_floor, s.cwd, s.created_ms, "
                     "EXISTS (SELECT 1 FROM commits c WHERE c.sid = s.sid AND c.version = ?2), "
                     "EXISTS (SELECT 1 FROM snapshots p WHERE p.sid = s.sid AND p.version = ?2) "
                     "FROM sandboxes s WHERE s.id = ?1",
    [ST_H_STAT] = "SELECT " FILE_COLS " FROM files WHERE sid = ?1 AND path = ?3 AND since <= ?2 "
                  "UNION ALL SELECT " FILE_COLS " FROM file_history WHERE sid = ?1 AND path = ?3 "
                  "AND vfrom <= ?2 AND vto > ?2",
    [ST_H_LIST] = "SELECT " FILE_COLS " FROM files WHERE sid = ?1 AND since <= ?2 "
                  "AND path >= ?3 AND path < ?4 "
                  "UNION ALL SELECT " FILE_COLS " FROM file_history WHERE sid = ?1 "
                  "AND vfrom <= ?2 AND vto > ?2 AND path >= ?3 AND path < ?4 ORDER BY path",
    [ST_H_COMMITS] = "SELECT " COMMIT_COLS " FROM commits c WHERE sid = ?1 AND version < ?2 "
                     "AND (version >= ?3 OR version IN (SELECT version FROM snapshots "
                     "WHERE sid = ?1)) ORDER BY version DESC LIMIT ?4",
    [ST_H_COMMIT] = "SELECT " COMMIT_COLS " FROM commits WHERE sid = ?1 AND version = ?2",
    /* the rows commit ?2 wrote (side 1) and retired (side 0), old before new for a path */
    [ST_H_PATHS] = "SELECT 1 AS side, " FILE_COLS " FROM files WHERE sid = ?1 AND since = ?2 "
                   "UNION ALL SELECT 1, " FILE_COLS " FROM file_history "
                   "WHERE sid = ?1 AND vfrom = ?2 "
                   "UNION ALL SELECT 0, " FILE_COLS " FROM file_history "
                   "WHERE sid = ?1 AND vto = ?2 ORDER BY path, side",
    /* the tree of sandbox ?2 at version ?3 as sandbox ?1's first version */
    [ST_H_FORK_COPY] = "INSERT INTO files (sid, " FILE_COLS ", since) "
                       "SELECT ?1, " FILE_COLS ", 1 FROM files WHERE sid = ?2 AND since <= ?3 "
                       "UNION ALL SELECT ?1, " FILE_COLS ", 1 FROM file_history "
                       "WHERE sid = ?2 AND vfrom <= ?3 AND vto > ?3",
    [ST_H_TREE_STATS] = "SELECT count(*), coalesce(sum(CASE WHEN kind = 1 THEN size END), 0) "
                        "FROM files WHERE sid = ?1",
    [ST_H_SB_SID] = "SELECT sid FROM sandboxes WHERE id = ?1",
    [ST_H_FORK_SET] = "UPDATE sandboxes SET version = 1, size_bytes = ?2, file_count = ?3, "
                      "cwd = ?4, last_used_ms = ?5 WHERE sid = ?1",
    [ST_H_SNAP_COUNT] = "SELECT count(*) FROM snapshots WHERE sid = ?1",
    [ST_H_SNAP_INSERT] = "INSERT INTO snapshots (sid, name, version, created_ms) "
                         "VALUES (?1, ?2, ?3, ?4)",
    [ST_H_SNAP_GET] = "SELECT name, version, created_ms FROM snapshots "
                      "WHERE sid = " SID_OF_1 " AND name = ?2",
    [ST_H_SNAP_LIST] = "SELECT name, version, created_ms FROM snapshots WHERE sid = " SID_OF_1
                       " ORDER BY version DESC, name",
    [ST_H_SNAP_DEL] = "DELETE FROM snapshots WHERE sid = " SID_OF_1 " AND name = ?2",
    [ST_J_INSERT] = "INSERT INTO execs (sid, exec_id, kind, script, started_ms, duration_ms, "
                    "exit_code, timed_out, version, stdout_bytes, stderr_bytes, stdout, stderr, "
                    "stdout_truncated, stderr_truncated) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [ST_J_PRUNE_COUNT] = "DELETE FROM execs WHERE sid = ?1 AND seq <= (SELECT seq FROM execs "
                         "WHERE sid = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    [ST_J_PRUNE_AGE] = "DELETE FROM execs WHERE sid = ?1 AND started_ms < ?2",
    [ST_J_SEQ] = "SELECT seq FROM execs WHERE sid = ?1 AND exec_id = ?2",
    [ST_J_LIST] = "SELECT " EXEC_COLS " FROM execs WHERE sid = ?1 AND seq < ?2 "
                  "ORDER BY seq DESC LIMIT ?3",
    [ST_J_GET] = "SELECT " EXEC_COLS ", stdout, stderr FROM execs "
                 "WHERE sid = " SID_OF_1 " AND exec_id = ?2",
    [ST_J_DEL_ALL] = "DELETE FROM execs WHERE sid = ?1",
    [ST_E_INSERT] = "INSERT INTO egress (sid, " EGRESS_COLS ") "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    /* the records of sandbox ?1 past its newest ?2 (index egress_order) */
    [ST_E_PRUNE_COUNT] = "DELETE FROM egress WHERE seq IN (SELECT seq FROM egress WHERE sid = ?1 "
                         "ORDER BY at_ms DESC, seq DESC LIMIT -1 OFFSET ?2)",
    [ST_E_PRUNE_AGE] = "DELETE FROM egress WHERE sid = ?1 AND at_ms < ?2",
    [ST_E_LIST] = "SELECT " EGRESS_COLS " FROM egress WHERE sid = ?1 "
                  "ORDER BY at_ms DESC, seq DESC LIMIT ?2",
    [ST_E_DEL_ALL] = "DELETE FROM egress WHERE sid = ?1",
    [ST_I_SWEEP] = "DELETE FROM idempotency WHERE sid = ?1 AND created_ms < ?2",
    /* the oldest ?2 records of any sandbox created before ?1 (index idempotency_expiry) */
    [ST_I_SWEEP_ANY] = "DELETE FROM idempotency WHERE seq IN (SELECT seq FROM idempotency "
                       "WHERE created_ms < ?1 ORDER BY created_ms LIMIT ?2)",
    /* the finished records of sandbox ?1 but key ?2 beyond ?3 body bytes, newest kept */
    [ST_I_EVICT] = "DELETE FROM idempotency WHERE sid = " SID_OF_1 " AND state <> 1 AND key <> ?2 "
                   "AND seq <= (SELECT seq FROM (SELECT seq, sum(coalesce(length(body), 0)) "
                   "OVER (ORDER BY seq DESC) AS held FROM idempotency WHERE sid = " SID_OF_1
                   " AND state <> 1 AND key <> ?2) WHERE held > ?3 ORDER BY seq DESC LIMIT 1)",
    [ST_I_GET] = "SELECT state, hash, created_ms, status, ctype, body FROM idempotency "
                 "WHERE sid = ?1 AND key = ?2",
    [ST_I_DEL_KEY] = "DELETE FROM idempotency WHERE sid = ?1 AND key = ?2",
    [ST_I_TRIM] = "DELETE FROM idempotency WHERE sid = ?1 AND seq <= (SELECT seq FROM "
                  "idempotency WHERE sid = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
    [ST_I_INSERT] = "INSERT INTO idempotency (sid, key, hash, created_ms, state, claim) "
                    "VALUES (?1, ?2, ?3, ?4, 1, ?5)",
    /* finish, abort and renew act only on the pending record of the claim ?3 */
    [ST_I_FINISH] = "UPDATE idempotency SET state = ?4, status = ?5, ctype = ?6, body = ?7 "
                    "WHERE sid = " SID_OF_1 " AND key = ?2 AND state = 1 AND claim = ?3",
    [ST_I_ABORT] = "DELETE FROM idempotency WHERE sid = " SID_OF_1 " AND key = ?2 AND state = 1 "
                   "AND claim = ?3",
    [ST_I_RENEW] = "UPDATE idempotency SET created_ms = ?4 "
                   "WHERE sid = " SID_OF_1 " AND key = ?2 AND state = 1 AND claim = ?3",
    [ST_I_DEL_ALL] = "DELETE FROM idempotency WHERE sid = ?1",
};

int sq_migrate(struct conn *c)
{
    int r = sq_conn_exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                            "version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)");
    if (r < 0)
        return r;
    int64_t current = 0;
    {
        sqlite3_stmt *q = NULL;
        int rc = sqlite3_prepare_v2(
            c->db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &q, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(q);
            if (rc == SQLITE_ROW) {
                current = sqlite3_column_int64(q, 0);
                rc = SQLITE_OK;
            }
        }
        sqlite3_finalize(q);
        if (rc != SQLITE_OK)
            return sq_fail(c, rc);
    }
    int64_t latest = (int64_t)(sizeof(migrations) / sizeof(migrations[0]));
    if (current > latest)
        return err_set(
            -EIO, "the database schema (version %" PRId64 ") is newer than this server understands",
            current);
    for (int64_t v = current + 1; v <= latest && r >= 0; v++) {
        r = sq_conn_exec(c, "BEGIN IMMEDIATE");
        if (r < 0)
            return r;
        r = sq_conn_exec(c, migrations[v - 1]);
        if (r >= 0) {
            char *sql = sqlite3_mprintf("INSERT INTO schema_migrations VALUES (%lld, %lld)",
                                        (long long)v, (long long)time_now_ms());
            r = sql ? sq_conn_exec(c, sql) : -ENOMEM;
            sqlite3_free(sql);
        }
        if (r >= 0)
            r = sq_conn_exec(c, "COMMIT");
        if (r < 0)
            (void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return r;
}
