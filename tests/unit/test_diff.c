/* Diff of overlay upper dirs made by a real overlayfs mount over a real checkout, committed to a
 * real SQLite store and applied back onto the checkout. Needs root (mount, chown). */
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/fs.h"
#include "workspace/checkout.h"
#include "workspace/diff.h"
#include "jail/ids.h"
#include "store/store.h"
#include "util/rand.h"
#include "util/timeutil.h"

#define T0 1700000000000000000LL

struct fx {
    char dir[64]; /* temp dir = data dir */
    struct store *st;
    struct checkouts *cos;
    char id[UUID_STR_LEN];
    int64_t version;
    char *lower;     /* acquired checkout tree */
    char upper[128]; /* <dir>/uppers/x/upper */
    char work[128];
    char merged[128];
    bool mounted;
};

static void put_file(struct store *st, struct changeset *cs, const char *path, const char *data,
                     uint32_t mode, int64_t mtime_ns)
{
    struct content_writer *w = NULL;
    assert_int_equal(store_content_begin(st, &w), 0);
    assert_int_equal(store_content_write(st, w, data, strlen(data)), 0);
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(store_content_finish(st, w, m.content, &m.size), 0);
    m.path = (char *)path;
    m.kind = FILE_KIND_FILE;
    m.mode = mode;
    m.mtime_ns = mtime_ns;
    m.has_content = m.size > 0;
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

static void fx_commit(struct fx *f, struct changeset *cs)
{
    struct commit_opts o = {
        .expect_version = f->version, .quota_bytes = 0, .now_ms = time_now_ms()};
    struct commit_result res;
    assert_int_equal(store_commit(f->st, f->id, cs, &o, &res), 0);
    f->version = res.version;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sqlfs-diff-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char db[128];
    snprintf(db, sizeof(db), "%s/sqlfs.db", f->dir);
    assert_int_equal(store_open_sqlite(db, &f->st), 0);

    struct sandbox_rec rec;
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(rand_uuid(rec.id), 0);
    rec.tenant = "t";
    rec.sub = "s";
    rec.env_json = "{}";
    rec.cwd = "/home/user";
    struct commit_opts o = {.expect_version = -1, .quota_bytes = 0, .now_ms = time_now_ms()};
    assert_int_equal(store_sandbox_create(f->st, &rec, NULL, &o), 0);
    memcpy(f->id, rec.id, sizeof(f->id));
    struct sandbox_rec got;
    memset(&got, 0, sizeof(got));
    assert_int_equal(store_sandbox_get(f->st, f->id, NULL, NULL, &got), 0);
    f->version = got.version;
    sandbox_rec_release(&got);

    struct changeset cs;
    changeset_init(&cs, "test");
    put_dir(&cs, "/home", 0755, T0 + 1);
    put_dir(&cs, "/home/user", 0755, T0 + 2);
    put_file(f->st, &cs, "/home/user/a.txt", "hello\n", 0644, T0 + 3);
    put_file(f->st, &cs, "/home/user/keep.txt", "keep\n", 0644, T0 + 4);
    put_file(f->st, &cs, "/home/user/empty", "", 0644, T0 + 5);
    put_dir(&cs, "/home/user/bin", 0755, T0 + 6);
    put_file(f->st, &cs, "/home/user/bin/run.sh", "#!/bin/sh\n", 0755, T0 + 7);
    put_dir(&cs, "/home/user/sub", 0755, T0 + 8);
    put_dir(&cs, "/home/user/sub/deep", 0755, T0 + 9);
    put_file(f->st, &cs, "/home/user/sub/deep/x.txt", "x", 0644, T0 + 10);
    fx_commit(f, &cs);
    changeset_release(&cs);

    assert_int_equal(checkouts_new(f->dir, f->st, 0, SANDBOX_HOST_UID, SANDBOX_HOST_UID, &f->cos),
                     0);
    assert_int_equal(checkout_acquire(f->cos, f->id, f->version, &f->lower), 0);
    char p[128];
    snprintf(p, sizeof(p), "%s/uppers", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/uppers/x", f->dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(f->upper, sizeof(f->upper), "%s/uppers/x/upper", f->dir);
    snprintf(f->work, sizeof(f->work), "%s/uppers/x/work", f->dir);
    snprintf(f->merged, sizeof(f->merged), "%s/merged", f->dir);
    assert_int_equal(mkdir(f->upper, 0755), 0);
    assert_int_equal(mkdir(f->work, 0700), 0);
    assert_int_equal(mkdir(f->merged, 0755), 0);
    *state = f;
    return 0;
}

static void fx_mount(struct fx *f)
{
    char opts[1024];
    snprintf(opts, sizeof(opts),
             "lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=off,metacopy=off,index=off", f->lower,
             f->upper, f->work);
    if (mount("overlay", f->merged, "overlay", 0, opts) != 0)
        fail_msg("mount overlay: %s", strerror(errno));
    f->mounted = true;
}

static void fx_umount(struct fx *f)
{
    if (f->mounted)
        assert_int_equal(umount2(f->merged, 0), 0);
    f->mounted = false;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    fx_umount(f);
    checkout_release(f->cos, f->id);
    checkouts_free(f->cos);
    free(f->lower);
    store_close(f->st);
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(rm_rf_at(fd, f->dir + 1, NULL), 0);
    close(fd);
    free(f);
    return 0;
}

/* ---------- helpers on the merged view ---------- */

static char *mpath(struct fx *f, const char *sandbox_path)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s%s", f->merged, sandbox_path) > 0);
    return p;
}

static void m_write(struct fx *f, const char *path, const char *data, int flags, mode_t mode)
{
    char *p = mpath(f, path);
    int fd = open(p, O_WRONLY | O_CLOEXEC | flags, mode);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    size_t len = strlen(data);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    free(p);
}

static struct stat m_stat(struct fx *f, const char *path)
{
    char *p = mpath(f, path);
    struct stat sb;
    assert_int_equal(lstat(p, &sb), 0);
    free(p);
    return sb;
}

static int64_t ns_of(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

static const struct change *expect_put(const struct changeset *cs, size_t *i, const char *path,
                                       enum file_kind kind)
{
    if (*i >= cs->n)
        fail_msg("missing PUT %s", path);
    const struct change *c = &cs->items[(*i)++];
    if (c->op != CHANGE_PUT || strcmp(c->meta.path, path) != 0 || c->meta.kind != kind)
        fail_msg("expected PUT %s (%d), got %s %s (%d)", path, kind,
                 c->op == CHANGE_PUT ? "PUT" : "DELETE", c->meta.path, c->meta.kind);
    return c;
}

static void expect_delete(const struct changeset *cs, size_t *i, const char *path)
{
    if (*i >= cs->n)
        fail_msg("missing DELETE %s", path);
    const struct change *c = &cs->items[(*i)++];
    if (c->op != CHANGE_DELETE || strcmp(c->meta.path, path) != 0)
        fail_msg("expected DELETE %s, got %s %s", path, c->op == CHANGE_PUT ? "PUT" : "DELETE",
                 c->meta.path);
}

/* The meta of a PUT equals what the merged view showed. */
static void expect_meta(const struct change *c, const struct stat *sb)
{
    assert_int_equal(c->meta.mode, sb->st_mode & 07777);
    assert_int_equal(c->meta.mtime_ns, ns_of(sb));
    if (S_ISREG(sb->st_mode))
        assert_int_equal(c->meta.size, sb->st_size);
}

static void expect_content(struct store *st, const struct change *c, const char *data)
{
    size_t len = strlen(data);
    assert_int_equal(c->meta.size, (int64_t)len);
    assert_int_equal(c->meta.has_content, len > 0);
    if (!len)
        return;
    struct content_reader *rd = NULL;
    assert_int_equal(store_content_open(st, c->meta.content, &rd), 0);
    char *buf = malloc(len + 1);
    size_t have = 0, got = 0;
    do {
        assert_int_equal(store_content_read(st, rd, buf + have, len + 1 - have, &got), 0);
        have += got;
    } while (got > 0 && have <= len);
    store_content_close(st, rd);
    assert_int_equal(have, len);
    assert_memory_equal(buf, data, len);
    free(buf);
}

/* ---------- comparing the checkout with the store ---------- */

struct cmp {
    int rootfd;
    struct store *st;
    int64_t rows;
    int64_t file_bytes;
};

static int cmp_row(const struct file_meta *m, void *userdata)
{
    struct cmp *c = userdata;
    struct stat sb;
    if (fstatat(c->rootfd, m->path + 1, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        fail_msg("missing in checkout: %s", m->path);
    assert_int_equal(sb.st_uid, SANDBOX_HOST_UID);
    if (ns_of(&sb) != m->mtime_ns)
        fail_msg("mtime of %s differs", m->path);
    if (m->kind == FILE_KIND_FILE) {
        assert_true(S_ISREG(sb.st_mode));
        assert_int_equal(sb.st_size, m->size);
        assert_int_equal(sb.st_mode & 07777, m->mode);
        c->file_bytes += m->size;
    } else if (m->kind == FILE_KIND_DIR) {
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 07777, m->mode);
    } else {
        assert_true(S_ISLNK(sb.st_mode));
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
            n += count_nodes(sub);
            close(sub);
        }
    }
    closedir(d);
    return n;
}

static char *read_at(const char *dir, const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
    int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    free(p);
    if (fd < 0)
        return NULL;
    char *buf = calloc(1, 4096);
    ssize_t n = read(fd, buf, 4095);
    assert_true(n >= 0);
    close(fd);
    return buf;
}

/* ---------- tests ---------- */

static void test_diff_exec_and_apply(void **state)
{
    struct fx *f = *state;
    umask(022);
    fx_mount(f);
    m_write(f, "/home/user/new.txt", "new content", O_CREAT | O_EXCL, 0640);
    m_write(f, "/home/user/a.txt", "changed", O_TRUNC, 0);
    char *big = malloc(2621440 + 1); /* 2.5 MiB: several chunks and reads */
    for (size_t i = 0; i < 2621440; i++)
        big[i] = (char)('a' + (i * 7) % 26);
    big[2621440] = '\0';
    m_write(f, "/home/user/big.bin", big, O_CREAT | O_EXCL, 0600);
    char *p = mpath(f, "/home/user/empty");
    assert_int_equal(unlink(p), 0); /* → whiteout */
    free(p);
    int mfd = open(f->merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(rm_rf_at(mfd, "home/user/sub", NULL), 0);
    close(mfd);
    p = mpath(f, "/home/user/sub");
    assert_int_equal(mkdir(p, 0700), 0); /* → opaque */
    free(p);
    m_write(f, "/home/user/sub/n.txt", "n", O_CREAT | O_EXCL, 0644);
    p = mpath(f, "/home/user/bin/run.sh");
    assert_int_equal(chmod(p, 0700), 0); /* metadata only: copied up whole */
    free(p);
    p = mpath(f, "/home/user/ln2");
    assert_int_equal(symlink("/etc/passwd", p), 0);
    free(p);
    p = mpath(f, "/home/user/fifo");
    assert_int_equal(mkfifo(p, 0644), 0);
    free(p);
    const char *snap_paths[] = {"/home",
                                "/home/user",
                                "/home/user/a.txt",
                                "/home/user/big.bin",
                                "/home/user/bin",
                                "/home/user/ln2",
                                "/home/user/new.txt",
                                "/home/user/sub",
                                "/home/user/bin/run.sh",
                                "/home/user/sub/n.txt"};
    struct stat snap[10];
    for (int i = 0; i < 10; i++)
        snap[i] = m_stat(f, snap_paths[i]);
    fx_umount(f);

    struct changeset cs;
    changeset_init(&cs, "exec");
    struct diff_stats ds;
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), 0);
    size_t i = 0;
    expect_meta(expect_put(&cs, &i, "/home", FILE_KIND_DIR), &snap[0]);
    expect_meta(expect_put(&cs, &i, "/home/user", FILE_KIND_DIR), &snap[1]);
    const struct change *c = expect_put(&cs, &i, "/home/user/a.txt", FILE_KIND_FILE);
    expect_meta(c, &snap[2]);
    expect_content(f->st, c, "changed");
    c = expect_put(&cs, &i, "/home/user/big.bin", FILE_KIND_FILE);
    expect_meta(c, &snap[3]);
    expect_content(f->st, c, big);
    expect_meta(expect_put(&cs, &i, "/home/user/bin", FILE_KIND_DIR), &snap[4]);
    expect_delete(&cs, &i, "/home/user/empty");
    c = expect_put(&cs, &i, "/home/user/ln2", FILE_KIND_SYMLINK);
    assert_string_equal(c->meta.target, "/etc/passwd");
    assert_int_equal(c->meta.size, 11);
    assert_int_equal(c->meta.mtime_ns, ns_of(&snap[5]));
    c = expect_put(&cs, &i, "/home/user/new.txt", FILE_KIND_FILE);
    expect_meta(c, &snap[6]);
    assert_int_equal(c->meta.mode, 0640);
    expect_content(f->st, c, "new content");
    expect_delete(&cs, &i, "/home/user/sub");
    c = expect_put(&cs, &i, "/home/user/sub", FILE_KIND_DIR);
    expect_meta(c, &snap[7]);
    assert_int_equal(c->meta.mode, 0700);
    c = expect_put(&cs, &i, "/home/user/bin/run.sh", FILE_KIND_FILE);
    expect_meta(c, &snap[8]);
    assert_int_equal(c->meta.mode, 0700);
    expect_content(f->st, c, "#!/bin/sh\n");
    c = expect_put(&cs, &i, "/home/user/sub/n.txt", FILE_KIND_FILE);
    expect_meta(c, &snap[9]);
    assert_int_equal(i, cs.n);
    assert_int_equal(ds.files, 5);
    assert_int_equal(ds.dirs, 4);
    assert_int_equal(ds.symlinks, 1);
    assert_int_equal(ds.deletes, 2);
    assert_int_equal(ds.skipped, 1);
    assert_int_equal(ds.bytes, 7 + 2621440 + 11 + 10 + 1);

    /* Commit and move the upper into the checkout: it must equal the merged view. */
    int64_t old = f->version;
    fx_commit(f, &cs);
    /* A file gone from the upper is taken from the store instead. */
    char *gone = NULL;
    assert_true(asprintf(&gone, "%s/home/user/big.bin", f->upper) > 0);
    assert_int_equal(unlink(gone), 0);
    free(gone);
    assert_int_equal(checkout_apply_upper(f->cos, f->id, old, f->version, f->upper, &cs), 0);
    changeset_release(&cs);
    char *s = read_at(f->upper, "home/user/new.txt");
    assert_null(s); /* moved, not copied */
    s = read_at(f->lower, "home/user/new.txt");
    assert_string_equal(s, "new content");
    free(s);
    s = read_at(f->lower, "home/user/a.txt");
    assert_string_equal(s, "changed");
    free(s);
    s = read_at(f->lower, "home/user/big.bin");
    assert_non_null(s);
    assert_memory_equal(s, big, 4095);
    free(s);
    s = read_at(f->lower, "home/user/keep.txt");
    assert_string_equal(s, "keep\n");
    free(s);
    assert_null(read_at(f->lower, "home/user/empty"));
    assert_null(read_at(f->lower, "home/user/sub/deep/x.txt"));
    assert_null(read_at(f->lower, "home/user/fifo"));
    free(big);

    struct cmp cm = {.st = f->st};
    cm.rootfd = open(f->lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(store_list(f->st, f->id, "/", 0, cmp_row, &cm), 0);
    assert_int_equal(count_nodes(cm.rootfd), cm.rows);
    /* the tracked size follows replaced, new and deleted files */
    struct checkout_stats cst;
    checkouts_get_stats(f->cos, &cst);
    assert_int_equal(cst.bytes, cm.file_bytes);
    struct stat sb;
    assert_int_equal(fstatat(cm.rootfd, "home/user/ln2", &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISLNK(sb.st_mode));
    assert_int_equal(sb.st_uid, SANDBOX_HOST_UID);
    close(cm.rootfd);
    /* No overlay bookkeeping carried into the lower layer. */
    p = NULL;
    assert_true(asprintf(&p, "%s/home/user/bin/run.sh", f->lower) > 0);
    char names[1024];
    ssize_t nl = llistxattr(p, names, sizeof(names));
    for (ssize_t off = 0; nl > 0 && off < nl; off += (ssize_t)strlen(names + off) + 1)
        assert_null(strstr(names + off, "overlay."));
    free(p);

    /* Applied in place: the cache did not rebuild, and the checkout is at the new version. */
    checkouts_get_stats(f->cos, &cst);
    assert_int_equal(cst.builds, 1);
    char *again = NULL;
    assert_int_equal(checkout_acquire(f->cos, f->id, f->version, &again), 0);
    checkout_release(f->cos, f->id);
    free(again);
    checkouts_get_stats(f->cos, &cst);
    assert_int_equal(cst.builds, 1);
}

/* A read-only exec that only reads (even opening for write or touching atime, which copy up)
 * changed nothing; writing, deleting or chmod-ing did. */
static void test_changed_readonly(void **state)
{
    struct fx *f = *state;
    fx_mount(f);
    char *s = read_at(f->merged, "home/user/a.txt");
    assert_string_equal(s, "hello\n");
    free(s);
    DIR *d = opendir(f->merged);
    assert_non_null(d);
    while (readdir(d))
        ;
    closedir(d);
    char *p = mpath(f, "/home/user/keep.txt");
    int fd = open(p, O_RDWR | O_CLOEXEC); /* copy-up without a change */
    assert_true(fd >= 0);
    close(fd);
    struct timespec ts[2] = {{.tv_sec = 12345, .tv_nsec = 0}, {.tv_sec = 0, .tv_nsec = UTIME_OMIT}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0); /* atime only */
    free(p);
    fx_umount(f);
    char *up = NULL;
    assert_true(asprintf(&up, "%s/home/user/keep.txt", f->upper) > 0);
    struct stat sb;
    assert_int_equal(lstat(up, &sb), 0); /* it really was copied up */
    free(up);
    assert_int_equal(diff_upper_changed(f->upper, f->lower), 0);

    /* Now a real change through the same upper. */
    fx_mount(f);
    m_write(f, "/home/user/keep.txt", "KEEP\n", O_TRUNC, 0);
    fx_umount(f);
    assert_int_equal(diff_upper_changed(f->upper, f->lower), 1);
}

static void test_changed_kinds(void **state)
{
    struct fx *f = *state;
    /* Each operation alone is a change. */
    for (int op = 0; op < 4; op++) {
        int top = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(rm_rf_at(top, "uppers/x/upper", NULL), 0);
        assert_int_equal(rm_rf_at(top, "uppers/x/work", NULL), 0);
        close(top);
        assert_int_equal(mkdir(f->upper, 0755), 0);
        assert_int_equal(mkdir(f->work, 0700), 0);
        fx_mount(f);
        char *p = mpath(f, "/home/user/bin/run.sh");
        if (op == 0)
            assert_int_equal(unlink(p), 0);
        else if (op == 1)
            assert_int_equal(chmod(p, 0700), 0);
        else if (op == 2)
            m_write(f, "/home/user/bin/tmp", "", O_CREAT, 0644);
        else {
            /* Create and delete again: the directory's mtime moved. */
            m_write(f, "/home/user/bin/tmp", "", O_CREAT, 0644);
            free(p);
            p = mpath(f, "/home/user/bin/tmp");
            assert_int_equal(unlink(p), 0);
        }
        free(p);
        fx_umount(f);
        assert_int_equal(diff_upper_changed(f->upper, f->lower), 1);
    }
}

/* An upper built by hand: overlay markers in either xattr namespace, rejected features. */
/* With the lower given, directories copied up (or prepared in the upper) that still match the
 * lower are not changes; a changed or opaque one still is. */
static void test_diff_skips_dirs_like_lower(void **state)
{
    struct fx *f = *state;
    fx_mount(f);
    m_write(f, "/home/user/sub/deep/y.txt", "y", O_CREAT | O_EXCL, 0644); /* copies up 4 dirs */
    char *p = mpath(f, "/home/user/bin");
    assert_int_equal(chmod(p, 0700), 0); /* a real change of a directory */
    free(p);
    struct stat deep = m_stat(f, "/home/user/sub/deep");
    struct stat bin = m_stat(f, "/home/user/bin");
    fx_umount(f);
    /* like the engine's prepared skeleton: a directory made in the upper with the lower's
     * mode and times, and one made the same way but opaque */
    char up[512];
    snprintf(up, sizeof(up), "%s/home/user/sub", f->upper); /* exists: copied up */
    struct stat lsb;
    char lp[512];
    snprintf(lp, sizeof(lp), "%s/home/user/sub", f->lower);
    assert_int_equal(stat(lp, &lsb), 0);
    struct changeset cs;
    changeset_init(&cs, "exec");
    struct diff_stats ds;
    assert_int_equal(diff_upper(f->st, f->upper, f->lower, &cs, &ds), 0);
    size_t i = 0;
    /* /home, /home/user and /home/user/sub kept their mode and mtime: no entries */
    expect_meta(expect_put(&cs, &i, "/home/user/bin", FILE_KIND_DIR), &bin);
    expect_meta(expect_put(&cs, &i, "/home/user/sub/deep", FILE_KIND_DIR), &deep);
    expect_put(&cs, &i, "/home/user/sub/deep/y.txt", FILE_KIND_FILE);
    assert_int_equal(i, cs.n);
    assert_int_equal(ds.dirs, 2);
    changeset_release(&cs);
    /* without the lower every directory in the upper is an entry, as before */
    changeset_init(&cs, "exec");
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), 0);
    assert_int_equal(ds.dirs, 5);
    changeset_release(&cs);
    /* an opaque directory alike in mode and mtime still replaces the lower subtree */
    assert_int_equal(setxattr(up, "trusted.overlay.opaque", "y", 1, 0), 0);
    struct timespec ts[2] = {lsb.st_atim, lsb.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, up, ts, 0), 0);
    changeset_init(&cs, "exec");
    assert_int_equal(diff_upper(f->st, f->upper, f->lower, &cs, &ds), 0);
    bool deleted = false, put = false;
    for (size_t k = 0; k < cs.n; k++) {
        if (strcmp(cs.items[k].meta.path, "/home/user/sub") != 0)
            continue;
        deleted = deleted || cs.items[k].op == CHANGE_DELETE;
        put = put || (cs.items[k].op == CHANGE_PUT && deleted);
    }
    assert_true(deleted && put);
    changeset_release(&cs);
}

