/* libFuzzer target: arbitrary bytes as an uploaded archive. The ingest must answer 0 or a clean
 * error, never crash, leak or hang, and never put a path outside basePath in the change set.
 * Build with clang -fsanitize=fuzzer,address,undefined from this file, src/archive/ingest.c,
 * src/store/changeset.c and the src/util sources (-Isrc -Itests/unit, linked
 * with jansson, libcrypto, libarchive and pthread); run with fuzz/corpus/ingest as the corpus (or
 * `make fuzz`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "archive/ingest.h"
#include "memstore.h"
#include "util/err.h"
#include "util/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct memstore *ms;
    if (!ms)
        ms = memstore_new();
    struct ingest_limits lim = {
        .max_files = 1000, .max_bytes = 16 << 20, .tmp_dir = NULL, .max_path_bytes = 1 << 20};
    struct ingest *ing = NULL;
    if (ingest_new(&ms->base, "/home/user/project", &lim, &ing) < 0)
        abort();
    /* feed in uneven pieces so every read-callback boundary gets exercised */
    size_t piece = size % 7 + 1;
    for (size_t o = 0; o < size; o += piece)
        if (ingest_feed(ing, data + o, size - o < piece ? size - o : piece) < 0)
            break;
    struct changeset cs;
    changeset_init(&cs, "ingest");
    struct ingest_result res = {0};
    if (ingest_finish(ing, &cs, &res) == 0) {
        for (size_t i = 0; i < cs.n; i++)
            if (!path_is_within(cs.items[i].meta.path, "/home/user/project"))
                abort();
        ingest_result_release(&res);
    }
    changeset_release(&cs);
    err_clear();
    return 0;
}
