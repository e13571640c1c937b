#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/fs.h"

/* A scratch directory: root (open) with root/tree and root/outside/secret. */
struct scratch {
    char path[64];
    int root;
};

static void put_file(int dirfd, const char *name, const char *text)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static bool exists_at(int dirfd, const char *name)
{
    struct stat sb;
    return fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

static int setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    snprintf(s->path, sizeof(s->path), "/tmp/sqlfs-test-fs-XXXXXX");
    assert_non_null(mkdtemp(s->path));
    s->root = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(s->root >= 0);
    assert_int_equal(mkdirat(s->root, "tree", 0755), 0);
    assert_int_equal(mkdirat(s->root, "outside", 0755), 0);
    put_file(s->root, "outside/secret", "keep me");
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct scratch *s = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", s->path);
    if (system(cmd) != 0)
        return -1;
    close(s->root);
    free(s);
    return 0;
}

static int tree_fd(struct scratch *s)
{
    int fd = openat(s->root, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void test_open_beneath_inside(void **state)
{
    struct scratch *s = *state;
    int t = tree_fd(s);
    assert_int_equal(mkdirat(t, "a", 0755), 0);
    put_file(t, "a/file", "content");
    assert_int_equal(symlinkat("a/file", t, "rel"), 0);
    assert_int_equal(symlinkat("a", t, "dirlink"), 0);

    int fd = open_beneath(t, "a/file", O_RDONLY, 0);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    char buf[16] = {0};
    assert_int_equal(read(fd, buf, sizeof(buf)), 7);
    assert_string_equal(buf, "content");
    close(fd);

    /* symlinks that stay below are followed without O_NOFOLLOW, refused anywhere with it */
    fd = open_beneath(t, "rel", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    fd = open_beneath(t, "dirlink/file", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(open_beneath(t, "rel", O_RDONLY | O_NOFOLLOW, 0), -ELOOP);
    assert_int_equal(open_beneath(t, "dirlink/file", O_RDONLY | O_NOFOLLOW, 0), -ELOOP);
    /* O_PATH | O_NOFOLLOW opens a final symlink itself, as openat does */
    fd = open_beneath(t, "rel", O_PATH | O_NOFOLLOW, 0);
    assert_true(fd >= 0);
    struct stat lst;
    assert_int_equal(fstat(fd, &lst), 0);
    assert_true(S_ISLNK(lst.st_mode));
    close(fd);
    assert_int_equal(open_beneath(t, "dirlink/file", O_PATH | O_NOFOLLOW, 0), -ELOOP);

    /* "" is dirfd itself; ".." that stays below is fine */
    fd = open_beneath(t, "", O_RDONLY | O_DIRECTORY, 0);
    assert_true(fd >= 0);
    struct stat a, b;
    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(fstat(t, &b), 0);
    assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    close(fd);
    fd = open_beneath(t, "a/../a/file", O_RDONLY | O_NOFOLLOW, 0);
    assert_true(fd >= 0);
    close(fd);

    /* O_CREAT takes the mode; without O_CREAT the mode is ignored (openat2 would refuse it) */
    mode_t old = umask(0);
    fd = open_beneath(t, "a/new", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0640);
    umask(old);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    close(fd);
    fd = open_beneath(t, "a/new", O_RDONLY, 0777);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(open_beneath(t, "a/absent", O_RDONLY, 0), -ENOENT);
    close(t);
}

static void test_open_beneath_refuses_escapes(void **state)
{
    struct scratch *s = *state;
    int t = tree_fd(s);
    assert_int_equal(symlinkat("/etc/passwd", t, "abs"), 0);
    assert_int_equal(symlinkat("../outside/secret", t, "up"), 0);
    assert_int_equal(symlinkat("/", t, "rootlink"), 0);

    assert_int_equal(open_beneath(t, "../outside/secret", O_RDONLY, 0), -EXDEV);
    assert_int_equal(open_beneath(t, "..", O_RDONLY, 0), -EXDEV);
    assert_int_equal(open_beneath(t, "/etc/passwd", O_RDONLY, 0), -EXDEV);
    assert_int_equal(open_beneath(t, "abs", O_RDONLY, 0), -EXDEV);
    assert_int_equal(open_beneath(t, "up", O_RDONLY, 0), -EXDEV);
    assert_int_equal(open_beneath(t, "rootlink/etc/passwd", O_RDONLY, 0), -EXDEV);
    /* O_CREAT through an escaping symlink creates nothing outside */
    assert_int_equal(symlinkat("../outside/created", t, "mk"), 0);
    assert_true(open_beneath(t, "mk", O_WRONLY | O_CREAT, 0600) < 0);
    assert_false(exists_at(s->root, "outside/created"));
    close(t);

    /* magic links (/proc/self/exe, /proc/self/fd/N) are never followed */
    int proc = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(proc >= 0);
    assert_int_equal(open_beneath(proc, "exe", O_RDONLY, 0), -ELOOP);
    assert_int_equal(open_beneath(proc, "cwd", O_RDONLY | O_DIRECTORY, 0), -ELOOP);
    close(proc);
}

/* tree: files, an empty and nested directories, symlinks to the outside (file and directory)
 * and a fifo. Returns the bytes of its regular files. */
static int64_t build_tree(int t)
{
    assert_int_equal(mkdirat(t, "d", 0755), 0);
    assert_int_equal(mkdirat(t, "d/e", 0755), 0);
    assert_int_equal(mkdirat(t, "d/e/f", 0755), 0);
    assert_int_equal(mkdirat(t, "empty", 0755), 0);
    put_file(t, "top", "12345");
    put_file(t, "d/one", "1");
    put_file(t, "d/e/f/deep", "abcdefghij");
    assert_int_equal(symlinkat("../outside", t, "d/out_dir"), 0);
    assert_int_equal(symlinkat("../../outside/secret", t, "d/out_file"), 0);
    assert_int_equal(mkfifoat(t, "d/e/fifo", 0600), 0);
    return 5 + 1 + 10;
}

static void test_rm_rf_at_tree(void **state)
{
    struct scratch *s = *state;
    int t = tree_fd(s);
    int64_t want = build_tree(t);
    close(t);
    int64_t bytes = 100;
    assert_int_equal(rm_rf_at(s->root, "tree", &bytes), 0);
    assert_int_equal(bytes, 100 + want);
    assert_false(exists_at(s->root, "tree"));
    assert_true(exists_at(s->root, "outside/secret")); /* symlinks were not followed */
    /* absent: nothing to do */
    assert_int_equal(rm_rf_at(s->root, "tree", NULL), 0);
    /* a file, and a symlink to a directory: the link goes, not its target */
    put_file(s->root, "file", "xyz");
    bytes = 0;
    assert_int_equal(rm_rf_at(s->root, "file", &bytes), 0);
    assert_int_equal(bytes, 3);
    assert_false(exists_at(s->root, "file"));
    assert_int_equal(symlinkat("outside", s->root, "link"), 0);
    assert_int_equal(rm_rf_at(s->root, "link", NULL), 0);
    assert_false(exists_at(s->root, "link"));
    assert_true(exists_at(s->root, "outside/secret"));
    assert_int_equal(rm_rf_at(-1, "x", NULL), -EBADF);
    /* a path relative to the working directory works as well */
    assert_int_equal(mkdirat(s->root, "tree", 0755), 0);
    t = tree_fd(s);
    build_tree(t);
    close(t);
    char path[96];
    snprintf(path, sizeof(path), "%s/tree", s->path);
    assert_int_equal(rm_rf_at(AT_FDCWD, path, NULL), 0);
    assert_false(exists_at(s->root, "tree"));
    assert_true(exists_at(s->root, "outside/secret"));
}

/* Deeper than PATH_MAX and than the descriptors a process may hold. */
static void test_rm_rf_at_deep(void **state)
{
    struct scratch *s = *state;
    int fd = tree_fd(s);
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(mkdirat(fd, "nested-directory", 0755), 0);
        if (i % 100 == 0)
            put_file(fd, "f", "x");
        int next = openat(fd, "nested-directory", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(next >= 0);
        close(fd);
        fd = next;
    }
    close(fd);
    int64_t bytes = 0;
    assert_int_equal(rm_rf_at(s->root, "tree", &bytes), 0);
    assert_int_equal(bytes, 30);
    assert_false(exists_at(s->root, "tree"));
}

/* In a child with its own mount namespace: a tmpfs and a bind mount of "outside" (same file
 * system: only the mount id tells it apart) inside the tree are never entered. Exit status 0 =
 * as expected, 77 = no privilege to test, else the failed step. */
static int mount_child(struct scratch *s)
{
    if (unshare(CLONE_NEWNS) < 0)
        return 77;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return 77;
    /* a descriptor opened before unshare walks the old namespace's mounts: open it again */
    int root = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return 1;
    int t = openat(root, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t < 0 || mkdirat(t, "sub", 0755) < 0 || mkdirat(t, "sub/bind", 0755) < 0)
        return 1;
    put_file(t, "sub/before", "x");
    char target[128], source[128];
    snprintf(target, sizeof(target), "%s/tree/sub/bind", s->path);
    snprintf(source, sizeof(source), "%s/outside", s->path);
    if (mount(source, target, NULL, MS_BIND, NULL) < 0)
        return 77;
    if (rm_rf_at(root, "tree", NULL) != -EBUSY)
        return 2;
    if (!exists_at(root, "outside/secret"))
        return 3;
    if (umount2(target, MNT_DETACH) < 0)
        return 4;
    /* a tmpfs */
    snprintf(target, sizeof(target), "%s/tree/sub/bind", s->path);
    if (mount("tmpfs", target, "tmpfs", 0, "size=1m") < 0)
        return 77;
    put_file(t, "sub/bind/in-tmpfs", "y");
    if (rm_rf_at(root, "tree", NULL) != -EBUSY)
        return 5;
    if (!exists_at(t, "sub/bind/in-tmpfs"))
        return 6;
    if (umount2(target, MNT_DETACH) < 0)
        return 7;
    if (rm_rf_at(root, "tree", NULL) != 0 || exists_at(root, "tree"))
        return 8;
    return 0;
}

static void test_rm_rf_at_mounts(void **state)
{
    struct scratch *s = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(mount_child(s));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(exists_at(s->root, "outside/secret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_beneath_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_beneath_refuses_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf_at_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf_at_deep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rm_rf_at_mounts, setup, teardown),
    };
    return cmocka_run_group_tests_name("fs", tests, NULL, NULL);
}
