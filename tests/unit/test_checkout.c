/* Checkout cache against a real SQLite store in a temporary directory (run as root: trees are
 * chowned to the sandbox user). SQLFS_BENCH=1 also runs the 10,000-file / 100 MB rebuild. */
#include "unit.h"

#include <sys/xattr.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fs.h"
#include "workspace/checkout.h"
#include "jail/ids.h"
#include "store/store.h"
#include "util/rand.h"
#include "util/timeutil.h"

struct fx {
    char dir[64]; /* temp dir = data dir */
    struct store *st;
    char id[UUID_STR_LEN];
    int64_t version;
};

static void rm_tree(const char *path)
{
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(rm_rf_at(fd, path + 1, NULL), 0);
    close(fd);
}

static void put_file(struct store *st, struct changeset *cs, const char *path, const void *data,
                     size_t len, uint32_t mode, int64_t mtime_ns)
{
    struct content_writer *w = NULL;
    assert_int_equal(store_content_begin(st, &w), 0);
    /* In pieces, as a streaming writer would. */
    for (size_t off = 0; off < len; off += 100000) {
        size_t n = len - off < 100000 ? len - off : 100000;
        assert_int_equal(store_content_write(st, w, (const char *)data + off, n), 0);
    }
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(store_content_finish(st, w, m.content, &m.size), 0);
    assert_int_equal(m.size, (int64_t)len);
    m.path = (char *)path;
    m.kind = FILE_KIND_FILE;
    m.mode = mode;
    m.mtime_ns = mtime_ns;
    m.has_content = len > 0;
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void put_dir(struct changeset *cs, const char *path, uint32_t mode, int64_t mtime_ns)
{
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    m.path = (char *)path;
    m.kind = FILE_KIND_DIR;
    m.mode = mode;
    m.mtime_ns = mtime_ns;
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void put_symlink(struct changeset *cs, const char *path, const char *target)
{
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    m.path = (char *)path;
    m.kind = FILE_KIND_SYMLINK;
    m.mode = 0777;
    m.size = (int64_t)strlen(target);
    m.mtime_ns = 1700000000123456789LL;
    m.target = (char *)target;
    assert_int_equal(changeset_put(cs, &m), 0);
}

static void fx_commit(struct fx *f, struct changeset *cs)
{
    struct commit_opts o = {
        .expect_version = f->version, .quota_bytes = 0, .now_ms = time_now_ms()};
    struct commit_result res;
    assert_int_equal(store_commit(f->st, f->id, cs, &o, &res), 0);
    assert_true(res.version > f->version);
    f->version = res.version;
}

static char *big_data(size_t len, unsigned seed)
{
    char *b = malloc(len);
    assert_non_null(b);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (char)x;
    }
    return b;
}

static void fx_sandbox(struct fx *f)
{
    struct sandbox_rec rec;
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(rand_uuid(rec.id), 0);
    rec.tenant = "t";
    rec.sub = "s";
    rec.env_json = "{}";
    rec.cwd = "/home/user";
    rec.created_ms = time_now_ms();
    struct commit_opts o = {.expect_version = -1, .quota_bytes = 0, .now_ms = time_now_ms()};
    assert_int_equal(store_sandbox_create(f->st, &rec, NULL, &o), 0);
    memcpy(f->id, rec.id, sizeof(f->id));
    struct sandbox_rec got;
    memset(&got, 0, sizeof(got));
    assert_int_equal(store_sandbox_get(f->st, f->id, NULL, NULL, &got), 0);
    f->version = got.version;
    sandbox_rec_release(&got);
}

/* The standard tree: nested dirs, a 3 MiB file, an empty file, a symlink, modes 0755/0600. */
static void fx_tree(struct fx *f)
{
    struct changeset cs;
    changeset_init(&cs, "test");
    int64_t t = 1700000000000000000LL;
    put_dir(&cs, "/home", 0755, t + 1);
    put_dir(&cs, "/home/user", 0755, t + 2);
    put_file(f->st, &cs, "/home/user/a.txt", "hello\n", 6, 0644, t + 3);
    char *big = big_data(3 * 1024 * 1024, 7);
    put_file(f->st, &cs, "/home/user/big.bin", big, 3 * 1024 * 1024, 0600, t + 4);
    free(big);
    put_file(f->st, &cs, "/home/user/empty", "", 0, 0644, t + 5);
    put_dir(&cs, "/home/user/bin", 0700, t + 6);
    put_file(f->st, &cs, "/home/user/bin/run.sh", "#!/bin/sh\necho hi\n", 18, 0755, t + 7);
    put_dir(&cs, "/home/user/sub", 0755, t + 8);
    put_dir(&cs, "/home/user/sub/deep", 0555, t + 9);
    put_file(f->st, &cs, "/home/user/sub/deep/x.txt", "x", 1, 0444, t + 10);
    put_symlink(&cs, "/home/user/link", "a.txt");
    put_symlink(&cs, "/home/user/escape", "/etc/passwd");
    put_file(f->st, &cs, "/home/user-x", "dash sorts before slash", 23, 0640, t + 11);
    fx_commit(f, &cs);
    changeset_release(&cs);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    /* SQLFS_TEST_TMP: where to put the data dir (e.g. a tmpfs, to time the code alone). */
    const char *tmp = getenv("SQLFS_TEST_TMP");
    snprintf(f->dir, sizeof(f->dir), "%s/sqlfs-co-XXXXXX", tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    char db[128];
    snprintf(db, sizeof(db), "%s/sqlfs.db", f->dir);
    assert_int_equal(store_open_sqlite(db, &f->st), 0);
    fx_sandbox(f);
    fx_tree(f);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->st);
    rm_tree(f->dir);
    free(f);
    return 0;
}

/* ---------- comparing a tree with the store ---------- */

struct cmp {
    struct store *st;
    int rootfd;
    int64_t rows;
};

static void assert_same_content(struct store *st, const struct file_meta *m, int fd)
{
    if (!m->has_content) {
        char c;
        assert_int_equal(read(fd, &c, 1), 0);
        return;
    }
    struct content_reader *rd = NULL;
    assert_int_equal(store_content_open(st, m->content, &rd), 0);
    static char a[65536], b[65536];
    for (;;) {
        size_t got = 0;
        assert_int_equal(store_content_read(st, rd, a, sizeof(a), &got), 0);
        size_t have = 0;
        while (have < got) {
            ssize_t n = read(fd, b + have, got - have);
            assert_true(n > 0);
            have += (size_t)n;
        }
        assert_memory_equal(a, b, got);
        if (got == 0)
            break;
    }
    char c;
    assert_int_equal(read(fd, &c, 1), 0);
    store_content_close(st, rd);
}

static int cmp_row(const struct file_meta *m, void *userdata)
{
    struct cmp *c = userdata;
    struct stat sb;
    const char *rel = m->path + 1;
    if (fstatat(c->rootfd, rel, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        fail_msg("missing on disk: %s", m->path);
    assert_int_equal(sb.st_uid, SANDBOX_HOST_UID);
    assert_int_equal(sb.st_gid, SANDBOX_HOST_UID);
    int64_t mt = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if (mt != m->mtime_ns)
        fail_msg("mtime of %s: %lld != %lld", m->path, (long long)mt, (long long)m->mtime_ns);
    switch (m->kind) {
    case FILE_KIND_DIR:
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 07777, m->mode);
        break;
    case FILE_KIND_SYMLINK: {
        assert_true(S_ISLNK(sb.st_mode));
        char t[4097];
        ssize_t n = readlinkat(c->rootfd, rel, t, sizeof(t));
        assert_true(n > 0);
        t[n] = '\0';
        assert_string_equal(t, m->target);
        break;
    }
    case FILE_KIND_FILE: {
        assert_true(S_ISREG(sb.st_mode));
        assert_int_equal(sb.st_mode & 07777, m->mode);
        assert_int_equal(sb.st_size, m->size);
        int fd = openat(c->rootfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_same_content(c->st, m, fd);
        close(fd);
        break;
    }
    }
    c->rows++;
    return 0;
}

static int64_t count_nodes(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fdopendir(fd);
    assert_non_null(d);
    int64_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        if (de->d_type == DT_DIR) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            assert_true(sub >= 0);
            n += count_nodes(sub);
            close(sub);
        }
    }
    closedir(d);
    return n;
}

/* The tree at path holds exactly the sandbox's rows, with their content and metadata. */
static void assert_tree_matches(struct store *st, const char *id, const char *path)
{
    struct cmp c = {.st = st};
    c.rootfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    assert_true(c.rootfd >= 0);
    struct stat sb;
    assert_int_equal(fstat(c.rootfd, &sb), 0);
    assert_int_equal(sb.st_uid, 0); /* the root has no row: host root's, as the jail shows it */
    assert_int_equal(sb.st_gid, 0);
    assert_int_equal(sb.st_mode & 07777, 0755);
    assert_int_equal(store_list(st, id, "/", 0, cmp_row, &c), 0);
    assert_int_equal(count_nodes(c.rootfd), c.rows);
    close(c.rootfd);
}

static bool exists_at(const char *dir, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    struct stat sb;
    bool ok = lstat(p, &sb) == 0;
    free(p);
    return ok;
}

/* ---------- tests ---------- */

static void test_acquire_builds_tree(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    assert_tree_matches(f->st, f->id, tree);
    char *tree2 = NULL;
    /* A second reader shares it without a rebuild. */
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree2), 0);
    assert_string_equal(tree, tree2);
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 1);
    assert_int_equal(s.entries, 1);
    assert_true(s.bytes >= 3 * 1024 * 1024);
    /* Busy at this version: asking another one is refused. */
    char *tree3 = NULL;
    assert_true(checkout_acquire(cos, f->id, f->version + 1, &tree3) < 0);
    checkout_release(cos, f->id);
    checkout_release(cos, f->id);
    free(tree);
    free(tree2);
    checkouts_free(cos);
}

