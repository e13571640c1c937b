/* Unit tests of the store's history (store.h "History"): versions readable after commits,
 * the commit list and the paths each commit changed, pruning (by count, age and quota) and what
 * GC collects after it, snapshots, fork, deletion, restores' unpinned change sets and the
 * migration of a database made before history. Like test_store.c, every test runs against
 * SQLite and, when SQLFS_TEST_PG_URL names a PostgreSQL server, against PostgreSQL, each on a
 * fresh database. SQLFS_TEST_ENGINE=sqlite or =postgres runs one engine only;
 * SQLFS_TEST_FILTER=pattern only the tests whose names match (cmocka_set_test_filter). */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include "store/store.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/home.h"

#define STORE_FIXTURE_NAME "test_history"
#include "store_fixture.h"

#define SB1 "11111111-1111-4111-8111-111111111111"
#define SB2 "22222222-2222-4222-8222-222222222222"
#define SB3 "33333333-3333-4333-8333-333333333333"
#define MISSING "99999999-9999-4999-8999-999999999999"

/* Runs SQL on the raw database (no rows of interest). */
static void db_exec(struct fx *f, const char *sql)
{
    if (on_pg) {
        PGconn *c = pg_admin(f->url);
        pg_run(c, sql);
        PQfinish(c);
        return;
    }
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* ---- contents, change sets, commits ----------------------------------------------------- */

/* A content's bytes as a malloc'd string (contents in these tests are text). */
static char *read_text(struct store *st, const uint8_t id[CONTENT_ID_LEN])
{
    struct content_reader *r;
    assert_int_equal(store_content_open(st, id, &r), 0);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (;;) {
        size_t got = 0;
        assert_int_equal(store_content_read(st, r, buf + len, cap - len, &got), 0);
        if (got == 0)
            break;
        len += got;
        assert_true(len < cap);
    }
    store_content_close(st, r);
    buf[len] = 0;
    return buf;
}

static void cs_file_mode(struct changeset *cs, const char *path, const uint8_t *id, int64_t size,
                         uint32_t mode)
{
    struct file_meta m = {
        .path = (char *)path, .kind = FILE_KIND_FILE, .mode = mode, .size = size, .mtime_ns = 5};
    if (size > 0) {
        m.has_content = true;
        memcpy(m.content, id, CONTENT_ID_LEN);
    }
    assert_int_equal(changeset_put(cs, &m), 0);
}

/* Stores `text` and puts it at path (0644). */
static void cs_text(struct store *st, struct changeset *cs, const char *path, const char *text)
{
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(st, text, strlen(text), id);
    cs_file_mode(cs, path, id, (int64_t)strlen(text), 0644);
}

static void cs_dir(struct changeset *cs, const char *path, uint32_t mode)
{
    struct file_meta m = {.path = (char *)path, .kind = FILE_KIND_DIR, .mode = mode, .mtime_ns = 7};
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void cs_link(struct changeset *cs, const char *path, const char *target)
{
    struct file_meta m = {.path = (char *)path,
                          .kind = FILE_KIND_SYMLINK,
                          .mode = 0777,
                          .size = (int64_t)strlen(target),
                          .mtime_ns = 9,
                          .target = (char *)target};
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void cs_del(struct changeset *cs, const char *path)
{
    assert_int_equal(changeset_delete(cs, path), 0);
}

/* Commits cs (released) with opts o (NULL: no limits, at 1000 ms); 0 or the error. */
static int commit_o(struct store *st, const char *sb, struct changeset *cs,
                    const struct commit_opts *o, struct commit_result *res)
{
    struct commit_opts plain = {.expect_version = -1, .now_ms = 1000};
    struct commit_result tmp;
    int r = store_commit(st, sb, cs, o ? o : &plain, res ? res : &tmp);
    changeset_release(cs);
    return r;
}

/* Commits one file /f holding `text` in sandbox sb with opts o. */
static void commit_f(struct store *st, const char *sb, const char *text,
                     const struct commit_opts *o, struct commit_result *res)
{
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(st, &cs, "/f", text);
    assert_int_equal(commit_o(st, sb, &cs, o, res), 0);
}

static int64_t gc_contents(struct store *st)
{
    struct gc_stats gs;
    assert_int_equal(store_gc(st, &gs), 0);
    return gs.contents_deleted;
}

/* ---- trees as text ---------------------------------------------------------------------- */

/* A tree (or a stat) as text: one line per row, with the content's bytes read back. */
struct text {
    struct store *st;
    char *s;
    size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    assert_true(vasprintf(&line, fmt, ap) >= 0);
    va_end(ap);
    size_t n = strlen(line);
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    memcpy(t->s + t->len, line, n + 1);
    t->len += n;
    free(line);
}

static void meta_add(struct text *t, const struct file_meta *m)
{
    char *bytes = m->has_content ? read_text(t->st, m->content) : strdup("");
    text_add(t, "%s %d %o %" PRId64 " %" PRId64 " [%s] %s\n", m->path, (int)m->kind, m->mode,
             m->size, m->mtime_ns, bytes, m->target ? m->target : "-");
    free(bytes);
}

static int text_cb(const struct file_meta *m, void *ud)
{
    meta_add(ud, m);
    return 0;
}

/* The tree below prefix (max_depth) now (version < 0) or at version, as text (malloc'd). */
static char *tree(struct store *st, const char *sb, int64_t version, const char *prefix,
                  int max_depth)
{
    struct text t = {.st = st};
    text_add(&t, "%s", "");
    if (version < 0)
        assert_int_equal(store_list(st, sb, prefix, max_depth, text_cb, &t), 0);
    else
        assert_int_equal(store_list_at(st, sb, version, prefix, max_depth, text_cb, &t), 0);
    return t.s;
}

/* stat of path now (version < 0) or at version, as text ("ENOENT" when missing). */
static char *stat_text(struct store *st, const char *sb, int64_t version, const char *path)
{
    struct text t = {.st = st};
    struct file_meta m;
    int r = version < 0 ? store_stat(st, sb, path, &m) : store_stat_at(st, sb, version, path, &m);
    if (r == -ENOENT) {
        text_add(&t, "ENOENT");
        return t.s;
    }
    assert_int_equal(r, 0);
    meta_add(&t, &m);
    file_meta_release(&m);
    return t.s;
}

/* The text of /f at version (its content), malloc'd. */
static char *f_at(struct store *st, const char *sb, int64_t version)
{
    struct file_meta m;
    int r = store_stat_at(st, sb, version, "/f", &m);
    if (r != 0)
        fail_msg("/f at version %" PRId64 ": %d %s", version, r, err_message());
    char *s = read_text(st, m.content);
    file_meta_release(&m);
    return s;
}

static void expect_f(struct store *st, const char *sb, int64_t version, const char *text)
{
    char *s = f_at(st, sb, version);
    assert_string_equal(s, text);
    free(s);
}

static void expect_gone(struct store *st, const char *sb, int64_t version)
{
    struct file_meta m;
    err_clear();
    assert_int_equal(store_stat_at(st, sb, version, "/", &m), -ERR_VERSION_NOT_FOUND);
    assert_non_null(strstr(err_message(), "does not exist or was pruned"));
    struct commit_rec c;
    assert_int_equal(store_commit_get(st, sb, version, &c), -ERR_VERSION_NOT_FOUND);
}

/* ---- the commits of a sandbox ----------------------------------------------------------- */

struct clog {
    struct commit_rec v[64];
    int n;
};

static int clog_cb(const struct commit_rec *c, void *ud)
{
    struct clog *l = ud;
    assert_true(l->n < 64);
    struct commit_rec *o = &l->v[l->n++];
    *o = *c;
    o->kind = c->kind ? strdup(c->kind) : NULL;
    o->info_json = c->info_json ? strdup(c->info_json) : NULL;
    o->cwd = c->cwd ? strdup(c->cwd) : NULL;
    return 0;
}

static void clog_release(struct clog *l)
{
    for (int i = 0; i < l->n; i++)
        commit_rec_release(&l->v[i]);
    l->n = 0;
}

/* The versions commits_list gives, "5 4 3", into buf. */
static const char *versions(struct store *st, const char *sb, int64_t before, int64_t limit,
                            char *buf, size_t cap)
{
    struct clog l = {0};
    assert_int_equal(store_commits_list(st, sb, before, limit, clog_cb, &l), 0);
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < l.n; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? " " : "", l.v[i].version);
    clog_release(&l);
    return buf;
}

static int paths_cb(enum path_change_kind k, const struct file_meta *m, void *ud)
{
    struct text *t = ud;
    char *bytes = m->has_content ? read_text(t->st, m->content) : strdup("");
    text_add(t, "%c %s %o %s\n",
             k == PATH_ADDED      ? 'A'
             : k == PATH_MODIFIED ? 'M'
                                  : 'D',
             m->path, m->mode, bytes);
    free(bytes);
    return 0;
}

/* commit_paths of version as text, malloc'd. */
static char *paths(struct store *st, const char *sb, int64_t version)
{
    struct text t = {.st = st};
    text_add(&t, "%s", "");
    assert_int_equal(store_commit_paths(st, sb, version, paths_cb, &t), 0);
    return t.s;
}

static void expect_paths(struct store *st, const char *sb, int64_t version, const char *want)
{
    char *got = paths(st, sb, version);
    assert_string_equal(got, want);
    free(got);
}

/* What a walk of a large commit's paths saw. */
struct big_walk {
    struct fx *f;
    int64_t n, added, modified, deleted;
    char last[64];   /* the path before */
    bool sorted;     /* every path after the one before */
    int64_t fetches; /* PostgreSQL: sessions reading a cursor's page, seen at the first path */
    int64_t stop_at; /* > 0: the walk is stopped (7) at this path */
};

static int big_cb(enum path_change_kind k, const struct file_meta *m, void *ud)
{
    struct big_walk *w = ud;
    if (w->n++ == 0 && on_pg)
        w->fetches = db_int(w->f, "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE query LIKE 'FETCH % FROM commit_paths'");
    w->sorted = w->sorted && strcmp(w->last, m->path) < 0;
    snprintf(w->last, sizeof(w->last), "%s", m->path);
    w->added += k == PATH_ADDED;
    w->modified += k == PATH_MODIFIED;
    w->deleted += k == PATH_DELETED;
    return w->n == w->stop_at ? 7 : 0;
}

/* A commit's paths are read in pages (PostgreSQL: through a cursor, one page held at a time),
 * the pages together what the commit changed, in path order; a walk stopped by its callback
 * stops there. */
static void test_commit_paths_paged(void **state)
{
    struct fx *f = *state;
    enum { FILES = 2600 };
    create_sb(f->st, SB1);
    uint8_t one[CONTENT_ID_LEN], two[CONTENT_ID_LEN];
    put_bytes(f->st, "one", 3, one);
    put_bytes(f->st, "two", 3, two);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    for (int i = 0; i < FILES; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/d/f%04d", i);
        cs_file_mode(&cs, path, one, 3, 0644);
    }
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    /* v2: every third file modified, every third deleted, as many added between them */
    changeset_init(&cs, "put");
    for (int i = 0; i < FILES; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/d/f%04d", i);
        if (i % 3 == 0)
            cs_file_mode(&cs, path, two, 3, 0644);
        else if (i % 3 == 1)
            cs_del(&cs, path);
        else {
            snprintf(path, sizeof(path), "/d/f%04d+", i);
            cs_file_mode(&cs, path, two, 3, 0644);
        }
    }
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    struct big_walk w = {.f = f, .sorted = true};
    assert_int_equal(store_commit_paths(f->st, SB1, 2, big_cb, &w), 0);
    assert_true(w.sorted);
    assert_int_equal(w.modified, (FILES + 2) / 3);
    assert_int_equal(w.deleted, (FILES + 1) / 3);
    assert_int_equal(w.added, FILES / 3);
    assert_int_equal(w.n, FILES);
    if (on_pg)
        assert_int_equal(w.fetches, 1);
    /* v1: the directory and every file, added */
    w = (struct big_walk){.f = f, .sorted = true};
    assert_int_equal(store_commit_paths(f->st, SB1, 1, big_cb, &w), 0);
    assert_true(w.sorted);
    assert_int_equal(w.added, FILES + 1);
    assert_int_equal(w.n, FILES + 1);
    /* stopped past the first page */
    w = (struct big_walk){.f = f, .sorted = true, .stop_at = 1500};
    assert_int_equal(store_commit_paths(f->st, SB1, 1, big_cb, &w), 7);
    assert_int_equal(w.n, 1500);
    /* the store is still usable afterwards */
    w = (struct big_walk){.f = f, .sorted = true};
    assert_int_equal(store_commit_paths(f->st, SB1, 2, big_cb, &w), 0);
    assert_int_equal(w.n, FILES);
}

/* ---- a history of six versions ---------------------------------------------------------- */

#define NV 6
static const char *const probe[] = {"/",  "/a", "/a/x", "/a/sub", "/a/sub/y",
                                    "/b", "/c", "/d",   "/l",     "/tmp1"};
#define NPROBE (sizeof(probe) / sizeof(probe[0]))

/* What list and stat said right after each commit. */
struct hist {
    char *tree[NV + 1];         /* list "/" */
    char *sub[NV + 1];          /* list "/a", depth 1 */
    char *stat[NV + 1][NPROBE]; /* stat of each probe */
};

static void capture(struct store *st, struct hist *h, int v)
{
    h->tree[v] = tree(st, SB1, -1, "/", 0);
    h->sub[v] = tree(st, SB1, -1, "/a", 1);
    for (size_t i = 0; i < NPROBE; i++)
        h->stat[v][i] = stat_text(st, SB1, -1, probe[i]);
}

static void hist_release(struct hist *h)
{
    for (int v = 0; v <= NV; v++) {
        free(h->tree[v]);
        free(h->sub[v]);
        for (size_t i = 0; i < NPROBE; i++)
            free(h->stat[v][i]);
    }
}

/*
 * SB1 (created empty, version 0), then:
 *   v1 /a (dir), /a/x "one", /b "bee", /l -> b
 *   v2 /a/x "two", /b deleted, /a/sub/y "why" (its parent created); cwd /a/sub
 *   v3 /a deleted (its subtree with it), /c "sea"
 *   v4 /a (dir 0700), /a/x "three"
 *   v5 /c: the same content, mode 0600
 *   v6 /tmp1 put and deleted, /d "dee", /c "c1" then "c2"
 */
static void build(struct fx *f, struct hist *h)
{
    struct store *st = f->st;
    create_sb(st, SB1);
    capture(st, h, 0);
    struct changeset cs;

    changeset_init(&cs, "put");
    cs_dir(&cs, "/a", 0755);
    cs_text(st, &cs, "/a/x", "one");
    cs_text(st, &cs, "/b", "bee");
    cs_link(&cs, "/l", "b");
    assert_int_equal(commit_o(st, SB1, &cs, NULL, NULL), 0);
    capture(st, h, 1);

    changeset_init(&cs, "exec");
    cs.create_parents = true;
    cs.new_cwd = strdup("/a/sub");
    cs_text(st, &cs, "/a/x", "two");
    cs_del(&cs, "/b");
    cs_text(st, &cs, "/a/sub/y", "why");
    assert_int_equal(commit_o(st, SB1, &cs, NULL, NULL), 0);
    capture(st, h, 2);

    changeset_init(&cs, "exec");
    cs_del(&cs, "/a");
    cs_text(st, &cs, "/c", "sea");
    assert_int_equal(commit_o(st, SB1, &cs, NULL, NULL), 0);
    capture(st, h, 3);

    changeset_init(&cs, "put");
    cs_dir(&cs, "/a", 0700);
    cs_text(st, &cs, "/a/x", "three");
    assert_int_equal(commit_o(st, SB1, &cs, NULL, NULL), 0);
    capture(st, h, 4);

    changeset_init(&cs, "chmod");
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(st, "sea", 3, id);
    cs_file_mode(&cs, "/c", id, 3, 0600);
    assert_int_equal(commit_o(st, SB1, &cs, NULL, NULL), 0);
    capture(st, h, 5);

    changeset_init(&cs, "exec");
    cs_text(st, &cs, "/tmp1", "tmp");
    cs_del(&cs, "/tmp1");
    cs_text(st, &cs, "/d", "dee");
    cs_text(st, &cs, "/c", "c1");
    cs_text(st, &cs, "/c", "c2");
    assert_int_equal(commit_o(st, SB1, &cs, NULL, NULL), 0);
    capture(st, h, 6);
}

/* Every version reads back as list and stat saw it when it was current, the root implicit;
 * version 0 (no commit made it), versions not made yet and other sandboxes' fail. */
static void test_versions_readable(void **state)
{
    struct fx *f = *state;
    struct hist h = {0};
    build(f, &h);
    assert_string_equal(h.tree[0], "");
    assert_string_equal(h.tree[3], "/c 1 644 3 5 [sea] -\n/l 3 777 1 9 [] b\n");
    for (int v = 1; v <= NV; v++) {
        char *t = tree(f->st, SB1, v, "/", 0);
        assert_string_equal(t, h.tree[v]);
        free(t);
        t = tree(f->st, SB1, v, "/a", 1);
        assert_string_equal(t, h.sub[v]);
        free(t);
        for (size_t i = 0; i < NPROBE; i++) {
            t = stat_text(f->st, SB1, v, probe[i]);
            assert_string_equal(t, h.stat[v][i]);
            free(t);
        }
    }
    /* the root, and a depth cut */
    struct file_meta m;
    assert_int_equal(store_stat_at(f->st, SB1, 3, "/", &m), 0);
    assert_int_equal(m.kind, FILE_KIND_DIR);
    assert_string_equal(m.path, "/");
    file_meta_release(&m);
    char *t = tree(f->st, SB1, 2, "/", 1);
    assert_string_equal(t, "/a 2 755 0 7 [] -\n/l 3 777 1 9 [] b\n");
    free(t);
    /* a prefix with nothing below it */
    t = tree(f->st, SB1, 3, "/a", 0);
    assert_string_equal(t, "");
    free(t);

    expect_gone(f->st, SB1, 0);
    expect_gone(f->st, SB1, NV + 1);
    expect_gone(f->st, SB1, -1);
    assert_int_equal(store_stat_at(f->st, MISSING, 1, "/", &m), -ENOENT);
    struct text tx = {.st = f->st};
    assert_int_equal(store_list_at(f->st, MISSING, 1, "/", 0, text_cb, &tx), -ENOENT);
    assert_int_equal(store_list_at(f->st, SB1, 1, "a/", 0, text_cb, &tx), -EINVAL);
    free(tx.s);

    /* a sandbox created empty: its version 0 is current, and readable */
    create_sb(f->st, SB2);
    t = tree(f->st, SB2, 0, "/", 0);
    assert_string_equal(t, "");
    free(t);
    assert_int_equal(store_stat_at(f->st, SB2, 0, "/", &m), 0);
    file_meta_release(&m);
    /* a sandbox created with its first version: 0 never existed */
    struct changeset cs;
    changeset_init(&cs, "create");
    cs_text(f->st, &cs, "/f", "first");
    struct sandbox_rec r = rec_of(SB3, "t", "u", 1000);
    assert_int_equal(store_sandbox_create(f->st, &r, &cs, NULL), 0);
    changeset_release(&cs);
    expect_gone(f->st, SB3, 0);
    expect_f(f->st, SB3, 1, "first");
    hist_release(&h);
}

/* commits_list: newest first, before and limit, each commit's counts and cwd; commit_get. */
static void test_commits_list(void **state)
{
    struct fx *f = *state;
    struct hist h = {0};
    build(f, &h);
    char buf[128];
    assert_string_equal(versions(f->st, SB1, INT64_MAX, 100, buf, sizeof(buf)), "6 5 4 3 2 1");
    assert_string_equal(versions(f->st, SB1, 4, 2, buf, sizeof(buf)), "3 2");
    assert_string_equal(versions(f->st, SB1, 1, 10, buf, sizeof(buf)), "");
    assert_int_equal(store_commits_list(f->st, SB1, INT64_MAX, 0, clog_cb, NULL), -EINVAL);
    struct clog l = {0};
    assert_int_equal(store_commits_list(f->st, MISSING, INT64_MAX, 5, clog_cb, &l), -ENOENT);

    assert_int_equal(store_commits_list(f->st, SB1, INT64_MAX, 100, clog_cb, &l), 0);
    assert_int_equal(l.n, NV);
    static const struct {
        const char *kind;
        int64_t added, modified, deleted, bytes;
        const char *cwd;
    } want[NV + 1] = {
        [1] = {"put", 4, 0, 0, 6, SANDBOX_HOME}, [2] = {"exec", 2, 1, 1, 6, "/a/sub"},
        [3] = {"exec", 1, 0, 4, 3, "/a/sub"},    [4] = {"put", 2, 0, 0, 5, "/a/sub"},
        [5] = {"chmod", 0, 1, 0, 3, "/a/sub"},   [6] = {"exec", 1, 1, 0, 5, "/a/sub"},
    };
    for (int i = 0; i < l.n; i++) {
        const struct commit_rec *c = &l.v[i];
        int v = NV - i;
        assert_int_equal(c->version, v);
        assert_int_equal(c->created_ms, 1000);
        assert_string_equal(c->kind, want[v].kind);
        assert_int_equal(c->added, want[v].added);
        assert_int_equal(c->modified, want[v].modified);
        assert_int_equal(c->deleted, want[v].deleted);
        assert_int_equal(c->bytes_added, want[v].bytes);
        assert_non_null(c->cwd);
        assert_string_equal(c->cwd, want[v].cwd);
        struct commit_rec g;
        assert_int_equal(store_commit_get(f->st, SB1, v, &g), 0);
        assert_int_equal(g.version, v);
        assert_string_equal(g.kind, c->kind);
        assert_int_equal(g.added, c->added);
        assert_int_equal(g.deleted, c->deleted);
        assert_string_equal(g.cwd, c->cwd);
        commit_rec_release(&g);
    }
    clog_release(&l);
    struct commit_rec g;
    assert_int_equal(store_commit_get(f->st, SB1, 0, &g), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_commit_get(f->st, SB1, NV + 1, &g), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_commit_get(f->st, MISSING, 1, &g), -ENOENT);

    /* info_json is kept */
    struct changeset cs;
    changeset_init(&cs, "exec");
    assert_int_equal(changeset_set_info(&cs, "{\"exit\":3}"), 0);
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    assert_int_equal(store_commit_get(f->st, SB1, NV + 1, &g), 0);
    assert_string_equal(g.info_json, "{\"exit\":3}");
    assert_int_equal(g.added + g.modified + g.deleted + g.bytes_added, 0);
    commit_rec_release(&g);
    hist_release(&h);
}

/* commit_paths: added, modified (the row after), deleted (the row before), subtree deletes; a
 * path put and deleted within one commit is not one of them. */
static void test_commit_paths(void **state)
{
    struct fx *f = *state;
    struct hist h = {0};
    build(f, &h);
    expect_paths(f->st, SB1, 1, "A /a 755 \nA /a/x 644 one\nA /b 644 bee\nA /l 777 \n");
    expect_paths(f->st, SB1, 2,
                 "A /a/sub 755 \nA /a/sub/y 644 why\nM /a/x 644 two\nD /b 644 bee\n");
    expect_paths(f->st, SB1, 3,
                 "D /a 755 \nD /a/sub 755 \nD /a/sub/y 644 why\nD /a/x 644 two\nA /c 644 sea\n");
    expect_paths(f->st, SB1, 4, "A /a 700 \nA /a/x 644 three\n");
    expect_paths(f->st, SB1, 5, "M /c 600 sea\n");
    expect_paths(f->st, SB1, 6, "M /c 644 c2\nA /d 644 dee\n");
    struct text t = {.st = f->st};
    assert_int_equal(store_commit_paths(f->st, SB1, 0, paths_cb, &t), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_commit_paths(f->st, SB1, 7, paths_cb, &t), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_commit_paths(f->st, MISSING, 1, paths_cb, &t), -ENOENT);
    free(t.s);
    hist_release(&h);
}

/* history_max_commits: the newest N versions stay; pruned contents are collected, the retained
 * ones read back. */
static void test_prune_max_commits(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct commit_opts o = {.expect_version = -1, .now_ms = 1000, .history_max_commits = 3};
    const char *texts[] = {"", "v1", "v2", "v3", "v4", "v5", "v6"};
    int64_t collected = 0;
    for (int v = 1; v <= 6; v++) {
        struct commit_result res;
        commit_f(f->st, SB1, texts[v], &o, &res);
        assert_int_equal(res.version, v);
        assert_true(v <= 3 || res.unreferenced);
        collected += gc_contents(f->st);
        for (int k = 1; k <= v; k++)
            if (k > v - 3)
                expect_f(f->st, SB1, k, texts[k]);
            else
                expect_gone(f->st, SB1, k);
    }
    assert_int_equal(collected, 3);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 3);
    char buf[64];
    assert_string_equal(versions(f->st, SB1, INT64_MAX, 10, buf, sizeof(buf)), "6 5 4");
    /* commit_paths of the oldest retained version: its removed rows were pruned with v3 */
    expect_paths(f->st, SB1, 5, "M /f 644 v5\n");
    expect_paths(f->st, SB1, 4, "A /f 644 v4\n");

    /* 1: only the current version; everything else goes */
    o.history_max_commits = 1;
    commit_f(f->st, SB1, "v7", &o, NULL);
    assert_int_equal(gc_contents(f->st), 3);
    expect_gone(f->st, SB1, 6);
    expect_f(f->st, SB1, 7, "v7");
    assert_int_equal(db_int(f, "SELECT count(*) FROM file_history"), 0);
    assert_string_equal(versions(f->st, SB1, INT64_MAX, 10, buf, sizeof(buf)), "7");
}

/* history_max_age_ms: versions made before now - age go, the current one never. */
static void test_prune_age(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct commit_opts o = {.expect_version = -1, .history_max_age_ms = 2500};
    const char *texts[] = {"", "a1", "a2", "a3", "a4", "a5", "a6"};
    for (int v = 1; v <= 6; v++) {
        o.now_ms = 1000 * v;
        commit_f(f->st, SB1, texts[v], &o, NULL);
    }
    /* at 6000 ms: the commits made at 3500 ms or later are 4, 5 and 6 */
    for (int v = 1; v <= 3; v++)
        expect_gone(f->st, SB1, v);
    for (int v = 4; v <= 6; v++)
        expect_f(f->st, SB1, v, texts[v]);
    assert_int_equal(gc_contents(f->st), 3);
    /* much later: only the current version */
    o.now_ms = 100000;
    commit_f(f->st, SB1, "a7", &o, NULL);
    for (int v = 4; v <= 6; v++)
        expect_gone(f->st, SB1, v);
    expect_f(f->st, SB1, 7, "a7");
    char buf[64];
    assert_string_equal(versions(f->st, SB1, INT64_MAX, 10, buf, sizeof(buf)), "7");
}

/* A quota keeps only the history that fits beside the live tree, the oldest going first. */
static void test_prune_quota(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct commit_opts o = {.expect_version = -1, .now_ms = 1000, .quota_bytes = 100};
    char texts[8][41];
    for (int v = 1; v <= 7; v++) {
        memset(texts[v], 'a' + v, 40);
        texts[v][40] = 0;
    }
    commit_f(f->st, SB1, texts[1], &o, NULL);
    commit_f(f->st, SB1, texts[2], &o, NULL); /* 40 live + 40 history */
    expect_f(f->st, SB1, 1, texts[1]);
    expect_f(f->st, SB1, 2, texts[2]);
    commit_f(f->st, SB1, texts[3], &o, NULL); /* 40 + 80 > 100: v1 goes */
    expect_gone(f->st, SB1, 1);
    expect_f(f->st, SB1, 2, texts[2]);
    expect_f(f->st, SB1, 3, texts[3]);
    for (int v = 4; v <= 7; v++) {
        commit_f(f->st, SB1, texts[v], &o, NULL);
        expect_gone(f->st, SB1, v - 2);
        expect_f(f->st, SB1, v - 1, texts[v - 1]);
        expect_f(f->st, SB1, v, texts[v]);
    }
    assert_int_equal(gc_contents(f->st), 5);
    /* a bigger live tree leaves no room for history at all: v6 goes, v7 (all of its rows live
     * still) stays */
    struct changeset cs;
    changeset_init(&cs, "put");
    char big[56];
    memset(big, 'z', 55);
    big[55] = 0;
    cs_text(f->st, &cs, "/g", big);
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    expect_gone(f->st, SB1, 6);
    expect_f(f->st, SB1, 7, texts[7]);
    expect_f(f->st, SB1, 8, texts[7]);
    assert_int_equal(db_int(f, "SELECT count(*) FROM file_history"), 0);
    assert_int_equal(gc_contents(f->st), 1);
    /* the quota still limits the live tree */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/h", "0123456789012345678901234567890123456789");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), -ERR_QUOTA);
}

/* Appends "name@version " to the string at ud (256 bytes). */
static int snap_cb(const struct snapshot_rec *r, void *ud)
{
    char *s = ud;
    size_t n = strlen(s);
    snprintf(s + n, 256 - n, "%s@%" PRId64 " ", r->name, r->version);
    return 0;
}

/* A snapshot keeps its version readable through pruning; deleted, the version goes with the next
 * commit and its content is collected. Snapshot errors. */
static void test_snapshots(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct commit_opts o = {.expect_version = -1, .now_ms = 1000, .history_max_commits = 2};
    commit_f(f->st, SB1, "s1", &o, NULL);
    uint8_t s1_id[CONTENT_ID_LEN];
    put_bytes(f->st, "s1", 2, s1_id); /* its id (a pin the discard below drops) */
    struct changeset pin;
    changeset_init(&pin, "put");
    cs_file_mode(&pin, "/f", s1_id, 2, 0644);
    assert_int_equal(store_discard(f->st, &pin), 0);
    changeset_release(&pin);
    assert_int_equal(store_snapshot_create(f->st, SB1, "keep", 1, 5000, 3), 0);
    for (int v = 2; v <= 5; v++) {
        char text[16];
        snprintf(text, sizeof(text), "s%d", v);
        commit_f(f->st, SB1, text, &o, NULL);
    }
    assert_int_equal(gc_contents(f->st), 2); /* s2, s3 */
    expect_f(f->st, SB1, 1, "s1");
    expect_gone(f->st, SB1, 2);
    expect_gone(f->st, SB1, 3);
    expect_f(f->st, SB1, 4, "s4");
    char buf[64];
    assert_string_equal(versions(f->st, SB1, INT64_MAX, 10, buf, sizeof(buf)), "5 4 1");
    expect_paths(f->st, SB1, 1, "A /f 644 s1\n");
    struct commit_rec c;
    assert_int_equal(store_commit_get(f->st, SB1, 1, &c), 0);
    assert_int_equal(c.version, 1);
    commit_rec_release(&c);

    struct snapshot_rec s;
    assert_int_equal(store_snapshot_get(f->st, SB1, "keep", &s), 0);
    assert_string_equal(s.name, "keep");
    assert_int_equal(s.version, 1);
    assert_int_equal(s.created_ms, 5000);
    snapshot_rec_release(&s);

    /* errors */
    assert_int_equal(store_snapshot_create(f->st, SB1, "keep", 5, 5000, 3), -EEXIST);
    assert_int_equal(store_snapshot_create(f->st, SB1, "old", 2, 5000, 3), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_snapshot_create(f->st, SB1, "new", 9, 5000, 3), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_snapshot_create(f->st, MISSING, "x", 1, 5000, 3), -ENOENT);
    assert_int_equal(store_snapshot_create(f->st, SB1, "b", 4, 6000, 3), 0);
    assert_int_equal(store_snapshot_create(f->st, SB1, "a", 4, 6000, 3), 0);
    err_clear();
    assert_int_equal(store_snapshot_create(f->st, SB1, "c", 5, 6000, 3), -E2BIG);
    assert_non_null(strstr(err_message(), "3 snapshots"));
    assert_int_equal(store_snapshot_create(f->st, SB1, "c", 5, 6000, 0), 0); /* no limit */
    assert_int_equal(store_snapshot_get(f->st, SB1, "nope", &s), -ENOENT);
    assert_int_equal(store_snapshot_delete(f->st, SB1, "nope"), -ENOENT);
    assert_int_equal(store_snapshot_delete(f->st, MISSING, "keep"), -ENOENT);

    char list[256] = "";
    assert_int_equal(store_snapshot_list(f->st, SB1, snap_cb, list), 0);
    assert_string_equal(list, "c@5 a@4 b@4 keep@1 ");
    list[0] = 0;
    create_sb(f->st, SB2);
    assert_int_equal(store_snapshot_list(f->st, SB2, snap_cb, list), 0);
    assert_string_equal(list, "");
    assert_int_equal(store_snapshot_list(f->st, MISSING, snap_cb, list), -ENOENT);

    /* deleted: version 1 is below the floor, no longer readable; its rows are pruned (at once
     * or by the next commit) and its content is collected */
    int64_t contents = db_int(f, "SELECT count(*) FROM contents");
    assert_int_equal(store_snapshot_delete(f->st, SB1, "keep"), 0);
    expect_gone(f->st, SB1, 1);
    commit_f(f->st, SB1, "s6", &o, NULL);
    assert_int_equal(db_int(f, "SELECT count(*) FROM file_history WHERE vfrom = 1"), 0);
    assert_string_equal(versions(f->st, SB1, INT64_MAX, 10, buf, sizeof(buf)), "6 5 4");
    (void)gc_contents(f->st);
    /* s1 gone, s6 new (s4 and s5 named by snapshots) */
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), contents);
    struct content_reader *rd;
    assert_int_equal(store_content_open(f->st, s1_id, &rd), -ENOENT);
    /* a snapshot of the current version */
    assert_int_equal(store_snapshot_create(f->st, SB1, "now", 6, 7000, 0), 0);
}

