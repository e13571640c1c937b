/* libFuzzer target: the overlay diff (src/workspace/diff.h), which reads an upper directory written
 * by a sandbox. Each input builds a small upper tree in a temporary directory from 3-byte
 * instructions (kind, parent directory, name), with the shapes a script or overlayfs can leave:
 * files, directories, symlinks, fifos, 0/0 character-device whiteouts, xattr whiteouts, opaque
 * and redirected directories, metacopy files. diff_upper must answer 0 or a clean error; on
 * success every path in the change set is a normalised sandbox path, every PUT of a directory's
 * entry follows its parent, and nothing is reported for fifos. The tree is removed after each run.
 * Needs root (trusted.* xattrs, mknod); without it those instructions are skipped. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/fs.h"
#include "workspace/checkout.h"
#include "workspace/diff.h"
#include "memstore.h"
#include "util/err.h"
#include "util/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DIRS 16

static char top[64];

static void cleanup(void)
{
    if (!top[0])
        return;
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (rm_rf_at(fd, top + 1, NULL) < 0)
            abort();
        close(fd);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct memstore *ms;
    if (!ms) {
        ms = memstore_new();
        snprintf(top, sizeof(top), "/tmp/sqlfs-fuzz-diff-%d", (int)getpid());
        atexit(cleanup);
    }
    cleanup();
    if (mkdir(top, 0755) < 0)
        abort();
    char dirs[MAX_DIRS][256];
    int ndirs = 1;
    snprintf(dirs[0], sizeof(dirs[0]), "%s", top);
    static const char names[] = "abcdef.-_xyz0123";
    char p[512];
    for (size_t i = 0; i + 3 <= size && i < 3 * 64; i += 3) {
        const char *parent = dirs[data[i + 1] % ndirs];
        char nm[4] = {names[data[i + 2] & 15], 0, 0, 0};
        if (data[i + 2] & 0x10)
            nm[1] = names[(data[i + 2] >> 5) & 7];
        if (nm[0] == '.' && (nm[1] == 0 || nm[1] == '.'))
            nm[0] = 'q';
        if ((size_t)snprintf(p, sizeof(p), "%s/%s", parent, nm) >= sizeof(p))
            continue;
        switch (data[i] % 9) {
        case 0: { /* regular file with a little content */
            int fd =
                open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
            if (fd >= 0) {
                if (write(fd, data, data[i + 2] % (size + 1)) < 0) {
                }
                close(fd);
            }
            break;
        }
        case 1:
            if (mkdir(p, 0755) == 0 && ndirs < MAX_DIRS && strlen(p) < sizeof(dirs[0]))
                snprintf(dirs[ndirs++], sizeof(dirs[0]), "%s", p);
            break;
        case 2:
            (void)symlink(data[i + 2] & 1 ? "/etc/passwd" : "../../..", p);
            break;
        case 3:
            (void)mkfifo(p, 0644);
            break;
        case 4: /* overlayfs whiteout */
            (void)mknod(p, S_IFCHR | 0, makedev(0, 0));
            break;
        case 5: /* opaque directory */
            (void)setxattr(parent,
                           data[i + 2] & 1 ? "trusted.overlay.opaque" : "user.overlay.opaque", "y",
                           1, 0);
            break;
        case 6: { /* xattr whiteout: zero-size file marked trusted.overlay.whiteout */
            int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
            if (fd >= 0) {
                close(fd);
                (void)setxattr(p, "trusted.overlay.whiteout", "", 0, 0);
            }
            break;
        }
        case 7: /* a redirect or metacopy marker: the diff must refuse, not lose data */
            (void)setxattr(
                parent, data[i + 2] & 1 ? "trusted.overlay.redirect" : "trusted.overlay.metacopy",
                "/x", 2, 0);
            break;
        case 8: /* a device other than a whiteout: skipped */
            (void)mknod(p, S_IFCHR | 0644, makedev(1, 3));
            break;
        }
    }
    struct changeset cs;
    changeset_init(&cs, "exec");
    struct diff_stats st;
    /* half the inputs compare with a lower: the upper itself, where every directory matches */
    int r = diff_upper(&ms->base, top, size & 1 ? top : NULL, &cs, &st);
    if (r > 0)
        abort();
    if (r == 0) {
        for (size_t k = 0; k < cs.n; k++) {
            const char *path = cs.items[k].meta.path;
            char *norm = NULL;
            if (path_normalize(path, strlen(path), &norm) != 0 || strcmp(norm, path) != 0 ||
                strcmp(path, "/") == 0)
                abort();
            free(norm);
        }
        if ((int64_t)cs.n != st.files + st.dirs + st.symlinks + st.deletes)
            abort();
    }
    changeset_release(&cs);
    err_clear();
    return 0;
}
