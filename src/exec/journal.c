/*
 * journal — the exec journal as the exec engine writes it (store.h "Exec journal"): each exec
 * that ran (its script started) gets one record after its commit, holding its id, kind, the
 * start of its script, timing, exit, the version its commit made and the start of its output
 * (EXEC_JOURNAL_OUTPUT_BYTES per stream, cut like any kept output: exec/capture.h). Writing it is
 * one small transaction; a failure to write it does not fail the exec, whose commit stands.
 */
#include <string.h>

#include "util/err.h"

#include "exec/engine_internal.h"
#include "util/jsontext.h"
#include "util/log.h"
#include "util/timeutil.h"
#include "util/utf8.h"

void exec_journal_init(struct exec_journal *j, const struct exec_engine *e, const char *kind,
                       exec_output_cb sink, void *sink_ud)
{
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    j->allowance = (struct capture_allowance)CAPTURE_ALLOWANCE_INIT(e->cfg.journal_output_bytes);
    capture_init(&j->kept, &j->allowance, NULL);
    j->sink = sink;
    j->sink_ud = sink_ud;
    j->started_ms = time_now_ms();
}

void exec_journal_output(void *ud, int stream, const char *data, size_t len)
{
    struct exec_journal *j = ud;
    j->bytes[stream == CAPTURE_STDERR] += (int64_t)len;
    if (len > 0)
        capture_add(&j->kept, stream, data, len);
    j->sink(j->sink_ud, stream, data, len);
}

int exec_journal_script(struct buf *b, const char *script, size_t len, bool first_line_only)
{
    if (b->len >= EXEC_JOURNAL_SCRIPT_BYTES)
        return 0;
    if (first_line_only) {
        const char *nl = memchr(script, '\n', len);
        if (nl)
            len = (size_t)(nl - script);
    }
    size_t room = EXEC_JOURNAL_SCRIPT_BYTES - b->len;
    json_t *t = jsontext_new(script, len < room ? len : room);
    if (!t)
        return -ENOMEM;
    /* U+FFFD replacements may have grown it past the room: cut again, on a character */
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    if (n > room)
        n = room - utf8_incomplete_tail(s, room);
    else
        n -= utf8_incomplete_tail(s, n); /* the cut at `room` may have split a character */
    int r = buf_add(b, s, n);
    json_decref(t);
    return r;
}

void exec_journal_add(struct exec_engine *e, const char *sandbox_id, struct exec_journal *j,
                      const char *exec_id, const struct buf *script, int64_t duration_ms,
                      int exit_code, bool timed_out, int64_t version)
{
    const struct sandbox_config *sc = sandboxes_config(e->sandboxes);
    struct exec_rec rec = {
        .exec_id = (char *)exec_id,
        .kind = (char *)j->kind,
        .script = (char *)(script->len ? script->data : ""),
        .started_ms = j->started_ms,
        .duration_ms = duration_ms,
        .exit_code = exit_code,
        .timed_out = timed_out,
        .version = version,
        .stdout_bytes = j->bytes[0],
        .stderr_bytes = j->bytes[1],
        .stdout_data = j->kept.out.data.data,
        .stdout_len = j->kept.out.data.len,
        .stdout_truncated = j->kept.out.truncated,
        .stderr_data = j->kept.err.data.data,
        .stderr_len = j->kept.err.data.len,
        .stderr_truncated = j->kept.err.truncated,
    };
    struct journal_opts o = {
        .max_records = sc->history_max_commits,
        .max_age_ms = sc->history_max_age_ms,
        .now_ms = time_now_ms(),
    };
    /* the exec's own failure (a refused commit) keeps its message for its answer */
    struct err_saved saved;
    err_save(&saved);
    int r = store_exec_add(e->store, sandbox_id, &rec, &o);
    if (r < 0) {
        log_msg("warn", "exec journal: cannot record exec %s: %s", exec_id,
                err_message() ? err_message() : strerror(-r));
        if (saved.has)
            err_restore(&saved, r);
        else
            err_clear();
    }
    exec_journal_release(j);
}

void exec_journal_release(struct exec_journal *j)
{
    capture_release(&j->kept);
}