/* Pruning never removes content a retained version uses, though other paths or versions
 * dropped it; what no version uses any longer is collected. */
static void test_prune_keeps_used_content(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    struct commit_opts o = {.expect_version = -1, .now_ms = 1000, .history_max_commits = 2};
    struct changeset cs;
    /* v1: /x X, /keep K; v2: /x deleted; v3: /y X; v4: /y Y; v5: /z X */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/x", "XXX");
    cs_text(f->st, &cs, "/keep", "KKK");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    changeset_init(&cs, "put");
    cs_del(&cs, "/x");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/y", "XXX");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    assert_int_equal(gc_contents(f->st), 0);
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/y", "YYY");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    assert_int_equal(gc_contents(f->st), 0); /* X: /y at v3 */
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/z", "XXX");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    assert_int_equal(gc_contents(f->st), 0); /* X: /z now */
    /* every retained version's files read back (tree() reads each content) */
    char *t = tree(f->st, SB1, 4, "/", 0);
    assert_string_equal(t, "/keep 1 644 3 5 [KKK] -\n/y 1 644 3 5 [YYY] -\n");
    free(t);
    t = tree(f->st, SB1, 5, "/", 0);
    assert_string_equal(t, "/keep 1 644 3 5 [KKK] -\n/y 1 644 3 5 [YYY] -\n/z 1 644 3 5 [XXX] -\n");
    free(t);
    changeset_init(&cs, "put");
    cs_del(&cs, "/y");
    cs_del(&cs, "/z");
    assert_int_equal(commit_o(f->st, SB1, &cs, &o, NULL), 0);
    assert_int_equal(gc_contents(f->st), 0); /* v5 holds both */
    commit_f(f->st, SB1, "fff", &o, NULL);
    assert_int_equal(gc_contents(f->st), 2); /* X and Y */
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 2);
    t = tree(f->st, SB1, 6, "/", 0);
    assert_string_equal(t, "/keep 1 644 3 5 [KKK] -\n");
    free(t);
}