static void test_diff_markers(void **state)
{
    struct fx *f = *state;
    char p[256];
    snprintf(p, sizeof(p), "%s/d", f->upper);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(setxattr(p, "user.overlay.opaque", "y", 1, 0), 0);
    snprintf(p, sizeof(p), "%s/notopaque", f->upper);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(setxattr(p, "trusted.overlay.opaque", "x", 1, 0), 0);
    snprintf(p, sizeof(p), "%s/wh", f->upper);
    assert_int_equal(mknod(p, S_IFCHR | 0, makedev(0, 0)), 0);
    snprintf(p, sizeof(p), "%s/xwh", f->upper);
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(fd);
    assert_int_equal(setxattr(p, "trusted.overlay.whiteout", "", 0, 0), 0);
    /* A sandbox can set user.* xattrs: they must not turn its empty file into a deletion. */
    snprintf(p, sizeof(p), "%s/uwh", f->upper);
    fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(fd);
    assert_int_equal(setxattr(p, "user.overlay.whiteout", "", 0, 0), 0);
    assert_int_equal(setxattr(p, "user.overlay.metacopy", "", 0, 0), 0);
    snprintf(p, sizeof(p), "%s/null", f->upper);
    assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
    struct changeset cs;
    changeset_init(&cs, "exec");
    struct diff_stats ds;
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), 0);
    size_t i = 0;
    expect_delete(&cs, &i, "/d");
    expect_put(&cs, &i, "/d", FILE_KIND_DIR);
    expect_put(&cs, &i, "/notopaque", FILE_KIND_DIR);
    expect_put(&cs, &i, "/uwh", FILE_KIND_FILE);
    expect_delete(&cs, &i, "/wh");
    expect_delete(&cs, &i, "/xwh");
    assert_int_equal(i, cs.n);
    assert_int_equal(ds.skipped, 1);
    changeset_release(&cs);

    snprintf(p, sizeof(p), "%s/notopaque", f->upper);
    assert_int_equal(setxattr(p, "trusted.overlay.redirect", "/elsewhere", 10, 0), 0);
    changeset_init(&cs, "exec");
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), -ENOTSUP);
    changeset_release(&cs);
    assert_int_equal(removexattr(p, "trusted.overlay.redirect"), 0);
    snprintf(p, sizeof(p), "%s/d/meta", f->upper);
    fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(fd);
    assert_int_equal(setxattr(p, "trusted.overlay.metacopy", "", 0, 0), 0);
    changeset_init(&cs, "exec");
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), -ENOTSUP);
    changeset_release(&cs);

    /* An empty upper is no change; a missing one is an error. */
    int top = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(rm_rf_at(top, "uppers/x/upper", NULL), 0);
    close(top);
    assert_int_equal(mkdir(f->upper, 0755), 0);
    changeset_init(&cs, "exec");
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), 0);
    assert_int_equal(cs.n, 0);
    changeset_release(&cs);
    assert_int_equal(diff_upper_changed(f->upper, f->lower), 0);
    assert_int_equal(rmdir(f->upper), 0);
    changeset_init(&cs, "exec");
    assert_int_equal(diff_upper(f->st, f->upper, NULL, &cs, &ds), -ENOENT);
    changeset_release(&cs);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_diff: needs root (overlayfs mounts); skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_diff_exec_and_apply, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_changed_readonly, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_changed_kinds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_diff_markers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_diff_skips_dirs_like_lower, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("diff", tests, NULL, NULL);
}
