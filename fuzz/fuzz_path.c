/* libFuzzer target: path normalisation (src/util/path.h), the first thing every client path
 * meets. Input: base and rel separated by the first NUL byte (no NUL: rel only, base "/").
 * Invariants checked: a normalised path is absolute, has no empty, "." or ".." segment and no
 * trailing slash (except "/"), fits PATH_MAX_LEN, and normalising it again changes nothing;
 * path_resolve stays a normalised path; path_join_strict results lie within their base;
 * path_parent/path_basename/path_depth agree with each other. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_normal(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || p[0] != '/' || n > PATH_MAX_LEN)
        abort();
    if (n > 1 && p[n - 1] == '/')
        abort();
    if (strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../"))
        abort();
    if ((n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0))
        abort();
    char *again = NULL;
    if (path_normalize(p, n, &again) != 0 || strcmp(again, p) != 0)
        abort();
    free(again);
    int depth = path_depth(p);
    char *parent = path_parent(p);
    if (!parent)
        abort();
    const char *base = path_basename(p);
    if (n == 1) {
        if (depth != 0 || strcmp(parent, "/") != 0 || *base)
            abort();
    } else {
        if (path_depth(parent) != depth - 1 || !path_is_within(p, parent) || !*base ||
            strchr(base, '/'))
            abort();
    }
    if (!path_is_within(p, "/") || !path_is_within(p, p))
        abort();
    free(parent);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = memchr(in, '\0', size);
    char *out = NULL;
    if (path_normalize(in, size, &out) == 0) {
        if (nul)
            abort(); /* NUL must be rejected */
        check_normal(out);
        free(out);
    }
    if (nul) {
        char *base = NULL;
        if (path_normalize(in, (size_t)(nul - in), &base) == 0) {
            size_t rlen = size - (size_t)(nul - in) - 1;
            char *rel = malloc(rlen + 1);
            if (!rel)
                abort();
            memcpy(rel, nul + 1, rlen);
            rel[rlen] = '\0';
            if (!memchr(nul + 1, '\0', rlen)) {
                char *res = NULL;
                if (path_resolve(base, rel, &res) == 0) {
                    check_normal(res);
                    free(res);
                }
                res = NULL;
                if (path_join_strict(base, rel, &res) == 0) {
                    check_normal(res);
                    if (!path_is_within(res, base) || strcmp(res, base) == 0)
                        abort();
                    free(res);
                }
            }
            free(rel);
            free(base);
        }
    }
    err_clear();
    return 0;
}