/* fork: a new sandbox whose version 1 is the source's tree at a version, content shared. */
static void test_fork(void **state)
{
    struct fx *f = *state;
    struct hist h = {0};
    build(f, &h);
    int64_t contents = db_int(f, "SELECT count(*) FROM contents");
    int64_t chunks = db_int(f, "SELECT count(*) FROM blobs.chunks");
    struct sandbox_rec r = rec_of(SB2, "t", "u", 1000);
    r.name = "forked";
    struct commit_opts o = {.expect_version = -1, .now_ms = 9000};
    assert_int_equal(store_sandbox_fork(f->st, SB1, 2, &r, "{\"from\":2}", &o), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), contents);
    assert_int_equal(db_int(f, "SELECT count(*) FROM blobs.chunks"), chunks);
    char *t = tree(f->st, SB2, -1, "/", 0);
    assert_string_equal(t, h.tree[2]);
    free(t);
    struct sandbox_rec g;
    assert_int_equal(store_sandbox_get(f->st, SB2, NULL, NULL, &g), 0);
    assert_int_equal(g.version, 1);
    assert_string_equal(g.name, "forked");
    assert_string_equal(g.cwd, "/a/sub");
    assert_int_equal(g.file_count, 5);
    assert_int_equal(g.size_bytes, 6); /* two, why */
    sandbox_rec_release(&g);
    struct commit_rec c;
    assert_int_equal(store_commit_get(f->st, SB2, 1, &c), 0);
    assert_string_equal(c.kind, "fork");
    assert_string_equal(c.info_json, "{\"from\":2}");
    assert_int_equal(c.added, 5);
    assert_int_equal(c.bytes_added, 6);
    assert_int_equal(c.created_ms, 9000);
    assert_string_equal(c.cwd, "/a/sub");
    commit_rec_release(&c);
    expect_gone(f->st, SB2, 0);
    /* the fork goes on on its own */
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/a/x", "forked");
    assert_int_equal(commit_o(f->st, SB2, &cs, NULL, NULL), 0);
    expect_paths(f->st, SB2, 2, "M /a/x 644 forked\n");
    t = tree(f->st, SB2, 1, "/", 0);
    assert_string_equal(t, h.tree[2]);
    free(t);
    /* the current version, with the source's cwd */
    struct sandbox_rec r3 = rec_of(SB3, "t", "u", 1000);
    assert_int_equal(store_sandbox_fork(f->st, SB1, NV, &r3, NULL, NULL), 0);
    t = tree(f->st, SB3, -1, "/", 0);
    assert_string_equal(t, h.tree[NV]);
    free(t);
    assert_int_equal(store_sandbox_get(f->st, SB3, NULL, NULL, &g), 0);
    assert_string_equal(g.cwd, "/a/sub");
    sandbox_rec_release(&g);

    /* errors: nothing created */
    struct sandbox_rec r4 = rec_of("44444444-4444-4444-8444-444444444444", "t", "u", 1000);
    assert_int_equal(store_sandbox_fork(f->st, MISSING, 1, &r4, NULL, NULL), -ENOENT);
    assert_int_equal(store_sandbox_fork(f->st, SB1, 0, &r4, NULL, NULL), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_sandbox_fork(f->st, SB1, 99, &r4, NULL, NULL), -ERR_VERSION_NOT_FOUND);
    assert_int_equal(store_sandbox_fork(f->st, SB1, 1, &r, NULL, NULL), -EEXIST);
    struct commit_opts lim = {.expect_version = -1, .max_owner_sandboxes = 3};
    assert_int_equal(store_sandbox_fork(f->st, SB1, 1, &r4, NULL, &lim), -ERR_SANDBOX_LIMIT);
    struct commit_opts quota = {.expect_version = -1, .quota_bytes = 5};
    assert_int_equal(store_sandbox_fork(f->st, SB1, 1, &r4, NULL, &quota), -ERR_QUOTA);
    assert_int_equal(store_sandbox_get(f->st, r4.id, NULL, NULL, &g), -ENOENT);
    quota.quota_bytes = 6;
    lim.max_owner_sandboxes = 4;
    assert_int_equal(store_sandbox_fork(f->st, SB1, 1, &r4, NULL, &quota), 0);

    /* the source deleted, the forks' contents stay */
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(gc_contents(f->st), 0);
    t = tree(f->st, SB2, 1, "/", 0);
    assert_string_equal(t, h.tree[2]);
    free(t);
    t = tree(f->st, SB3, -1, "/", 0);
    assert_string_equal(t, h.tree[NV]);
    free(t);
    hist_release(&h);
}

