#include "util/jsontext.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/b64.h"
#include "util/buf.h"
#include "util/utf8.h"

json_t *jsontext_new(const char *s, size_t n)
{
    if (utf8_valid(s, n))
        return json_stringn_nocheck(s, n);
    struct buf clean = BUF_INIT(0);
    json_t *j = NULL;
    if (utf8_sanitize_into(&clean, s, n) == 0)
        j = json_stringn_nocheck(buf_cstr(&clean), clean.len);
    buf_release(&clean);
    return j;
}

json_t *jsontext(const char *s)
{
    return s ? jsontext_new(s, strlen(s)) : json_string("");
}

/* json_object_set_new() consumes the value even when it fails; NULL values fail too. */
static int set_new(json_t *obj, const char *key, json_t *val)
{
    return val && json_object_set_new(obj, key, val) == 0 ? 0 : -ENOMEM;
}

int jsontext_set(json_t *obj, const char *key, const char *s)
{
    return set_new(obj, key, jsontext(s));
}

int jsontext_set_path(json_t *obj, const char *key, const char *path, size_t n)
{
    char bkey[64];
    int k = snprintf(bkey, sizeof(bkey), "%sBytes", key);
    if (k < 0 || (size_t)k >= sizeof(bkey))
        return -EINVAL;
    int r = set_new(obj, key, jsontext_new(path, n));
    if (r < 0)
        return r;
    if (utf8_valid(path, n)) {
        json_object_del(obj, bkey); /* absent is fine */
        return 0;
    }
    char *enc = NULL;
    size_t elen = 0;
    r = b64_encode(path, n, &enc, &elen);
    if (r < 0)
        return r;
    r = set_new(obj, bkey, json_stringn_nocheck(enc, elen));
    free(enc);
    return r;
}