static void test_stale_and_untagged_rebuild(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    checkout_release(cos, f->id);
    free(tree);

    /* The store moves on behind the cache's back (another server's commit): the tree is
     * brought forward from the commit log, not rebuilt. */
    struct changeset cs;
    changeset_init(&cs, "test");
    put_file(f->st, &cs, "/home/user/a.txt", "changed", 7, 0600, 1700000000999999999LL);
    assert_int_equal(changeset_delete(&cs, "/home/user/sub"), 0);
    fx_commit(f, &cs);
    changeset_release(&cs);
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    assert_tree_matches(f->st, f->id, tree);
    assert_false(exists_at(tree, "home/user/sub"));
    checkout_release(cos, f->id);
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 1);
    assert_int_equal(s.refreshes, 1);

    /* Asking a version the store is not at fails and leaves nothing acquired. */
    char *bad = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version + 5, &bad), -ESTALE);

    /* A missing tag (crash mid-change) means rebuild. */
    char tag[256], edir[256];
    snprintf(tag, sizeof(tag), "%s/checkouts/%s/tag", f->dir, f->id);
    snprintf(edir, sizeof(edir), "%s/checkouts/%s", f->dir, f->id);
    /* the tag is an attribute of the entry directory, or a file where there are none */
    assert_true(removexattr(edir, "trusted.sqlfs.checkout") == 0 || unlink(tag) == 0);
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &bad), 0);
    checkout_release(cos, f->id);
    free(bad);
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 2);
    assert_tree_matches(f->st, f->id, tree);

    /* Invalidate → rebuild. */
    checkout_invalidate(cos, f->id);
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &bad), 0);
    checkout_release(cos, f->id);
    free(bad);
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 3);
    free(tree);
    checkouts_free(cos);
}

