#include "util/path.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Appends the segments of in[0..len) to out (which holds a normalised absolute path of olen
 * bytes, capacity PATH_MAX_LEN+1), applying "." and "..". */
static int push_segments(char *out, size_t *olen, const char *in, size_t len, bool strict)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && in[i] == '/')
            i++;
        size_t start = i;
        while (i < len && in[i] != '/')
            i++;
        size_t seg = i - start;
        if (seg == 0)
            break;
        const char *s = in + start;
        if (memchr(s, '\0', seg))
            return -EINVAL;
        if (seg == 1 && s[0] == '.') {
            /* strict input never has "." segments: path_join_strict has already dropped the one
             * leading "./" it allows, so "././" must not collapse to the base itself */
            if (strict)
                return -EINVAL;
            continue;
        }
        if (seg == 2 && s[0] == '.' && s[1] == '.') {
            if (strict)
                return -EINVAL;
            while (*olen > 0 && out[*olen - 1] != '/')
                (*olen)--;
            if (*olen > 1)
                (*olen)--; /* drop the separating slash, keep the root */
            out[*olen] = '\0';
            continue;
        }
        if (seg > PATH_NAME_MAX)
            return -ENAMETOOLONG;
        size_t need = *olen + (*olen > 1 ? 1 : 0) + seg;
        if (need > PATH_MAX_LEN)
            return -ENAMETOOLONG;
        if (*olen > 1)
            out[(*olen)++] = '/';
        memcpy(out + *olen, s, seg);
        *olen += seg;
        out[*olen] = '\0';
    }
    return 0;
}

static int normalize_into(const char *base, const char *in, size_t len, bool strict, char **ret)
{
    if (len > PATH_MAX_LEN * 2)
        return -ENAMETOOLONG;
    if (memchr(in, '\0', len))
        return -EINVAL;
    char *out = malloc(PATH_MAX_LEN + 1);
    if (!out)
        return -ENOMEM;
    size_t olen = 1;
    out[0] = '/';
    out[1] = '\0';
    int r = 0;
    if (base && !(len > 0 && in[0] == '/'))
        r = push_segments(out, &olen, base, strlen(base), false);
    if (r == 0)
        r = push_segments(out, &olen, in, len, strict);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    return 0;
}

int path_normalize(const char *in, size_t len, char **ret)
{
    if (len == 0)
        return -EINVAL;
    return normalize_into(NULL, in, len, false, ret);
}

int path_resolve(const char *base, const char *rel, char **ret)
{
    size_t len = strlen(rel);
    if (len == 0)
        return normalize_into(NULL, base, strlen(base), false, ret);
    return normalize_into(base, rel, len, false, ret);
}

int path_join_strict(const char *base, const char *rel, char **ret)
{
    size_t len = strlen(rel);
    if (len == 0 || rel[0] == '/')
        return -EINVAL;
    /* empty segments ("a//b") are refused; one trailing slash is allowed for directories */
    for (size_t i = 0; i + 1 < len; i++)
        if (rel[i] == '/' && rel[i + 1] == '/')
            return -EINVAL;
    const char *p = rel;
    if (len >= 2 && p[0] == '.' && p[1] == '/') {
        p += 2;
        len -= 2;
        if (len == 0)
            return -EINVAL;
    }
    return normalize_into(base, p, len, true, ret);
}

bool path_is_within(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 1 && prefix[0] == '/')
        return path[0] == '/';
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

char *path_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = (!slash || slash == path) ? 1 : (size_t)(slash - path);
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, n == 1 && (!slash || slash == path) ? "/" : path, n);
    p[n] = '\0';
    return p;
}

const char *path_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int path_depth(const char *path)
{
    if (strcmp(path, "/") == 0)
        return 0;
    int d = 0;
    for (const char *p = path; *p; p++)
        if (*p == '/')
            d++;
    return d;
}