/* sandbox_delete removes the history and the snapshots; their contents are collected. */
static void test_delete_removes_history(void **state)
{
    struct fx *f = *state;
    struct hist h = {0};
    build(f, &h);
    assert_int_equal(store_snapshot_create(f->st, SB1, "s", 2, 1000, 0), 0);
    assert_true(db_int(f, "SELECT count(*) FROM file_history") > 0);
    assert_int_equal(store_sandbox_delete(f->st, SB1, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM file_history"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM snapshots"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM files"), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM commits"), 0);
    (void)gc_contents(f->st);
    assert_int_equal(db_int(f, "SELECT count(*) FROM contents"), 0);
    struct file_meta m;
    assert_int_equal(store_stat_at(f->st, SB1, 2, "/", &m), -ENOENT);
    hist_release(&h);
}

/* An unpinned change set (a restore's) drops no pins; its content is held by history. */
static void test_unpinned(void **state)
{
    struct fx *f = *state;
    create_sb(f->st, SB1);
    commit_f(f->st, SB1, "old", NULL, NULL);
    commit_f(f->st, SB1, "new", NULL, NULL);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 0);
    /* restore v1's /f: its content comes from the history, without a pin */
    struct file_meta m;
    assert_int_equal(store_stat_at(f->st, SB1, 1, "/f", &m), 0);
    struct changeset cs;
    changeset_init(&cs, "restore");
    cs.unpinned = true;
    assert_int_equal(changeset_put(&cs, &m), 0);
    file_meta_release(&m);
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    expect_f(f->st, SB1, 3, "old");
    /* a content pinned by its writer keeps its pin through an unpinned commit */
    uint8_t id[CONTENT_ID_LEN];
    put_bytes(f->st, "pinned", 6, id);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 1);
    changeset_init(&cs, "restore");
    cs.unpinned = true;
    cs_file_mode(&cs, "/p", id, 6, 0644);
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 1);
    /* and a pinned commit drops it */
    changeset_init(&cs, "put");
    cs_file_mode(&cs, "/q", id, 6, 0644);
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    assert_int_equal(db_int(f, "SELECT count(*) FROM content_pins"), 0);
}

