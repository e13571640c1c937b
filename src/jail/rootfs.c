#include "jail/rootfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail/ids.h"
#include "util/cleanup.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/home.h"
#include "util/log.h"

/* The py-exec program (zygote/py_exec.c), embedded (zygote/images.S). */
extern const unsigned char py_exec_image[], py_exec_image_end[];

static const char *const runtime_names[2] = {"python", "javascript"};

/* Compiled locales put into the jail's archive, at most (more: no archive is built). */
#define LOCALE_MAX_DIRS 64
/* How long the server's start waits for localedef. */
#define LOCALEDEF_WAIT_MS 10000

int rootfs_rm_rf(const char *path)
{
    return rm_rf_at(AT_FDCWD, path, NULL);
}

static int write_bytes(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, data, len);
    if (fchmod(fd, mode) < 0 && r == 0)
        r = -errno;
    close(fd);
    return r;
}

static int write_file(int dirfd, const char *name, const char *text, mode_t mode)
{
    return write_bytes(dirfd, name, text, strlen(text), mode);
}

/* A directory of the jail tree, which the sandbox user reads through bind mounts and the
 * skeleton layer: 0755 whatever the server's umask (its own is 077). */
static int mkdir_public(int dirfd, const char *name)
{
    if (mkdirat(dirfd, name, 0755) < 0 || fchmodat(dirfd, name, 0755, 0) < 0)
        return -errno;
    return 0;
}

/* Copies one regular file (contents and permission bits). */
static int copy_file(int sfd, const char *name, int dfd, mode_t mode)
{
    _cleanup_close_ int in = openat(sfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return -errno;
    _cleanup_close_ int out =
        openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0)
        return -errno;
    char buf[65536];
    ssize_t n;
    while ((n = read_all(in, buf, sizeof(buf))) > 0) {
        int r = write_all(out, buf, (size_t)n);
        if (r < 0)
            return r;
    }
    if (n < 0)
        return (int)n;
    return fchmod(out, mode & 0755) < 0 ? -errno : 0;
}

/* Copies name (file, symlink or directory tree) from sfd to dfd. Other file types, and files
 * only root may read (mode without o+r: keys and the like), are skipped. */
static int copy_tree(int sfd, const char *name, int dfd)
{
    struct stat st;
    if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlinkat(sfd, name, target, sizeof(target) - 1);
        if (n < 0)
            return -errno;
        target[n] = '\0';
        return symlinkat(target, dfd, name) < 0 ? -errno : 0;
    }
    if (!(st.st_mode & S_IROTH))
        return 0;
    if (S_ISREG(st.st_mode))
        return copy_file(sfd, name, dfd, st.st_mode);
    if (!S_ISDIR(st.st_mode))
        return 0;
    int r = mkdir_public(dfd, name);
    if (r < 0)
        return r;
    int s2 = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int d2 = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    r = s2 < 0 || d2 < 0 ? -errno : 0;
    DIR *d = r == 0 ? fdopendir(s2) : NULL;
    if (r == 0 && !d)
        r = -errno;
    if (d) {
        s2 = -1;
        struct dirent *e;
        while (r == 0 && (e = readdir(d)))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                r = copy_tree(dirfd(d), e->d_name, d2);
        closedir(d);
    }
    if (s2 >= 0)
        close(s2);
    if (d2 >= 0)
        close(d2);
    return r;
}

/* Files copied from the rootfs's /etc when present: what the dynamic linker, TLS, shells,
 * name lookups and common tools read. Secrets (shadow, gshadow, ssh, ssl/private,
 * machine-id, ...) are deliberately not here. */
