/* The jail's generated tree (jail/rootfs.h) from a small fake system image: the curated /etc
 * (generated identity files, what is copied, what never is), the skeleton layer, the runtime
 * stubs and /opt/sqlfs/bin variants, the interpreters a jail without the runtime covers, the
 * shell chosen, and rootfs_rm_rf. Needs root (the skeleton's home belongs to the sandbox
 * user). */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jail/ids.h"
#include "jail/rootfs.h"
#include "util/err.h"
#include "util/fd.h"

static char base[] = "/tmp/sqlfs-test-rootfs-XXXXXX";
static char image[64], data[64], jail[80];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* A system image: an /etc with secrets beside what the jail copies, merged-/usr links, two
 * python interpreters reached by several names, node, bash and bash-static. */
static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(base))
        return -1;
    snprintf(image, sizeof(image), "%s/image", base);
    snprintf(data, sizeof(data), "%s/data", base);
    snprintf(jail, sizeof(jail), "%s/jail", data);
    sh("set -e; umask 022; cd %s; mkdir -p image data/jail/old; echo junk > data/jail/old/f\n"
       "cd image; mkdir -p etc/ssl/certs etc/ssl/private etc/ssh etc/ld.so.conf.d etc/python3.11 "
       "  usr/bin usr/sbin usr/lib usr/local/bin opt/lib64\n"
       "echo 'host:x:0:0::/:/bin/sh' > etc/passwd; echo 'host:x:0:' > etc/group\n"
       "echo 'root:$6$secret:1::::::' > etc/shadow; echo secret > etc/gshadow\n"
       "echo key > etc/ssh/ssh_host_ed25519_key; echo 0123 > etc/machine-id\n"
       "echo 'https_proxy=http://user:pw@proxy' > etc/environment\n"
       "echo 'include /etc/ld.so.conf.d/*.conf' > etc/ld.so.conf; echo /opt > "
       "etc/ld.so.conf.d/a.conf\n"
       "echo 'PS1=x' > etc/profile; chmod 0664 etc/profile\n"
       "echo cert > etc/ssl/certs/ca.pem; echo key > etc/ssl/private/key.pem\n"
       "echo '[openssl]' > etc/ssl/openssl.cnf; echo 'import x' > etc/python3.11/sitecustomize.py\n"
       "echo 'http 80/tcp' > etc/services; chmod 0600 etc/services\n"
       "ln -s ../usr/lib/os-release etc/os-release\n"
       "ln -s usr/bin bin; ln -s /usr/sbin sbin; ln -s usr/lib lib; ln -s /opt/lib64 lib64\n"
       "for f in python3.11 python3-config node bash bash-static; do printf '#!/bin/sh\\n' > "
       "  usr/bin/$f; chmod 0755 usr/bin/$f; done\n"
       "ln -s python3.11 usr/bin/python3; ln -s python3 usr/bin/python; ln -s node usr/bin/nodejs\n"
       "ln -s /usr/bin/python3.11 usr/local/bin/python3; ln -s /etc/passwd usr/local/bin/node\n"
       "ln -s missing usr/local/bin/python9; cp usr/bin/python3.11 usr/local/bin/python3.12\n",
       base);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return rootfs_rm_rf(base) < 0 ? -1 : 0;
}

static struct rootfs build(void)
{
    struct rootfs rf;
    int r = rootfs_build(data, image, &rf);
    if (r < 0)
        fail_msg("rootfs_build: %d %s", r, err_message());
    return rf;
}

/* The contents of jail/rel ("" when empty, NULL when missing). */
extern const unsigned char py_exec_image[], py_exec_image_end[];

/* The jail file `rel` holds exactly these bytes. */
static bool same_as_image(const char *rel, const unsigned char *start, const unsigned char *end)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", jail, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    size_t len = (size_t)(end - start);
    unsigned char *buf = malloc(len + 1);
    ssize_t n = buf ? read_all(fd, buf, len + 1) : -1;
    close(fd);
    bool same = n == (ssize_t)len && memcmp(buf, start, len) == 0 && len > 4 &&
                memcmp(buf,
                       "\x7f"
                       "ELF",
                       4) == 0;
    free(buf);
    return same;
}

static const char *jail_file(const char *rel)
{
    static char text[1024];
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", jail, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    assert_true(n >= 0);
    text[n] = '\0';
    return text;
}

static const char *jail_link(const char *rel)
{
    static char target[256];
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", jail, rel);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return NULL;
    target[n] = '\0';
    return target;
}

static bool jail_exists(const char *rel)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", jail, rel);
    return lstat(path, &st) == 0;
}

static struct stat jail_stat(const char *rel)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", jail, rel);
    assert_int_equal(lstat(path, &st), 0);
    return st;
}