/* A tree several commits behind follows the commit log whatever those commits did: a subtree
 * deleted and rebuilt with other contents, a file put many times, a directory turned into a
 * file and back, implicit parents, symlinks. The refreshed tree equals the store's. */
static void test_refresh_follows_log(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    checkout_release(cos, f->id);
    free(tree);
    int64_t t = 1700000001000000000LL;
    struct changeset cs;
    /* 1: the subtree goes; a new one of the same name comes with other children */
    changeset_init(&cs, "test");
    assert_int_equal(changeset_delete(&cs, "/home/user/sub"), 0);
    fx_commit(f, &cs);
    changeset_release(&cs);
    changeset_init(&cs, "test");
    cs.create_parents = true;
    put_file(f->st, &cs, "/home/user/sub/other/new.txt", "new", 3, 0600, t + 1);
    put_dir(&cs, "/home/user/sub", 0711, t + 2);
    fx_commit(f, &cs);
    changeset_release(&cs);
    /* 2: one file put many times, the last one wins */
    for (int i = 0; i < 5; i++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "round %d\n", i);
        changeset_init(&cs, "test");
        put_file(f->st, &cs, "/home/user/a.txt", text, (size_t)n, 0640, t + 10 + i);
        fx_commit(f, &cs);
        changeset_release(&cs);
    }
    /* 3: a directory becomes a file, a file becomes a directory with contents */
    changeset_init(&cs, "test");
    assert_int_equal(changeset_delete(&cs, "/home/user/bin"), 0);
    put_file(f->st, &cs, "/home/user/bin", "now a file", 10, 0644, t + 20);
    assert_int_equal(changeset_delete(&cs, "/home/user/empty"), 0);
    put_dir(&cs, "/home/user/empty", 0750, t + 21);
    put_symlink(&cs, "/home/user/empty/link", "../a.txt");
    fx_commit(f, &cs);
    changeset_release(&cs);
    /* 4: something put and then deleted again never shows */
    changeset_init(&cs, "test");
    put_file(f->st, &cs, "/home/user/tmp.txt", "tmp", 3, 0644, t + 30);
    fx_commit(f, &cs);
    changeset_release(&cs);
    changeset_init(&cs, "test");
    assert_int_equal(changeset_delete(&cs, "/home/user/tmp.txt"), 0);
    fx_commit(f, &cs);
    changeset_release(&cs);

    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    assert_tree_matches(f->st, f->id, tree);
    assert_false(exists_at(tree, "home/user/sub/deep"));
    assert_false(exists_at(tree, "home/user/tmp.txt"));
    checkout_release(cos, f->id);
    free(tree);
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 1);
    assert_int_equal(s.refreshes, 1);
    checkouts_free(cos);
}

