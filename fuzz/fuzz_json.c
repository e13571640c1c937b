/* libFuzzer target: JSON request validation (src/api/jsonv.h) on arbitrary bodies, and the UTF-8
 * helpers (src/util/utf8.h) on the raw bytes. The input is parsed as a request body is (jansson,
 * JSON_REJECT_DUPLICATES); every getter runs on the fields the routes read, with the bounds they
 * use. Invariants: getters answer 0, 1 or -ERR_INVALID_INPUT; a string they accept has no NUL and
 * respects maxlen; utf8_sanitize_into always yields valid UTF-8 and is the identity on valid
 * input; utf8_incomplete_tail is at most 3 and never cuts a valid sequence. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonv.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {"sub",      "tenant",     "expiresIn", "code",  "cwd",
                                   "path",     "timeoutMs",  "env",       "files", "mode",
                                   "python",   "javascript", "readOnly",  "debug", "commands",
                                   "basePath", "content",    ""};

static void ok_rc(int r)
{
    if (r != 0 && r != 1 && r != -ERR_INVALID_INPUT)
        abort();
}

static void check_obj(json_t *o)
{
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const char *s = NULL;
        size_t len = 0;
        int r = jsonv_string(o, keys[k], 64, &s, &len);
        ok_rc(r);
        if (r == 1 && (len > 64 || memchr(s, '\0', len) || strlen(s) != len))
            abort();
        bool b;
        ok_rc(jsonv_bool(o, keys[k], &b));
        int64_t v = 7;
        r = jsonv_int(o, keys[k], -5, 300000, &v);
        ok_rc(r);
        if (r == 1 && (v < -5 || v > 300000))
            abort();
        json_t *j = NULL;
        ok_rc(jsonv_object(o, keys[k], &j));
        ok_rc(jsonv_array(o, keys[k], &j));
        r = jsonv_env(o, keys[k], 8, &j);
        ok_rc(r);
        if (r == 1) {
            const char *name;
            json_t *val;
            if (json_object_size(j) > 8)
                abort();
            json_object_foreach(j, name, val) if (!jsonv_env_name_ok(name) || !json_is_string(val))
                abort();
        }
        err_clear();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    bool valid = utf8_valid(s, size);
    struct buf b = BUF_INIT(0);
    if (utf8_sanitize_into(&b, s, size) == 0) {
        if (!utf8_valid(b.data ? b.data : "", b.len))
            abort();
        if (valid && (b.len != size || (size && memcmp(b.data, s, size) != 0)))
            abort();
    }
    buf_release(&b);
    size_t tail = utf8_incomplete_tail(s, size);
    if (tail > 3 || tail > size)
        abort();
    if (valid && tail != 0)
        abort();
    for (size_t i = 0; i < size;) {
        size_t n = utf8_seq_len(data + i, size - i);
        if (n > 4 || n > size - i)
            abort();
        i += n ? n : 1;
    }

    json_error_t e;
    json_t *root = json_loadb(s, size, JSON_REJECT_DUPLICATES, &e);
    if (root) {
        check_obj(root);
        if (json_is_object(root)) {
            const char *k;
            json_t *v;
            json_object_foreach(root, k, v) if (json_is_object(v)) check_obj(v);
        }
        json_decref(root);
    }
    check_obj(NULL);
    err_clear();
    return 0;
}