static const char *const etc_copy[] = {
    "ld.so.cache",     "ld.so.conf",   "ld.so.conf.d", "alternatives",
    "profile",         "bash.bashrc",  "inputrc",      "mime.types",
    "protocols",       "services",     "os-release",   "debian_version",
    "magic",           "magic.mime",   "shells",       "python3",
    "python3.11",      "python3.12",   "python3.13",   "ssl/certs",
    "ssl/openssl.cnf", "gai.conf",     "host.conf",    "lsb-release",
    "terminfo",        "vim",          "nanorc",       "manpath.config",
    "papersize",       "locale.alias", "ethertypes",   "rpc",
    "networks",
};
/* Deliberately absent though tools read them: environment, wgetrc, gitconfig, subversion, pip
 * and npm configs — operators put proxy credentials and tokens there. */

static const struct {
    const char *name;
    const char *text;
} etc_gen[] = {
    {"passwd", "root:x:0:0:root:/root:/bin/bash\n"
               "user:x:1000:1000:user:" SANDBOX_HOME ":/bin/bash\n"
               "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
    {"group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n"},
    {"hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tsandbox\n"
              "::1\tlocalhost ip6-localhost ip6-loopback\n"},
    {"hostname", "sandbox\n"},
    {"nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files\n"
                      "networks: files\nprotocols: files\nservices: files\nethers: files\n"
                      "rpc: files\n"},
    {"timezone", "Etc/UTC\n"},
    {"resolv.conf", "# no network in the sandbox\n"},
};

static int build_etc(int rootfd, int jailfd)
{
    int r = mkdir_public(jailfd, "etc");
    if (r == 0)
        r = mkdir_public(jailfd, "etc/ssl");
    if (r < 0)
        return r;
    int efd = openat(jailfd, "etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int sfd = openat(rootfd, "etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    r = efd < 0 ? -errno : 0;
    for (size_t i = 0; r == 0 && sfd >= 0 && i < sizeof(etc_copy) / sizeof(etc_copy[0]); i++) {
        const char *slash = strchr(etc_copy[i], '/');
        if (!slash) {
            r = copy_tree(sfd, etc_copy[i], efd);
            continue;
        }
        int s2 = openat(sfd, "ssl", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int d2 = openat(efd, "ssl", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s2 >= 0 && d2 >= 0)
            r = copy_tree(s2, slash + 1, d2);
        if (s2 >= 0)
            close(s2);
        if (d2 >= 0)
            close(d2);
    }
    for (size_t i = 0; r == 0 && i < sizeof(etc_gen) / sizeof(etc_gen[0]); i++)
        r = write_file(efd, etc_gen[i].name, etc_gen[i].text, 0644);
    if (r == 0 && symlinkat("/usr/share/zoneinfo/Etc/UTC", efd, "localtime") < 0)
        r = -errno;
    if (r == 0 && symlinkat("../proc/self/mounts", efd, "mtab") < 0)
        r = -errno;
    if (sfd >= 0)
        close(sfd);
    if (efd >= 0)
        close(efd);
    return r;
}

/* The lowest overlay layer: mount points, merged-/usr links, an empty /sys, home and tmp. The
 * checkout above it never holds a node at any of the runtime's paths (store/reserved.h), so
 * these always show through. */
static int build_skel(int rootfd, int jailfd)
{
    static const char *const dirs[] = {
        "skel",     "skel/usr",       "skel/etc",           "skel/proc",    "skel/dev",
        "skel/opt", "skel/opt/sqlfs", "skel/opt/sqlfs/bin", "skel/home",    ("skel" SANDBOX_HOME),
        "skel/tmp", "skel/root",      "skel/var",           "skel/var/tmp", "skel/run",
        "skel/sys"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int r = mkdir_public(jailfd, dirs[i]);
        if (r < 0)
            return r;
    }
    if (fchownat(jailfd, "skel" SANDBOX_HOME, SANDBOX_HOST_UID, SANDBOX_HOST_UID, 0) < 0 ||
        fchmodat(jailfd, "skel/tmp", 01777, 0) < 0 ||
        fchmodat(jailfd, "skel/var/tmp", 01777, 0) < 0 ||
        fchmodat(jailfd, "skel/root", 0700, 0) < 0 || fchmodat(jailfd, "skel/sys", 0555, 0) < 0)
        return -errno;
    /* Top-level links of the rootfs into usr (Debian's merged /usr). */
    static const char *const links[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    int sk = openat(jailfd, "skel", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sk < 0)
        return -errno;
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(links) / sizeof(links[0]); i++) {
        char target[256];
        ssize_t n = readlinkat(rootfd, links[i], target, sizeof(target) - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        const char *t = target[0] == '/' ? target + 1 : target;
        if (strncmp(t, "usr/", 4) == 0 && symlinkat(t, sk, links[i]) < 0)
            r = -errno;
    }
    close(sk);
    return r;
}

static int build_stubs_and_bins(int jailfd)
{
    int r = mkdir_public(jailfd, "stub");
    if (r == 0)
        r = mkdir_public(jailfd, "bin");
    if (r < 0)
        return r;
    char text[512];
    for (int i = 0; i < 2; i++) {
        snprintf(text, sizeof(text),
                 "#!/bin/sh\necho \"%s is not enabled for this sandbox; create it with %s=true\""
                 " >&2\nexit 127\n",
                 runtime_names[i], runtime_names[i]);
        char name[64];
        snprintf(name, sizeof(name), "stub/%s", runtime_names[i]);
        r = write_file(jailfd, name, text, 0555);
        if (r < 0)
            return r;
    }
    static const char py_python[] = "#!/bin/sh\nexec python3 \"$@\"\n";
    static const char js_exec[] =
        "#!/bin/sh\n"
        "if [ \"$1\" = \"-c\" ]; then\n"
        "  if [ $# -lt 2 ]; then echo 'usage: js-exec -c CODE | js-exec FILE' >&2; exit 2; fi\n"
        "  code=$2; shift 2; exec node -e \"$code\" \"$@\"\n"
        "fi\n"
        "exec node \"$@\"\n";
    for (int n = 0; n < 4; n++) {
        char dir[32], path[64];
        snprintf(dir, sizeof(dir), "bin/%d", n);
        if ((r = mkdir_public(jailfd, dir)) < 0)
            return r;
        for (int i = 0; i < 3; i++) {
            /* i: 0 py-exec, 1 js-exec, 2 python (python3 under its common short name) */
            int kind = i == 2 ? 0 : i;
            bool on = n & (1 << kind);
            if (!on) {
                snprintf(text, sizeof(text),
                         "#!/bin/sh\necho \"%s is not enabled for this sandbox; create it with "
                         "%s=true\" >&2\nexit 127\n",
                         runtime_names[kind], runtime_names[kind]);
            }
            static const char *const names[3] = {"py-exec", "js-exec", "python"};
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
            if (on && i == 0) /* the program (zygote/py_exec.c) */
                r = write_bytes(jailfd, path, py_exec_image,
                                (size_t)(py_exec_image_end - py_exec_image), 0555);
            else
                r = write_file(jailfd, path, on ? (kind == 0 ? py_python : js_exec) : text, 0555);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

/* Resolves rootfs/<dir>/<name> inside the rootfs (symlinks resolved as the jail will see
 * them) and records the final path if it is a regular file not recorded yet. */
static void add_target(struct rootfs *rf, int rootfd, int kind, const char *rel)
{
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
    int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
    if (fd < 0)
        return;
    struct stat st;
    char proc[64], real[4096];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, real, sizeof(real) - 1);
    bool ok = n > 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!ok)
        return;
    real[n] = '\0';
    size_t plen = strcmp(rf->rootfs, "/") == 0 ? 0 : strlen(rf->rootfs);
    if (strncmp(real, rf->rootfs, plen) != 0 || strncmp(real + plen, "/usr/", 5) != 0)
        return;
    const char *inside = real + plen;
    for (int i = 0; i < rf->ntargets[kind]; i++)
        if (strcmp(rf->targets[kind][i], inside) == 0)
            return;
    if (rf->ntargets[kind] < ROOTFS_MAX_STUBS) {
        char *s = strdup(inside);
        if (s)
            rf->targets[kind][rf->ntargets[kind]++] = s;
    }
}

/* python, python3, python3.N (and pythonN.N-config is left alone), node, nodejs in usr/bin and
 * usr/local/bin. */
static void find_targets(struct rootfs *rf, int rootfd)
{
    static const char *const dirs[] = {"usr/bin", "usr/local/bin"};
    for (size_t d = 0; d < 2; d++) {
        int dfd = openat(rootfd, dirs[d], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            continue;
        DIR *dir = fdopendir(dfd);
        if (!dir) {
            close(dfd);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(dir))) {
            const char *n = e->d_name;
            int kind = -1;
            if (strncmp(n, "python", 6) == 0 && strspn(n + 6, "0123456789.") == strlen(n + 6))
                kind = 0;
            else if (strcmp(n, "node") == 0 || strcmp(n, "nodejs") == 0)
                kind = 1;
            if (kind < 0)
                continue;
            char rel[512];
            snprintf(rel, sizeof(rel), "%s/%s", dirs[d], n);
            add_target(rf, rootfd, kind, rel);
        }
        closedir(dir);
    }
}

static char *joinp(const char *a, const char *b)
{
    char *s = NULL;
    return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* Runs the host's localedef to put the compiled locales `names` (directories of `src`) into one
 * archive under `prefix` (localedef writes <prefix>/usr/lib/locale/locale-archive). 0 or -errno. */
static int run_localedef(const char *prefix, const char *src, char *const *names, size_t n)
{
    char *argv[4 + LOCALE_MAX_DIRS + 1];
    char prefix_opt[4200];
    snprintf(prefix_opt, sizeof(prefix_opt), "--prefix=%s", prefix);
    size_t k = 0;
    argv[k++] = "localedef";
    argv[k++] = prefix_opt;
    argv[k++] = "--add-to-archive";
    argv[k++] = "--replace";
    char *paths[LOCALE_MAX_DIRS];
    size_t made = 0;
    int r = 0;
    for (; made < n; made++) {
        paths[made] = joinp(src, names[made]);
        if (!paths[made]) {
            r = -ENOMEM;
            break;
        }
        argv[k++] = paths[made];
    }
    argv[k] = NULL;
    char *envp[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};
    posix_spawn_file_actions_t fa;
    bool fa_ok = r == 0 && posix_spawn_file_actions_init(&fa) == 0;
    if (r == 0 && !fa_ok)
        r = -ENOMEM;
    /* localedef prints "Adding …" for each locale: nothing the server's log needs. */
    if (fa_ok && (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
                  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) != 0 ||
                  posix_spawn_file_actions_adddup2(&fa, 1, 2) != 0))
        r = -ENOMEM;
    pid_t pid = -1;
    if (r == 0) {
        int e = posix_spawn(&pid, "/usr/bin/localedef", &fa, NULL, argv, envp);
        if (e != 0)
            r = -e;
    }
    if (pid > 0) {
        /* A localedef stuck (on a lock of an odd filesystem) must not hold up the server's
         * start: after LOCALEDEF_WAIT_MS it is killed and the jail does without. */
        int status = 0;
        pid_t w = 0;
        for (int waited = 0; w == 0; waited += 10) {
            w = waitpid(pid, &status, WNOHANG);
            if (w < 0 && errno == EINTR)
                w = 0;
            else if (w == 0 && waited >= LOCALEDEF_WAIT_MS) {
                (void)kill(pid, SIGKILL);
                while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
                    ;
                r = -ETIMEDOUT;
            } else if (w == 0) {
                usleep(10 * 1000);
            }
        }
        if (r == 0 && w < 0)
            r = -errno;
        else if (r == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
            r = -EIO;
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    for (size_t i = 0; i < made; i++)
        free(paths[i]);
    return r;
}

/* A compiled locale that may go into the jail's archive: a real directory (no symlink out of
 * /usr) holding LC_CTYPE, itself and every file in it readable by anyone — localedef runs as
 * root and would otherwise put what the sandbox user cannot read into a world-readable archive. */
static bool locale_dir_public(int parent, const char *name)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
        (st.st_mode & (S_IROTH | S_IXOTH)) != (S_IROTH | S_IXOTH))
        return false;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    bool ok = fstatat(fd, "LC_CTYPE", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    struct dirent *e;
    while (ok && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        ok = fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
             (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) && (st.st_mode & S_IROTH);
    }
    closedir(d);
    return ok;
}

/* locale/: the rootfs's /usr/lib/locale plus one archive of its compiled locales. Every
 * program in a jail sets its locale from LANG=C.UTF-8 at start; without an archive glibc looks
 * for each of the 13 categories in its own file (two opens, a stat and a map each), with it one
 * map of one file serves them all, for every program a script starts (docs/BENCHMARKS.md).
 * Built only over the host's own /usr (the archive is the host glibc's format, made by its
 * localedef) and only when the host has no archive already; an image given with --rootfs ships
 * its own. A failure is logged and leaves the jail reading the separate files. */
static void build_locale(struct rootfs *rf, int jailfd)
{
    if (strcmp(rf->rootfs, "/") != 0 || access("/usr/lib/locale/locale-archive", F_OK) == 0)
        return;
    DIR *d = opendir("/usr/lib/locale");
    if (!d)
        return;
    /* The mount hides the host's directory: built only when the copy shows all of it. */
    char *names[LOCALE_MAX_DIRS];
    size_t n = 0;
    bool whole = true;
    struct dirent *e;
    while (whole && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        whole = n < LOCALE_MAX_DIRS && locale_dir_public(dirfd(d), e->d_name);
        if (whole && !(names[n] = strdup(e->d_name)))
            whole = false;
        n += whole;
    }
    if (!whole || n == 0) { /* nothing is built: the jail sees the rootfs's directory as is */
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        closedir(d);
        return;
    }
    char *staging = joinp(rf->jail_dir, "locale.build");
    char *out = joinp(staging ? staging : "", "usr/lib/locale");
    char *final = joinp(rf->jail_dir, "locale");
    int r = !staging || !out || !final ? -ENOMEM : 0;
    static const char *const dirs[] = {"locale.build", "locale.build/usr", "locale.build/usr/lib",
                                       "locale.build/usr/lib/locale", "locale"};
    for (size_t i = 0; r == 0 && i < sizeof(dirs) / sizeof(dirs[0]); i++)
        r = mkdir_public(jailfd, dirs[i]);
    if (r == 0)
        r = run_localedef(staging, "/usr/lib/locale", names, n);
    /* The directories too, so that the jail's /usr/lib/locale lists what the host's does. */
    int lfd = r == 0 ? openat(jailfd, "locale", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (r == 0 && lfd < 0)
        r = -errno;
    for (size_t i = 0; r == 0 && i < n; i++)
        r = copy_tree(dirfd(d), names[i], lfd);
    if (r == 0) {
        char *archive = joinp(out, "locale-archive");
        if (!archive)
            r = -ENOMEM;
        else if (renameat(AT_FDCWD, archive, lfd, "locale-archive") < 0 ||
                 fchmodat(lfd, "locale-archive", 0644, 0) < 0)
            r = -errno;
        free(archive);
    }
    if (r == 0 && fchmod(lfd, 0755) < 0)
        r = -errno;
    if (lfd >= 0)
        close(lfd);
    closedir(d);
    if (staging)
        (void)rootfs_rm_rf(staging);
    if (r == 0) {
        rf->locale = final;
        final = NULL;
    } else if (final) {
        (void)rootfs_rm_rf(final);
    }
    if (r < 0)
        log_msg("warn",
                "exec: cannot build the jail's locale archive (%s); programs in a sandbox "
                "read each locale category from its own file",
                strerror(-r));
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(staging);
    free(out);
    free(final);
}

int rootfs_build(const char *data_dir, const char *rootfs, struct rootfs *ret)
{
    struct rootfs rf;
    memset(&rf, 0, sizeof(rf));
    char rpath[4096];
    if (!realpath(rootfs ? rootfs : "/", rpath))
        return err_set(-errno, "rootfs: the system image directory does not exist");
    char dpath[4096];
    if (!realpath(data_dir, dpath))
        return err_set(-errno, "rootfs: the data directory does not exist");
    int r = -ENOMEM;
    rf.rootfs = strdup(rpath);
    rf.usr = joinp(strcmp(rpath, "/") == 0 ? "" : rpath, "usr");
    rf.jail_dir = joinp(dpath, "jail");
    if (!rf.rootfs || !rf.usr || !rf.jail_dir)
        goto fail;
    rf.etc = joinp(rf.jail_dir, "etc");
    rf.skel = joinp(rf.jail_dir, "skel");
    rf.newroot = joinp(rf.jail_dir, "root");
    rf.stub[0] = joinp(rf.jail_dir, "stub/python");
    rf.stub[1] = joinp(rf.jail_dir, "stub/javascript");
    for (int i = 0; i < 4; i++)
        if (asprintf(&rf.bin[i], "%s/bin/%d", rf.jail_dir, i) < 0)
            rf.bin[i] = NULL;
    if (!rf.etc || !rf.skel || !rf.newroot || !rf.stub[0] || !rf.stub[1] || !rf.bin[0] ||
        !rf.bin[1] || !rf.bin[2] || !rf.bin[3])
        goto fail;

    r = rootfs_rm_rf(rf.jail_dir);
    if (r < 0) {
        err_set(r, "rootfs: cannot remove the previous jail directory");
        goto fail;
    }
    /* Private like the rest of the data dir: what the jail reads below it is bind-mounted or
     * layered by the set-up child while it is still host root. */
    if (mkdir(rf.jail_dir, 0700) < 0 || mkdir(rf.newroot, 0700) < 0) {
        r = err_set(-errno, "rootfs: cannot create the jail directory");
        goto fail;
    }
    int rootfd = open(rf.rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int jailfd = open(rf.jail_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    r = rootfd < 0 || jailfd < 0 ? -errno : 0;
    if (r == 0 && (r = build_etc(rootfd, jailfd)) < 0)
        err_set(r, "rootfs: cannot generate /etc");
    if (r == 0 && (r = build_skel(rootfd, jailfd)) < 0)
        err_set(r, "rootfs: cannot generate the skeleton layer");
    if (r == 0 && (r = build_stubs_and_bins(jailfd)) < 0)
        err_set(r, "rootfs: cannot generate the runtime stubs");
    if (r == 0)
        build_locale(&rf, jailfd);
    if (r == 0) {
        find_targets(&rf, rootfd);
        rf.has_bash = faccessat(rootfd, "usr/bin/bash", X_OK, 0) == 0;
        rf.shell = rf.has_bash && faccessat(rootfd, "usr/bin/bash-static", X_OK, 0) == 0
                       ? "/usr/bin/bash-static"
                       : "/usr/bin/bash";
    }
    if (rootfd >= 0)
        close(rootfd);
    if (jailfd >= 0)
        close(jailfd);
    if (r < 0)
        goto fail;
    *ret = rf;
    return 0;
fail:
    rootfs_release(&rf);
    return r;
}

void rootfs_release(struct rootfs *r)
{
    free(r->rootfs);
    free(r->usr);
    free(r->jail_dir);
    free(r->etc);
    free(r->skel);
    free(r->newroot);
    free(r->locale);
    for (int i = 0; i < 4; i++)
        free(r->bin[i]);
    for (int i = 0; i < 2; i++) {
        free(r->stub[i]);
        for (int j = 0; j < r->ntargets[i]; j++)
            free(r->targets[i][j]);
    }
    memset(r, 0, sizeof(*r));
}