/* A directory replaced by a file and then by a directory again, through puts alone (the store
 * drops the first directory's contents without logging each): the tree must not keep them. */
static void test_refresh_dir_replaced_twice(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    checkout_release(cos, f->id);
    free(tree);
    struct changeset cs;
    changeset_init(&cs, "test");
    put_file(f->st, &cs, "/home/user/bin", "a file now", 10, 0644, 1700000002000000000LL);
    fx_commit(f, &cs);
    changeset_release(&cs);
    changeset_init(&cs, "test");
    put_dir(&cs, "/home/user/bin", 0755, 1700000002000000001LL);
    fx_commit(f, &cs);
    changeset_release(&cs);
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    assert_false(exists_at(tree, "home/user/bin/run.sh"));
    assert_tree_matches(f->st, f->id, tree);
    checkout_release(cos, f->id);
    free(tree);
    checkouts_free(cos);
}

static void test_restart_adopts_and_cleans(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    checkout_release(cos, f->id);
    checkouts_free(cos);

    /* Leftovers of a crash: an untagged checkout, a build dir, trash. */
    char p[512], untagged[UUID_STR_LEN];
    assert_int_equal(rand_uuid(untagged), 0);
    snprintf(p, sizeof(p), "%s/checkouts/%s", f->dir, untagged);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/checkouts/%s/tree", f->dir, untagged);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/checkouts/%s/build-1234", f->dir, f->id);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/checkouts/.trash-77", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);

    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char co[256];
    snprintf(co, sizeof(co), "%s/checkouts", f->dir);
    assert_false(exists_at(co, untagged));
    assert_false(exists_at(co, ".trash-77"));
    snprintf(p, sizeof(p), "%s/build-1234", f->id);
    assert_false(exists_at(co, p));
    char *tree2 = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree2), 0);
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 0); /* adopted, not rebuilt */
    assert_tree_matches(f->st, f->id, tree2);
    checkout_release(cos, f->id);

    /* Removal deletes it from disk. */
    assert_int_equal(checkout_remove(cos, f->id), 0);
    assert_false(exists_at(co, f->id));
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    /* A failed first acquire leaves nothing behind. */
    char *bad = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version + 1, &bad), -ESTALE);
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.entries, 0);
    assert_false(exists_at(co, f->id));
    free(tree);
    free(tree2);
    checkouts_free(cos);
}