/* The SQL that takes a migrated database back to the schema before history (the previous
 * migration's), for each engine: the migrations after it (the exec journal, the idempotency
 * claims, network egress) undone first. */
static const char *pg_unhistory =
    "DROP TABLE egress; ALTER TABLE sandboxes DROP COLUMN network_policy; DROP TABLE execs; DROP "
    "TABLE idempotency; DELETE FROM schema_migrations WHERE version >= 4; "
    "DROP TRIGGER files_retire_update ON files; DROP TRIGGER files_retire_delete ON files; "
    "DROP FUNCTION sqlfs_files_retire(); DROP TABLE file_history; DROP TABLE snapshots; "
    "ALTER TABLE files DROP COLUMN since; "
    "ALTER TABLE commits DROP COLUMN cwd, DROP COLUMN added, DROP COLUMN modified, "
    "DROP COLUMN deleted, DROP COLUMN bytes_added; "
    "ALTER TABLE sandboxes DROP COLUMN history_floor, DROP COLUMN history_bytes; "
    "DELETE FROM schema_migrations WHERE version = 3";
static const char *sqlite_unhistory =
    "DROP TABLE egress; ALTER TABLE sandboxes DROP COLUMN network_policy; DROP TABLE execs; DROP "
    "TABLE idempotency; DELETE FROM schema_migrations WHERE version >= 3; "
    "DROP TRIGGER files_keep_replaced; DROP TRIGGER files_keep_deleted; "
    "DROP TABLE file_history; DROP TABLE snapshots; DROP INDEX files_since; "
    "ALTER TABLE files DROP COLUMN since; ALTER TABLE commits DROP COLUMN cwd; "
    "ALTER TABLE commits DROP COLUMN added; ALTER TABLE commits DROP COLUMN modified; "
    "ALTER TABLE commits DROP COLUMN deleted; ALTER TABLE commits DROP COLUMN bytes_added; "
    "ALTER TABLE sandboxes DROP COLUMN history_floor; "
    "ALTER TABLE sandboxes DROP COLUMN history_bytes; "
    "DELETE FROM schema_migrations WHERE version = 2";

