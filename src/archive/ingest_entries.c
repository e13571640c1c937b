/*
 * ingest_entries — the entries of one ingest: file metadata in arrival order with a path index
 * (ingest_internal.h), and the names of client-supplied entries in messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/ingest_internal.h"
#include "util/array.h"
#include "util/err.h"
#include "util/path.h"

/* ---- entries: a vector of metadata plus a path index ---------------------------------------- */

static uint64_t hash_path(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Slot of `path[0..len)`: either the one holding it or the free one where it would go. */
static size_t *entries_slot(struct entries *es, const char *path, size_t len)
{
    size_t mask = es->nslots - 1;
    for (size_t i = hash_path(path, len) & mask;; i = (i + 1) & mask) {
        size_t *s = &es->slots[i];
        if (*s == 0)
            return s;
        const char *p = es->v[*s - 1].meta.path;
        if (strncmp(p, path, len) == 0 && p[len] == '\0')
            return s;
    }
}

/* The live item at path[0..len), or NULL. */
struct item *entries_find(struct entries *es, const char *path, size_t len)
{
    if (es->nslots == 0)
        return NULL;
    size_t *s = entries_slot(es, path, len);
    return *s ? &es->v[*s - 1] : NULL;
}

static int entries_rehash(struct entries *es)
{
    size_t nslots = es->nslots ? es->nslots * 2 : 1024;
    size_t *slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    free(es->slots);
    es->slots = slots;
    es->nslots = nslots;
    for (size_t i = 0; i < es->n; i++) {
        if (es->v[i].dead)
            continue;
        const char *p = es->v[i].meta.path;
        *entries_slot(es, p, strlen(p)) = i + 1;
    }
    return 0;
}

/* Takes ownership of meta's strings (also on failure). A previous item at the same path is
 * marked dead: the last entry wins. */
int entries_add(struct entries *es, struct file_meta *meta)
{
    int r = ARRAY_GROW(es->v, es->n + 1, es->cap);
    if (r < 0)
        goto fail;
    if ((es->n + 1) * 2 > es->nslots && (r = entries_rehash(es)) < 0)
        goto fail;
    size_t *slot = entries_slot(es, meta->path, strlen(meta->path));
    if (*slot) {
        struct item *old = &es->v[*slot - 1];
        old->dead = true;
        if (old->meta.kind == FILE_KIND_FILE) {
            es->file_count--;
            es->file_bytes -= old->meta.size;
        }
    }
    es->v[es->n].meta = *meta;
    es->v[es->n].dead = false;
    es->n++;
    *slot = es->n;
    if (meta->kind == FILE_KIND_FILE) {
        es->file_count++;
        es->file_bytes += meta->size;
    }
    return 0;
fail:
    file_meta_release(meta);
    return r;
}

void entries_release(struct entries *es)
{
    for (size_t i = 0; i < es->n; i++)
        file_meta_release(&es->v[i].meta);
    free(es->v);
    free(es->slots);
    memset(es, 0, sizeof(*es));
}

/* The live symlink that `path` (below `base`) goes through, or NULL. Only ancestors strictly
 * between base and path are looked at: replacing a symlink by a later entry is fine. */
const struct item *entries_symlink_ancestor(struct entries *es, const char *base, const char *path)
{
    size_t start = strcmp(base, "/") == 0 ? 1 : strlen(base) + 1;
    for (size_t i = start; path[i]; i++) {
        if (path[i] != '/')
            continue;
        const struct item *it = entries_find(es, path, i);
        if (it && it->meta.kind == FILE_KIND_SYMLINK)
            return it;
    }
    return NULL;
}

/* Moves the live items into cs (their strings are not copied: the archive's metadata is held
 * once); es can then only be released. On failure cs and es are as they were. */
int entries_to_changeset(struct entries *es, struct changeset *cs)
{
    size_t live = 0;
    for (size_t i = 0; i < es->n; i++)
        live += !es->v[i].dead;
    int r = changeset_reserve(cs, live);
    if (r < 0)
        return r;
    for (size_t i = 0; i < es->n; i++)
        if (!es->v[i].dead && (r = changeset_put_take(cs, &es->v[i].meta)) < 0)
            return r; /* cannot happen: the room is reserved */
    cs->create_parents = true;
    return 0;
}

/* Copies a client-supplied name for a message: printable ASCII kept, other bytes as \xNN, cut
 * at 160 bytes (marked "...") so a detail stays readable. */
const char *clean_name(const char *name, char out[200])
{
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)name;
    for (; *p && o < 160; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\')
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, 200 - o, "\\x%02x", *p);
    }
    if (*p)
        o += (size_t)snprintf(out + o, 200 - o, "...");
    out[o] = '\0';
    return out;
}

void detail_entry(const char *name)
{
    char clean[200];
    err_detail("entry: %s", clean_name(name, clean));
}

/* path_join_strict() answers in a PATH_MAX_LEN buffer: keep only the bytes needed, since
 * every entry's path stays in memory until the change set is built. */
int join_compact(const char *base, const char *rel, char **ret)
{
    char *p = NULL;
    int r = path_join_strict(base, rel, &p);
    if (r < 0)
        return r;
    *ret = strdup(p);
    free(p);
    return *ret ? 0 : -ENOMEM;
}
