/*
 * engine.c — small helpers every engine uses (engine.h): subtree ranges and the walk's depth
 * cut, sandbox records copied out of rows, the owner check, the implicit root, and finding the
 * chunk that holds an offset.
 */
#include "store/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/home.h"

int subtree_init(struct subtree *r, const char *path, size_t len)
{
    bool root = len == 1 && path[0] == '/';
    size_t n = root ? 1 : len + 1;
    *r = (struct subtree){.lo = malloc(n), .hi = malloc(n), .lolen = n, .hilen = n, .locap = n};
    if (!r->lo || !r->hi)
        return -ENOMEM;
    if (!root) {
        memcpy(r->lo, path, len);
        memcpy(r->hi, path, len);
    }
    r->lo[n - 1] = '/';
    r->hi[n - 1] = '0';
    return 0;
}

void subtree_release(struct subtree *r)
{
    free(r->lo);
    free(r->hi);
    r->lo = r->hi = NULL;
}

int subtree_seek(struct subtree *r, const char *key, size_t len, char next)
{
    int rc = ARRAY_GROW(r->lo, len + 1, r->locap);
    if (rc < 0)
        return rc;
    memmove(r->lo, key, len);
    r->lo[len] = next;
    r->lolen = len + 1;
    return 0;
}

size_t walk_depth_cut(const char *path, size_t base, int max_depth)
{
    if (max_depth <= 0)
        return 0;
    int depth = 1;
    for (size_t i = base; path[i]; i++) {
        if (path[i] == '/' && ++depth > max_depth)
            return i;
    }
    return 0;
}

bool owner_matches(const char *tenant, const char *sub, const char *row_tenant, const char *row_sub)
{
    if (tenant && (!row_tenant || strcmp(tenant, row_tenant) != 0))
        return false;
    if (sub && (!row_sub || strcmp(sub, row_sub) != 0))
        return false;
    return true;
}

int sandbox_rec_dup(const struct sandbox_rec *view, struct sandbox_rec *ret)
{
    struct sandbox_rec out = *view;
    out.tenant = view->tenant ? strdup(view->tenant) : NULL;
    out.sub = view->sub ? strdup(view->sub) : NULL;
    out.name = view->name ? strdup(view->name) : NULL;
    out.env_json = strdup(view->env_json ? view->env_json : "{}");
    out.network_policy = view->network_policy ? strdup(view->network_policy) : NULL;
    out.cwd = strdup(view->cwd ? view->cwd : SANDBOX_HOME);
    if (!out.tenant || !out.sub || (view->name && !out.name) || !out.env_json ||
        (view->network_policy && !out.network_policy) || !out.cwd) {
        sandbox_rec_release(&out);
        return -ENOMEM;
    }
    *ret = out;
    return 0;
}

int root_meta(int64_t created_ms, struct file_meta *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->path = strdup("/");
    if (!ret->path)
        return -ENOMEM;
    ret->kind = FILE_KIND_DIR;
    ret->mode = DIR_MODE_DEFAULT;
    ret->mtime_ns = created_ms * 1000000;
    return 0;
}

size_t chunk_span_find(const void *chunks, size_t n, size_t stride, int64_t pos)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct chunk_span *sp = (const void *)((const char *)chunks + mid * stride);
        if (sp->off + sp->len <= pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
