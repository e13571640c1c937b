#include "store/reserved.h"

#include <string.h>

#include "util/err.h"
#include "util/home.h"
#include "util/path.h"

/* Sorted; each also reserves everything below it. */
static const char *const reserved[] = {
    "/bin",    "/dev",       "/etc",  "/lib",  "/lib32", "/lib64",
    "/libx32", "/opt/sqlfs", "/proc", "/sbin", "/sys",   "/usr",
};

/* Parents of reserved paths: a directory there is fine, anything else would hide the mount
 * points below it. */
static const char *const reserved_parents[] = {"/opt"};

const char *reserved_root(const char *path, bool is_dir)
{
    /* Every reserved path is at most two segments deep: most paths are decided by their first
     * byte after the slash. */
    if (!path || path[0] != '/')
        return NULL;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (reserved[i][1] == path[1] && path_is_within(path, reserved[i]))
            return reserved[i];
    for (size_t i = 0; !is_dir && i < sizeof(reserved_parents) / sizeof(reserved_parents[0]); i++)
        if (strcmp(path, reserved_parents[i]) == 0)
            return reserved_parents[i];
    return NULL;
}

bool reserved_path(const char *path, bool is_dir)
{
    return reserved_root(path, is_dir) != NULL;
}

int reserved_error(const char *path, const char *root)
{
    for (size_t i = 0; i < sizeof(reserved_parents) / sizeof(reserved_parents[0]); i++)
        if (strcmp(root, reserved_parents[i]) == 0)
            return err_set(-ERR_INVALID_INPUT,
                           "%s can only be a directory: the sandbox runtime mounts below it", root);
    if (strcmp(path, root) == 0)
        return err_set(-ERR_INVALID_INPUT,
                       "%s is reserved: the sandbox runtime provides it in every exec; write "
                       "somewhere else (e.g. " SANDBOX_HOME ")",
                       root);
    return err_set(-ERR_INVALID_INPUT,
                   "%s is below %s, which is reserved: the sandbox runtime provides it in every "
                   "exec; write somewhere else (e.g. " SANDBOX_HOME ")",
                   path, root);
}

int reserved_check_changeset(const struct changeset *cs)
{
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->items[i].op != CHANGE_PUT)
            continue;
        const struct file_meta *m = &cs->items[i].meta;
        const char *root = reserved_root(m->path, m->kind == FILE_KIND_DIR);
        if (root)
            return reserved_error(m->path, root);
    }
    return 0;
}