/* A database made before history: its rows get since 0, its sandboxes a floor at their
 * version, so that only the current version is readable; history starts with the next
 * commit. */
static void test_migration(void **state)
{
    struct fx *f = *state;
    const char *unhistory = on_pg ? pg_unhistory : sqlite_unhistory;
    if (!unhistory)
        skip();
    create_sb(f->st, SB1);
    commit_f(f->st, SB1, "m1", NULL, NULL);
    commit_f(f->st, SB1, "m2", NULL, NULL);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs_text(f->st, &cs, "/g", "gee");
    assert_int_equal(commit_o(f->st, SB1, &cs, NULL, NULL), 0);
    store_close(f->st);
    f->st = NULL;
    db_exec(f, unhistory);
    open_store(f);
    assert_int_equal(db_int(f, "SELECT max(version) FROM schema_migrations"), on_pg ? 6 : 5);
    assert_int_equal(db_int(f, "SELECT count(*) FROM files WHERE since <> 0"), 0);
    assert_int_equal(db_int(f, "SELECT history_floor FROM sandboxes"), 3);
    expect_f(f->st, SB1, 3, "m2");
    expect_gone(f->st, SB1, 2);
    struct clog l = {0};
    assert_int_equal(store_commits_list(f->st, SB1, INT64_MAX, 10, clog_cb, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].version, 3);
    clog_release(&l);
    commit_f(f->st, SB1, "m4", NULL, NULL);
    expect_f(f->st, SB1, 3, "m2");
    expect_f(f->st, SB1, 4, "m4");
    expect_paths(f->st, SB1, 4, "M /f 644 m4\n");
    char *t = tree(f->st, SB1, 3, "/", 0);
    assert_string_equal(t, "/f 1 644 2 5 [m2] -\n/g 1 644 3 5 [gee] -\n");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_versions_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commits_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_paths_paged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_max_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_used_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_removes_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
    };
    const char *only = getenv("SQLFS_TEST_ENGINE");
    if (getenv("SQLFS_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SQLFS_TEST_FILTER"));
    int failed = 0;
    if (!only || strcmp(only, "sqlite") == 0)
        failed += cmocka_run_group_tests_name("history: sqlite", tests, NULL, NULL);
    if (only && strcmp(only, "sqlite") == 0)
        return failed;
    pg_url = getenv("SQLFS_TEST_PG_URL");
    if (!pg_url || !*pg_url) {
        printf("history: SQLFS_TEST_PG_URL is not set: the PostgreSQL engine is not tested\n");
        return failed;
    }
    on_pg = true;
    failed += cmocka_run_group_tests_name("history: postgres", tests, NULL, NULL);
    return failed;
}