static void test_apply_changeset(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree), 0);
    checkout_release(cos, f->id);

    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    int64_t t = 1710000000000000000LL;
    put_file(f->st, &cs, "/home/user/a.txt", "replaced content", 16, 0600, t + 1);
    put_file(f->st, &cs, "/home/user/new/dir/n.txt", "new", 3, 0644, t + 2);
    assert_int_equal(changeset_delete(&cs, "/home/user/sub"), 0);
    assert_int_equal(changeset_delete(&cs, "/home/user/not-there"), 0);
    put_dir(&cs, "/home/user/bin", 0750, t + 3);
    put_symlink(&cs, "/home/user/big.bin", "a.txt"); /* file → symlink */
    put_file(f->st, &cs, "/home/user/link", "was a link", 10, 0644, t + 4);
    int64_t old = f->version;
    fx_commit(f, &cs);
    assert_int_equal(checkout_apply(cos, f->id, old, f->version, &cs), 0);
    changeset_release(&cs);

    char *tree2 = NULL;
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree2), 0);
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 1); /* applied in place, not rebuilt */
    assert_tree_matches(f->st, f->id, tree2);
    checkout_release(cos, f->id);
    /* The size follows: the 3 MiB file is gone. */
    assert_true(s.bytes < 1024 * 1024);

    /* Applying from a version the checkout is not at invalidates it. */
    changeset_init(&cs, "put");
    put_file(f->st, &cs, "/home/user/z", "z", 1, 0644, t + 5);
    old = f->version;
    fx_commit(f, &cs);
    assert_int_equal(checkout_apply(cos, f->id, old - 1, f->version, &cs), -ESTALE);
    changeset_release(&cs);
    free(tree2);
    assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree2), 0);
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 2);
    assert_tree_matches(f->st, f->id, tree2);
    checkout_release(cos, f->id);

    /* Hostile change sets (never accepted by the store) whose parent in the tree is a symlink
     * pointing out: nothing is written or deleted through it, the checkout is invalidated. */
    char outside[128];
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    int kfd = open(outside, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int kf = openat(kfd, "keep", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(kf);
    close(kfd);
    char *tag = NULL;
    assert_true(asprintf(&tag, "%s/checkouts/%s/tag", f->dir, f->id) > 0);
    for (int round = 0; round < 2; round++) {
        free(tree2);
        assert_int_equal(checkout_acquire(cos, f->id, f->version, &tree2), 0);
        checkout_release(cos, f->id);
        char *lp = NULL;
        assert_true(asprintf(&lp, "%s/home/user/out", tree2) > 0);
        assert_int_equal(symlink(outside, lp), 0);
        free(lp);
        changeset_init(&cs, "put");
        if (round == 0)
            put_file(f->st, &cs, "/home/user/out/pwned", "x", 1, 0644, t + 7);
        else
            assert_int_equal(changeset_delete(&cs, "/home/user/out/keep"), 0);
        assert_true(checkout_apply(cos, f->id, f->version, f->version + 1, &cs) < 0);
        changeset_release(&cs);
        assert_true(access(tag, F_OK) != 0); /* invalidated: no tag file ... */
        char edir[256], xv[256];
        snprintf(edir, sizeof(edir), "%s/checkouts/%s", f->dir, f->id);
        ssize_t xn = getxattr(edir, "trusted.sqlfs.checkout", xv, sizeof(xv) - 1);
        /* ... and no valid tag attribute: overwritten in place with a negative version (where
         * the file system has trusted.* attributes at all) */
        if (xn >= 0 || (errno != ENOTSUP && errno != EOPNOTSUPP)) {
            assert_true(xn > 17);
            xv[xn] = '\0';
            assert_memory_equal(xv, "sqlfs-checkout 1 -", 18);
        }
        assert_false(exists_at(outside, "pwned"));
        assert_true(exists_at(outside, "keep"));
    }
    free(tag);

    /* No checkout at all: nothing to do. */
    assert_int_equal(checkout_remove(cos, f->id), 0);
    changeset_init(&cs, "put");
    put_file(f->st, &cs, "/home/user/z", "zz", 2, 0644, t + 6);
    old = f->version;
    fx_commit(f, &cs);
    assert_int_equal(checkout_apply(cos, f->id, old, f->version, &cs), 0);
    changeset_release(&cs);
    free(tree);
    free(tree2);
    checkouts_free(cos);
}

static void make_sandbox_of(struct fx *f, struct fx *g, size_t bytes)
{
    g->st = f->st;
    fx_sandbox(g);
    struct changeset cs;
    changeset_init(&cs, "test");
    char *b = big_data(bytes, (unsigned)bytes);
    put_file(g->st, &cs, "/blob", b, bytes, 0644, 1700000000000000000LL);
    free(b);
    fx_commit(g, &cs);
    changeset_release(&cs);
}

static void test_eviction(void **state)
{
    struct fx *f = *state;
    struct fx a = {0}, b = {0}, c = {0};
    make_sandbox_of(f, &a, 600000);
    make_sandbox_of(f, &b, 600000);
    make_sandbox_of(f, &c, 600000);
    struct checkouts *cos = NULL;
    assert_int_equal(
        checkouts_new(f->dir, f->st, 1000000, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char co[256];
    snprintf(co, sizeof(co), "%s/checkouts", f->dir);
    char *ta = NULL, *tb = NULL, *tc = NULL;
    assert_int_equal(checkout_acquire(cos, a.id, a.version, &ta), 0);
    checkout_release(cos, a.id);
    assert_true(exists_at(co, a.id));
    /* B in use pushes the total over budget: idle A goes. */
    assert_int_equal(checkout_acquire(cos, b.id, b.version, &tb), 0);
    assert_false(exists_at(co, a.id));
    assert_true(exists_at(co, b.id));
    /* C too: B is acquired, so it stays although the budget is exceeded. */
    assert_int_equal(checkout_acquire(cos, c.id, c.version, &tc), 0);
    assert_true(exists_at(co, b.id));
    assert_true(exists_at(co, c.id));
    assert_tree_matches(f->st, b.id, tb);
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.evictions, 1);
    assert_int_equal(s.entries, 2);
    /* Released: B is the least recently used one now. */
    checkout_release(cos, b.id);
    assert_false(exists_at(co, b.id));
    assert_true(exists_at(co, c.id));
    checkout_release(cos, c.id);
    assert_true(exists_at(co, c.id)); /* alone it fits */
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.evictions, 2);
    free(ta);
    free(tb);
    free(tc);
    checkouts_free(cos);
}

struct racer {
    struct checkouts *cos;
    pthread_barrier_t *bar;
    const char *id;
    int64_t version;
    int rc;
    char *tree;
};

static void *race_acquire(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->bar);
    r->rc = checkout_acquire(r->cos, r->id, r->version, &r->tree);
    return NULL;
}