static void test_paths(void **state)
{
    (void)state;
    struct rootfs rf = build();
    char want[128];
    assert_string_equal(rf.rootfs, image);
    snprintf(want, sizeof(want), "%s/usr", image);
    assert_string_equal(rf.usr, want);
    assert_string_equal(rf.jail_dir, jail);
    snprintf(want, sizeof(want), "%s/etc", jail);
    assert_string_equal(rf.etc, want);
    snprintf(want, sizeof(want), "%s/skel", jail);
    assert_string_equal(rf.skel, want);
    snprintf(want, sizeof(want), "%s/root", jail);
    assert_string_equal(rf.newroot, want);
    snprintf(want, sizeof(want), "%s/bin/3", jail);
    assert_string_equal(rf.bin[3], want);
    snprintf(want, sizeof(want), "%s/stub/javascript", jail);
    assert_string_equal(rf.stub[1], want);
    assert_null(rf.locale);           /* built only over the host's own /usr */
    assert_false(jail_exists("old")); /* the previous tree is gone */
    assert_int_equal(jail_stat("").st_mode & 07777, 0700);
    assert_int_equal(jail_stat("root").st_mode & 07777, 0700);
    rootfs_release(&rf);
    assert_null(rf.rootfs);
}

/* Identity files are generated; the tools' configuration is copied; secrets, proxy settings
 * and files only root may read never are. */
static void test_etc(void **state)
{
    (void)state;
    struct rootfs rf = build();
    const char *passwd = jail_file("etc/passwd");
    assert_non_null(passwd);
    assert_non_null(strstr(passwd, "user:x:1000:1000:user:/home/user:/bin/bash\n"));
    assert_null(strstr(passwd, "host:"));
    assert_null(strstr(jail_file("etc/group"), "host:"));
    assert_string_equal(jail_file("etc/hostname"), "sandbox\n");
    assert_non_null(strstr(jail_file("etc/hosts"), "127.0.0.1\tlocalhost\n"));
    assert_non_null(strstr(jail_file("etc/nsswitch.conf"), "hosts: files\n"));
    assert_string_equal(jail_file("etc/timezone"), "Etc/UTC\n");
    assert_non_null(jail_file("etc/resolv.conf"));
    assert_string_equal(jail_link("etc/localtime"), "/usr/share/zoneinfo/Etc/UTC");
    assert_string_equal(jail_link("etc/mtab"), "../proc/self/mounts");

    assert_string_equal(jail_file("etc/ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n");
    assert_string_equal(jail_file("etc/ld.so.conf.d/a.conf"), "/opt\n");
    assert_string_equal(jail_file("etc/ssl/certs/ca.pem"), "cert\n");
    assert_string_equal(jail_file("etc/ssl/openssl.cnf"), "[openssl]\n");
    assert_string_equal(jail_file("etc/python3.11/sitecustomize.py"), "import x\n");
    assert_string_equal(jail_link("etc/os-release"), "../usr/lib/os-release");
    assert_int_equal(jail_stat("etc/profile").st_mode & 07777, 0644); /* no group write */
    assert_int_equal(jail_stat("etc").st_mode & 07777, 0755);
    assert_int_equal(jail_stat("etc/ld.so.conf.d").st_mode & 07777, 0755);

    static const char *const never[] = {"etc/shadow",     "etc/gshadow",     "etc/ssh",
                                        "etc/machine-id", "etc/environment", "etc/ssl/private",
                                        "etc/services" /* 0600 */};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (jail_exists(never[i]))
            fail_msg("%s was copied", never[i]);
    rootfs_release(&rf);
}

/* The lowest overlay layer: mount points with their modes, home owned by the sandbox user, and
 * the image's links into /usr (relative, whatever the image wrote); other links are left out. */
static void test_skel(void **state)
{
    (void)state;
    struct rootfs rf = build();
    static const char *const dirs[] = {"usr",           "etc",  "proc",    "dev",
                                       "opt/sqlfs/bin", "home", "var/tmp", "run",
                                       "tmp",           "root", "sys"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "skel/%s", dirs[i]);
        assert_true(S_ISDIR(jail_stat(rel).st_mode));
    }
    assert_int_equal(jail_stat("skel/tmp").st_mode & 07777, 01777);
    assert_int_equal(jail_stat("skel/var/tmp").st_mode & 07777, 01777);
    assert_int_equal(jail_stat("skel/root").st_mode & 07777, 0700);
    assert_int_equal(jail_stat("skel/sys").st_mode & 07777, 0555);
    assert_int_equal(jail_stat("skel/usr").st_mode & 07777, 0755);
    struct stat home = jail_stat("skel/home/user");
    assert_int_equal(home.st_uid, SANDBOX_HOST_UID);
    assert_int_equal(home.st_gid, SANDBOX_HOST_UID);
    assert_string_equal(jail_link("skel/bin"), "usr/bin");
    assert_string_equal(jail_link("skel/sbin"), "usr/sbin");
    assert_string_equal(jail_link("skel/lib"), "usr/lib");
    assert_false(jail_exists("skel/lib64")); /* points outside /usr */
    assert_false(jail_exists("skel/lib32")); /* not in the image */
    rootfs_release(&rf);
}

