#include "store/changeset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/array.h"

uint32_t file_mode_allowed(enum file_kind k, uint32_t mode)
{
    mode &= 07777 & ~(uint32_t)(S_ISUID | S_ISGID);
    if (k != FILE_KIND_DIR)
        mode &= ~(uint32_t)S_ISVTX;
    return mode;
}

void file_meta_release(struct file_meta *m)
{
    free(m->path);
    free(m->target);
    m->path = NULL;
    m->target = NULL;
}

int file_meta_copy(struct file_meta *dst, const struct file_meta *src)
{
    *dst = *src;
    dst->path = src->path ? strdup(src->path) : NULL;
    dst->target = src->target ? strdup(src->target) : NULL;
    if ((src->path && !dst->path) || (src->target && !dst->target)) {
        file_meta_release(dst);
        return -ENOMEM;
    }
    return 0;
}

const char *file_kind_name(enum file_kind k)
{
    switch (k) {
    case FILE_KIND_DIR:
        return "dir";
    case FILE_KIND_SYMLINK:
        return "symlink";
    default:
        return "file";
    }
}

void changeset_init(struct changeset *cs, const char *kind)
{
    memset(cs, 0, sizeof(*cs));
    cs->kind = kind ? strdup(kind) : NULL;
}

void changeset_release(struct changeset *cs)
{
    for (size_t i = 0; i < cs->n; i++)
        file_meta_release(&cs->items[i].meta);
    free(cs->items);
    free(cs->new_cwd);
    free(cs->kind);
    free(cs->info_json);
    memset(cs, 0, sizeof(*cs));
}

int changeset_reserve(struct changeset *cs, size_t more)
{
    if (more > SIZE_MAX - cs->n)
        return -ENOMEM;
    return ARRAY_GROW(cs->items, cs->n + more, cs->cap);
}

static int reserve(struct changeset *cs)
{
    return changeset_reserve(cs, 1);
}

int changeset_put(struct changeset *cs, const struct file_meta *meta)
{
    int r = reserve(cs);
    if (r < 0)
        return r;
    struct change *c = &cs->items[cs->n];
    c->op = CHANGE_PUT;
    r = file_meta_copy(&c->meta, meta);
    if (r < 0)
        return r;
    c->meta.mode = file_mode_allowed(c->meta.kind, c->meta.mode);
    cs->n++;
    return 0;
}

int changeset_put_take(struct changeset *cs, struct file_meta *meta)
{
    int r = reserve(cs);
    if (r < 0)
        return r;
    struct change *c = &cs->items[cs->n++];
    c->op = CHANGE_PUT;
    c->meta = *meta;
    c->meta.mode = file_mode_allowed(c->meta.kind, c->meta.mode);
    meta->path = NULL;
    meta->target = NULL;
    return 0;
}

int changeset_delete(struct changeset *cs, const char *path)
{
    int r = reserve(cs);
    if (r < 0)
        return r;
    struct change *c = &cs->items[cs->n];
    memset(c, 0, sizeof(*c));
    c->op = CHANGE_DELETE;
    c->meta.path = strdup(path);
    if (!c->meta.path)
        return -ENOMEM;
    cs->n++;
    return 0;
}

int changeset_set_info(struct changeset *cs, const char *json)
{
    char *p = strdup(json);
    if (!p)
        return -ENOMEM;
    free(cs->info_json);
    cs->info_json = p;
    return 0;
}

int64_t changeset_put_bytes(const struct changeset *cs)
{
    int64_t total = 0;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->items[i].op == CHANGE_PUT && cs->items[i].meta.kind == FILE_KIND_FILE)
            total += cs->items[i].meta.size;
    return total;
}
