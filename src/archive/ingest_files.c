/*
 * ingest_files — ingest_files_build (ingest.h): a JSON object of relative paths to base64
 * contents, validated as a whole before any content is stored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "archive/ingest_internal.h"
#include "store/reserved.h"
#include "util/b64.h"
#include "util/err.h"
#include "util/path.h"
#include "util/timeutil.h"

/* Base64 text decoded per content write: a multiple of 4 characters, 768 KiB of bytes. */
#define B64_STEP ((size_t)1024 * 1024)

static int store_b64(struct store *st, struct content_batch *batch, const char *text, size_t len,
                     uint8_t *scratch, struct file_meta *meta)
{
    struct content_writer *w = NULL;
    int r = store_content_begin(st, &w);
    if (r < 0)
        return r;
    for (size_t i = 0; i < len; i += B64_STEP) {
        size_t n = len - i < B64_STEP ? len - i : B64_STEP;
        size_t got;
        if ((r = b64_decode_into(text + i, n, scratch, &got)) < 0 ||
            (r = store_content_write(st, w, scratch, got)) < 0) {
            store_content_abort(st, w);
            return r;
        }
    }
    int64_t size = 0;
    r = store_content_finish_in(st, batch, w, meta->content, &size);
    if (r < 0)
        return r;
    meta->size = size;
    meta->has_content = size > 0;
    return 0;
}

static void detail_key(const char *key, const char *why)
{
    char clean[200];
    err_detail("%s: %s", clean_name(key, clean), why);
}

/* Pass 1: every key and value, and keys that are parents of other keys. Returns the number of
 * bad keys (each named in a detail) or a negative error; *ret_bytes is the decoded total. */
static int files_validate(struct entries *es, const char *base, json_t *files, int64_t *ret_bytes)
{
    int bad = 0;
    int64_t bytes = 0;
    int64_t now = time_now_ns();
    const char *key;
    json_t *val;
    json_object_foreach(files, key, val)
    {
        struct file_meta meta = {.kind = FILE_KIND_FILE, .mode = 0644, .mtime_ns = now};
        int r = join_compact(base, key, &meta.path);
        if (r == -ENOMEM)
            return r;
        if (r < 0) {
            detail_key(key, "invalid path (must be relative, without '.', '..' or empty segments)");
            bad++;
            continue;
        }
        size_t dlen = 0;
        const char *why = NULL;
        if (reserved_path(meta.path, false))
            why = "lands in a path reserved by the sandbox runtime (/usr, /etc, /proc, ...)";
        else if (!json_is_string(val))
            why = "value must be a base64 string";
        else if (b64_check(json_string_value(val), json_string_length(val), &dlen) < 0)
            why = "invalid base64 (strict: no whitespace, padded to a multiple of 4)";
        if (why) {
            detail_key(key, why);
            file_meta_release(&meta);
            bad++;
            continue;
        }
        bytes += (int64_t)dlen;
        meta.size = (int64_t)dlen;
        if ((r = entries_add(es, &meta)) < 0)
            return r;
    }
    /* "a" and "a/b" cannot both be files: name the parent key rather than fail at commit. */
    size_t skip = strcmp(base, "/") == 0 ? 1 : strlen(base) + 1;
    for (size_t i = 0; i < es->n; i++) {
        const char *p = es->v[i].meta.path;
        if (es->v[i].dead)
            continue;
        for (size_t k = skip; p[k]; k++) {
            struct item *anc = p[k] == '/' ? entries_find(es, p, k) : NULL;
            if (anc && anc->meta.kind == FILE_KIND_FILE) {
                anc->meta.kind = FILE_KIND_DIR; /* report it once */
                detail_key(anc->meta.path + skip, "is also the parent directory of another key");
                bad++;
            }
        }
    }
    *ret_bytes = bytes;
    return bad;
}

/* Pass 2: decodes each value straight into a content writer (finished into a batch: few
 * transactions for many small files). */
static int files_store(struct store *st, struct entries *es, const char *base, json_t *files)
{
    struct content_batch *batch = NULL;
    uint8_t *scratch = malloc(B64_STEP / 4 * 3);
    int r = scratch ? store_content_batch_new(st, &batch) : -ENOMEM;
    if (r < 0) {
        free(scratch);
        return r;
    }
    const char *key;
    json_t *val;
    json_object_foreach(files, key, val)
    {
        char *path = NULL;
        if ((r = path_join_strict(base, key, &path)) < 0)
            break;
        struct item *it = entries_find(es, path, strlen(path));
        free(path);
        if (!it)
            continue;
        r = store_b64(st, batch, json_string_value(val), json_string_length(val), scratch,
                      &it->meta);
        if (r < 0)
            break;
    }
    if (r >= 0)
        r = store_content_batch_flush(st, batch);
    store_content_batch_free(st, batch);
    free(scratch);
    return r;
}

int ingest_files_build(struct store *st, const char *base_path, json_t *files, int64_t max_files,
                       int64_t max_bytes, struct changeset *cs, struct ingest_result *ret)
{
    if (!base_path || base_path[0] != '/')
        return err_set(-ERR_INVALID_INPUT, "basePath must be an absolute path");
    if (!json_is_object(files))
        return err_set(-ERR_INVALID_INPUT, "files must be an object of path to base64 string");
    if (max_files > 0 && (int64_t)json_object_size(files) > max_files) {
        int r = err_set(-ERR_TOO_MANY_ENTRIES, "more than %lld files", (long long)max_files);
        err_detail("MAX_INGEST_FILES=%lld", (long long)max_files);
        return r;
    }
    char *base = NULL;
    int r = path_normalize(base_path, strlen(base_path), &base);
    if (r < 0)
        return err_set(r == -ENOMEM ? r : -ERR_INVALID_INPUT, "invalid basePath");
    struct entries es = {0};
    int64_t bytes = 0;
    int bad = files_validate(&es, base, files, &bytes);
    if (bad < 0) {
        r = bad;
        goto out;
    }
    if (bad > 0) {
        r = err_set(-ERR_INVALID_INPUT, "%d invalid file entr%s", bad, bad == 1 ? "y" : "ies");
        goto out;
    }
    if (max_bytes > 0 && bytes > max_bytes) {
        r = err_set(-ERR_PAYLOAD_TOO_LARGE, "files decode to more than %lld bytes",
                    (long long)max_bytes);
        err_detail("MAX_INGEST_BYTES=%lld", (long long)max_bytes);
        goto out;
    }
    if ((r = files_store(st, &es, base, files)) < 0)
        goto out;
    /* sizes are final now: recount */
    es.file_count = 0;
    es.file_bytes = 0;
    for (size_t i = 0; i < es.n; i++) {
        if (!es.v[i].dead) {
            es.file_count++;
            es.file_bytes += es.v[i].meta.size;
        }
    }
    if ((r = entries_to_changeset(&es, cs)) < 0)
        goto out;
    ret->file_count = es.file_count;
    ret->bytes = es.file_bytes;
    ret->base_path = base;
    base = NULL;
out:
    entries_release(&es);
    free(base);
    return r;
}