/* Readers of one sandbox race: one builds, the others wait and share it; another sandbox
 * builds at the same time. */
static void test_concurrent_acquire(void **state)
{
    struct fx *f = *state;
    struct fx g = {0};
    make_sandbox_of(f, &g, 300000);
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    enum { N = 6 };
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    struct racer rs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        rs[i] = (struct racer){.cos = cos,
                               .bar = &bar,
                               .id = i < 4 ? f->id : g.id,
                               .version = i < 4 ? f->version : g.version};
        assert_int_equal(pthread_create(&th[i], NULL, race_acquire, &rs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs[i].rc, 0);
        assert_string_equal(rs[i].tree, rs[i < 4 ? 0 : 4].tree);
    }
    struct checkout_stats s;
    checkouts_get_stats(cos, &s);
    assert_int_equal(s.builds, 2);
    assert_tree_matches(f->st, f->id, rs[0].tree);
    assert_tree_matches(f->st, g.id, rs[4].tree);
    for (int i = 0; i < N; i++) {
        checkout_release(cos, rs[i].id);
        free(rs[i].tree);
    }
    checkouts_free(cos);
}

/* rm -rf never follows a symlink out of the tree and copes with deep nesting. */
static void test_rm_rf_safe(void **state)
{
    struct fx *f = *state;
    char outside[256], victim[256], p[8192];
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    snprintf(victim, sizeof(victim), "%s/outside/keep", f->dir);
    int fd = open(victim, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof(p), "%s/victim", f->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    int dfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(symlinkat(outside, dfd, "link"), 0);
    /* 1500 levels: deeper than the fd limit would allow with one fd per level. */
    for (int i = 0; i < 1500; i++) {
        assert_int_equal(mkdirat(dfd, "d", 0755), 0);
        int next = openat(dfd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(next >= 0);
        if (i % 100 == 0) {
            assert_int_equal(symlinkat(outside, next, "up"), 0);
            int ff = openat(next, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            assert_true(ff >= 0);
            assert_int_equal(write(ff, "abc", 3), 3);
            close(ff);
        }
        close(dfd);
        dfd = next;
    }
    close(dfd);
    int top = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int64_t bytes = 0;
    assert_int_equal(rm_rf_at(top, "victim", &bytes), 0);
    assert_int_equal(bytes, 15 * 3);
    assert_false(exists_at(f->dir, "victim"));
    assert_true(exists_at(f->dir, "outside/keep"));
    assert_int_equal(rm_rf_at(top, "victim", NULL), 0); /* absent: fine */
    close(top);
}

/* A discarded directory leaves its place at once and is deleted in the background; leftovers
 * of a stop are deleted at the next start. */
static void test_discard(void **state)
{
    struct fx *f = *state;
    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/uppers", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    int ufd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(ufd >= 0);
    /* an exec's dirs: nested, and a mode-000 directory like overlayfs's work dir */
    assert_int_equal(mkdirat(ufd, "x1", 0700), 0);
    assert_int_equal(mkdirat(ufd, "x1/upper", 0755), 0);
    assert_int_equal(mkdirat(ufd, "x1/work", 0000), 0);
    assert_int_equal(mkdirat(ufd, "x1/work/work", 0000), 0);
    int fd = openat(ufd, "x1/upper/f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    assert_int_equal(checkout_discard(cos, ufd, "x1", -1), 0);
    assert_false(exists_at(p, "x1"));
    assert_int_equal(checkout_discard(cos, ufd, "x1", -1), 1); /* absent */
    /* the reaper empties the checkouts dir of trash */
    char co[256];
    snprintf(co, sizeof(co), "%s/checkouts", f->dir);
    int trash = 1;
    for (int i = 0; i < 500 && trash > 0; i++) {
        trash = 0;
        DIR *d = opendir(co);
        assert_non_null(d);
        for (struct dirent *de; (de = readdir(d));)
            trash += strncmp(de->d_name, ".trash-", 7) == 0;
        closedir(d);
        if (trash)
            usleep(10000);
    }
    assert_int_equal(trash, 0);
    /* A descriptor handed over with the tree is closed: by the reaper when the tree was moved,
     * at once when there was nothing to move. */
    int pa[2], pb[2];
    assert_int_equal(pipe2(pa, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pb, O_CLOEXEC), 0);
    assert_int_equal(mkdirat(ufd, "x3", 0700), 0);
    assert_int_equal(checkout_discard(cos, ufd, "x3", pa[1]), 0);
    assert_int_equal(checkout_discard(cos, ufd, "absent", pb[1]), 1);
    char byte;
    assert_int_equal(read(pa[0], &byte, 1), 0); /* EOF: every write end is closed */
    assert_int_equal(read(pb[0], &byte, 1), 0);
    close(pa[0]);
    close(pb[0]);
    /* trash left by a stop is removed by the next start */
    assert_int_equal(mkdirat(ufd, "x2", 0700), 0);
    assert_int_equal(mkdirat(ufd, "x2/d", 0000), 0);
    checkouts_free(cos);
    int cofd = open(co, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(cofd >= 0);
    assert_int_equal(renameat(ufd, "x2", cofd, ".trash-left"), 0);
    close(cofd);
    assert_true(exists_at(co, ".trash-left"));
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    assert_false(exists_at(co, ".trash-left"));
    checkouts_free(cos);
    close(ufd);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Rebuild time of a sandbox of `files` files totalling `bytes`. */
static void rebuild_bench(struct fx *f, int files, int64_t bytes)
{
    struct fx g = {0};
    g.st = f->st;
    fx_sandbox(&g);
    size_t each = (size_t)(bytes / files);
    char *data = big_data(each + 8192, 3);
    int per_dir = 100;
    struct changeset cs;
    changeset_init(&cs, "bench");
    char p[128];
    for (int i = 0; i < files; i++) {
        if (i % per_dir == 0) {
            snprintf(p, sizeof(p), "/d%03d", i / per_dir);
            put_dir(&cs, p, 0755, 1700000000000000000LL);
        }
        snprintf(p, sizeof(p), "/d%03d/f%05d", i / per_dir, i);
        /* Distinct contents: vary the window and the size. */
        size_t n = each + (size_t)(i % 7) - 3;
        put_file(g.st, &cs, p, data + (i % 4096), n, 0644, 1700000000000000000LL + i);
    }
    int64_t t0 = time_mono_ms();
    fx_commit(&g, &cs);
    int64_t commit_ms = time_mono_ms() - t0;
    changeset_release(&cs);
    free(data);

    struct checkouts *cos = NULL;
    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &cos), 0);
    char *tree = NULL;
    double cpu_first = cpu_seconds();
    t0 = time_mono_ns();
    assert_int_equal(checkout_acquire(cos, g.id, g.version, &tree), 0);
    int64_t build_ns = time_mono_ns() - t0;
    cpu_first = cpu_seconds() - cpu_first;
    checkout_release(cos, g.id);
    /* A second rebuild replaces the existing tree (the stale-checkout case). */
    checkout_invalidate(cos, g.id);
    free(tree);
    double cpu0 = cpu_seconds();
    t0 = time_mono_ns();
    assert_int_equal(checkout_acquire(cos, g.id, g.version, &tree), 0);
    int64_t rebuild_ns = time_mono_ns() - t0;
    double cpu = cpu_seconds() - cpu0;
    checkout_release(cos, g.id);
    fprintf(stderr,
            "checkout rebuild of %d files / %lld MB: first %.3f s (%.3f s CPU), replacing "
            "%.3f s (%.3f s CPU); store commit %.3f s\n",
            files, (long long)(bytes / 1000000), build_ns / 1e9, cpu_first, rebuild_ns / 1e9, cpu,
            commit_ms / 1e3);
    free(tree);
    assert_int_equal(checkout_remove(cos, g.id), 0);
    checkouts_free(cos);
}

static void test_rebuild_speed(void **state)
{
    struct fx *f = *state;
    if (getenv("SQLFS_BENCH"))
        rebuild_bench(f, 10000, 100000000);
    else
        rebuild_bench(f, 1000, 10000000);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_checkout: needs root (chown to the sandbox uid); skipped\n");
        return 0;
    }
    if (getenv("SQLFS_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SQLFS_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acquire_builds_tree, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stale_and_untagged_rebuild, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_follows_log, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_dir_replaced_twice, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_adopts_and_cleans, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_changeset, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_eviction, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_acquire, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf_safe, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_discard, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_speed, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("checkout", tests, NULL, NULL);
}