/* bin/N has py-exec, js-exec and python for each combination of the runtime flags
 * (N = python | js << 1): the real launcher when on (py-exec: the embedded program, byte for
 * byte), a stub that exits 127 when off. */
static void test_runtime_bins(void **state)
{
    (void)state;
    struct rootfs rf = build();
    for (int i = 0; i < 2; i++) {
        const char *name = i == 0 ? "stub/python" : "stub/javascript";
        const char *text = jail_file(name);
        assert_non_null(text);
        assert_non_null(strstr(text, i == 0 ? "python is not enabled for this sandbox; create "
                                              "it with python=true"
                                            : "javascript is not enabled"));
        assert_non_null(strstr(text, "exit 127"));
        assert_int_equal(jail_stat(name).st_mode & 07777, 0555);
    }
    for (int n = 0; n < 4; n++) {
        bool py = n & 1, js = n & 2;
        char rel[64];
        snprintf(rel, sizeof(rel), "bin/%d/py-exec", n);
        if (py)
            assert_true(same_as_image(rel, py_exec_image, py_exec_image_end));
        else
            assert_non_null(strstr(jail_file(rel), "exit 127"));
        assert_int_equal(jail_stat(rel).st_mode & 07777, 0555);
        snprintf(rel, sizeof(rel), "bin/%d/python", n);
        assert_int_equal(strstr(jail_file(rel), "exec python3 \"$@\"") != NULL, py);
        snprintf(rel, sizeof(rel), "bin/%d/js-exec", n);
        assert_int_equal(strstr(jail_file(rel), "exec node \"$@\"") != NULL, js);
        assert_int_equal(strstr(jail_file(rel), "javascript is not enabled") != NULL, !js);
    }
    rootfs_release(&rf);
}

static bool has_target(const struct rootfs *rf, int kind, const char *path)
{
    for (int i = 0; i < rf->ntargets[kind]; i++)
        if (strcmp(rf->targets[kind][i], path) == 0)
            return true;
    return false;
}

/* Every name of an interpreter resolves (as the jail sees the image) to the file a jail without
 * the runtime covers with its stub, once each; links out of /usr and dangling ones count for
 * nothing. */
static void test_interpreter_targets(void **state)
{
    (void)state;
    struct rootfs rf = build();
    assert_int_equal(rf.ntargets[0], 2);
    assert_true(has_target(&rf, 0, "/usr/bin/python3.11"));
    assert_true(has_target(&rf, 0, "/usr/local/bin/python3.12"));
    assert_int_equal(rf.ntargets[1], 1);
    assert_true(has_target(&rf, 1, "/usr/bin/node"));
    rootfs_release(&rf);
}

/* bash-static when the image has it, else bash. */
static void test_shell(void **state)
{
    (void)state;
    struct rootfs rf = build();
    assert_true(rf.has_bash);
    assert_string_equal(rf.shell, "/usr/bin/bash-static");
    rootfs_release(&rf);
    sh("mv %s/usr/bin/bash-static %s/bash-static", image, base);
    rf = build();
    assert_true(rf.has_bash);
    assert_string_equal(rf.shell, "/usr/bin/bash");
    rootfs_release(&rf);
    sh("mv %s/usr/bin/bash %s/bash", image, base);
    rf = build();
    assert_false(rf.has_bash);
    assert_string_equal(rf.shell, "/usr/bin/bash");
    rootfs_release(&rf);
    sh("mv %s/bash %s/bash-static %s/usr/bin/", base, base, image);
}

static void test_missing_image(void **state)
{
    (void)state;
    struct rootfs rf;
    char missing[96];
    snprintf(missing, sizeof(missing), "%s/no-such-image", base);
    err_clear();
    assert_int_equal(rootfs_build(data, missing, &rf), -ENOENT);
    assert_string_equal(err_message(), "rootfs: the system image directory does not exist");
}

/* rootfs_rm_rf removes a tree without following its symlinks out of it. */
static void test_rm_rf(void **state)
{
    (void)state;
    sh("set -e; cd %s; mkdir -p outside victim/d; echo keep > outside/f; "
       "ln -s ../outside victim/link; ln -s ../../outside victim/d/link2; echo x > victim/d/x",
       base);
    char victim[96], kept[96];
    snprintf(victim, sizeof(victim), "%s/victim", base);
    snprintf(kept, sizeof(kept), "%s/outside/f", base);
    assert_int_equal(rootfs_rm_rf(victim), 0);
    assert_int_not_equal(access(victim, F_OK), 0);
    assert_int_equal(access(kept, F_OK), 0);
    assert_int_equal(rootfs_rm_rf(victim), 0); /* missing: nothing to do */
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_rootfs: needs root, skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_etc),
        cmocka_unit_test(test_skel),
        cmocka_unit_test(test_runtime_bins),
        cmocka_unit_test(test_interpreter_targets),
        cmocka_unit_test(test_shell),
        cmocka_unit_test(test_missing_image),
        cmocka_unit_test(test_rm_rf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
