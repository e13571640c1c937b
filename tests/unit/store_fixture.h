/*
 * store_fixture.h — what the store's unit tests (test_store.c, test_history.c) share: each test
 * gets a store of its own, SQLite in a temporary directory or, in the PostgreSQL group, a fresh
 * database on the cluster at SQLFS_TEST_PG_URL; helpers read the raw database and write
 * content and sandboxes. Include it once, after unit.h, with STORE_FIXTURE_NAME defined (it
 * names the temporary directories and databases).
 */
#ifndef SQLFS_TESTS_STORE_FIXTURE_H
#define SQLFS_TESTS_STORE_FIXTURE_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include "store/store.h"
#include "util/fs.h"

#ifndef STORE_FIXTURE_NAME
#error "define STORE_FIXTURE_NAME before including store_fixture.h"
#endif

static const char *pg_url; /* SQLFS_TEST_PG_URL; NULL: SQLite only */
static bool on_pg;         /* the group running is PostgreSQL's */
static const struct store_pg_opts pg_opts = {.pool_size = 8, .pool_wait_ms = 10000};

struct fx {
    char dir[64];
    char db[128];    /* SQLite: the database file */
    char dbname[64]; /* PostgreSQL: the test's own database */
    char *url;       /* PostgreSQL: its URL */
    struct store *st;
};

/* A superuser connection to the database at url (the cluster's, or a test's). */
__attribute__((unused)) static PGconn *pg_admin(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to the test cluster: %s", PQerrorMessage(c));
    return c;
}

/* Runs SQL (no rows of interest) on a connection; fails the test on an error. */
__attribute__((unused)) static void pg_run(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
}

/* `url` with its database replaced by dbname (malloc'd). */
__attribute__((unused)) static char *url_with_db(const char *url, const char *dbname)
{
    char *out = NULL;
    assert_true(asprintf(&out, "%s%cdbname=%s", url, strchr(url, '?') ? '&' : '?', dbname) > 0);
    return out;
}

/* A fresh database on the test cluster: its name into name (cap bytes), its URL returned. */
__attribute__((unused)) static char *pg_new_db(char *name, size_t cap)
{
    static int seq;
    snprintf(name, cap, "sqlfs_%s_%d_%d", STORE_FIXTURE_NAME, (int)getpid(),
             __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    PGconn *c = pg_admin(pg_url);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    pg_run(c, sql);
    PQfinish(c);
    return url_with_db(pg_url, name);
}

__attribute__((unused)) static void pg_drop_db(const char *name)
{
    PGconn *c = pg_admin(pg_url);
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", name);
    pg_run(c, sql);
    PQfinish(c);
}

__attribute__((unused)) static void open_store(struct fx *f)
{
    if (on_pg)
        assert_int_equal(store_open_pg(f->url, &pg_opts, &f->st), 0);
    else
        assert_int_equal(store_open_sqlite(f->db, &f->st), 0);
}

__attribute__((unused)) static void reopen(struct fx *f)
{
    store_close(f->st);
    f->st = NULL;
    open_store(f);
}

__attribute__((unused)) static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    if (on_pg) {
        f->url = pg_new_db(f->dbname, sizeof(f->dbname));
    } else {
        snprintf(f->dir, sizeof(f->dir), "/tmp/%s.XXXXXX", STORE_FIXTURE_NAME);
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->db, sizeof(f->db), "%s/store.db", f->dir);
    }
    open_store(f);
    *state = f;
    return 0;
}

__attribute__((unused)) static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->st);
    if (on_pg)
        pg_drop_db(f->dbname);
    else
        assert_int_equal(rm_rf_at(AT_FDCWD, f->dir, NULL), 0);
    free(f->url);
    free(f);
    return 0;
}

/* One integer from the raw database, by SQL written for SQLite (chunk database attached as
 * "blobs"); on PostgreSQL the same query without the "blobs." prefix. */
__attribute__((unused)) static int64_t db_int(struct fx *f, const char *sql)
{
    if (on_pg) {
        char q[512];
        size_t n = 0;
        for (const char *p = sql; *p && n < sizeof(q) - 1;)
            if (strncmp(p, "blobs.", 6) == 0)
                p += 6;
            else
                q[n++] = *p++;
        q[n] = 0;
        PGconn *c = pg_admin(f->url);
        PGresult *res = PQexec(c, q);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
            fail_msg("%s: %s", q, PQerrorMessage(c));
        int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        PQfinish(c);
        return v;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char attach[256];
    snprintf(attach, sizeof(attach), "ATTACH DATABASE '%s.chunks' AS blobs", f->db);
    assert_int_equal(sqlite3_exec(db, attach, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

__attribute__((unused)) static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* Stores len bytes through a writer, in writes of `step` bytes. */
__attribute__((unused)) static void put_bytes_step(struct store *st, const void *data, size_t len,
                                                   size_t step, uint8_t id[CONTENT_ID_LEN])
{
    struct content_writer *w;
    assert_int_equal(store_content_begin(st, &w), 0);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        assert_int_equal(store_content_write(st, w, (const uint8_t *)data + off, n), 0);
    }
    int64_t size = -1;
    assert_int_equal(store_content_finish(st, w, id, &size), 0);
    assert_int_equal(size, (int64_t)len);
}

__attribute__((unused)) static void put_bytes(struct store *st, const void *data, size_t len,
                                              uint8_t id[CONTENT_ID_LEN])
{
    put_bytes_step(st, data, len, 65536 + 17, id);
}

__attribute__((unused)) static struct sandbox_rec rec_of(const char *id, const char *tenant,
                                                         const char *sub, int64_t created)
{
    struct sandbox_rec r = {0};
    snprintf(r.id, sizeof(r.id), "%s", id);
    r.tenant = (char *)tenant;
    r.sub = (char *)sub;
    r.created_ms = created;
    return r;
}

__attribute__((unused)) static void create_sb(struct store *st, const char *id)
{
    struct sandbox_rec r = rec_of(id, "t", "u", 1000);
    assert_int_equal(store_sandbox_create(st, &r, NULL, NULL), 0);
}

#endif
